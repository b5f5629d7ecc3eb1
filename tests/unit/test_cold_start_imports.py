"""What a function's cold start imports: with tracing off, no handler module loads the X-Ray SDK
(a Powertools Tracer imports it even when disabled, so `shared.telemetry.get_tracer` hands out
`TracingOff` there); with tracing on, as deployed, the handlers still get Powertools' Tracer.

Each import runs in a fresh interpreter, as a cold start does: this process has long imported
the SDK (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.telemetry import TracingOff

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"
# Every function's handler module (infra/stacks/api.py, bedrock.py, catalog_functions.py and
# constructs/model_lifecycle.py).
HANDLER_MODULES = (
    "descriptions.handlers.api",
    "descriptions.handlers.uploads",
    "images.handlers.api",
    "diffusion.handlers.api",
    "customization.handlers.manifest",
    "customization.handlers.sweep",
    "lifecycle.handlers.check",
    *(
        f"catalog.handlers.{path.stem}"
        for path in sorted((LAMBDAS / "catalog" / "handlers").glob("*.py"))
        if "\ndef handler(" in path.read_text()
    ),
)


def run_in_fresh_interpreter(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **environment}
    for name in ("POWERTOOLS_TRACE_DISABLED", "LAMBDA_TASK_ROOT"):
        if name not in environment:
            env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=LAMBDAS,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_every_function_handler_module_is_listed() -> None:
    infra = "".join(path.read_text() for path in (ROOT / "infra").rglob("*.py"))
    named = set(re.findall(r'handler="([a-z_.]+)\.handler"', infra))
    assert named == {module for module in HANDLER_MODULES if not module.startswith("catalog.")}
    assert 'handler=f"catalog.handlers.{spec.module}.handler"' in infra


@pytest.mark.parametrize("module", HANDLER_MODULES)
def test_tracing_off_imports_no_xray_sdk(module: str) -> None:
    probe = f"import sys; import {module}; sys.exit('aws_xray_sdk' in sys.modules)"
    result = run_in_fresh_interpreter(probe, POWERTOOLS_TRACE_DISABLED="true")
    assert result.returncode == 0, result.stderr or f"{module} imports aws_xray_sdk"


def test_tracing_on_the_api_handlers_get_powertools_tracer(tmp_path: Path) -> None:
    """As deployed (LAMBDA_TASK_ROOT set, no POWERTOOLS_TRACE_DISABLED): the real Tracer, built
    when the module is imported, as before."""
    probe = (
        "import sys; import descriptions.handlers.api, images.handlers.api; "
        "from aws_lambda_powertools import Tracer; from shared.telemetry import get_tracer; "
        "assert 'aws_xray_sdk.core' in sys.modules; "
        "assert type(get_tracer()) is Tracer and not get_tracer().disabled"
    )
    result = run_in_fresh_interpreter(probe, LAMBDA_TASK_ROOT=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_tracing_off_leaves_what_it_decorates_unchanged() -> None:
    tracer = TracingOff()

    def handler(event: Any, context: Any) -> Any:
        return event

    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_lambda_handler(capture_response=False)(handler) is handler
    assert tracer.capture_method(handler) is handler
    assert tracer.capture_method(capture_response=False)(handler) is handler
    tracer.put_annotation("k", "v")
    tracer.put_metadata("k", {"v": 1})
