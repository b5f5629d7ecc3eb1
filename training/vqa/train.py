"""LoRA fine-tuning of BLIP-2 to answer product-attribute questions (SageMaker entry point).

SageMaker runs `python vqa/train.py --epochs 10 ...` with the hyperparameters as arguments and the
data channels in `SM_CHANNEL_*`; locally, `cd training && python -m vqa.train --train_dir ...`
runs the same code. Input: the `train/` and `validation/` folders that `vqa.prepare` writes
(`rows.jsonl` + `images/`). Output in `SM_MODEL_DIR`: the base model with the LoRA weights merged
in, its processor, `code/inference.py`, `code/requirements.txt`, `training_summary.json` and, last,
`atelier-manifest.json` (every file's size and SHA-256, this job and its base), so the endpoint
loads a plain model and downloads nothing.

The base model is the `model` channel: a staged folder checked against its manifest
(`base_model_manifest_sha256`) before anything loads, or with `start_from=<job>` that earlier
run's `model.tar.gz` (common/base_model_channel.py). A job never downloads; run by hand,
`--base_model` may be a pinned hub id or a folder.

Checkpoints (trainable weights, optimizer, progress, RNG) go to `/opt/ml/checkpoints`, which
SageMaker syncs to S3; a restarted spot job resumes from the newest readable one, mid-epoch
included. A non-finite loss or gradient stops training before the bad update is applied, so the
weights saved are those of the last good step, and the summary says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # SageMaker runs this file as a script from /opt/ml/code: make `vqa` importable as a package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import logging
import os
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from checkpoint_dirs import (
    atomic_checkpoint,
    checkpoint_name,
    complete_checkpoints,
    resume_progress,
)
from common.base_model_channel import (
    ModelInput,
    ModelRequest,
    add_model_channel_arguments,
    resolve_model_input,
    training_job_source,
    write_archive_manifest,
)
from sagemaker_job import (
    TrainingError,
    add_output_arguments,
    configure_logging,
    fraction,
    hyperparameter_parser,
    non_negative_int,
    positive_float,
    positive_int,
    run_job,
)
from vqa.inference import LoadedModel, answer_prompts, build_prompt, check_image_placeholders
from vqa.metrics import (
    BATCH_LOSS,
    TRAIN_LOSS,
    VALIDATION_EXACT_MATCH,
    VALIDATION_LOSS,
    attribute_metric_name,
    metric_line,
)

LOG = logging.getLogger("vqa.train")

DEFAULT_BASE_MODEL = "Salesforce/blip2-flan-t5-xl"
# The default's pinned Hub commit (docs/base-models.md); a hub id is loaded at a commit only.
DEFAULT_BASE_MODEL_REVISION = "0eb0d3b46c14c1f8c7680bca2693baafdb90bb28"
ROWS_FILE = "rows.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "training_summary.json"
PRECISIONS = ("auto", "fp32", "bf16", "8bit")
_HERE = Path(__file__).resolve().parent
SERVING_REQUIREMENTS = _HERE / "serving-requirements.txt"


# --------------------------------------------------------------------------------------------
# Arguments


def _module_list(value: str) -> list[str]:
    modules = [name.strip() for name in value.split(",") if name.strip()]
    if not modules:
        raise argparse.ArgumentTypeError("name at least one module, e.g. q,v")
    return modules


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    env = os.environ if env is None else env
    parser = hyperparameter_parser("LoRA fine-tuning of BLIP-2 on product attribute questions.")
    # Base model: the `model` channel when attached (a job must have one: it never downloads),
    # otherwise by hand a pinned hub id or a local directory.
    parser.add_argument("--base_model", default=DEFAULT_BASE_MODEL)
    parser.add_argument(
        "--base_model_revision",
        default=None,
        help="40-hex Hub commit of a hub id --base_model (the default model has its own)",
    )
    add_model_channel_arguments(parser, env)
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch_size", type=positive_int, default=4)
    parser.add_argument("--eval_batch_size", type=positive_int, default=8)
    parser.add_argument("--learning_rate", type=positive_float, default=1e-4)
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--gradient_accumulation_steps", type=positive_int, default=1)
    parser.add_argument("--max_grad_norm", type=positive_float, default=1.0)
    parser.add_argument("--lora_r", type=positive_int, default=8)
    parser.add_argument("--lora_alpha", type=positive_int, default=32)
    parser.add_argument("--lora_dropout", type=fraction, default=0.05)
    parser.add_argument("--lora_target_modules", type=_module_list, default=["q", "v"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--max_answer_tokens", type=positive_int, default=16)
    parser.add_argument(
        "--checkpoint_steps",
        type=non_negative_int,
        default=0,
        help="checkpoint every N optimizer steps as well as after each epoch (0: epochs only)",
    )
    parser.add_argument("--keep_checkpoints", type=positive_int, default=2)
    parser.add_argument("--log_every_steps", type=positive_int, default=10)
    parser.add_argument("--dataloader_workers", type=non_negative_int, default=None)
    parser.add_argument(
        "--train_dir", type=Path, default=env.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    )
    parser.add_argument(
        "--validation_dir",
        type=Path,
        default=env.get("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"),
    )
    add_output_arguments(parser, env)
    args = parser.parse_args(argv)
    if args.base_model == DEFAULT_BASE_MODEL and args.base_model_revision is None:
        args.base_model_revision = DEFAULT_BASE_MODEL_REVISION
    if args.lora_alpha < args.lora_r:
        parser.error(
            f"--lora_alpha ({args.lora_alpha}) below --lora_r ({args.lora_r}) "
            "shrinks the update; did you swap them?"
        )
    return args


# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Row:
    product_id: str
    image: Path
    attribute: str
    question: str
    answer: str


def read_rows(split_dir: Path) -> list[Row]:
    """Rows of one split; a malformed line fails the job with its line number (no silent drop)."""
    rows_file = split_dir / ROWS_FILE
    if not rows_file.is_file():
        raise TrainingError(f"{rows_file} not found: point the channel at a vqa.prepare split")
    rows: list[Row] = []
    with rows_file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                row = Row(
                    product_id=str(record["id"]),
                    image=split_dir / record["image"],
                    attribute=str(record["attribute"]),
                    question=str(record["question"]),
                    answer=str(record["answer"]),
                )
            except (ValueError, KeyError, TypeError) as error:
                raise TrainingError(f"{rows_file}:{number}: not a valid row ({error})") from error
            if not row.image.is_file():
                raise TrainingError(f"{rows_file}:{number}: image {row.image} not found")
            rows.append(row)
    if not rows:
        raise TrainingError(f"{rows_file} holds no rows")
    return rows


class RowDataset(torch.utils.data.Dataset[Row]):
    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Row:
        return self.rows[index]


class Collator:
    """Rows → model inputs: prompts with the image placeholders, answers as labels."""

    def __init__(self, processor: Blip2Processor, max_answer_tokens: int) -> None:
        self.processor = processor
        self.max_answer_tokens = max_answer_tokens

    def __call__(self, rows: Sequence[Row]) -> dict[str, torch.Tensor]:
        images = [load_image(row.image) for row in rows]
        inputs = self.processor(
            images=images,
            text=[build_prompt(row.question) for row in rows],
            padding=True,
            return_tensors="pt",
        )
        tokenizer = self.processor.tokenizer  # type: ignore[attr-defined]
        labels = tokenizer(
            [row.answer for row in rows],
            padding=True,
            truncation=True,
            max_length=self.max_answer_tokens,
            return_tensors="pt",
        ).input_ids
        # Padding must not count in the loss.
        labels[labels == tokenizer.pad_token_id] = -100
        return {
            "pixel_values": inputs["pixel_values"],
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "labels": labels,
        }


def load_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def epoch_batches(size: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches: a shuffle that depends only on (seed, epoch), so a resumed job replays
    the interrupted epoch's order and can skip exactly the batches it already trained on."""
    order = list(range(size))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[start : start + batch_size] for start in range(0, size, batch_size)]


