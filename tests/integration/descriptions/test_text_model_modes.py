"""Converse requests of both structured-output modes against botocore's real service model.

Stubber validates every request against bedrock-runtime's API model before it answers, so a
field Converse does not have, or a value of the wrong shape, fails here. Each mode's answer is
read by the same reader and validated by the same pydantic model.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from descriptions.logic.prompt import converse_request, parse_reply
from shared.adapters.bedrock_runtime import BedrockTextModel
from shared.models.errors import DependencyError
from tests.descriptions_support import (
    ATTRIBUTES,
    converse_json_response,
    converse_response,
    tool_input,
)

pytestmark = pytest.mark.integration

MODEL = "global.anthropic.claude-sonnet-4-6"
LANGUAGES = ["en", "de"]


def _request(mode: str) -> dict[str, Any]:
    return converse_request(
        model_id=MODEL,
        attributes=ATTRIBUTES,
        category="default",
        languages=LANGUAGES,
        max_tokens_per_language=600,
        temperature=0.1,
        structured_output=mode,  # type: ignore[arg-type]
    )


def _client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1")


@pytest.mark.parametrize(
    ("mode", "answer"), [("tool", converse_response), ("json_schema", converse_json_response)]
)
def test_each_mode_is_a_valid_converse_request_and_its_answer_validates(
    mode: str, answer: Any
) -> None:
    client = _client()
    request = _request(mode)
    with Stubber(client) as stubber:
        stubber.add_response("converse", answer(tool_input(LANGUAGES)), expected_params=request)
        reply = BedrockTextModel(bedrock_runtime=client).converse(request)
        stubber.assert_no_pending_responses()

    descriptions = parse_reply(reply, LANGUAGES, mode)
    assert list(descriptions) == LANGUAGES
    assert (reply.input_tokens, reply.output_tokens) == (300, 250)


def test_a_malformed_json_schema_field_is_refused_by_botocores_model() -> None:
    # The gate is real: the schema must be a JSON string, not an object.
    request = _request("json_schema")
    structure = request["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    structure["schema"] = json.loads(structure["schema"])
    client = _client()
    with Stubber(client) as stubber:
        stubber.add_response("converse", converse_json_response(tool_input(LANGUAGES)))
        with pytest.raises(ParamValidationError, match="schema"):
            client.converse(**request)


@pytest.mark.parametrize(
    ("mode", "message", "advice"),
    [
        (
            "tool",
            "This model doesn't support the toolConfig.toolChoice.tool field. Remove "
            "toolConfig.toolChoice.tool and try again.",
            "set descriptions.structured_output to 'json_schema'",
        ),
        (
            "json_schema",
            "The model returned the following errors: outputConfig.textFormat is not supported "
            "for this model.",
            "set descriptions.structured_output to 'tool'",
        ),
    ],
)
def test_a_model_that_refuses_the_mode_is_a_502_naming_the_setting(
    mode: str, message: str, advice: str
) -> None:
    client = _client()
    with Stubber(client) as stubber:
        stubber.add_client_error("converse", "ValidationException", message, http_status_code=400)
        with pytest.raises(DependencyError) as error:
            BedrockTextModel(bedrock_runtime=client).converse(_request(mode))

    assert error.value.status == 502
    assert error.value.code == "text_model_structured_output_unsupported"
    assert advice in error.value.message


def _client_without_output_config(tmp_path: Path) -> Any:
    """A bedrock-runtime client whose botocore model predates Converse's outputConfig, as a
    Lambda runtime's older botocore would have."""
    session = botocore.session.get_session()
    builtin = Path(botocore.__file__).parent / "data" / "bedrock-runtime"
    (version,) = sorted(builtin.iterdir())[-1:]
    with gzip.open(version / "service-2.json.gz") as file:
        model = json.load(file)
    converse_input = model["operations"]["Converse"]["input"]["shape"]
    del model["shapes"][converse_input]["members"]["outputConfig"]
    target = tmp_path / "bedrock-runtime" / version.name
    target.mkdir(parents=True)
    (target / "service-2.json").write_text(json.dumps(model))
    session.set_config_variable("data_path", str(tmp_path))
    return boto3.session.Session(botocore_session=session).client(
        "bedrock-runtime", region_name="us-east-1"
    )


def test_an_sdk_older_than_output_config_is_named_not_a_parameter_error(tmp_path: Path) -> None:
    old = _client_without_output_config(tmp_path)
    request = _request("json_schema")
    # Given the failure a runtime botocore without outputConfig produces on its own
    with Stubber(old) as stubber:
        stubber.add_response("converse", converse_json_response(tool_input(LANGUAGES)))
        with pytest.raises(ParamValidationError, match="outputConfig"):
            old.converse(**request)

    # When the adapter sends it, Then the answer names the SDK and the fix instead
    with pytest.raises(DependencyError) as error:
        BedrockTextModel(bedrock_runtime=old).converse(request)
    assert error.value.code == "text_model_sdk_outdated"
    assert error.value.status == 502
    assert "does not know Converse's outputConfig" in error.value.message
    # and tool mode still goes through on that SDK
    with Stubber(old) as stubber:
        stubber.add_response("converse", converse_response(tool_input(LANGUAGES)))
        BedrockTextModel(bedrock_runtime=old).converse(_request("tool"))
