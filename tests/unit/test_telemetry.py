"""The shared telemetry setup: every catalog step traced, the tracer built only when a step runs
(importing a handler stays as cheap as before), the same namespace rule everywhere."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.constructs.python_function import POWERTOOLS_METRICS_NAMESPACE
from shared import metric_names, telemetry

ROOT = Path(__file__).resolve().parents[2]
CATALOG_STEPS = (
    "start",
    "transform_input",
    "plan",
    "bedrock_input",
    "results",
    "online",
    "finalize",
)


class FakeTracer:
    def __init__(self) -> None:
        self.captured: list[str] = []

    def capture_lambda_handler(self, handler: Any, capture_response: bool) -> Any:
        self.captured.append(handler.__name__)
        assert capture_response is False  # results carry product data
        return handler


@pytest.mark.parametrize("step", CATALOG_STEPS)
def test_every_catalog_step_is_traced(step: str) -> None:
    module = importlib.import_module(f"catalog.handlers.{step}")
    assert getattr(module.handler, "traced_step", False), f"catalog.handlers.{step} not traced"


def test_a_step_gets_its_tracer_at_the_first_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    tracer = FakeTracer()
    monkeypatch.setattr(telemetry, "get_tracer", lambda: tracer)
    calls: list[Any] = []

    @telemetry.step_handler
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        return {"ok": True}

    assert tracer.captured == []  # nothing built by decorating (import time)
    context = type(
        "Context",
        (),
        {
            "function_name": "f",
            "memory_limit_in_mb": 128,
            "invoked_function_arn": "arn",
            "aws_request_id": "r",
        },
    )()
    assert handler({"a": 1}, context) == {"ok": True}
    assert handler({"a": 2}, context) == {"ok": True}
    assert tracer.captured == ["handler"]  # wrapped once, reused
    assert calls == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("module", [f"catalog.handlers.{step}" for step in CATALOG_STEPS])
def test_importing_a_step_does_not_load_the_xray_sdk(module: str) -> None:
    """Creating a Tracer imports the X-Ray SDK (0.1-0.3 s of cold start); a catalog step only
    pays for it when it runs in Lambda."""
    probe = f"import sys; import {module}; sys.exit('aws_xray_sdk' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT / "lambdas",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr or f"{module} imports aws_xray_sdk"


def test_the_functions_namespace_is_the_one_the_names_module_declares() -> None:
    assert POWERTOOLS_METRICS_NAMESPACE == metric_names.NAMESPACE
