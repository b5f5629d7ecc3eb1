"""Whether the stage customizes an image model at all (`titan.base_model_id` in cdk.json).

With `titan.base_model_id: null` (the shipped default: no Bedrock image model can be fine-tuned
today) the Bedrock stack builds no customize workflow and publishes no name for it; its model
inventory (`/<prefix>/<stage>/bedrock/model-inventory`) lists the base model with `modelId` null.
The commands that need the workflow tell that apart from a stack that is not deployed, and say
which setting to change instead of "deploy the stack".
"""

from __future__ import annotations

import json

from atelier_cli.errors import NotDeployedError
from atelier_cli.runtime import Run

CONFIG_KEY = "titan.base_model_id"
DOCS = "docs/image-customization.md"
CUSTOMIZE_NAME = "titan-customize-state-machine-arn"


class NotConfiguredError(NotDeployedError):
    """The stage's configuration leaves image customization off (exit 3, like anything absent)."""

    default_code = "not_configured"


def base_model_left_null(run: Run) -> bool:
    """True when the deployed inventory says `titan.base_model_id` is null; False when it names a
    model, or when there is no inventory to tell (an older or undeployed stack)."""
    raw = run.resources.section_values("bedrock").get("model-inventory")
    try:
        inventory = json.loads(raw) if raw is not None else None
    except ValueError:
        return False
    if not isinstance(inventory, dict):
        return False
    return any(
        isinstance(entry, dict)
        and entry.get("configKey") == CONFIG_KEY
        and entry.get("modelId") is None
        for entry in inventory.get("trainingBaseModels", [])
    )


def not_configured(run: Run, doing: str) -> NotConfiguredError:
    return NotConfiguredError(
        f"cannot {doing}: stage {run.stage.name} customizes no image model ({CONFIG_KEY} is null "
        "in cdk.json, so its customize workflow is not deployed); no Bedrock image model can be "
        "fine-tuned today",
        fix=f"once Bedrock offers an Active image model that supports fine-tuning ({DOCS} lists "
        f"the candidates; atelier doctor shows their state), set {CONFIG_KEY} to it and run "
        f"make deploy STAGE={run.stage.name}",
    )


def customize_state_machine(run: Run) -> str:
    """The customize workflow's ARN, or a clear error when the stage leaves it off."""
    arn = run.resources.section_values("bedrock").get(CUSTOMIZE_NAME)
    if arn is not None:
        return arn
    if base_model_left_null(run):
        raise not_configured(run, "start a customization")
    # Not deployed, or deployed from an older Atelier: the usual error says which.
    return run.resources.published("bedrock", CUSTOMIZE_NAME)
