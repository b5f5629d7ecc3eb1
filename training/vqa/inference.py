"""Serving handler of the attribute model (SageMaker Hugging Face inference toolkit contract).

Shipped as `code/inference.py` inside the model archive that `train.py` writes, so it imports
nothing from this repository: only the standard library, torch, transformers and Pillow, all of
which the Hugging Face PyTorch inference container has.

Contract (the description pipeline's `SageMakerAttributeModel` calls it):
- `{"image": <base64>, "questions": [{"name": "fabric", "text": "What is ...?"}, ...]}`
  → `{"attributes": {"fabric": "Fabric: Cotton", ...}}`. Every question of a request is answered
  in one batched `generate` call and the image is encoded once.
- the single-prompt form `{"image": <base64>, "question": "What is ...?"}` (or `"prompt"`, a full
  prompt used verbatim) → `{"answer": "..."}`.
- optional `"max_new_tokens"` (1 to 64) in either form.
- a batch of such requests as JSON Lines (content type `application/jsonlines`, what Batch
  Transform sends with `BatchStrategy: MultiRecord` and `SplitType: Line`) → one JSON line per
  input line, in input order, so `AssembleWith: Line` and the input join pair them back. All the
  batch's good images go through the vision tower and Q-Former in one batched pass and all their
  (image x question) prompts through one batched `generate`, in chunks of at most
  `VQA_MAX_BATCH_IMAGES` images. Every line's error is inline: a corrupt image or a bad line is
  answered `{"error": ...}` on its own line and the others are answered as usual.

Bad payloads raise `ValueError` with a message naming the problem; the toolkit returns it to the
caller as a 400 response. With `"errors": "inline"` (what the catalog's Batch Transform lines
send) a bad payload is answered `{"error": <the same message>}` with status 200 instead: Batch
Transform fails a whole input file, hundreds of products, on one record's 4xx, while an inline
error fails only that product.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from transformers import Blip2ForConditionalGeneration, Blip2Processor

# The prompt the model is fine-tuned on (the reference BLIP-2 VQA recipe's); train.py imports it
# from here so the training and serving prompts are the same text by construction.
PROMPT_TEMPLATE = "Question: {question} Answer:"

MAX_QUESTIONS = 32
MAX_QUESTION_NAME_CHARS = 64
MAX_QUESTION_CHARS = 500
# Real-time endpoints take payloads up to 25 MB; Batch Transform up to 100 MB. An image larger than
# this is not a product photo.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MAX_NEW_TOKENS = int(os.environ.get("VQA_MAX_NEW_TOKENS", "16"))
MAX_NEW_TOKENS_LIMIT = 64
_IMAGE_FORMATS = {"JPEG", "PNG", "WEBP"}
_JSON = "application/json"
_JSON_LINES = "application/jsonlines"
# Images per vision-tower pass and per batched generate; a Batch Transform mini-batch of several
# MB may hold more images than that, and one huge batch would only trade memory for little speed.
MAX_BATCH_IMAGES = int(os.environ.get("VQA_MAX_BATCH_IMAGES", "16"))
# A line longer than this cannot be one request within the image limit.
_MAX_LINE_CHARS = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
INLINE_ERRORS = "inline"


@dataclass(frozen=True)
class LoadedModel:
    # A BLIP-2, or while training (train.py evaluates through this code) a PeftModel wrapping
    # one; both answer to the same attributes.
    model: Any
    processor: Blip2Processor
    device: torch.device


@dataclass(frozen=True)
class Question:
    name: str
    text: str


@dataclass(frozen=True)
class VqaRequest:
    image: Image.Image
    questions: tuple[Question, ...]
    # True for the single-prompt form: the answer comes back as {"answer": ...}.
    single: bool = False
    # Prompts used verbatim (the single-prompt form's "prompt"); None means PROMPT_TEMPLATE.
    raw_prompt: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS


@dataclass(frozen=True)
class RefusedRequest:
    """A request with `"errors": "inline"` that could not be served: answered `{"error"}`."""

    message: str


@dataclass(frozen=True)
class VqaBatch:
    """A JSON Lines request: one entry per input line, refused lines answered inline."""

    records: tuple[VqaRequest | RefusedRequest, ...]


Prediction = dict[str, Any]


def build_prompt(question: str) -> str:
    return PROMPT_TEMPLATE.format(question=question.strip())


def serving_dtype(device: torch.device) -> torch.dtype:
    # T5 overflows in float16 (its activations exceed the fp16 range), so a GPU without bfloat16
    # serves in float32 rather than produce garbage.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def model_fn(model_dir: str, context: Any = None) -> LoadedModel:
    """Load the merged model and its processor from the archive root: nothing is downloaded."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = Blip2ForConditionalGeneration.from_pretrained(
        model_dir, torch_dtype=serving_dtype(device), local_files_only=True
    )
    processor = Blip2Processor.from_pretrained(model_dir, local_files_only=True)
    check_image_placeholders(model, processor)
    model.to(device)
    model.eval()
    return LoadedModel(model=model, processor=processor, device=device)


