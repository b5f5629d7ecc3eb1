"""Starting the stage's Step Functions workflows, and where to watch them.

Training, customization, release and catalog runs are all executions of workflows the stacks
deploy; every command that starts one goes through `start_execution`, so each prints the same
thing: the execution ARN, its console link, and how to follow it with `atelier jobs watch`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from atelier_cli.aws import translated_errors
from atelier_cli.runtime import Run

# Step Functions execution names: 1-80 characters of letters, digits, '-' and '_'.
MAX_EXECUTION_NAME = 80


def execution_name(kind: str, now: datetime | None = None) -> str:
    """`<kind>-<yyyymmdd-hhmmss>-<6 hex>`: sortable, readable, unique per start."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"[:MAX_EXECUTION_NAME]


def console_url(region: str, execution_arn: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{quote(execution_arn, safe=':')}"
    )


def start_execution(
    run: Run,
    *,
    state_machine_arn: str,
    document: Mapping[str, Any],
    kind: str,
    what: str,
) -> dict[str, Any]:
    """Start one execution; returns {executionArn, name, startDate, input, consoleUrl}."""
    name = execution_name(kind)
    client = run.aws.client("stepfunctions")
    with translated_errors(what):
        answer = client.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(document)
        )
    arn = answer["executionArn"]
    return {
        "executionArn": arn,
        "name": name,
        "stateMachineArn": state_machine_arn,
        "startDate": answer["startDate"].isoformat(),
        "input": dict(document),
        "consoleUrl": console_url(run.aws.region, arn),
        "watch": f"atelier --stage {run.options.stage} jobs watch {arn}",
    }
