"""The attribute model's serving handler, on a tiny BLIP-2, through the real inference toolkit."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from mms.service import PredictionException
from PIL import Image

from tests.toolkit_support import invoke, served
from vqa import inference
from vqa.inference import LoadedModel

TRAINING_VQA = Path(inference.__file__).resolve().parent

QUESTIONS = [
    {"name": "fabric", "text": "What is the fabric of the garment in this picture?"},
    {"name": "colour", "text": "What is the colour of the garment in this picture?"},
    {"name": "sleeve_length", "text": "What is the sleeve length of the garment in this picture?"},
    {"name": "collar", "text": "What is the collar type of the garment in this picture?"},
    {"name": "fit", "text": "What is the fit of the garment in this picture?"},
    {"name": "pattern", "text": "What is the pattern of the garment in this picture?"},
    {"name": "neck_type", "text": "What is the neck type of the garment in this picture?"},
    {
        "name": "sleeve_styling",
        "text": "What is the sleeve styling of the garment in this picture?",
    },
]


def image_b64(fmt: str = "JPEG", size: tuple[int, int] = (60, 40), colour: str = "navy") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def archive(tiny_blip2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout train.py exports: model files at the root, the handler under code/."""
    root = tmp_path_factory.mktemp("vqa-archive")
    shutil.copytree(tiny_blip2, root, dirs_exist_ok=True)
    (root / "code").mkdir()
    shutil.copyfile(TRAINING_VQA / "inference.py", root / "code" / "inference.py")
    shutil.copyfile(TRAINING_VQA / "serving-requirements.txt", root / "code" / "requirements.txt")
    return root


@pytest.fixture(scope="module")
def loaded(archive: Path) -> LoadedModel:
    return inference.model_fn(str(archive))


def request(**fields: Any) -> str:
    return json.dumps({"image": image_b64(), **fields})


def test_every_question_is_answered_as_model_generate_would_one_by_one(
    loaded: LoadedModel,
) -> None:
    # Given one image and eight questions
    image = Image.open(io.BytesIO(base64.b64decode(image_b64()))).convert("RGB")
    prompts = [inference.build_prompt(q["text"]) for q in QUESTIONS]

    # When they are answered in one batched call
    batched = inference.answer_prompts(loaded, image, prompts, max_new_tokens=8)

    # Then each answer is the one BLIP-2's own generate gives for that question alone
    for prompt, answer in zip(prompts, batched, strict=True):
        inputs = loaded.processor(images=[image], text=[prompt], return_tensors="pt")
        alone = loaded.model.generate(**inputs, max_new_tokens=8, do_sample=False, num_beams=1)
        assert answer == loaded.processor.batch_decode(alone, skip_special_tokens=True)[0].strip()


def test_the_image_goes_through_the_vision_tower_once_per_request(loaded: LoadedModel) -> None:
    calls: list[int] = []
    hook = loaded.model.vision_model.register_forward_hook(
        lambda module, args, output: calls.append(args[0].shape[0] if args else 1)
    )
    try:
        prediction = inference.predict_fn(
            inference.input_fn(request(questions=QUESTIONS), "application/json"), loaded
        )
    finally:
        hook.remove()
    assert calls == [1]
    assert set(prediction["attributes"]) == {q["name"] for q in QUESTIONS}


def test_the_toolkit_serves_the_archive_and_answers_every_question(archive: Path) -> None:
    with served(archive) as service:
        # When the description pipeline's request arrives, as SageMaker hands it over
        response = invoke(service, request(questions=QUESTIONS).encode())

    # Then every question name comes back with a string answer
    attributes = json.loads(response)["attributes"]
    assert list(attributes) == [q["name"] for q in QUESTIONS]
    assert all(isinstance(answer, str) for answer in attributes.values())


@pytest.mark.parametrize(
    "fields",
    [
        {"question": "What is the fabric of the garment in this picture?"},
        {"prompt": "Question: What is the fabric of the garment in this picture? Answer:"},
    ],
)
def test_the_single_prompt_form_answers_one_string(archive: Path, fields: dict[str, str]) -> None:
    with served(archive) as service:
        response = json.loads(invoke(service, request(**fields).encode()))
    assert list(response) == ["answer"]
    assert isinstance(response["answer"], str)


def test_a_question_and_the_same_text_as_prompt_agree(loaded: LoadedModel) -> None:
    text = QUESTIONS[0]["text"]
    by_question = inference.predict_fn(
        inference.input_fn(request(question=text), "application/json"), loaded
    )
    by_prompt = inference.predict_fn(
        inference.input_fn(request(prompt=inference.build_prompt(text)), "application/json"),
        loaded,
    )
    assert by_question == by_prompt


def test_webp_and_png_are_accepted(loaded: LoadedModel) -> None:
    for fmt in ("PNG", "WEBP"):
        body = json.dumps({"image": image_b64(fmt), "questions": QUESTIONS[:1]})
        assert (
            "fabric"
            in inference.predict_fn(inference.input_fn(body, "application/json"), loaded)[
                "attributes"
            ]
        )


