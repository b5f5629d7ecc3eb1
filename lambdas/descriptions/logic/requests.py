"""Resolve what a request asks for (category, languages) against the configured choices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.models.descriptions import PipelineSettings
from shared.models.errors import RequestError

DEFAULT_CATEGORY = "default"


@dataclass(frozen=True)
class Question:
    name: str
    text: str


def questions_for(settings: PipelineSettings, category: str | None) -> tuple[str, list[Question]]:
    """The category actually used and its attribute questions, in configured order."""
    chosen = category if category is not None else DEFAULT_CATEGORY
    if chosen not in settings.categories:
        known = ", ".join(sorted(settings.categories))
        raise RequestError(
            "unknown_category",
            f"category {chosen!r} is not configured; known categories: {known} "
            "(omit category for the default questions)",
        )
    return chosen, [
        Question(name, settings.questions[name]) for name in settings.categories[chosen]
    ]


def languages_for(settings: PipelineSettings, languages: Sequence[str] | None) -> list[str]:
    """The requested languages in request order, without repeats, checked against the config."""
    if languages is None:
        return list(settings.default_languages)
    chosen = list(dict.fromkeys(languages))
    if not chosen:
        raise RequestError("no_language", "languages is empty; name at least one, e.g. ['en']")
    unknown = [code for code in chosen if code not in settings.languages]
    if unknown:
        raise RequestError(
            "unknown_language",
            f"language {unknown[0]!r} is not supported; supported: {', '.join(settings.languages)}",
        )
    if len(chosen) > settings.max_languages_per_request:
        raise RequestError(
            "too_many_languages",
            f"{len(chosen)} languages requested; at most {settings.max_languages_per_request} "
            "per request",
        )
    return chosen


def answered(attributes: Mapping[str, str], questions: Sequence[Question]) -> dict[str, str]:
    """The non-empty answers to `questions`, stripped, in question order; other names dropped."""
    return {
        question.name: attributes[question.name].strip()
        for question in questions
        if isinstance(attributes.get(question.name), str) and attributes[question.name].strip()
    }
