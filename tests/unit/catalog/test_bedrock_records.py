"""Bedrock batch records: the input lines (the online prompt, less modelId), their files, and the
reading of the job's output lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from catalog.logic.bedrock_records import (
    Answer,
    BedrockLimitError,
    BedrockRecord,
    FileRotation,
    MalformedLine,
    RecordError,
    build_bedrock_lines,
    model_input,
    parse_output_line,
    parse_output_lines,
    read_descriptions,
    record_id,
)
from catalog.logic.transform_output import TransformJob
from descriptions.logic.pipeline import DescriptionJob, DescriptionPipeline
from descriptions.logic.prompt import (
    ANTHROPIC_VERSION,
    TOOL_NAME,
    MalformedAnswerError,
    UnstructuredAnswerError,
    answer_schema,
    converse_request,
    parse_descriptions,
    system_prompt,
)
from shared.models.catalog import BedrockBatchLimits, FailureRecord, LedgerRecord
from shared.models.descriptions import TextModelReply
from shared.models.errors import DependencyError
from shared.retry import Deadline
from tests.catalog_batch_support import (
    answer_line,
    batch_settings,
    error_line,
    index_line,
    index_record,
    transform_output_line,
)
from tests.descriptions_support import (
    ATTRIBUTES,
    FakeAttributeModel,
    InMemoryArchive,
    InMemoryTable,
    answer_schema_of,
    grounded_entry,
    image_bytes,
)

SETTINGS = batch_settings()
# The dev stage's model (Claude Sonnet 4.6) resolves `auto` to json_schema; tool mode is what an
# older Claude resolves to.
TOOL_SETTINGS = SETTINGS.model_copy(update={"structured_output": "tool"})
MODES = {"json_schema": SETTINGS, "tool": TOOL_SETTINGS}
JOB = TransformJob(name="transform-job-1")
LIMITS = BedrockBatchLimits(
    minRecordsPerJob=100,
    maxRecordsPerJob=50_000,
    maxRecordsPerFile=50_000,
    maxFileBytes=1024**3,
    maxJobBytes=5 * 1024**3,
)


def _build(
    numbers: range, languages: list[str], settings: Any = SETTINGS, **kwargs: Any
) -> list[BedrockRecord | FailureRecord]:
    records = [index_record(n, category="Shirts" if n % 2 else "default") for n in numbers]
    return list(
        build_bedrock_lines(
            [index_line(r) for r in records],
            [transform_output_line(r) for r in records],
            settings=settings,
            languages=languages,
            job=JOB,
            part="part.jsonl",
            **kwargs,
        )
    )


@pytest.mark.parametrize("languages", [["en"], ["en", "de", "ja"]])
def test_the_model_input_is_the_online_converse_request_without_the_model_id(
    languages: list[str],
) -> None:
    # Given the arguments the online pipeline passes to converse_request
    online = converse_request(
        model_id=SETTINGS.model_id,
        attributes=ATTRIBUTES,
        category="default",
        languages=languages,
        max_tokens_per_language=SETTINGS.max_tokens_per_language,
        temperature=SETTINGS.temperature,
        structured_output="json_schema",
    )

    # When the batch record's model input is built from the settings (json_schema mode)
    body = model_input(SETTINGS, attributes=ATTRIBUTES, category="default", languages=languages)

    # Then it is the online request field for field, only modelId left out, with no toolConfig
    # (Converse batch jobs refuse records that carry one)
    assert online.pop("modelId") == SETTINGS.model_id
    assert body == online
    assert set(body) == {"system", "messages", "inferenceConfig", "outputConfig"}


def test_tool_mode_writes_the_same_request_as_an_anthropic_messages_body() -> None:
    # Given the online tool-mode request for a product
    languages = ["en", "de"]
    online = converse_request(
        model_id=SETTINGS.model_id,
        attributes=ATTRIBUTES,
        category="default",
        languages=languages,
        max_tokens_per_language=SETTINGS.max_tokens_per_language,
        temperature=SETTINGS.temperature,
        structured_output="tool",
    )

    # When tool mode builds the batch record's model input
    body = model_input(
        TOOL_SETTINGS, attributes=ATTRIBUTES, category="default", languages=languages
    )

    # Then it is InvokeModel's native Claude body carrying the same prompt, tool and budget
    assert body["anthropic_version"] == ANTHROPIC_VERSION
    assert body["system"] == online["system"][0]["text"] == system_prompt("tool")
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": online["messages"][0]["content"][0]["text"]}],
        }
    ]
    assert body["max_tokens"] == online["inferenceConfig"]["maxTokens"]
    assert body["temperature"] == online["inferenceConfig"]["temperature"]
    [tool] = body["tools"]
    assert tool["name"] == TOOL_NAME
    assert tool["input_schema"] == answer_schema_of(online) == answer_schema(languages)
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert "toolConfig" not in body


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_built_line_round_trips_through_the_answer_schema(mode: str) -> None:
    # Given a product with attributes and three languages
    languages = ["en", "de", "fr"]
    settings = MODES[mode]
    [item] = _build(range(1), languages, settings)
    assert isinstance(item, BedrockRecord)

    # When the input line is read back as Bedrock will read it
    line = json.loads(item.input_line)

    # Then it has exactly recordId and modelInput, the id is 11 characters, and the schema is
    # the prompt module's for those languages with the per-language token budget
    assert set(line) == {"recordId", "modelInput"}
    assert line["recordId"] == "R0000000000"
    assert len(line["recordId"]) == 11
    body = line["modelInput"]
    if mode == "tool":
        assert body["max_tokens"] == settings.max_tokens_per_language * 3
        schema = body["tools"][0]["input_schema"]
    else:
        assert body["inferenceConfig"]["maxTokens"] == settings.max_tokens_per_language * 3
        schema = answer_schema_of(body)
    entry = schema["properties"]["descriptions"]["items"]
    assert entry["properties"]["language"]["enum"] == languages
    # and an answer holding every required field per enumerated language parses
    answer = {
        "descriptions": [
            {name: grounded_entry(code)[name] for name in entry["required"]}
            for code in entry["properties"]["language"]["enum"]
        ]
    }
    assert list(parse_descriptions(answer, languages)) == languages


def test_the_ledger_line_carries_what_the_results_step_needs() -> None:
    [item] = _build(range(1, 2), ["en", "de"], first_sequence=41)
    assert isinstance(item, BedrockRecord)

    ledger = LedgerRecord.model_validate_json(item.ledger_line)

    assert ledger.record_id == item.record_id == "R0000000041"
    assert ledger.languages == ("en", "de")
    assert ledger.category == "Shirts"
    assert ledger.attributes == {
        "fabric": ATTRIBUTES["fabric"],
        "sleeve_length": ATTRIBUTES["sleeve_length"],
        "colour": ATTRIBUTES["colour"],
    }
    prompt = json.loads(item.input_line)["modelInput"]["messages"][0]["content"][0]["text"]
    assert "Product category: Shirts" in prompt
    assert "collar" not in prompt


def test_ten_thousand_products_get_sequential_ids_and_bad_ones_fail() -> None:
    # Given 10,000 products where every 50th output line is malformed
    records = [index_record(n) for n in range(10_000)]
    outputs = [
        b"not json" if n % 50 == 0 else transform_output_line(r) for n, r in enumerate(records)
    ]

    # When the Bedrock lines are built, streaming, from sequence 7
    items = list(
        build_bedrock_lines(
            (index_line(r) for r in records),
            iter(outputs),
            settings=SETTINGS,
            languages=["en"],
            job=JOB,
            part="p.jsonl",
            first_sequence=7,
        )
    )

    # Then 200 failures and 9,800 records numbered 7, 8, ... with no gaps
    good = [item for item in items if isinstance(item, BedrockRecord)]
    bad = [item for item in items if isinstance(item, FailureRecord)]
    assert len(bad) == 200
    assert [item.record_id for item in good] == [record_id(7 + n) for n in range(9_800)]
    assert {json.loads(item.input_line)["recordId"] for item in good} == {
        item.record_id for item in good
    }


def test_files_rotate_at_the_record_limit() -> None:
    rotation = FileRotation(LIMITS.model_copy(update={"max_records_per_file": 3}))

    files = [rotation.place(100) for _ in range(7)]

    assert files == [0, 0, 0, 1, 1, 1, 2]
    assert (rotation.files, rotation.records, rotation.bytes) == (3, 7, 700)


def test_files_rotate_before_the_byte_limit_is_crossed() -> None:
    rotation = FileRotation(LIMITS.model_copy(update={"max_file_bytes": 250}))

    files = [rotation.place(size) for size in (100, 100, 60, 200, 50, 10)]

    # 60 + 200 > 250 starts file 2; 200 + 50 fills it exactly; 10 more starts file 3
    assert files == [0, 0, 1, 2, 2, 3]


@pytest.mark.parametrize(
    ("update", "sizes", "message"),
    [
        ({"max_records_per_job": 2}, [10, 10, 10], "lower catalog.max_records_per_group"),
        ({"max_job_bytes": 25}, [10, 10, 10], "lower catalog.max_records_per_group"),
        ({"max_file_bytes": 50}, [10, 51], "more than a whole input file may hold"),
    ],
)
def test_a_group_beyond_one_job_is_refused(
    update: dict[str, int], sizes: list[int], message: str
) -> None:
    rotation = FileRotation(LIMITS.model_copy(update=update))
    *fitting, refused = sizes
    for size in fitting:
        rotation.place(size)

    with pytest.raises(BedrockLimitError, match=message):
        rotation.place(refused)


@pytest.mark.parametrize(
    ("mode", "stop_reason"), [("json_schema", "end_turn"), ("tool", "tool_use")]
)
def test_an_answer_line_is_read_like_an_online_answer(mode: str, stop_reason: str) -> None:
    # Given an output line of a Converse job (json_schema) or an InvokeModel job (tool)
    line = answer_line("R0000000001", languages=["en", "de"], mode=mode)

    outcome = parse_output_line(line)

    assert isinstance(outcome, Answer)
    assert outcome.record_id == "R0000000001"
    assert outcome.reply.stop_reason == stop_reason
    assert (outcome.reply.input_tokens, outcome.reply.output_tokens) == (300, 250)
    descriptions = read_descriptions(
        outcome.reply, ["en", "de"], max_tokens_per_language=600, structured_output=mode
    )
    assert list(descriptions) == ["en", "de"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (error_line("R1", 400, "Malformed\n input"), RecordError("R1", "400", "Malformed input")),
        (error_line("R2", "ModelTimeout", "slow"), RecordError("R2", "ModelTimeout", "slow")),
        (b'{"recordId": "R3", "error": "boom"}', RecordError("R3", "unknown", "boom")),
        (b'{"recordId": "R4", "modelOu', MalformedLine("not JSON", None)),
        (b"[]", MalformedLine("not a JSON object")),
        (b'{"modelOutput": {}}', MalformedLine("no recordId")),
        (b'{"recordId": "R5", "modelInput": {}}', MalformedLine("neither", "R5")),
        (b'{"recordId": "R6", "modelOutput": [1]}', MalformedLine("neither", "R6")),
        (
            b'{"recordId": "R7", "modelOutput": {"usage": {"inputTokens": "many"}}}',
            MalformedLine("usage counts are not numbers", "R7"),
        ),
    ],
)  # fmt: skip
def test_error_records_and_malformed_lines_are_told_apart(line: bytes, expected: object) -> None:
    outcome = parse_output_line(line)

    assert type(outcome) is type(expected)
    if isinstance(expected, MalformedLine):
        assert isinstance(outcome, MalformedLine)
        assert expected.problem in outcome.problem
        assert outcome.record_id == expected.record_id
    else:
        assert outcome == expected


def test_an_answer_in_neither_shape_names_the_setting_when_read() -> None:
    reply = TextModelReply(
        tool_input=None, stop_reason="end_turn", input_tokens=1, output_tokens=1, text="A shirt."
    )

    with pytest.raises(
        UnstructuredAnswerError, match=r"set descriptions\.structured_output to 'tool'"
    ):
        read_descriptions(
            reply, ["en"], max_tokens_per_language=600, structured_output="json_schema"
        )


def test_a_cut_off_answer_gets_the_same_advice_as_the_online_path() -> None:
    # Given an answer the model stopped at the token limit, with German missing
    cut = TextModelReply(
        tool_input={"descriptions": [grounded_entry("en")]},
        stop_reason="max_tokens",
        input_tokens=1,
        output_tokens=1200,
    )

    class CutOffTextModel:
        def converse(self, request: Any) -> TextModelReply:
            return cut

    online = DescriptionPipeline(
        settings=SETTINGS.model_copy(update={"grounding_retries": 0}),
        attribute_model=FakeAttributeModel(),
        text_model=CutOffTextModel(),
        archive=InMemoryArchive(),
        table=InMemoryTable(),
        now=lambda: datetime(2026, 11, 22, tzinfo=UTC),
    )

    # When the online pipeline and the batch reader meet it
    with pytest.raises(DependencyError) as online_error:
        online.describe(
            DescriptionJob("P1", image_bytes(), languages=["en", "de"]), deadline=Deadline(30)
        )
    with pytest.raises(MalformedAnswerError) as batch_error:
        read_descriptions(
            cut,
            ["en", "de"],
            max_tokens_per_language=SETTINGS.max_tokens_per_language,
            structured_output=SETTINGS.structured_output,
        )

    # Then both say the same thing: raise the per-language token limit
    assert str(batch_error.value) == online_error.value.message
    assert "raise descriptions.max_tokens_per_language" in str(batch_error.value)


def test_ten_thousand_output_lines_stream_into_one_outcome_each() -> None:
    # Given 10,000 lines: answers, error records every 20th, malformed every 33rd
    lines = []
    for n in range(10_000):
        if n % 33 == 0:
            lines.append(b'{"recordId": "R' + str(n).encode())
        elif n % 20 == 0:
            lines.append(error_line(record_id(n)))
        else:
            lines.append(answer_line(record_id(n)))

    # When parsed
    outcomes = list(parse_output_lines(iter(lines)))

    # Then every line has an outcome of the right kind, in order
    kinds = [type(outcome) for outcome in outcomes]
    assert kinds.count(MalformedLine) == len(range(0, 10_000, 33))
    assert kinds.count(RecordError) == sum(1 for n in range(10_000) if n % 20 == 0 and n % 33)
    assert kinds.count(Answer) == 10_000 - kinds.count(MalformedLine) - kinds.count(RecordError)
    assert [o.record_id for o in outcomes if isinstance(o, Answer)][:2] == [
        record_id(1),
        record_id(2),
    ]


def test_products_without_attributes_yield_failures_not_records() -> None:
    record = index_record(9)

    items = list(
        build_bedrock_lines(
            [index_line(record)],
            [transform_output_line(record, {"attributes": {}})],
            settings=SETTINGS,
            languages=["en"],
            job=JOB,
            part="p.jsonl",
        )
    )

    assert len(items) == 1
    assert isinstance(items[0], FailureRecord)
    assert "answered none of the 'default' questions" in items[0].reason
