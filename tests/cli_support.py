"""Running `atelier` commands in tests: CliRunner with swapped hooks, and a stage's published
names in moto's SSM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import boto3
from typer.testing import CliRunner, Result

from atelier_cli.main import app
from atelier_cli.runtime import Hooks

REGION = "us-east-1"
PREFIX = "atelier"
STAGE = "dev"


def no_sleep(seconds: float) -> None:
    del seconds


def invoke(args: Sequence[str], *, hooks: Hooks | None = None, input: str | None = None) -> Result:
    """`atelier <args>` in-process; polling commands never really sleep."""
    return CliRunner().invoke(
        app, list(args), obj=hooks or Hooks(sleep=no_sleep), input=input, catch_exceptions=False
    )


def json_document(result: Result) -> dict[str, Any]:
    """The one JSON document a `--json` command printed, checked against the common schema."""
    document = json.loads(result.stdout)
    assert document["version"] == 1
    assert isinstance(document["command"], str)
    if document["ok"]:
        assert set(document) == {"version", "command", "ok", "result"}
        assert isinstance(document["result"], dict)
    else:
        assert set(document) == {"version", "command", "ok", "error"}
        assert set(document["error"]) <= {"code", "message", "fix", "details"}
        assert document["error"]["code"]
        assert document["error"]["message"]
    return document


def publish(section: str, name: str, value: str, *, stage: str = STAGE) -> None:
    """What a stack (or a workflow) publishes: `/<prefix>/<stage>/<section>/<name>` in SSM."""
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=f"/{PREFIX}/{stage}/{section}/{name}", Value=value, Type="String", Overwrite=True
    )