# --------------------------------------------------------------------------------------------
# Model


def resolve_precision(precision: str) -> str:
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and not (cuda and torch.cuda.is_bf16_supported()):
        raise TrainingError("precision bf16 needs a GPU with bfloat16 support (A10G, A100, ...)")
    if precision == "8bit":
        if not cuda:
            raise TrainingError("precision 8bit needs a CUDA GPU (bitsandbytes)")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as error:
            raise TrainingError(
                "precision 8bit needs bitsandbytes: add it to requirements.txt"
            ) from error
    return precision


def resolve_base_model(args: argparse.Namespace) -> ModelInput:
    """Where the base loads from, verified before anything loads: the `model` channel (a staged
    folder, or with start_from an earlier run's archive), or by hand `base_model` (a pinned hub
    id or a folder; an unpinned hub id is refused)."""
    return resolve_model_input(
        ModelRequest(
            role="base model",
            channel_name="model",
            channel=args.model_channel,
            model=args.base_model,
            revision=args.base_model_revision,
            manifest_sha256=args.base_model_manifest_sha256,
            flag="base_model",
        ),
        start_from=args.start_from,
    )


def load_base_model(
    base_model: str, precision: str, revision: str | None = None
) -> Blip2ForConditionalGeneration:
    kwargs: dict[str, Any] = {"revision": revision}
    if precision == "8bit":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        model = Blip2ForConditionalGeneration.from_pretrained(
            base_model,
            revision=revision,
            quantization_config=BitsAndBytesConfig(load_in_8bit=True),
            device_map={"": 0},
        )
        return prepare_model_for_kbit_training(model)  # type: ignore[no-any-return]
    kwargs["torch_dtype"] = torch.bfloat16 if precision == "bf16" else torch.float32
    model = Blip2ForConditionalGeneration.from_pretrained(base_model, **kwargs)
    return model.to("cuda" if torch.cuda.is_available() else "cpu")  # type: ignore[no-any-return]


