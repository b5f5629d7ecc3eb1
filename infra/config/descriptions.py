"""`descriptions`: the description pipeline's models, questions and limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from infra.config.attributes import AttributesConfig, resolved_structured_output
from infra.config.constants import (
    ATTRIBUTE_NAME_PATTERN,
    BEDROCK_MODEL_PATTERN,
    CATEGORY_PATTERN,
    DEFAULT_CATEGORY,
    LANGUAGE_PATTERN,
    MAX_QUESTIONS,
)
from infra.config.image_limits import ImageLimitsConfig
from infra.config.rules import (
    HERE,
    choice,
    is_loading,
    key_name,
    matching,
    number,
    parsed,
    refuse,
    refuse_section,
    section,
    show,
    string_list,
    whole,
)
from infra.constructs.bedrock_models import (
    STRUCTURED_OUTPUT_SETTINGS,
    StructuredOutput,
)

_LANGUAGES_EXPECTED, _languages = string_list(LANGUAGE_PATTERN, "language codes such as 'en'")
_ATTRIBUTES_EXPECTED, _attribute_names = string_list(
    ATTRIBUTE_NAME_PATTERN, "attribute names", max_items=MAX_QUESTIONS
)


def _questions(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not 1 <= len(value) <= MAX_QUESTIONS:
        raise refuse(
            f"= {show(value)} is not valid; expected an object of 1-{MAX_QUESTIONS} attribute "
            "names to question texts"
        )
    for name, question in value.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME_PATTERN.fullmatch(name):
            raise refuse(
                "is not a valid attribute name; expected lowercase letters, digits and "
                "underscores, starting with a letter (at most 40)",
                f".{key_name(name)}",
            )
        if not isinstance(question, str) or not 5 <= len(question.strip()) <= 300:
            raise refuse(
                f"= {show(question)} is not valid; expected a question of 5-300 characters",
                f".{name}",
            )
    return dict(value)


def _categories(value: Any) -> dict[str, tuple[str, ...]]:
    """Names only; that each has a question is checked with the questions (`_asked`)."""
    if not isinstance(value, Mapping) or DEFAULT_CATEGORY not in value:
        raise refuse(
            f"= {show(value)} is not valid; expected an object of category names to lists of "
            f"attribute names, with a '{DEFAULT_CATEGORY}' entry"
        )
    categories: dict[str, tuple[str, ...]] = {}
    for category, attributes in value.items():
        if not isinstance(category, str) or not CATEGORY_PATTERN.fullmatch(category):
            raise refuse(
                "is not a valid category name; expected 1-64 letters, digits, spaces, '_', "
                "'&' or '-'",
                f".{key_name(category)}",
            )
        try:
            categories[category] = _attribute_names(attributes)
        except Exception as error:  # a refusal of the list: name the category
            context = getattr(error, "context", None) or {}
            if "detail" not in context:
                raise
            raise refuse(context["detail"], f".{category}{context['suffix']}") from None
    return categories


@section
class DescriptionsConfig:
    """The description pipeline: which models, which questions, which limits."""

    model_id: str = matching(
        BEDROCK_MODEL_PATTERN,
        "a Bedrock model id, inference profile id, or the ARN of a foundation model or "
        "inference profile",
        "Bedrock model that writes the descriptions: a foundation model id, a system "
        "inference profile id (`us.`, `eu.`, `global.`, ...), or the ARN of either",
    )
    # Resolved from `auto` while loading: forced tool use, or Converse's JSON-schema output.
    structured_output: StructuredOutput = choice(
        STRUCTURED_OUTPUT_SETTINGS,
        "how the text model returns its JSON answer: `tool` (forced tool use), `json_schema` "
        "(Converse's output format) or `auto` (`tool` for Claude before 4.5, `json_schema` "
        "otherwise); the catalog's batch jobs follow the same mode",
    )
    max_tokens_per_language: int = whole(100, 4096, "output token budget per requested language")
    temperature: float = number(0.0, 1.0, "sampling temperature of the text model")
    languages: tuple[str, ...] = parsed(
        _LANGUAGES_EXPECTED,
        _languages,
        "language codes a request may ask for",
        "1-50 distinct codes such as `en`, `pt-BR`",
    )
    default_languages: tuple[str, ...] = parsed(
        _LANGUAGES_EXPECTED,
        _languages,
        "languages written when a request names none (each in `languages`)",
        "1-50 distinct codes",
    )
    max_languages_per_request: int = whole(1, 10, "most languages one request may ask for")
    questions: Mapping[str, str] = parsed(
        "expected an object of attribute name to question text",
        _questions,
        "attribute name -> question put to the attribute model",
        f"1-{MAX_QUESTIONS} names (lowercase, digits, `_`) to questions of 5-300 characters",
    )
    categories: Mapping[str, tuple[str, ...]] = parsed(
        "expected an object of category name to a list of attribute names",
        _categories,
        "product category -> attribute names asked for it; `default` applies when a "
        "request names no category",
        "a `default` entry; each name one of `questions`",
    )
    attributes: AttributesConfig
    image: ImageLimitsConfig
    grounding_retries: int = whole(
        0, 3, "rewrites asked for when a description contradicts the extracted attributes"
    )
    # API Gateway gives a REST integration at most 29 s.
    api_timeout_seconds: int = whole(5, 29, "API function timeout (API Gateway waits at most 29 s)")
    worker_timeout_seconds: int = whole(
        30, 900, "uploads worker timeout; the queue's visibility timeout is 6 x this"
    )
    worker_batch_size: int = whole(
        1, 10, "messages per worker invocation, also its parallelism within a batch"
    )
    worker_max_batching_window_seconds: int = whole(
        0, 300, "how long Lambda gathers messages before invoking the worker"
    )
    # Lambda's SQS event source accepts a maximum concurrency from 2 to 1000.
    worker_max_concurrency: int = whole(
        2, 1000, "most concurrent worker invocations the queue drives"
    )
    max_receive_count: int = whole(
        1, 100, "receives before a message moves to the dead-letter queue"
    )
    idempotency_ttl_hours: int = whole(
        1,
        24 * 90,
        "how long a processed upload is remembered, so a redelivered event is not described twice",
    )

    @property
    def endpoint_name(self) -> str | None:
        """Deprecated name of `StageConfig.vqa.hosting.endpoint_name` (the key moved there), kept
        for one release; set by the StageConfig that holds this section."""
        name: str | None = getattr(self, "_vqa_endpoint_name", None)
        return name

    _resolve = field_validator("structured_output", mode="before")(resolved_structured_output)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> DescriptionsConfig:
        if not is_loading(info):
            return self
        missing = [code for code in self.default_languages if code not in self.languages]
        if missing:
            raise refuse_section(
                f"{HERE}default_languages names {missing[0]!r}, which is not in {HERE}languages"
            )
        for category, attributes in self.categories.items():
            unknown = [name for name in attributes if name not in self.questions]
            if unknown:
                raise refuse_section(
                    f"{HERE}categories.{category} asks {unknown[0]!r}, which has no question; "
                    f"known attributes: {', '.join(self.questions)}"
                )
        return self
