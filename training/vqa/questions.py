"""The question map of `vqa.prepare`: for each attribute the question the model is asked, where
its answer comes from in the catalog (`attributes:<key>` of styles/<id>.json or `csv:<column>`
of styles.csv) and the label that prefixes the answer. The defaults are the description
pipeline's questions; `--questions FILE` replaces them, checked here key by key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vqa.outcomes import PrepareError
from vqa.styles import STYLES_COLUMNS

# Exactly the questions the description pipeline asks the endpoint (cdk.json
# context.atelier.defaults.descriptions.questions): a model trained on other wording would be
# asked questions it never saw. A test holds the two equal.
DEFAULT_QUESTIONS: dict[str, str] = {
    "fabric": "What is the fabric of the garment in this picture?",
    "fit": "What is the fit of the garment in this picture?",
    "collar": "What is the collar type of the garment in this picture?",
    "pattern": "What is the pattern of the garment in this picture?",
    "neck_type": "What is the neck type of the garment in this picture?",
    "sleeve_length": "What is the sleeve length of the garment in this picture?",
    "sleeve_styling": "What is the sleeve styling of the garment in this picture?",
    "colour": "What is the colour of the garment in this picture?",
}


# Where each default attribute's answer comes from, and the label that prefixes it.
_DEFAULT_SOURCES: dict[str, tuple[str, str]] = {
    "fabric": ("attributes:Fabric", "Fabric"),
    "fit": ("attributes:Fit", "Fit"),
    "collar": ("attributes:Collar", "Collar"),
    "pattern": ("attributes:Pattern", "Pattern"),
    "neck_type": ("attributes:Neck", "Neck Type"),
    "sleeve_length": ("attributes:Sleeve Length", "Sleeve Length"),
    "sleeve_styling": ("attributes:Sleeve Styling", "Sleeve Styling"),
    "colour": ("csv:baseColour", "Colour"),
}


ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# The description pipeline strips answer labels with this shape (descriptions.logic.grounding);
# a label it cannot strip would leak into the attributes Claude sees.
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z _-]{0,30}$")
MAX_QUESTION_CHARS = 500
MAX_ATTRIBUTES = 64


@dataclass(frozen=True)
class Source:
    """Where an answer comes from: a key of data.articleAttributes or a styles.csv column."""

    kind: Literal["attributes", "csv"]
    key: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class AttributeSpec:
    question: str
    source: Source
    label: str

    def to_dict(self) -> dict[str, str]:
        return {"question": self.question, "source": str(self.source), "label": self.label}


def parse_source(text: str) -> Source:
    """`attributes:<articleAttributes key>` or `csv:<styles.csv column>`."""
    kind, sep, key = text.partition(":")
    key = key.strip()
    if not sep or not key or kind not in ("attributes", "csv"):
        raise PrepareError(
            f"source {text!r} is not 'attributes:<articleAttributes key>' or 'csv:<column>'"
        )
    if kind == "csv" and (key not in STYLES_COLUMNS or key == "id"):
        columns = ", ".join(column for column in STYLES_COLUMNS if column != "id")
        raise PrepareError(f"source {text!r}: the styles.csv column must be one of {columns}")
    return Source("attributes" if kind == "attributes" else "csv", key)


def default_question_map() -> dict[str, AttributeSpec]:
    return {
        attribute: AttributeSpec(question, parse_source(source), label)
        for attribute, question in DEFAULT_QUESTIONS.items()
        for source, label in [_DEFAULT_SOURCES[attribute]]
    }


def parse_question_map(document: object) -> dict[str, AttributeSpec]:
    """Validate a question map: `{attribute: {"question", "source"?, "label"?} | "question"}`.

    The short forms (a bare question string, or no source/label) only work for the default
    attributes, whose source and label are known.
    """
    if not isinstance(document, dict) or not document:
        raise PrepareError("the question map must be a non-empty JSON object of attributes")
    if len(document) > MAX_ATTRIBUTES:
        raise PrepareError(f"the question map has {len(document)} attributes; at most 64")
    return {
        _attribute_name(attribute): _attribute_spec(attribute, entry)
        for attribute, entry in document.items()
    }


def _attribute_name(attribute: object) -> str:
    if not isinstance(attribute, str) or not ATTRIBUTE_NAME.fullmatch(attribute):
        raise PrepareError(
            f"attribute name {attribute!r} must match {ATTRIBUTE_NAME.pattern} "
            "(lowercase letters, digits and _, starting with a letter, at most 48 characters)"
        )
    return attribute


def _attribute_spec(attribute: str, entry: object) -> AttributeSpec:
    if isinstance(entry, str):
        entry = {"question": entry}
    if not isinstance(entry, dict):
        raise PrepareError(f"attribute {attribute!r}: expected a question string or an object")
    unknown = sorted(set(entry) - {"question", "source", "label"})
    if unknown:
        raise PrepareError(f"attribute {attribute!r}: unknown keys {unknown}")
    default_source, default_label = _DEFAULT_SOURCES.get(attribute, (None, None))
    question = _question_text(attribute, entry.get("question"))
    source_text = entry.get("source", default_source)
    if not isinstance(source_text, str):
        raise PrepareError(
            f"attribute {attribute!r}: 'source' is required (not a default attribute) and must "
            "be 'attributes:<articleAttributes key>' or 'csv:<column>'"
        )
    try:
        source = parse_source(source_text)
    except PrepareError as error:
        raise PrepareError(f"attribute {attribute!r}: {error}") from None
    label = entry.get("label", default_label or attribute.replace("_", " ").title())
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        raise PrepareError(
            f"attribute {attribute!r}: label {label!r} must match {LABEL_PATTERN.pattern} "
            "(the description pipeline strips labels of that shape from answers)"
        )
    return AttributeSpec(question, source, label)


def _question_text(attribute: str, question: object) -> str:
    if not isinstance(question, str) or not question.strip():
        raise PrepareError(f"attribute {attribute!r}: 'question' must be a non-empty string")
    text = " ".join(question.split())
    if len(text) > MAX_QUESTION_CHARS:
        raise PrepareError(
            f"attribute {attribute!r}: the question has {len(text)} characters; at most "
            f"{MAX_QUESTION_CHARS}"
        )
    return text


def load_question_map(path: Path) -> dict[str, AttributeSpec]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PrepareError(f"cannot read the question map {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PrepareError(f"the question map {path} is not valid JSON: {error}") from None
    try:
        return parse_question_map(document)
    except PrepareError as error:
        raise PrepareError(f"{path}: {error}") from None
