"""Test doubles of the AWS services the describe-catalog run hands its heavy work to.

Every double sits behind a real boto3 client: botocore validates each request against the
service's API model before the double sees it (the same check a Stubber makes), and each answer
is validated against the operation's output shape before the caller gets it. What the doubles do
follows the services' documentation:

- SageMaker Batch Transform (`ManifestFile` input, `SplitType` Line, `BatchStrategy`
  SingleRecord or MultiRecord, `DataProcessing` InputFilter / JoinSource Input / OutputFilter,
  `AssembleWith` Line): every line of every part the manifest lists goes through the InputFilter
  to the model, which is the REAL VQA serving handler (training/vqa/inference.py) on a tiny
  BLIP-2: one line per request (SingleRecord, `application/json`), or (MultiRecord,
  `application/jsonlines`) as many filtered lines as fit in MaxPayloadInMB, newline-joined, per
  request, whose answer must hold one line per input line; each answer is joined to its input line
  as `SageMakerOutput`, filtered and written to `<S3OutputPath><part>.out`.
- Bedrock batch inference (Converse): every `.jsonl` under the input URI is read; each line's
  `modelInput` must be a valid Converse request; `<output URI><jobId>/<file>.out` gets one line per
  record with `recordId`, `modelInput` and `modelOutput`, or an `error` (and `manifest.json.out`).
- `claude_reply` is the text model: it calls the forced `record_descriptions` tool with one entry
  per language of the tool schema's enum, written from the attribute lines of the user message.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from botocore.validate import validate_parameters

from descriptions.logic.prompt import ANTHROPIC_VERSION, TOOL_NAME

REGION = "us-east-1"
ACCOUNT = "123456789012"
CREATED = datetime(2026, 7, 25, tzinfo=UTC)

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class ServiceDouble:
    """A real boto3 client whose calls are answered by Python functions instead of AWS.

    Like botocore's Stubber it answers in `before-call`, after the client has validated the
    request, but the answer is computed from the request. Only the operations given are
    answered; any other call fails the test."""

    def __init__(self, service: str, answers: Mapping[str, Answer]) -> None:
        self.client: Any = boto3.client(service, region_name=REGION)
        self.answers = dict(answers)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        service_id = self.client.meta.service_model.service_id.hyphenize()
        events = self.client.meta.events
        events.register_first(f"before-parameter-build.{service_id}", self._remember)
        events.register_first(f"before-call.{service_id}", self._answer)

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["double_params"] = copy.deepcopy(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, Any]:
        name = model.name
        assert name in self.answers, f"{name} is not answered by this test double"
        params = context["double_params"]
        self.calls.append((name, params))
        parsed = self.answers[name](params)
        body = parsed.get("Body")
        if model.output_shape is not None:
            checked = {**parsed, "Body": b""} if isinstance(body, bytes) else parsed
            validate_parameters(checked, model.output_shape)
        if isinstance(body, bytes):
            parsed = {**parsed, "Body": StreamingBody(io.BytesIO(body), len(body))}
        parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200})
        return AWSResponse(None, 200, {}, None), parsed

    def called(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    assert uri.startswith("s3://"), uri
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_text(s3: Any, uri: str) -> str:
    bucket, key = parse_s3_uri(uri)
    return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))


def write_lines(s3: Any, uri: str, lines: list[str]) -> None:
    bucket, key = parse_s3_uri(uri)
    body = "".join(line + "\n" for line in lines).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body)


_KEYS_FILTER = re.compile(r"^\$\[((?:'[^']+'\s*,\s*)*'[^']+')\]$")


def json_path_filter(document: Mapping[str, Any], expression: str) -> dict[str, Any]:
    """The JSONPath subset the workflow uses: `$['a','b']` keeps those keys (absent ones are
    left out, as SageMaker does)."""
    match = _KEYS_FILTER.match(expression)
    assert match, f"JSONPath {expression!r} is not modelled by the Batch Transform double"
    names = [name.strip().strip("'") for name in match[1].split(",")]
    return {name: document[name] for name in names if name in document}


# (request body, content type) → response body (the serving handler).
Model = Callable[[bytes, str], bytes]


@dataclass
class BatchTransformDouble:
    """SageMaker's control plane for the workflow: models and synchronous transform jobs."""

    s3: Any
    model: Model
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_models: list[str] = field(default_factory=list)
    # product id → the model's parsed answer, as the job joined it.
    answers: dict[str, Any] = field(default_factory=dict)
    # Records answered, and model invocations (fewer than records with MultiRecord).
    requests: int = 0
    calls: int = 0
    service: ServiceDouble = field(init=False)

    def __post_init__(self) -> None:
        self.service = ServiceDouble(
            "sagemaker",
            {
                "CreateModel": self._create_model,
                "CreateTransformJob": self._create_transform_job,
                "DescribeTransformJob": self._describe_transform_job,
                "DeleteModel": self._delete_model,
            },
        )

    def _create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelName"]
        assert name not in self.models, f"model {name} exists already"
        self.models[name] = params
        return {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{name.lower()}"}

    def _delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        assert params["ModelName"] in self.models, f"no model {params['ModelName']}"
        self.deleted_models.append(params["ModelName"])
        return {}

    def _create_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TransformJobName"]
        assert name not in self.jobs, f"transform job {name} exists already"
        assert params["ModelName"] in self.models, f"no model {params['ModelName']}"
        self.jobs[name] = params
        self._transform(params)
        return {"TransformJobArn": self._arn(name)}

    def _describe_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TransformJobName"]
        job = self.jobs[name]
        return {
            "TransformJobName": name,
            "TransformJobArn": self._arn(name),
            "TransformJobStatus": "Completed",
            "ModelName": job["ModelName"],
            "TransformInput": job["TransformInput"],
            "TransformOutput": job["TransformOutput"],
            "TransformResources": job["TransformResources"],
            "DataProcessing": job["DataProcessing"],
            "CreationTime": CREATED,
            "TransformStartTime": CREATED,
            "TransformEndTime": CREATED,
        }

    @staticmethod
    def _arn(name: str) -> str:
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{name.lower()}"

    def _transform(self, params: dict[str, Any]) -> None:
        source = params["TransformInput"]
        data = source["DataSource"]["S3DataSource"]
        strategy = params.get("BatchStrategy")
        modelled = (
            data["S3DataType"] == "ManifestFile"
            and (strategy, source["ContentType"])
            in (("SingleRecord", "application/json"), ("MultiRecord", "application/jsonlines"))
            and source.get("SplitType") == "Line"
            and source.get("CompressionType", "None") == "None"
            and params["TransformOutput"].get("AssembleWith") == "Line"
            and params["DataProcessing"].get("JoinSource") == "Input"
        )
        assert modelled, f"the Batch Transform double does not model {params}"
        processing = params["DataProcessing"]
        max_payload = int(params.get("MaxPayloadInMB", 6)) * 1024 * 1024
        output_path = params["TransformOutput"]["S3OutputPath"]
        manifest = json.loads(read_text(self.s3, data["S3Uri"]))
        prefix = manifest[0]["prefix"]
        for part in manifest[1:]:
            records = [
                json.loads(line)
                for line in read_text(self.s3, prefix + part).splitlines()
                if line.strip()
            ]
            bodies = [
                json.dumps(json_path_filter(record, processing["InputFilter"])).encode()
                for record in records
            ]
            for body in bodies:
                assert len(body) <= max_payload, f"a record of {part} exceeds MaxPayloadInMB"
            answers: list[Any] = []
            for batch in self._mini_batches(bodies, strategy, max_payload):
                answers += self._invoke(batch, source["ContentType"])
            lines: list[str] = []
            for record, answer in zip(records, answers, strict=True):
                self.requests += 1
                self.answers[record.get("product_id", f"?{self.requests}")] = answer
                joined = {**record, "SageMakerOutput": answer}
                lines.append(json.dumps(json_path_filter(joined, processing["OutputFilter"])))
            write_lines(self.s3, f"{output_path.rstrip('/')}/{part}.out", lines)

    @staticmethod
    def _mini_batches(bodies: list[bytes], strategy: str, max_payload: int) -> list[list[bytes]]:
        """One record per request, or (MultiRecord) as many as fit in MaxPayloadInMB."""
        if strategy == "SingleRecord":
            return [[body] for body in bodies]
        batches: list[list[bytes]] = []
        size = 0
        for body in bodies:
            if batches and size + len(body) + 1 <= max_payload:
                batches[-1].append(body)
                size += len(body) + 1
            else:
                batches.append([body])
                size = len(body) + 1
        return batches

    def _invoke(self, batch: list[bytes], content_type: str) -> list[Any]:
        self.calls += 1
        if content_type == "application/json":
            return [json.loads(self.model(batch[0], content_type))]
        response = self.model(b"".join(body + b"\n" for body in batch), content_type)
        answers = [json.loads(line) for line in response.splitlines() if line.strip()]
        # SageMaker joins output lines to input lines by position: a count that differs fails.
        assert len(answers) == len(batch), f"{len(batch)} lines in, {len(answers)} out"
        return answers


# --- Bedrock ------------------------------------------------------------------------------------

_CONVERSE = boto3.client("bedrock-runtime", region_name=REGION).meta.service_model.operation_model(
    "Converse"
)


def _answer_schema(request: Mapping[str, Any]) -> dict[str, Any]:
    """The answer schema a request asks for, in any of its three shapes."""
    if "anthropic_version" in request:  # InvokeModel batch record (tool mode)
        assert request["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
        (tool,) = [tool for tool in request["tools"] if tool["name"] == TOOL_NAME]
        schema: dict[str, Any] = tool["input_schema"]
        return schema
    if "outputConfig" in request:  # Converse, json_schema mode
        assert "toolConfig" not in request
        text_format = request["outputConfig"]["textFormat"]
        assert text_format["type"] == "json_schema"
        parsed: dict[str, Any] = json.loads(text_format["structure"]["jsonSchema"]["schema"])
        return parsed
    tools = request["toolConfig"]["tools"]  # Converse, tool mode
    assert request["toolConfig"]["toolChoice"] == {"tool": {"name": TOOL_NAME}}
    (spec,) = [tool["toolSpec"] for tool in tools if tool["toolSpec"]["name"] == TOOL_NAME]
    converse_schema: dict[str, Any] = spec["inputSchema"]["json"]
    return converse_schema


def asks_about_a_photo(request: Mapping[str, Any]) -> bool:
    """A vision attribute request: its message starts with an image block."""
    first = request["messages"][0]["content"][0]
    return "image" in first


def photo_answer(image: bytes, name: str) -> str:
    """What the vision double reads from a photo for one question: its own for each image."""
    return f"{name.replace('_', ' ')} {hashlib.sha256(image).hexdigest()[:6]}"


def vision_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    """Claude's answer to a vision attribute record in json_schema mode (a Converse batch
    record): one answer per property of the requested schema, read from the photo."""
    content = request["messages"][0]["content"]
    image = base64.b64decode(content[0]["image"]["source"]["bytes"])
    structure = request["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    schema = json.loads(structure["schema"])
    names = list(schema["properties"]["attributes"]["properties"])
    # The questions are also in the text, in the same order.
    assert [line[2:].split(":")[0] for line in content[1]["text"].splitlines()[1:]] == names
    answer = {"attributes": {name: photo_answer(image, name) for name in names}}
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": json.dumps(answer)}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 1_650,
            "outputTokens": 20 * len(names),
            "totalTokens": 1_650 + 20 * len(names),
        },
        "metrics": {"latencyMs": 900},
    }


def claude_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    """Claude's answer to a request, written from its attributes, in the shape the request asks
    for: a Converse tool call, Converse JSON text, or an Anthropic Messages tool call."""
    entry = _answer_schema(request)["properties"]["descriptions"]["items"]
    languages = entry["properties"]["language"]["enum"]
    content = request["messages"][-1]["content"][0]
    text = content["text"]
    lines = text.splitlines()
    category = lines[0].removeprefix("Product category: ")
    start = lines.index("Attributes read from the photo:") + 1
    attributes: list[tuple[str, str]] = []
    for line in lines[start:]:
        if not line.startswith("- "):
            break
        name, _, value = line[2:].partition(": ")
        attributes.append((name, value))
    values = [value for _, value in attributes]
    descriptions = [
        {
            "language": code,
            "title": f"{category}: {', '.join(values)}"[:300],
            "description": " ".join(f"Its {name} is {value}." for name, value in attributes),
            "bullets": [f"{name}: {value}"[:500] for name, value in attributes][:12],
            "keywords": [value[:100] for value in values][:30],
        }
        for code in languages
    ]
    answer = {"descriptions": descriptions}
    input_tokens, output_tokens = 40 * len(attributes), 90 * len(languages)
    if "anthropic_version" in request:
        return {
            "id": "msg_bdrk_e2e",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [
                {"type": "tool_use", "id": "toolu_e2e", "name": TOOL_NAME, "input": answer}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    if "outputConfig" in request:
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": json.dumps(answer)}]}},
            "stopReason": "end_turn",
            "usage": {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": input_tokens + output_tokens,
            },
            "metrics": {"latencyMs": 900},
        }
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_e2e",
                            "name": TOOL_NAME,
                            "input": {"descriptions": descriptions},
                        }
                    }
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {
            "inputTokens": 40 * len(attributes),
            "outputTokens": 90 * len(languages),
            "totalTokens": 40 * len(attributes) + 90 * len(languages),
        },
        "metrics": {"latencyMs": 900},
    }