def check_image_placeholders(
    model: Blip2ForConditionalGeneration, processor: Blip2Processor
) -> None:
    """Refuse a model whose processor would not insert the query-token placeholders it expects.

    Without them the image features have nowhere to go and every answer ignores the image.
    """
    expected = model.config.num_query_tokens
    if getattr(model.config, "image_token_index", None) is None:
        raise ValueError("the model config has no image_token_index; export it with train.py")
    if processor.num_query_tokens != expected:
        raise ValueError(
            f"the processor inserts {processor.num_query_tokens} image tokens but the model "
            f"expects {expected}; export the model with train.py"
        )


def input_fn(
    input_data: str | bytes, content_type: str, context: Any = None
) -> VqaRequest | RefusedRequest | VqaBatch:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == _JSON_LINES:
        return parse_batch(input_data)
    if media_type != _JSON:
        raise ValueError(
            f"unsupported content type {content_type!r}: send {_JSON} or {_JSON_LINES}"
        )
    try:
        document = json.loads(input_data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"the request body is not valid JSON: {error}") from error
    if not isinstance(document, Mapping):
        raise ValueError('the request body must be a JSON object with "image" and "questions"')
    errors = document.get("errors")
    if errors is not None and errors != INLINE_ERRORS:
        raise ValueError(f'"errors" must be "{INLINE_ERRORS}" (or absent); got {errors!r}')
    try:
        return parse_request(document)
    except ValueError as error:
        if errors == INLINE_ERRORS:
            return RefusedRequest(str(error))
        raise


def parse_batch(input_data: str | bytes) -> VqaBatch:
    """One record per non-blank line; a line that fails is refused inline, never the batch.

    Batch Transform fails a whole mini-batch (and so the input file) on a 4xx, so here even a
    line that is not JSON, or lacks `"errors": "inline"`, is answered on its own line.
    """
    try:
        text = input_data.decode("utf-8") if isinstance(input_data, bytes) else input_data
    except UnicodeDecodeError as error:
        raise ValueError(f"the request body is not UTF-8 JSON Lines: {error}") from error
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the JSON Lines request has no records")
    return VqaBatch(records=tuple(_parse_line(line) for line in lines))


def _parse_line(line: str) -> VqaRequest | RefusedRequest:
    if len(line) > _MAX_LINE_CHARS:
        return RefusedRequest(f"the record has {len(line)} characters; at most {_MAX_LINE_CHARS}")
    try:
        document = json.loads(line)
    except ValueError as error:
        return RefusedRequest(f"the record is not valid JSON: {error}")
    if not isinstance(document, Mapping):
        return RefusedRequest('the record must be a JSON object with "image" and "questions"')
    errors = document.get("errors")
    if errors is not None and errors != INLINE_ERRORS:
        return RefusedRequest(f'"errors" must be "{INLINE_ERRORS}" (or absent); got {errors!r}')
    try:
        return parse_request(document)
    except ValueError as error:
        return RefusedRequest(str(error))