BAD_REQUESTS = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"questions": QUESTIONS}), '"image" must be a base64'),
    (json.dumps({"image": "***", "questions": QUESTIONS}), "not valid base64"),
    (
        json.dumps({"image": base64.b64encode(b"plain text").decode(), "questions": QUESTIONS}),
        "not a readable image",
    ),
    (json.dumps({"image": image_b64("GIF"), "questions": QUESTIONS}), "send JPEG, PNG or WebP"),
    (request(), 'exactly one of "questions"'),
    (request(questions=QUESTIONS, question="also this?"), "got questions, question"),
    (request(questions=[]), "non-empty list"),
    (request(questions="fabric"), "non-empty list"),
    (request(questions=[{"name": "fabric"}]), '"questions[0].text" must be a non-empty string'),
    (request(questions=[{"name": " ", "text": "x?"}]), '"questions[0].name" must be a non-empty'),
    (request(questions=["fabric"]), "questions[0] must be an object"),
    (request(questions=[QUESTIONS[0], QUESTIONS[0]]), 'questions[1].name "fabric" is used twice'),
    (request(questions=[{"name": f"q{i}", "text": "x?"} for i in range(33)]), "at most 32"),
    (request(questions=[{"name": "a", "text": "x" * 501}]), "at most 500"),
    (request(question="x?", max_new_tokens=0), '"max_new_tokens" must be between 1 and 64'),
    (request(question="x?", max_new_tokens="8"), '"max_new_tokens" must be an integer'),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_bad_payloads_are_refused_with_a_message_naming_the_problem(
    body: str, message: str
) -> None:
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")
    ):
        inference.input_fn(body, "application/json")


def test_the_toolkit_turns_a_bad_payload_into_a_400_with_the_message(archive: Path) -> None:
    with served(archive) as service:
        with pytest.raises(PredictionException) as raised:
            invoke(service, request(questions=[]).encode())
        with pytest.raises(PredictionException) as wrong_type:
            invoke(service, b"raw bytes", content_type="image/jpeg")
    assert raised.value.error_code == 400
    assert '"questions" must be a non-empty list' in raised.value.message
    assert "unsupported content type 'image/jpeg'" in wrong_type.value.message


def corrupt_jpeg_b64() -> str:
    """A JPEG whose header is intact and whose image data is cut off and garbled."""
    whole = base64.b64decode(image_b64(size=(64, 48)))
    return base64.b64encode(whole[: len(whole) // 2] + b"\x00" * 64).decode("ascii")


def test_with_inline_errors_an_unreadable_image_is_answered_not_refused(archive: Path) -> None:
    # Given a Batch Transform line's request whose image cannot be decoded
    body = json.dumps({"image": corrupt_jpeg_b64(), "questions": QUESTIONS, "errors": "inline"})
    with served(archive) as service:
        # When the toolkit serves it
        answer = json.loads(invoke(service, body.encode()))
        # Then the record gets an answer naming the problem (status 200), not a 400 that would
        # fail the job's whole input file
        assert set(answer) == {"error"}
        assert '"image"' in answer["error"]
        # and the same request without the flag is still a 400, as the online endpoint expects
        with pytest.raises(PredictionException) as refused:
            invoke(
                service, json.dumps({"image": corrupt_jpeg_b64(), "questions": QUESTIONS}).encode()
            )
        assert refused.value.error_code == 400
        assert answer["error"] in refused.value.message
        # and a good request with the flag is answered as usual
        good = json.loads(invoke(service, request(questions=QUESTIONS, errors="inline").encode()))
        assert set(good["attributes"]) == {q["name"] for q in QUESTIONS}


@pytest.mark.parametrize("value", ["raise", "", True, {"mode": "inline"}])
def test_the_errors_field_takes_only_inline(value: Any) -> None:
    with pytest.raises(ValueError, match='"errors" must be "inline"'):
        inference.input_fn(request(questions=QUESTIONS, errors=value), "application/json")


def test_the_content_type_may_carry_a_charset(loaded: LoadedModel) -> None:
    parsed = inference.input_fn(request(question="x?"), "application/json; charset=utf-8")
    assert parsed.single


def test_only_json_answers_are_offered() -> None:
    assert json.loads(inference.output_fn({"answer": "Fabric: Cotton"}, "*/*")) == {
        "answer": "Fabric: Cotton"
    }
    with pytest.raises(ValueError, match="unsupported accept type 'text/csv'"):
        inference.output_fn({"answer": "x"}, "text/csv")


def test_a_processor_that_disagrees_with_the_model_on_query_tokens_is_refused(
    loaded: LoadedModel,
) -> None:
    processor = loaded.processor
    original = processor.num_query_tokens
    processor.num_query_tokens = original + 1
    try:
        with pytest.raises(
            ValueError,
            match=f"inserts {original + 1} image tokens but the model expects {original}",
        ):
            inference.check_image_placeholders(loaded.model, processor)
    finally:
        processor.num_query_tokens = original


def test_cpu_serves_in_float32() -> None:
    assert inference.serving_dtype(torch.device("cpu")) == torch.float32