def load_processor(
    base_model: str, model: Blip2ForConditionalGeneration, revision: str | None = None
) -> Blip2Processor:
    # A local folder has no revision (None): the library's default, ignored there.
    processor = Blip2Processor.from_pretrained(
        base_model, revision=revision or "main", use_fast=False
    )
    # Hub processors saved before transformers added BLIP-2's image placeholders carry no
    # num_query_tokens; the model config knows the number.
    if processor.num_query_tokens is None:
        processor.num_query_tokens = model.config.num_query_tokens
    check_image_placeholders(model, processor)
    return processor


def add_lora(model: Blip2ForConditionalGeneration, args: argparse.Namespace) -> PeftModel:
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        bias="none",
        target_modules=args.lora_target_modules,
    )
    try:
        return get_peft_model(model, config)  # type: ignore[return-value]
    except ValueError as error:
        raise TrainingError(f"LoRA target modules {args.lora_target_modules}: {error}") from error


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: parameter.detach().cpu().clone()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def training_step_loss(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One forward pass; its own function so the tests can inject a NaN here."""
    loss: torch.Tensor = model(**batch).loss
    return loss


# --------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class Progress:
    """Where training stands: the next batch to train is `batch_in_epoch` of `epoch`."""

    epoch: int = 1
    batch_in_epoch: int = 0
    optimizer_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    keep: int,
) -> Path:
    # Written under a temporary name and renamed: a job killed mid-write leaves no half
    # checkpoint that a restart would try to load.
    with atomic_checkpoint(
        directory, progress.optimizer_steps, marker=CHECKPOINT_FILE, keep=keep
    ) as partial:
        torch.save(
            {
                "trainable": trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "progress": asdict(progress),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            partial / CHECKPOINT_FILE,
        )
    return directory / checkpoint_name(progress.optimizer_steps)


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return complete_checkpoints(directory, CHECKPOINT_FILE)


def restore_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> Progress | None:
    """Load the newest readable checkpoint; an unreadable one (a sync cut short) is skipped."""
    expected = {name for name, p in model.named_parameters() if p.requires_grad}

    def load(path: Path) -> Progress:
        state = torch.load(path / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        if set(state["trainable"]) != expected:
            raise ValueError("its trainable parameters differ from this run's LoRA setup")
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return Progress(**state["progress"])

    return resume_progress(directory, CHECKPOINT_FILE, load, LOG)


# --------------------------------------------------------------------------------------------
# Evaluation


def normalize_answer(text: str) -> str:
    return " ".join(text.casefold().split())


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, rows: Sequence[Row], collate: Collator, batch_size: int, device: str
) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = move(collate(chunk), device, model_dtype(model))
        total += float(model(**batch).loss) * len(chunk)
        count += len(chunk)
    return total / count


@torch.no_grad()
def exact_match(
    loaded: LoadedModel, rows: Sequence[Row], max_new_tokens: int
) -> tuple[float, dict[str, float]]:
    """Per-attribute exact match through the serving path: one batched call per product image."""
    loaded.model.eval()
    by_image: dict[Path, list[Row]] = defaultdict(list)
    for row in rows:
        by_image[row.image].append(row)
    hits: dict[str, list[bool]] = defaultdict(list)
    for image_path, image_rows in by_image.items():
        answers = answer_prompts(
            loaded,
            load_image(image_path),
            [build_prompt(row.question) for row in image_rows],
            max_new_tokens=max_new_tokens,
        )
        for row, answer in zip(image_rows, answers, strict=True):
            hits[row.attribute].append(normalize_answer(answer) == normalize_answer(row.answer))
    per_attribute = {attribute: sum(h) / len(h) for attribute, h in sorted(hits.items())}
    overall = sum(sum(h) for h in hits.values()) / sum(len(h) for h in hits.values())
    return overall, per_attribute


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def move(
    batch: Mapping[str, torch.Tensor], device: str, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    return {
        key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
        for key, value in batch.items()
    }


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class Outcome:
    progress: Progress
    stopped_reason: str | None = None


def train(
    model: PeftModel,
    processor: Blip2Processor,
    train_rows: Sequence[Row],
    validation_rows: Sequence[Row],
    args: argparse.Namespace,
) -> Outcome:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Only the LoRA weights are optimised: AdamW keeps two moments per parameter, which for the
    # frozen base would cost twice its size in memory for nothing.
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    progress = restore_checkpoint(args.checkpoint_dir, model, optimizer) or Progress()
    collate = Collator(processor, args.max_answer_tokens)
    workers = args.dataloader_workers
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if device == "cuda" else 0
    loaded = LoadedModel(model=model, processor=processor, device=torch.device(device))
    accumulation = args.gradient_accumulation_steps

    while progress.epoch <= args.epochs:
        epoch = progress.epoch
        batches = epoch_batches(len(train_rows), args.batch_size, args.seed, epoch)
        loader = torch.utils.data.DataLoader(
            RowDataset(train_rows),
            batch_sampler=batches[progress.batch_in_epoch :],
            collate_fn=collate,
            num_workers=workers,
            # Its own generator: a loader seeds its workers from the global RNG otherwise, and
            # that draw would shift the dropout masks of a resumed epoch against the original.
            generator=torch.Generator().manual_seed(args.seed + epoch),
        )
        model.train()
        epoch_loss, epoch_batches_seen = 0.0, 0
        for offset, batch in enumerate(loader):
            index = progress.batch_in_epoch + offset
            loss = training_step_loss(model, move(batch, device, model_dtype(model)))
            if not torch.isfinite(loss):
                return _stop_non_finite(
                    optimizer, progress, epoch, index, "loss", float(loss.detach())
                )
            (loss / accumulation).backward()
            epoch_loss += float(loss.detach())
            epoch_batches_seen += 1
            last_of_epoch = index == len(batches) - 1
            if (index + 1) % accumulation and not last_of_epoch:
                continue
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
            if not torch.isfinite(grad_norm):
                return _stop_non_finite(
                    optimizer, progress, epoch, index, "gradient norm", float(grad_norm)
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            progress.optimizer_steps += 1
            progress.batch_in_epoch = index + 1
            if progress.optimizer_steps % args.log_every_steps == 0:
                print(
                    metric_line(
                        epoch=epoch,
                        step=progress.optimizer_steps,
                        **{BATCH_LOSS: float(loss.detach())},
                    ),
                    flush=True,
                )
            if (
                args.checkpoint_steps
                and progress.optimizer_steps % args.checkpoint_steps == 0
                and not last_of_epoch
            ):
                save_checkpoint(
                    args.checkpoint_dir, model, optimizer, progress, args.keep_checkpoints
                )

        record = evaluate(loaded, validation_rows, collate, args, device)
        # A resumed epoch only saw its remaining batches; the mean is over those.
        record = {
            "epoch": epoch,
            TRAIN_LOSS: epoch_loss / max(epoch_batches_seen, 1),
            **record,
        }
        _print_epoch(record)
        progress.history.append(record)
        progress.epoch += 1
        progress.batch_in_epoch = 0
        save_checkpoint(args.checkpoint_dir, model, optimizer, progress, args.keep_checkpoints)
    return Outcome(progress=progress)


def evaluate(
    loaded: LoadedModel,
    rows: Sequence[Row],
    collate: Collator,
    args: argparse.Namespace,
    device: str,
) -> dict[str, Any]:
    loss = validation_loss(loaded.model, rows, collate, args.eval_batch_size, device)
    overall, per_attribute = exact_match(loaded, rows, args.max_answer_tokens)
    return {
        VALIDATION_LOSS: loss,
        VALIDATION_EXACT_MATCH: overall,
        "per_attribute": per_attribute,
    }


def _print_epoch(record: Mapping[str, Any]) -> None:
    print(
        metric_line(
            epoch=record["epoch"],
            **{
                name: float(record[name])
                for name in (TRAIN_LOSS, VALIDATION_LOSS, VALIDATION_EXACT_MATCH)
            },
        ),
        flush=True,
    )
    for attribute, value in record["per_attribute"].items():
        print(
            metric_line(epoch=record["epoch"], **{attribute_metric_name(attribute): value}),
            flush=True,
        )


def _stop_non_finite(
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    epoch: int,
    batch: int,
    what: str,
    value: float,
) -> Outcome:
    # The bad gradients are dropped before any optimizer step, so the weights in memory are the
    # last good ones: those are what gets saved.
    optimizer.zero_grad(set_to_none=True)
    print(
        metric_line(epoch=epoch, step=progress.optimizer_steps, **{BATCH_LOSS: value}), flush=True
    )
    reason = (
        f"non-finite {what} ({value}) at epoch {epoch}, batch {batch}: training stopped, "
        f"keeping the weights after {progress.optimizer_steps} good optimizer steps"
    )
    LOG.error(reason)
    return Outcome(progress=progress, stopped_reason=reason)


# --------------------------------------------------------------------------------------------
# Export


def export_model(
    model: PeftModel,
    processor: Blip2Processor,
    args: argparse.Namespace,
    precision: str,
    base_input: ModelInput,
) -> None:
    """Merge LoRA into the base and write what the endpoint serves, code included."""
    if precision == "8bit":
        # Int8 weights cannot absorb the LoRA delta: reload the base in bfloat16 and merge there.
        adapter_dir = args.output_data_dir / "adapter"
        model.save_pretrained(adapter_dir)
        base = Blip2ForConditionalGeneration.from_pretrained(
            base_input.location, revision=base_input.revision, torch_dtype=torch.bfloat16
        )
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    else:
        merged = model.merge_and_unload()
    args.model_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(args.model_dir, safe_serialization=True)
    processor.save_pretrained(args.model_dir)
    code_dir = args.model_dir / "code"
    code_dir.mkdir(exist_ok=True)
    shutil.copyfile(_HERE / "inference.py", code_dir / "inference.py")
    shutil.copyfile(SERVING_REQUIREMENTS, code_dir / "requirements.txt")


def write_summary(
    args: argparse.Namespace,
    outcome: Outcome,
    counts: Mapping[str, int],
    precision: str,
    seconds: float,
    base: ModelInput,
) -> dict[str, Any]:
    summary = {
        "status": "stopped_non_finite" if outcome.stopped_reason else "completed",
        "stopped_reason": outcome.stopped_reason,
        "base_model": args.base_model,
        "base_source": dict(base.source),
        "precision": precision,
        "prompt_template": build_prompt("{question}"),
        "hyperparameters": {
            key: value if isinstance(value, int | float | str | list) else str(value)
            for key, value in vars(args).items()
            if not key.endswith(("_dir", "_file", "_channel"))
        },
        "parameters": dict(counts),
        "optimizer_steps": outcome.progress.optimizer_steps,
        "epochs": outcome.progress.history,
        "seconds": round(seconds, 1),
    }
    text = json.dumps(summary, indent=2, default=str)
    for directory in (args.model_dir, args.output_data_dir):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")
    return summary


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    seed_everything(args.seed)
    precision = resolve_precision(args.precision)
    train_rows = read_rows(args.train_dir)
    validation_rows = read_rows(args.validation_dir)
    LOG.info(
        "%d training rows, %d validation rows; base %s in %s",
        len(train_rows),
        len(validation_rows),
        args.base_model,
        precision,
    )
    # Every file checked against its manifest before anything loads (a job never downloads).
    base_input = resolve_base_model(args)
    base = load_base_model(base_input.location, precision, base_input.revision)
    processor = load_processor(base_input.location, base, base_input.revision)
    model = add_lora(base, args)
    trainable, total = parameter_counts(model)
    LOG.info("trainable parameters: %d of %d (%.4f%%)", trainable, total, 100 * trainable / total)
    outcome = train(model, processor, train_rows, validation_rows, args)
    if outcome.stopped_reason and outcome.progress.optimizer_steps == 0:
        raise TrainingError(f"{outcome.stopped_reason}; nothing was learned, no model saved")
    export_model(model, processor, args, precision, base_input)
    summary = write_summary(
        args,
        outcome,
        {"trainable": trainable, "total": total},
        precision,
        time.monotonic() - started,
        base_input,
    )
    # Last, so that it lists every file of the archive (the summary and code/ included).
    write_archive_manifest(args.model_dir, training_job_source(base_input.source))
    return summary


def run(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return run_with_args(parse_args(argv))


def run_with_args(args: argparse.Namespace) -> int:
    """Train; 0 when a model was saved, 1 (and SageMaker's failure file) when none could be."""
    return run_job(main, args, LOG)


if __name__ == "__main__":
    sys.exit(run())
