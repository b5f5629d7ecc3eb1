"""`atelier doctor`: is everything the stage is configured to use still there, and still usable?

It reads the inventory the Bedrock stack publishes (`/<prefix>/<stage>/bedrock/model-inventory`:
the models, endpoints and base models of cdk.json, each with the key that sets it) and checks
each item where it lives:

- each Bedrock model: its lifecycle from Bedrock (GetFoundationModel; an inference profile is
  resolved with GetInferenceProfile first): Active, Legacy, public extended access, end of life;
- each SageMaker endpoint: its status and instance types (DescribeEndpoint, DescribeEndpointConfig);
- each base model the training workflows use: a Bedrock one as above (a Legacy base cannot be
  customized); a Hugging Face one by its staged record in the stage (training jobs read only
  staged copies: `atelier models stage`), and, when it is not staged, by asking the Hub whether
  the repository (at its pinned revision) still exists to be staged. A base model the
  configuration leaves null (`titan.base_model_id`: no Bedrock image model can be fine-tuned
  today) is reported as not configured, not as a failure.

Every item gets a verdict (ok, warn, fail) and, unless ok, the fix. Exit status 0 when nothing
fails, 6 (FAILED) when some item does; `--json` prints the report (inside the error's `details`
when something fails).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from atelier_cli.aws import error_code, error_message
from atelier_cli.base_models import read_record, record_name
from atelier_cli.errors import FailedError, NotDeployedError
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command

HUB_API = "https://huggingface.co/api/models/"
HUB_TIMEOUT_SECONDS = 10.0
DOCS = "docs/image-customization.md"
_MISSING_MODEL = frozenset({"ResourceNotFoundException", "ValidationException"})
VERDICTS = ("ok", "warn", "fail")


@dataclass
class Item:
    kind: str  # bedrock-model | endpoint | base-model
    name: str
    config_key: str
    state: str
    verdict: str  # ok | warn | fail
    fix: str | None = None
    details: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "configKey": self.config_key,
            "state": self.state,
            "verdict": self.verdict,
            "fix": self.fix,
            "details": dict(self.details or {}),
        }


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Check the stage's Bedrock models, endpoints and training base models; say what to fix."""
    with command(ctx, "doctor", json_output) as run:
        inventory = _inventory(run)
        now = datetime.now(UTC)
        warning_days = int(inventory.get("warningDays", 90))
        items: list[Item] = []
        for model in inventory.get("bedrockModels", []):
            items.extend(
                _bedrock_items(run, model, now=now, warning_days=warning_days, kind="bedrock-model")
            )
        for endpoint in inventory.get("endpoints", []):
            items.append(_endpoint_item(run, endpoint))
        for base in inventory.get("trainingBaseModels", []):
            if base.get("modelId") is None:
                items.append(_not_configured_item(base))
            elif base.get("source") == "bedrock":
                items.extend(
                    _bedrock_items(run, base, now=now, warning_days=warning_days, kind="base-model")
                )
            else:
                items.append(_hub_item(run, base))
        counts = {verdict: sum(1 for i in items if i.verdict == verdict) for verdict in VERDICTS}
        result = {
            "stage": run.stage.name,
            "region": run.stage.region,
            "checkedAt": now.isoformat(timespec="seconds"),
            "items": [item.as_dict() for item in items],
            "counts": counts,
        }
        failing = [item for item in items if item.verdict == "fail"]
        if not run.json_mode:
            _print(run.printer.out, items, run)
        if failing:
            first = failing[0]
            raise FailedError(
                f"{len(failing)} of {len(items)} items need action; first: {first.name} "
                f"({first.config_key}): {first.state}",
                fix=first.fix,
                code="doctor_found_problems",
                details=result,
            )
        run.done(result)


# --- the inventory --------------------------------------------------------------------------


def _inventory(run: Run) -> dict[str, Any]:
    raw = run.resources.published("bedrock", "model-inventory")
    try:
        inventory = json.loads(raw)
    except ValueError:
        inventory = None
    if not isinstance(inventory, dict):
        raise NotDeployedError(
            f"{run.stage.parameter('bedrock', 'model-inventory')} is not the inventory this "
            "atelier reads",
            fix=f"update the stack: npx cdk deploy {run.stage.stack_name('bedrock')} "
            f"-c stage={run.stage.name}",
            code="output_missing",
        )
    return inventory


# --- Bedrock models -------------------------------------------------------------------------


