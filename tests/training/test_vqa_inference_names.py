"""The batched attribute handler gives each question name the answer to its own question.

Every question of a request is answered in one batched call; the answers come back as a list and
are put back on the names. Compared here, name by name, with the answer the same handler gives
to that question asked alone, on the tiny BLIP-2 (random weights: its answers are gibberish, but
mostly distinct question to question, which is what lets an answer on the wrong name show; two
questions with the same answer could swap unseen, and harmlessly: the output would not change).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vqa import inference
from vqa.inference import LoadedModel

QUESTIONS = [
    {"name": name, "text": f"What is the {words} of the garment in this picture?"}
    for name, words in [
        ("fabric", "fabric"),
        ("fit", "fit"),
        ("collar", "collar type"),
        ("pattern", "pattern"),
        ("neck_type", "neck type"),
        ("sleeve_length", "sleeve length"),
        ("sleeve_styling", "sleeve styling"),
        ("colour", "colour"),
    ]
]
# The longest answers the handler allows: the fewer the tokens, the more of the random model's
# answers coincide. (Its tokenizer is trained afresh each session, so the answers vary by run.)
MAX_NEW_TOKENS = inference.MAX_NEW_TOKENS_LIMIT


@pytest.fixture(scope="module")
def loaded(tiny_blip2: Path) -> LoadedModel:
    return inference.model_fn(str(tiny_blip2))


@pytest.fixture(scope="module")
def image() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), (20, 30, 90)).save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def attributes(loaded: LoadedModel, image: str, questions: list[dict[str, str]]) -> dict[str, Any]:
    body = json.dumps({"image": image, "questions": questions, "max_new_tokens": MAX_NEW_TOKENS})
    prediction = inference.predict_fn(inference.input_fn(body, "application/json"), loaded)
    answers: dict[str, Any] = prediction["attributes"]
    return answers


@pytest.fixture(scope="module")
def alone(loaded: LoadedModel, image: str) -> dict[str, str]:
    """Each question's answer when it is the only question of its request."""
    return {q["name"]: attributes(loaded, image, [q])[q["name"]] for q in QUESTIONS}


def test_the_questions_alone_get_mostly_distinct_answers(alone: dict[str, str]) -> None:
    # The premise of the next test: with all answers alike, any mix-up would pass unseen.
    assert len(set(alone.values())) >= len(QUESTIONS) // 2, alone


@pytest.mark.parametrize(
    "order",
    [pytest.param(QUESTIONS, id="as-asked"), pytest.param(QUESTIONS[::-1], id="reversed")],
)
def test_each_batched_attribute_is_the_answer_to_its_own_question(
    loaded: LoadedModel, image: str, alone: dict[str, str], order: list[dict[str, str]]
) -> None:
    names = [q["name"] for q in order]
    # Given answers that differ enough that the answers put back in reverse would show
    assert [alone[name] for name in names] != [alone[name] for name in reversed(names)]

    # When every question is asked in one request, in this order
    batched = attributes(loaded, image, order)

    # Then the names come back in the request's order, each with its own question's answer
    assert list(batched) == names
    for name, answer in batched.items():
        assert answer == alone[name], f"{name!r} got another question's answer"
