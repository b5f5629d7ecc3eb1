"""`atelier attributes compare`: the two attribute sources side by side on a held-out dataset.

The fine-tuned attribute model (the stage's SageMaker endpoint) and a vision model on Bedrock
(Converse, no training) answer the same questions about the same photos: those of a dataset that
`atelier dataset vqa` prepared (`<split>/rows.jsonl` and its images, `questions.json`), by
default its validation split, which training never saw. The command prints, per attribute, the
share of answers that match the dataset's (compared as the description pipeline compares them:
label prefix, case and spacing ignored), then what 1,000 images cost with each source and how
long one image takes.

Both sources are called through the description functions' own adapters (lambdas/), so the
requests are the ones production sends. Costs:
- vision-llm: the tokens Bedrock reports for each call, at the model's on-demand list price;
- endpoint: the instance-hour price over the images one instance answers per hour, measured here
  (one request at a time: a lower bound of what a busy endpoint does) unless given.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from atelier_cli.aws import translated_errors
from atelier_cli.checkout import use_lambdas_code
from atelier_cli.errors import UsageError
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command

if TYPE_CHECKING:
    from descriptions.logic.prompt import StructuredOutput
    from shared.models.attributes import AttributeAnswers
    from shared.models.descriptions import TextModelReply

# The Api stack's default text model, which reads images too (cdk.json descriptions.model_id).
DEFAULT_VISION_MODEL = "global.anthropic.claude-sonnet-4-6"
# On-demand list prices in USD per million input / output tokens, global cross-region inference
# (regional profiles cost about 10% more), checked 2026-12-07 on public Bedrock price lists.
PRICES_CHECKED = "2026-12-07"
TOKEN_PRICES: dict[str, tuple[float, float]] = {
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
}
# ml.g5.2xlarge real-time inference in us-east-1, USD per instance-hour (docs/costs.md;
# checked 2026-12-07). Pass --instance-price for another type or region.
DEFAULT_INSTANCE_PRICE = 1.515
ENDPOINT = "endpoint"
VISION = "vision-llm"

app = typer.Typer(
    help="Compare the attribute sources (fine-tuned endpoint and vision model on Bedrock).",
    no_args_is_help=True,
)


class Mode(StrEnum):
    json_schema = "json_schema"
    tool = "tool"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="attributes")


# --- the dataset ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One photo of the dataset and the answers it holds for it."""

    id: str
    image: Path
    expected: dict[str, str]


@dataclass(frozen=True)
class Question:
    name: str
    text: str


