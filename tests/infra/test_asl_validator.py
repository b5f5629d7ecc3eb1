"""asl-validator (npm, an independent implementation of the Amazon States Language rules, JSONata
included) over every synthesized state machine, through tools/validate_asl.js as `make synth`
runs it: zero errors. And the gate can fail: broken definitions are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import SynthesizedApp

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "tools" / "validate_asl.js"
LAMBDA = "arn:aws:states:::lambda:invoke"


def _validate(*templates: Path) -> subprocess.CompletedProcess[str]:
    node = Path(sys.executable).parent / "node"
    return subprocess.run(
        [str(node), str(VALIDATOR), *map(str, templates)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def _template(tmp_path: Path, definition: Any) -> Path:
    """A one-state-machine template whose definition is spliced with an intrinsic, as CDK does."""
    pieces = json.dumps(definition).split("TOKEN_FUNCTION_ARN")
    function_arn = {"Fn::GetAtt": ["Fn1234", "Arn"]}
    parts: list[Any] = [pieces[0]]
    for piece in pieces[1:]:
        parts += [function_arn, piece]
    template = {
        "Resources": {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"DefinitionString": {"Fn::Join": ["", parts]}},
            }
        }
    }
    path = tmp_path / "broken.template.json"
    path.write_text(json.dumps(template))
    return path


def _distributed_map(child: str, *, next_state: str | None = None) -> dict[str, Any]:
    return {
        "Type": "Map",
        "Items": "{% $states.input.items %}",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": child,
            "States": {
                child: {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Arguments": {
                        "FunctionName": "TOKEN_FUNCTION_ARN",
                        "Payload": "{% $states.input %}",
                    },
                    "End": True,
                }
            },
        },
        **({"Next": next_state} if next_state else {"End": True}),
    }


def _machine(first_child: str, second_child: str) -> dict[str, Any]:
    """Two Distributed Maps in a row, as the catalog workflow's build step has three."""
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "Build CSV",
        "States": {
            "Build CSV": _distributed_map(first_child, next_state="Build JSONL"),
            "Build JSONL": _distributed_map(second_child),
        },
    }


def test_every_synthesized_state_machine_passes_the_asl_validator(
    synthesized_apps: dict[str, SynthesizedApp], variant_app: SynthesizedApp
) -> None:
    for app in [*synthesized_apps.values(), variant_app]:
        templates = sorted(Path(app.assembly_dir).glob("*.template.json"))
        result = _validate(*templates)
        assert result.returncode == 0, f"{app.stage}: {result.stderr}{result.stdout}"
        summary = result.stdout.strip().splitlines()[-1]
        # The describe-catalog, VQA, DreamBooth and Titan workflows at least.
        machines = int(summary.split(" in ")[1].split()[0])
        assert summary.startswith("asl-validator: 0 errors in "), summary
        assert machines >= 4, summary


def test_state_names_repeated_in_two_map_processors_are_refused(tmp_path: Path) -> None:
    # The catalog stack's old defect: one child state name in each Distributed Map. CDK does
    # not see it in a custom state; CreateStateMachine refuses it.
    repeated = _validate(_template(tmp_path, _machine("Build part", "Build part")))
    assert repeated.returncode == 1
    assert "DUPLICATE_STATE_NAMES" in repeated.stderr
    assert "A state with this name already exists: Build part" in repeated.stderr
    assert "asl-validator: 1 errors in 1 state machines" in repeated.stdout
    unique = _validate(_template(tmp_path, _machine("Build part (csv)", "Build part (jsonl)")))
    assert unique.returncode == 0, unique.stderr
    assert "asl-validator: 0 errors in 1 state machines" in unique.stdout


def test_a_jsonata_syntax_error_and_a_missing_target_are_refused(tmp_path: Path) -> None:
    machine = _machine("Part A", "Part B")
    machine["States"]["Build CSV"]["Items"] = "{% $states.input.items[ %}"
    broken = _validate(_template(tmp_path, machine))
    assert broken.returncode == 1
    assert "/States/Build CSV/Items" in broken.stderr, broken.stderr
    machine = _machine("Part A", "Part B")
    machine["States"]["Build CSV"]["Next"] = "Nowhere"
    missing = _validate(_template(tmp_path, machine))
    assert missing.returncode == 1
    assert "MISSING_TRANSITION_TARGET" in missing.stderr, missing.stderr


def test_an_empty_string_value_is_accepted_and_counted_but_later_checks_still_run(
    tmp_path: Path,
) -> None:
    # asl-validator refuses "" in a payload template (the ASL allows it) and would then skip
    # its other checks; the script lets "" through, says so, and still finds the repeated name.
    machine = _machine("Build part", "Build part")
    machine["States"]["Build CSV"]["Assign"] = {"jobArn": ""}
    result = _validate(_template(tmp_path, machine))
    assert result.returncode == 1
    assert "DUPLICATE_STATE_NAMES" in result.stderr
    assert "1 empty-string values accepted" in result.stdout


def test_templates_without_a_state_machine_fail_the_gate(tmp_path: Path) -> None:
    empty = tmp_path / "empty.template.json"
    empty.write_text(json.dumps({"Resources": {}}))
    result = _validate(empty)
    assert result.returncode == 1
    assert "no state machine found" in result.stderr