def parse_request(document: Mapping[str, Any]) -> VqaRequest:
    image = decode_image(document.get("image"))
    max_new_tokens = _max_new_tokens(document.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    forms = [key for key in ("questions", "question", "prompt") if key in document]
    if len(forms) != 1:
        raise ValueError(
            'send exactly one of "questions" (a list of {"name", "text"}), "question" or "prompt"'
            + (f"; got {', '.join(forms)}" if forms else "")
        )
    if forms[0] == "questions":
        questions = _questions(document["questions"])
        return VqaRequest(image=image, questions=questions, max_new_tokens=max_new_tokens)
    text = _text(document[forms[0]], forms[0], MAX_QUESTION_CHARS * 2)
    return VqaRequest(
        image=image,
        questions=(Question(name="answer", text=text),),
        single=True,
        raw_prompt=text if forms[0] == "prompt" else None,
        max_new_tokens=max_new_tokens,
    )


def decode_image(value: object) -> Image.Image:
    if not isinstance(value, str) or not value:
        raise ValueError('"image" must be a base64-encoded JPEG, PNG or WebP image')
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ValueError(f'"image" is larger than {MAX_IMAGE_BYTES} bytes')
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f'"image" is not valid base64: {error}') from error
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            image_format, size = probe.format, probe.size
            probe.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f'"image" is not a readable image: {error}') from error
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(f'"image" is {image_format}; send JPEG, PNG or WebP')
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f'"image" has {size[0]}x{size[1]} pixels; at most {MAX_IMAGE_PIXELS}')
    try:
        # verify() leaves the file unusable: decode a fresh handle, fully, here, so a truncated
        # image is a 400 now and not an error halfway through the model call.
        return Image.open(io.BytesIO(raw)).convert("RGB")
    except OSError as error:
        raise ValueError(f'"image" could not be decoded: {error}') from error


