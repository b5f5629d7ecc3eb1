"""JSON Lines batches of the attribute handler (Batch Transform's MultiRecord), on a tiny BLIP-2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.toolkit_support import invoke, served
from tests.training.test_vqa_inference import (
    QUESTIONS,
    archive,
    corrupt_jpeg_b64,
    image_b64,
    loaded,
)
from vqa import inference
from vqa.inference import LoadedModel

__all__ = ["archive", "loaded"]  # module fixtures reused from the single-request tests

JSON_LINES = "application/jsonlines"
# Different colours, sizes and formats, so the images are not one image five times.
IMAGES = [
    image_b64("JPEG", (60, 40), "navy"),
    image_b64("PNG", (32, 64), "crimson"),
    image_b64("JPEG", (90, 90), "white"),
    image_b64("WEBP", (48, 30), "olive"),
    image_b64("JPEG", (20, 70), "black"),
]


def record(image: str, **fields: Any) -> dict[str, Any]:
    return {"image": image, "questions": QUESTIONS, "errors": "inline", **fields}


def lines(*records: dict[str, Any] | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def answer_alone(loaded: LoadedModel, document: dict[str, Any]) -> Any:
    """What the online (single JSON document) request answers for the same record."""
    return inference.predict_fn(
        inference.input_fn(json.dumps(document), "application/json"), loaded
    )


def answer_batch(loaded: LoadedModel, body: str) -> list[Any]:
    prediction = inference.predict_fn(inference.input_fn(body, JSON_LINES), loaded)
    return [json.loads(line) for line in inference.output_fn(prediction, JSON_LINES).splitlines()]


@pytest.fixture
def vision_batches(loaded: LoadedModel) -> Iterator[list[int]]:
    """The batch size of every vision-tower pass while the test runs."""
    sizes: list[int] = []
    hook = loaded.model.vision_model.register_forward_hook(
        lambda module, args, kwargs, output: sizes.append(
            (args[0] if args else kwargs["pixel_values"]).shape[0]
        ),
        with_kwargs=True,
    )
    try:
        yield sizes
    finally:
        hook.remove()


def test_a_batch_answers_what_each_record_answers_alone(
    loaded: LoadedModel, vision_batches: list[int]
) -> None:
    # Given five records, two of them in the single-prompt forms, one with its own token limit
    records = [record(image) for image in IMAGES[:3]]
    records.append({"image": IMAGES[3], "question": QUESTIONS[2]["text"], "errors": "inline"})
    records.append(
        {"image": IMAGES[4], "prompt": "Question: What is it? Answer:", "max_new_tokens": 3}
    )
    alone = [answer_alone(loaded, r) for r in records]
    vision_batches.clear()

    # When they arrive as one JSON Lines request
    batched = answer_batch(loaded, lines(*records))

    # Then each line is exactly what that record answers alone (greedy decoding, same dtype)
    assert batched == alone
    # and the answers are not all the same text, so a mixed-up order would show
    assert len({json.dumps(answer, sort_keys=True) for answer in alone}) > 1
    # and the images went through the vision tower together: one pass per token limit
    assert sorted(vision_batches) == [1, 4]


def test_all_images_of_a_batch_share_one_vision_pass_and_one_generate(
    loaded: LoadedModel, vision_batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_rows: list[int] = []
    real_generate = loaded.model.language_model.generate

    def counting_generate(**kwargs: Any) -> Any:
        generate_rows.append(kwargs["inputs_embeds"].shape[0])
        return real_generate(**kwargs)

    monkeypatch.setattr(loaded.model.language_model, "generate", counting_generate)
    answer_batch(loaded, lines(*(record(image) for image in IMAGES)))
    assert vision_batches == [len(IMAGES)]
    assert generate_rows == [len(IMAGES) * len(QUESTIONS)]


def test_a_batch_larger_than_the_limit_runs_in_chunks_with_the_same_answers(
    loaded: LoadedModel, vision_batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = lines(*(record(image) for image in IMAGES))
    whole = answer_batch(loaded, body)
    vision_batches.clear()
    monkeypatch.setattr(inference, "MAX_BATCH_IMAGES", 2)
    assert answer_batch(loaded, body) == whole
    assert vision_batches == [2, 2, 1]


def test_a_corrupt_image_or_a_bad_line_fails_only_its_record(archive: Any) -> None:
    # Given a batch with a corrupt image, a line that is not JSON, one without questions and one
    # that asks for raised errors, between good records
    body = lines(
        record(IMAGES[0]),
        record(corrupt_jpeg_b64()),
        "{not json",
        record(IMAGES[1]),
        {"image": IMAGES[2]},
        record(IMAGES[2], errors="raise"),
        record(IMAGES[3]),
    )
    with served(archive) as service:
        # When the toolkit serves it as Batch Transform sends it
        response = invoke(service, body.encode(), content_type=JSON_LINES, accept=JSON_LINES)
        # and the good records one by one, as the online endpoint would
        alone = [
            json.loads(invoke(service, json.dumps(record(image)).encode()))
            for image in (IMAGES[0], IMAGES[1], IMAGES[3])
        ]

    # Then there is one output line per input line, in input order
    answers = [json.loads(line) for line in response.splitlines()]
    assert len(answers) == len(body.splitlines()) == 7
    # and the bad records carry their own error, naming the problem
    assert '"image"' in answers[1]["error"]
    assert "not valid JSON" in answers[2]["error"]
    assert 'exactly one of "questions"' in answers[4]["error"]
    assert '"errors" must be "inline"' in answers[5]["error"]
    # and the good ones are answered as if alone
    assert [answers[0], answers[3], answers[6]] == alone


def test_a_batch_of_only_bad_records_is_answered_line_by_line(loaded: LoadedModel) -> None:
    answers = answer_batch(loaded, lines(record(corrupt_jpeg_b64()), "[1]"))
    assert [set(answer) for answer in answers] == [{"error"}, {"error"}]


def test_blank_lines_are_not_records_and_an_empty_batch_is_refused() -> None:
    body = "\n" + lines(record(IMAGES[0])) + "\n\n"
    batch = inference.input_fn(body, JSON_LINES)
    assert isinstance(batch, inference.VqaBatch)
    assert len(batch.records) == 1
    with pytest.raises(ValueError, match="no records"):
        inference.input_fn("\n \n", JSON_LINES)


def test_a_batch_answers_json_lines_only() -> None:
    assert inference.output_fn([{"answer": "a"}, {"error": "b"}], JSON_LINES) == (
        '{"answer": "a"}\n{"error": "b"}\n'
    )
    with pytest.raises(ValueError, match="unsupported accept type 'text/csv'"):
        inference.output_fn([{"answer": "a"}], "text/csv")