def _bedrock_items(
    run: Run, entry: Mapping[str, Any], *, now: datetime, warning_days: int, kind: str
) -> list[Item]:
    model_id, key = str(entry["modelId"]), str(entry["configKey"])
    bedrock = run.aws.client("bedrock")
    change = (
        f"set {key} in cdk.json to an Active model (Bedrock's model lifecycle page and model "
        f"cards list them{'; ' + DOCS if kind == 'base-model' else ''}), then make deploy"
    )
    try:
        foundation_ids = _foundation_models(bedrock, model_id)
    except ClientError as error:
        return [_unreadable(kind, model_id, key, error, "bedrock:GetInferenceProfile")]
    except BotoCoreError as error:
        return [Item(kind, model_id, key, f"not checked: {error}", "warn", "run doctor again")]
    items = []
    for foundation_id in foundation_ids:
        name = foundation_id if foundation_id == model_id else f"{model_id} → {foundation_id}"
        try:
            details = bedrock.get_foundation_model(modelIdentifier=foundation_id)["modelDetails"]
        except ClientError as error:
            if error_code(error) in _MISSING_MODEL:
                items.append(
                    Item(
                        kind,
                        name,
                        key,
                        "not found: past its end of life, or not offered in this region",
                        "fail",
                        change,
                    )
                )
            else:
                items.append(_unreadable(kind, name, key, error, "bedrock:GetFoundationModel"))
            continue
        except BotoCoreError as error:
            items.append(Item(kind, name, key, f"not checked: {error}", "warn", "run it again"))
            continue
        items.append(
            _lifecycle_item(
                kind,
                name,
                key,
                details.get("modelLifecycle", {}),
                now=now,
                warning_days=warning_days,
                change=change,
            )
        )
    return items


def _foundation_models(bedrock: Any, model_id: str) -> list[str]:
    bare = model_id.split("/", 1)[1] if model_id.startswith("arn:") else model_id
    if ":inference-profile/" not in model_id and bare.split(":", 1)[0].count(".") < 2:
        return [bare]
    profile = bedrock.get_inference_profile(inferenceProfileIdentifier=model_id)
    ids: list[str] = []
    for model in profile.get("models", []):
        found = str(model.get("modelArn", "")).split(":foundation-model/", 1)[-1]
        if found and found not in ids:
            ids.append(found)
    return ids


def _lifecycle_item(
    kind: str,
    name: str,
    key: str,
    lifecycle: Mapping[str, Any],
    *,
    now: datetime,
    warning_days: int,
    change: str,
) -> Item:
    status = str(lifecycle.get("status", "ACTIVE"))
    dates = {
        label: moment.date().isoformat()
        for label, field in (
            ("legacy", "legacyTime"),
            ("publicExtendedAccess", "publicExtendedAccessTime"),
            ("endOfLife", "endOfLifeTime"),
        )
        if isinstance(moment := lifecycle.get(field), datetime)
    }
    end = lifecycle.get("endOfLifeTime")
    days = (end - now).days if isinstance(end, datetime) else None
    details = {"status": status, **dates, "daysToEndOfLife": days}
    shown = "; ".join(f"{label} {date}" for label, date in dates.items())
    if days is not None and days <= 0:
        return Item(kind, name, key, f"end of life ({shown})", "fail", change, details)
    if status == "LEGACY":
        extended = lifecycle.get("publicExtendedAccessTime")
        phase = (
            "Legacy, public extended access (higher prices)"
            if isinstance(extended, datetime) and extended <= now
            else "Legacy"
        )
        # A Legacy base model takes no new customization job: the workflow refuses it.
        verdict = "fail" if kind == "base-model" else "warn"
        return Item(kind, name, key, f"{phase} ({shown})", verdict, change, details)
    if days is not None and days <= warning_days:
        return Item(
            kind, name, key, f"Active, ends in {days} days ({shown})", "warn", change, details
        )
    return Item(kind, name, key, "Active" + (f" ({shown})" if shown else ""), "ok", None, details)


def _unreadable(kind: str, name: str, key: str, error: ClientError, action: str) -> Item:
    code = error_code(error)
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        fix = f"grant your role {action} (read-only), or run doctor with a role that has it"
    else:
        fix = "run doctor again"
    return Item(kind, name, key, f"not checked: {code}: {error_message(error)}", "warn", fix)


# --- endpoints -----------------------------------------------------------------------------