def _questions(value: object) -> tuple[Question, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ValueError('"questions" must be a non-empty list of {"name", "text"} objects')
    if len(value) > MAX_QUESTIONS:
        raise ValueError(f'"questions" has {len(value)} entries; at most {MAX_QUESTIONS}')
    questions: list[Question] = []
    for index, item in enumerate(value):
        where = f"questions[{index}]"
        if not isinstance(item, Mapping):
            raise ValueError(f'{where} must be an object with "name" and "text"')
        name = _text(item.get("name"), f"{where}.name", MAX_QUESTION_NAME_CHARS)
        text = _text(item.get("text"), f"{where}.text", MAX_QUESTION_CHARS)
        if any(question.name == name for question in questions):
            raise ValueError(f'{where}.name "{name}" is used twice; names key the answers')
        questions.append(Question(name=name, text=text))
    return tuple(questions)


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{where}" must be a non-empty string')
    if len(value) > limit:
        raise ValueError(f'"{where}" has {len(value)} characters; at most {limit}')
    return value.strip()


def _max_new_tokens(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError('"max_new_tokens" must be an integer')
    if not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
        raise ValueError(f'"max_new_tokens" must be between 1 and {MAX_NEW_TOKENS_LIMIT}')
    return value


def predict_fn(
    data: VqaRequest | RefusedRequest | VqaBatch, model: LoadedModel, context: Any = None
) -> Prediction | list[Prediction]:
    if isinstance(data, VqaBatch):
        return predict_batch(data.records, model)
    return predict_batch((data,), model)[0]


def predict_batch(
    records: Sequence[VqaRequest | RefusedRequest], model: LoadedModel
) -> list[Prediction]:
    """Answer the good records together, in chunks of MAX_BATCH_IMAGES; refused ones inline."""
    by_index: dict[int, Prediction] = {}
    good: list[tuple[int, VqaRequest]] = []
    for index, record in enumerate(records):
        if isinstance(record, RefusedRequest):
            by_index[index] = {"error": record.message}
        else:
            good.append((index, record))
    chunk_size = max(1, MAX_BATCH_IMAGES)
    for start in range(0, len(good), chunk_size):
        chunk = good[start : start + chunk_size]
        answered = _answer_requests(model, [request for _, request in chunk])
        by_index.update(zip((index for index, _ in chunk), answered, strict=True))
    return [by_index[index] for index in range(len(records))]


def _answer_requests(model: LoadedModel, requests: Sequence[VqaRequest]) -> list[Prediction]:
    # Requests asking for different max_new_tokens decode separately: a shorter limit is not a
    # prefix cut of a longer one once the text is stripped and joined.
    answers: list[list[str]] = [[] for _ in requests]
    for max_new_tokens in sorted({request.max_new_tokens for request in requests}):
        group = [
            i for i, request in enumerate(requests) if request.max_new_tokens == max_new_tokens
        ]
        group_answers = answer_batch(
            model,
            [requests[i].image for i in group],
            [_prompts(requests[i]) for i in group],
            max_new_tokens=max_new_tokens,
        )
        for i, image_answers in zip(group, group_answers, strict=True):
            answers[i] = image_answers
    return [_prediction(request, answer) for request, answer in zip(requests, answers, strict=True)]


def _prompts(request: VqaRequest) -> list[str]:
    if request.raw_prompt is not None:
        return [request.raw_prompt]
    return [build_prompt(question.text) for question in request.questions]


def _prediction(request: VqaRequest, answers: Sequence[str]) -> Prediction:
    if request.single:
        return {"answer": answers[0]}
    return {
        "attributes": {
            question.name: answer
            for question, answer in zip(request.questions, answers, strict=True)
        }
    }


def output_fn(prediction: Prediction | list[Prediction], accept: str, context: Any = None) -> str:
    media_type = (accept or _JSON).split(";")[0].strip().lower()
    if isinstance(prediction, list):
        # A JSON Lines batch answers JSON Lines, whatever the Accept: one line per record.
        if media_type not in (_JSON_LINES, _JSON, "*/*"):
            raise ValueError(f"unsupported accept type {accept!r}: a batch answers {_JSON_LINES}")
        return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in prediction)
    if media_type not in (_JSON, "*/*"):
        raise ValueError(f"unsupported accept type {accept!r}: this model answers {_JSON}")
    return json.dumps(prediction, ensure_ascii=False)


def answer_prompts(
    loaded: LoadedModel,
    image: Image.Image,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[str]:
    """Answer every prompt about one image in one batched generate call."""
    return answer_batch(loaded, [image], [prompts], max_new_tokens=max_new_tokens)[0]


@torch.inference_mode()
def answer_batch(
    loaded: LoadedModel,
    images: Sequence[Image.Image],
    prompts: Sequence[Sequence[str]],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[list[str]]:
    """Answer `prompts[i]` about `images[i]`, for every i, in one encoder pass and one generate.

    `Blip2ForConditionalGeneration.generate` would run the vision tower and the Q-Former once per
    prompt (it wants one image per row); here they run once per image, all images in one batch,
    and each image's output is shared by the rows of its prompts. The rest follows `generate`:
    the projected query outputs replace the image placeholder tokens the processor put at the
    start of each prompt.
    """
    if len(images) != len(prompts) or not images or not all(prompts):
        raise ValueError("answer_batch needs one non-empty prompt list per image")
    model, processor = loaded.model, loaded.processor
    rows = [prompt for image_prompts in prompts for prompt in image_prompts]
    # Which image each generate row is about.
    row_image = torch.tensor(
        [i for i, image_prompts in enumerate(prompts) for _ in image_prompts],
        device=loaded.device,
    )
    inputs = processor(images=list(images), text=rows, padding=True, return_tensors="pt")
    input_ids = inputs["input_ids"].to(loaded.device)
    attention_mask = inputs["attention_mask"].to(loaded.device)
    pixel_values = inputs["pixel_values"].to(loaded.device, model.dtype)

    image_features = encode_image(model, pixel_values)  # (images, query tokens, text hidden)
    embeddings = model.get_input_embeddings()(input_ids)
    image_features = image_features.to(embeddings.dtype).index_select(0, row_image)
    placeholders = (input_ids == model.config.image_token_index).unsqueeze(-1)
    embeddings = embeddings.masked_scatter(placeholders.expand_as(embeddings), image_features)

    generate_inputs: dict[str, torch.Tensor] = {
        "inputs_embeds": embeddings,
        "attention_mask": attention_mask,
    }
    if not model.language_model.config.is_encoder_decoder:
        generate_inputs["input_ids"] = input_ids
    # Greedy decoding: the same image and question always give the same attribute.
    generated = model.language_model.generate(
        **generate_inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
    )
    texts = [text.strip() for text in processor.batch_decode(generated, skip_special_tokens=True)]
    answers: list[list[str]] = []
    for image_prompts in prompts:
        answers.append(texts[: len(image_prompts)])
        texts = texts[len(image_prompts) :]
    return answers


def encode_image(model: Blip2ForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """Vision tower → Q-Former → projection into the language model's embedding space.

    Written against the submodules every transformers 4.x BLIP-2 has, not `get_image_features`,
    whose signature changed across the 4.5x releases the inference containers ship.
    """
    image_embeds = model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
    image_attention_mask = torch.ones(
        image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device
    )
    query_tokens = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    query_output = model.qformer(
        query_embeds=query_tokens,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_attention_mask,
        return_dict=True,
    ).last_hidden_state
    # The Q-Former stays in float32 when the rest is bfloat16; the projection wants its own dtype.
    query_output = query_output.to(model.language_projection.weight.dtype)
    projected: torch.Tensor = model.language_projection(query_output)
    return projected
