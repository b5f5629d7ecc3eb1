"""Image → attributes → description → grounding check → stored result.

The order is the cost order: the free header checks (the configured limits, then the attribute
source's own) run before the attribute source (GPU endpoint or vision model), the attributes
before the (more expensive) text model, and nothing is stored unless every step succeeded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from descriptions.logic.grounding import check_grounding
from descriptions.logic.images import ImageLimits, ImageProblem, InvalidImageError, inspect_image
from descriptions.logic.ports import AttributeSource, DescriptionTable, ResultsArchive, TextModel
from descriptions.logic.prompt import (
    MalformedAnswerError,
    UnstructuredAnswerError,
    converse_request,
    parse_reply,
    token_limit_advice,
)
from descriptions.logic.requests import Question, answered, languages_for, questions_for
from shared.models.descriptions import (
    PIPELINE_VERSION,
    GroundingReport,
    LocalizedDescription,
    PipelineSettings,
    StoredDescription,
)
from shared.models.errors import DependencyError, RequestError
from shared.retry import Deadline, RetryPolicy, call_with_retries

RESULTS_PREFIX = "descriptions/"


@dataclass(frozen=True)
class DescriptionJob:
    product_id: str
    image: bytes
    # S3 key of an upload; None for images sent through the API.
    image_key: str | None = None
    category: str | None = None
    languages: Sequence[str] | None = None


def result_key(product_id: str) -> str:
    # The results bucket is versioned: each new description of a product keeps the old ones.
    return f"{RESULTS_PREFIX}{product_id}.json"


@dataclass
class DescriptionPipeline:
    settings: PipelineSettings
    # The attribute source (`endpoint` or `vision-llm`); the field keeps its historical name.
    attribute_model: AttributeSource
    text_model: TextModel
    archive: ResultsArchive
    table: DescriptionTable
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def validate(self, job: DescriptionJob) -> tuple[str, list[Question], list[str]]:
        """Every check that needs no model call; raises RequestError on the first problem.

        Returns the category used, its questions and the languages to write."""
        limits = self.settings.image
        try:
            info = inspect_image(
                job.image,
                ImageLimits(limits.max_bytes, limits.max_pixels, limits.max_side, limits.min_side),
            )
        except InvalidImageError as error:
            status = 413 if error.problem is ImageProblem.TOO_LARGE else 400
            raise RequestError(error.problem.value, error.message, status=status) from None
        # The source's own limits (Bedrock's for the vision model), before any call is paid for.
        self.attribute_model.check_image(info)
        category, questions = questions_for(self.settings, job.category)
        return category, questions, languages_for(self.settings, job.languages)

    def describe(self, job: DescriptionJob, *, deadline: Deadline) -> StoredDescription:
        timings: dict[str, int] = {}
        started = time.perf_counter()
        category, questions, languages = self.validate(job)
        timings["validate"] = _elapsed_ms(started)

        stage = time.perf_counter()
        answers = self._retrying(
            lambda: self.attribute_model.answer(job.image, questions), deadline
        )
        attributes = answered(answers.attributes, questions)
        if not attributes:
            raise DependencyError(
                "attribute_model_empty",
                "the attribute model answered none of the questions",
                retryable=False,
            )
        source = self.attribute_model.source
        timings["attributes"] = _elapsed_ms(stage)

        stage = time.perf_counter()
        descriptions, grounding, usage = self._write(attributes, category, languages, deadline)
        timings["description"] = _elapsed_ms(stage)

        timings["total"] = _elapsed_ms(started)
        stage = time.perf_counter()
        image_sha256 = hashlib.sha256(job.image).hexdigest()
        stored = StoredDescription(
            product_id=job.product_id,
            category=category,
            image_key=job.image_key or f"api:{image_sha256}",
            image_sha256=image_sha256,
            attributes=attributes,
            descriptions=descriptions,
            grounding=grounding,
            attribute_model=source.model,
            attributes_source=source,
            text_model=self.settings.model_id,
            timings_ms=timings,
            usage=usage,
            result_key=result_key(job.product_id),
            created_at=self.now().isoformat(timespec="milliseconds"),
            version=PIPELINE_VERSION,
        )
        # The archive first: a table row must never point at a JSON document that is not there.
        self._retrying(
            lambda: self.archive.put_json(stored.result_key, result_document(stored)), deadline
        )
        self._retrying(lambda: self.table.put(stored), deadline)
        # The stored timings end where storing starts; the caller also learns the store's share.
        return stored.model_copy(update={"timings_ms": {**timings, "store": _elapsed_ms(stage)}})

    def _write(
        self,
        attributes: Mapping[str, str],
        category: str,
        languages: list[str],
        deadline: Deadline,
    ) -> tuple[dict[str, LocalizedDescription], GroundingReport, dict[str, int]]:
        """Ask the text model, regenerating with corrections while the text is not grounded."""
        usage = {"inputTokens": 0, "outputTokens": 0}
        corrections: list[str] = []
        attempts = 1 + self.settings.grounding_retries
        for attempt in range(1, attempts + 1):
            request = converse_request(
                model_id=self.settings.model_id,
                attributes=attributes,
                category=category,
                languages=languages,
                max_tokens_per_language=self.settings.max_tokens_per_language,
                temperature=self.settings.temperature,
                structured_output=self.settings.structured_output,
                corrections=corrections,
            )
            reply = self._retrying(partial(self.text_model.converse, request), deadline)
            usage["inputTokens"] += reply.input_tokens
            usage["outputTokens"] += reply.output_tokens
            try:
                descriptions = parse_reply(reply, languages, self.settings.structured_output)
            except MalformedAnswerError as error:
                problem = str(error)
                if reply.stop_reason == "max_tokens":
                    problem = token_limit_advice(self.settings.max_tokens_per_language)
                elif isinstance(error, UnstructuredAnswerError):
                    # The mode does not suit the model: another attempt would answer alike.
                    raise DependencyError(
                        "text_model_unstructured", problem, retryable=False
                    ) from None
                if attempt == attempts:
                    raise DependencyError(
                        "description_malformed", problem, retryable=False
                    ) from None
                corrections = [f"answer with the {len(languages)} requested languages: {problem}"]
                continue
            grounding = check_grounding(attributes, descriptions)
            if not grounding.contradictions:
                return descriptions, grounding, usage
            if attempt == attempts:
                raise DependencyError(
                    "description_ungrounded",
                    "the text model kept contradicting the photo's attributes: "
                    + "; ".join(grounding.contradictions),
                    retryable=False,
                )
            corrections = grounding.contradictions
        raise AssertionError("unreachable")  # pragma: no cover

    def _retrying(self, call: Callable[[], Any], deadline: Deadline) -> Any:
        return call_with_retries(
            call, deadline=deadline, policy=self.retry_policy, sleep=self.sleep
        )


def result_document(stored: StoredDescription) -> dict[str, Any]:
    """The results-bucket JSON of a description (the API's answer shape)."""
    return stored.model_dump(mode="json", by_alias=True)


def _elapsed_ms(since: float) -> int:
    return round((time.perf_counter() - since) * 1000)