def _endpoint_item(run: Run, entry: Mapping[str, Any]) -> Item:
    name, key = str(entry["name"]), str(entry["configKey"])
    sagemaker = run.aws.client("sagemaker")
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=name)
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
    except ClientError as error:
        if error_code(error) == "ValidationException" and "Could not find" in error_message(error):
            return Item(
                "endpoint",
                name,
                key,
                "not deployed",
                "ok",
                None,
                {"hint": f"serves once {key}.model_data_url is set and the stack is deployed"},
            )
        return _unreadable("endpoint", name, key, error, "sagemaker:DescribeEndpoint")
    except BotoCoreError as error:
        return Item("endpoint", name, key, f"not checked: {error}", "warn", "run doctor again")
    variants = [
        f"{v.get('InitialInstanceCount', '?')} x {v.get('InstanceType', 'serverless')}"
        for v in config.get("ProductionVariants", [])
    ]
    status = str(endpoint.get("EndpointStatus"))
    details = {"status": status, "instances": variants}
    shown = f"{status}, {', '.join(variants) or 'no variant'}"
    if status == "InService":
        return Item("endpoint", name, key, shown, "ok", None, details)
    if status == "Failed":
        reason = endpoint.get("FailureReason", "no reason given")
        return Item(
            "endpoint",
            name,
            key,
            f"{shown}: {reason}",
            "fail",
            f"fix what the reason names, then deploy again (or unset {key}.model_data_url and "
            "deploy to remove it)",
            details,
        )
    return Item(
        "endpoint", name, key, shown, "warn", "wait for it: atelier status shows it", details
    )


# --- base models left unset ----------------------------------------------------------------


def _not_configured_item(entry: Mapping[str, Any]) -> Item:
    """A null base model: its workflow is not built. Information, not a failure."""
    key = str(entry["configKey"])
    return Item(
        "base-model",
        "(none)",
        key,
        "not configured: no Bedrock image model can be fine-tuned today",
        "ok",
        None,
        {
            "hint": f"{entry.get('usedFor', 'its workflow')} is not deployed while {key} is null; "
            f"set it to an Active Bedrock image model that supports fine-tuning ({DOCS}), then "
            "make deploy"
        },
    )


# --- Hugging Face base models --------------------------------------------------------------


def _hub_item(run: Run, entry: Mapping[str, Any]) -> Item:
    model_id, key = str(entry["modelId"]), str(entry["configKey"])
    revision = entry.get("revision")
    url = HUB_API + model_id + (f"/revision/{revision}" if revision else "")
    name = model_id + (f"@{str(revision)[:12]}" if revision else "")
    details: dict[str, Any] = {"url": url}
    stage_command = f"atelier models stage {model_id} --revision {revision}"
    if revision:
        parameter = record_name(run.stage.parameter_root, model_id, str(revision))
        record = read_record(run.aws.client("ssm"), parameter)
        details["parameter"] = parameter
        if record:
            details.update(uri=record.get("uri"), files=record.get("files"))
            return Item("base-model", name, key, "staged in this stage", "ok", None, details)
    try:
        status = _http_status(run, url)
    except Exception as error:
        return Item(
            "base-model", name, key, f"not checked: {error}", "warn", "check the network", details
        )
    if status == 200 and revision:
        # Training refuses to start until it is staged, and only from here can it still be.
        return Item(
            "base-model",
            name,
            key,
            "on the Hub, not staged in this stage: its training workflow refuses to start",
            "warn",
            stage_command,
            details,
        )
    if status == 200:
        return Item("base-model", name, key, "on the Hub", "ok", None, details)
    if status in (401, 403, 404):
        return Item(
            "base-model",
            name,
            key,
            f"not on the Hub (HTTP {status}): the repository or revision is gone or private",
            "fail",
            f"set {key} (and its revision) in cdk.json to a copy that exists, then deploy",
            details,
        )
    return Item(
        "base-model", name, key, f"not checked: the Hub answered {status}", "warn", None, details
    )


def _http_status(run: Run, url: str) -> int:
    sender = run.hooks.http_send
    if sender is not None:
        status, _, _ = sender("GET", url, {}, None)
        return int(status)
    import urllib3

    response = urllib3.request(
        "GET", url, timeout=urllib3.Timeout(total=HUB_TIMEOUT_SECONDS), retries=False
    )
    return int(response.status)


# --- text --------------------------------------------------------------------------------------

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def _print(console: Console, items: list[Item], run: Run) -> None:
    """One line per item (its verdict, what it is, who sets it, its state), the fix below it:
    plain lines that wrap instead of a table that truncates."""
    console.print(f"[bold]Atelier {run.stage.name} in {run.stage.region}[/]")
    for item in items:
        style = _STYLE[item.verdict]
        console.print(
            f"[{style}]{item.verdict:<4}[/] {item.kind} {escape(item.name)} "
            f"({item.config_key}): {escape(item.state)}"
        )
        if item.fix:
            console.print(f"     fix: {escape(item.fix)}")