@dataclass
class BedrockBatchDouble:
    """Bedrock's model invocation jobs (Converse), answered by `claude_reply`.

    `sabotage` maps a record's position in the job (0-based, over its input files in key order)
    to `error` (an error record, errorCode 400), `malformed` (a cut-off line) or `drop` (no
    line at all); the record ids it hit are kept in `sabotaged`."""

    s3: Any
    sabotage: dict[int, str] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    sabotaged: dict[str, str] = field(default_factory=dict)
    # job id → its sabotaged record ids (record ids restart in each job)
    sabotaged_by_job: dict[str, dict[str, str]] = field(default_factory=dict)
    # record id → the modelInput the job was given
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    service: ServiceDouble = field(init=False)

    def __post_init__(self) -> None:
        self.service = ServiceDouble(
            "bedrock",
            {
                "CreateModelInvocationJob": self._create,
                "GetModelInvocationJob": self._get,
            },
        )

    def _create(self, params: dict[str, Any]) -> dict[str, Any]:
        assert params.get("modelInvocationType") in ("Converse", "InvokeModel"), params
        job_id = f"job{len(self.jobs) + 1:09d}"
        arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-invocation-job/{job_id}"
        errors = self._run(job_id, params)
        self.jobs[arn] = {**params, "errors": errors}
        return {"jobArn": arn}

    def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["jobIdentifier"]
        job = self.jobs[arn]
        self.polls[arn] = self.polls.get(arn, 0) + 1
        answer: dict[str, Any] = {
            "jobArn": arn,
            "jobName": job["jobName"],
            "modelId": job["modelId"],
            "roleArn": job["roleArn"],
            "submitTime": CREATED,
            "inputDataConfig": job["inputDataConfig"],
            "outputDataConfig": job["outputDataConfig"],
            # One poll sees the job still running, as a real job would be.
            "status": "InProgress",
        }
        if self.polls[arn] > 1:
            answer["status"] = "PartiallyCompleted" if job["errors"] else "Completed"
            answer["endTime"] = CREATED
            if job["errors"]:
                answer["message"] = f"{job['errors']} records failed"
        return answer

    def _run(self, job_id: str, params: dict[str, Any]) -> int:
        source = params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        target = params["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].rstrip("/")
        bucket, prefix = parse_s3_uri(source)
        keys = [
            item["Key"]
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for item in page.get("Contents", [])
            if item["Key"].endswith(".jsonl")
        ]
        position, errors, succeeded = 0, 0, 0
        seen: set[str] = set()
        for key in sorted(keys):
            lines: list[str] = []
            for line in read_text(self.s3, f"s3://{bucket}/{key}").splitlines():
                record = json.loads(line)
                identifier, model_input = record["recordId"], record["modelInput"]
                if params["modelInvocationType"] == "Converse":
                    validate_parameters(
                        {**model_input, "modelId": params["modelId"]}, _CONVERSE.input_shape
                    )
                    # Bedrock fails Converse batch records that carry toolConfig (HTTP 400).
                    assert "toolConfig" not in model_input, "tool use in a Converse batch job"
                else:
                    assert model_input["anthropic_version"] == ANTHROPIC_VERSION
                    assert "modelId" not in model_input
                assert identifier not in seen, f"record {identifier} sent twice"
                seen.add(identifier)
                self.records[identifier] = model_input
                kind = self.sabotage.get(position)
                position += 1
                if kind is not None:
                    self.sabotaged[identifier] = kind
                    self.sabotaged_by_job.setdefault(job_id, {})[identifier] = kind
                    errors += 1
                if kind == "drop":
                    continue
                if kind == "malformed":
                    lines.append(json.dumps({"recordId": identifier, "modelOutput": {}})[:-7])
                elif kind == "error":
                    error = {"errorCode": 400, "errorMessage": "Malformed input request"}
                    lines.append(
                        json.dumps(
                            {"recordId": identifier, "modelInput": model_input, "error": error}
                        )
                    )
                else:
                    assert kind is None, kind
                    succeeded += 1
                    output = (
                        vision_reply(model_input)
                        if asks_about_a_photo(model_input)
                        else claude_reply(model_input)
                    )
                    if params["modelInvocationType"] == "Converse":
                        validate_parameters(output, _CONVERSE.output_shape)
                    lines.append(
                        json.dumps(
                            {
                                "recordId": identifier,
                                "modelInput": model_input,
                                "modelOutput": output,
                            }
                        )
                    )
            name = key.rsplit("/", 1)[-1]
            write_lines(self.s3, f"{target}/{job_id}/{name}.out", lines)
        manifest = {
            "totalRecordCount": position,
            "processedRecordCount": position,
            "successRecordCount": succeeded,
            "errorRecordCount": errors,
        }
        write_lines(self.s3, f"{target}/{job_id}/manifest.json.out", [json.dumps(manifest)])
        return errors


@dataclass
class OnlineModels:
    """The online route's endpoint (sagemaker-runtime InvokeEndpoint → the serving handler)
    and text model (bedrock-runtime Converse → `claude_reply`)."""

    endpoint_name: str
    model_id: str
    model: Model
    endpoint: ServiceDouble = field(init=False)
    text: ServiceDouble = field(init=False)

    def __post_init__(self) -> None:
        self.endpoint = ServiceDouble("sagemaker-runtime", {"InvokeEndpoint": self._invoke})
        self.text = ServiceDouble("bedrock-runtime", {"Converse": self._converse})

    def _invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        assert params["EndpointName"] == self.endpoint_name, params["EndpointName"]
        assert params["ContentType"].startswith("application/json"), params["ContentType"]
        body = params["Body"]
        body = body if isinstance(body, bytes) else body.encode()
        return {"Body": self.model(body, "application/json")}

    def _converse(self, params: dict[str, Any]) -> dict[str, Any]:
        assert params["modelId"] == self.model_id, params["modelId"]
        return claude_reply(params)