def read_dataset(
    folder: Path, split: str, limit: int | None
) -> tuple[list[Question], list[Example]]:
    """The questions and the photos of a prepared VQA dataset's split, in file order."""
    rows_path = folder / split / "rows.jsonl"
    questions_path = folder / "questions.json"
    for path in (rows_path, questions_path):
        if not path.is_file():
            raise UsageError(
                f"{path} does not exist: {folder} is not a prepared VQA dataset",
                fix="prepare one with: atelier dataset vqa --source KAGGLE_DIR --out DIR",
                code="dataset_invalid",
            )
    try:
        question_map = json.loads(questions_path.read_text(encoding="utf-8"))
        rows = [
            json.loads(line)
            for line in rows_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        examples: dict[str, Example] = {}
        for row in rows:
            example = examples.setdefault(
                str(row["id"]), Example(str(row["id"]), folder / split / str(row["image"]), {})
            )
            example.expected[str(row["attribute"])] = str(row["answer"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UsageError(
            f"{folder} is not a prepared VQA dataset: {type(error).__name__}: {error}",
            fix="prepare it again with atelier dataset vqa",
            code="dataset_invalid",
        ) from None
    questions = [Question(str(name), str(text)) for name, text in question_map.items()]
    chosen = list(examples.values())[: limit if limit is not None else None]
    if not chosen:
        raise UsageError(f"{rows_path} has no rows", code="dataset_invalid")
    return questions, chosen


# --- running a source ----------------------------------------------------------------------------


@dataclass
class SourceRun:
    """One source's answers (None where it failed), latencies and token counts."""

    name: str
    model: str
    answers: list[dict[str, str] | None] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0


class MeteredModel:
    """The Bedrock adapter, keeping each reply's token counts for the cost."""

    def __init__(self, model: Any, run: SourceRun) -> None:
        self._model = model
        self._run = run

    def converse(self, request: Mapping[str, Any]) -> TextModelReply:
        reply: TextModelReply = self._model.converse(request)
        self._run.input_tokens += reply.input_tokens
        self._run.output_tokens += reply.output_tokens
        return reply


def run_source(
    result: SourceRun,
    answer: Callable[[bytes], AttributeAnswers],
    examples: Sequence[Example],
    clock: Callable[[], float],
    progress: Callable[[str], None],
) -> SourceRun:
    from shared.models.errors import AtelierError

    for index, example in enumerate(examples, 1):
        image = example.image.read_bytes()
        started = clock()
        try:
            answers = answer(image)
        except AtelierError as error:
            result.errors[error.code] += 1
            result.answers.append(None)
        else:
            result.answers.append(dict(answers.attributes))
        result.latencies_ms.append((clock() - started) * 1000)
        progress(f"{result.name}: {index}/{len(examples)}")
    return result


def accuracy(
    questions: Sequence[Question], examples: Sequence[Example], result: SourceRun
) -> dict[str, dict[str, Any]]:
    """Per attribute: answers matching the dataset's, over the dataset's answers (a failed call
    counts as wrong), compared as the grounding check compares them."""
    from descriptions.logic.grounding import normalize_answer

    table: dict[str, dict[str, Any]] = {}
    for question in questions:
        correct = total = 0
        for example, answers in zip(examples, result.answers, strict=True):
            expected = example.expected.get(question.name)
            if expected is None:
                continue
            total += 1
            got = (answers or {}).get(question.name)
            correct += got is not None and normalize_answer(got) == normalize_answer(expected)
        if total:
            table[question.name] = {
                "correct": correct,
                "total": total,
                "accuracy": round(correct / total, 4),
            }
    return table


def latency(result: SourceRun) -> dict[str, float]:
    values = sorted(result.latencies_ms)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return {
        "mean": round(statistics.fmean(values), 1),
        "p50": round(statistics.median(values), 1),
        "p95": round(p95, 1),
    }


def token_prices(model_id: str, given: tuple[float | None, float | None]) -> tuple[float, float]:
    if given[0] is not None and given[1] is not None:
        return given[0], given[1]
    listed = next((price for key, price in TOKEN_PRICES.items() if key in model_id), None)
    if listed is None:
        raise UsageError(
            f"no list price is known here for {model_id}",
            fix="pass --input-price and --output-price (USD per million tokens)",
            code="price_unknown",
        )
    return given[0] if given[0] is not None else listed[0], (
        given[1] if given[1] is not None else listed[1]
    )


def summary(
    questions: Sequence[Question],
    examples: Sequence[Example],
    endpoint: SourceRun,
    vision: SourceRun,
    *,
    prices: tuple[float, float],
    instance_price: float,
    images_per_hour: float | None,
) -> dict[str, Any]:
    measured = images_per_hour is None
    if images_per_hour is None:
        mean_seconds = statistics.fmean(endpoint.latencies_ms) / 1000
        images_per_hour = 3600 / mean_seconds if mean_seconds > 0 else float("inf")
    # Per photo sent: a refused or malformed answer is billed too.
    sent = max(1, len(vision.answers))
    vision_cost = (vision.input_tokens * prices[0] + vision.output_tokens * prices[1]) / 1e6
    vision_cost = vision_cost / sent * 1000
    endpoint_cost = instance_price / images_per_hour * 1000
    sources: dict[str, Any] = {}
    for run, cost, basis in (
        (
            endpoint,
            endpoint_cost,
            f"${instance_price:g}/instance-hour over {images_per_hour:,.0f} images/hour "
            f"({'measured, one request at a time' if measured else 'given'})",
        ),
        (
            vision,
            vision_cost,
            f"${prices[0]:g} / ${prices[1]:g} per million input / output tokens (list prices "
            f"checked {PRICES_CHECKED}); {vision.input_tokens / sent:,.0f} in and "
            f"{vision.output_tokens / sent:,.0f} out per photo, as Bedrock counted them",
        ),
    ):
        sources[run.name] = {
            "model": run.model,
            "accuracy": accuracy(questions, examples, run),
            "errors": dict(run.errors),
            "latencyMs": latency(run),
            "costPer1000Images": round(cost, 4),
            "costBasis": basis,
        }
    return {"images": len(examples), "sources": sources, "pricesChecked": PRICES_CHECKED}


# --- the command ---------------------------------------------------------------------------------


@app.command("compare")
def compare(
    ctx: typer.Context,
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset",
            help="A prepared VQA dataset folder (atelier dataset vqa --out).",
            exists=True,
            file_okay=False,
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="Its held-out split.")] = "validation",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use only the first N photos.")
    ] = None,
    endpoint_name: Annotated[
        str | None,
        typer.Option("--endpoint", help="SageMaker endpoint (default: the stage's VQA endpoint)."),
    ] = None,
    model_id: Annotated[
        str, typer.Option("--model-id", help="Bedrock model or inference profile id.")
    ] = DEFAULT_VISION_MODEL,
    structured_output: Annotated[
        Mode, typer.Option("--structured-output", help="How the vision model answers.")
    ] = Mode.json_schema,
    input_price: Annotated[
        float | None, typer.Option("--input-price", min=0, help="USD per million input tokens.")
    ] = None,
    output_price: Annotated[
        float | None,
        typer.Option("--output-price", min=0, help="USD per million output tokens."),
    ] = None,
    instance_price: Annotated[
        float,
        typer.Option("--instance-price", min=0, help="Endpoint USD per instance-hour."),
    ] = DEFAULT_INSTANCE_PRICE,
    images_per_hour: Annotated[
        float | None,
        typer.Option(
            "--images-per-hour", min=1, help="Endpoint throughput (default: measured here)."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Per-attribute accuracy, cost per 1,000 images and latency of both attribute sources."""
    with command(ctx, "attributes compare", json_output) as run:
        use_lambdas_code()
        prices = token_prices(model_id, (input_price, output_price))
        questions, examples = read_dataset(dataset, split, limit)
        endpoint_run, vision_run = _run_both(
            run, questions, examples, endpoint_name, model_id, structured_output.value
        )
        result = summary(
            questions,
            examples,
            endpoint_run,
            vision_run,
            prices=prices,
            instance_price=instance_price,
            images_per_hour=images_per_hour,
        )
        result = {"dataset": str(dataset), "split": split, **result}
        run.done(result, human=lambda console: _print(console, result))


def _run_both(
    run: Run,
    questions: Sequence[Question],
    examples: Sequence[Example],
    endpoint_name: str | None,
    model_id: str,
    mode: str,
) -> tuple[SourceRun, SourceRun]:
    from descriptions.logic.images import ImageLimits, InvalidImageError, inspect_image
    from descriptions.logic.vision import VisionAttributeSource, check_image
    from shared.adapters.bedrock_runtime import BedrockTextModel
    from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
    from shared.models.errors import RequestError

    with translated_errors():
        name = endpoint_name or run.resources.published("hosting", "vqa-endpoint-name")
        sagemaker = run.aws.client("sagemaker-runtime")
        bedrock = run.aws.client("bedrock-runtime")
    endpoint = SageMakerAttributeModel(name, sagemaker_runtime=sagemaker)
    vision_run = SourceRun(VISION, model_id)
    structured: StructuredOutput = "tool" if mode == "tool" else "json_schema"
    vision = VisionAttributeSource(
        model_id=model_id,
        structured_output=structured,
        model=MeteredModel(
            BedrockTextModel(bedrock_runtime=bedrock, code_prefix="attribute_model"), vision_run
        ),
    )

    def ask_vision(image: bytes) -> AttributeAnswers:
        # Bedrock's image limits first, as the pipeline checks them.
        try:
            info = inspect_image(image, ImageLimits(2**31, 2**40, 2**16, 1))
        except InvalidImageError as error:
            raise RequestError(error.problem.value, error.message) from None
        check_image(info)
        return vision.answer(image, questions)

    clock, progress = run.hooks.clock, run.note
    endpoint_run = run_source(
        SourceRun(ENDPOINT, name),
        lambda image: endpoint.answer(image, questions),
        examples,
        clock,
        progress,
    )
    return endpoint_run, run_source(vision_run, ask_vision, examples, clock, progress)


def _percent(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['accuracy'] * 100:.0f}% ({entry['correct']}/{entry['total']})"


def _dollars(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 0.1 else f"${amount:.4f}"


def _print(console: Console, result: Mapping[str, Any]) -> None:
    sources = result["sources"]
    endpoint, vision = sources[ENDPOINT], sources[VISION]
    table = Table(
        title=f"Attribute sources on {escape(result['dataset'])} ({result['split']}, "
        f"{result['images']} photos)"
    )
    table.add_column("attribute")
    table.add_column(f"endpoint\n{escape(endpoint['model'])}", justify="right")
    table.add_column(f"vision-llm\n{escape(vision['model'])}", justify="right")
    for attribute in dict.fromkeys([*endpoint["accuracy"], *vision["accuracy"]]):
        table.add_row(
            attribute,
            _percent(endpoint["accuracy"].get(attribute)),
            _percent(vision["accuracy"].get(attribute)),
        )
    table.add_section()
    table.add_row(
        "cost / 1,000 images",
        _dollars(endpoint["costPer1000Images"]),
        _dollars(vision["costPer1000Images"]),
    )
    for key in ("p50", "p95"):
        table.add_row(
            f"latency {key}",
            f"{endpoint['latencyMs'][key]:,.0f} ms",
            f"{vision['latencyMs'][key]:,.0f} ms",
        )
    table.add_row(
        "failed calls",
        str(sum(endpoint["errors"].values())),
        str(sum(vision["errors"].values())),
    )
    console.print(table)
    for name in (ENDPOINT, VISION):
        console.print(f"{name} cost: {escape(sources[name]['costBasis'])}")
        if sources[name]["errors"]:
            console.print(f"{name} failures: {escape(json.dumps(sources[name]['errors']))}")
