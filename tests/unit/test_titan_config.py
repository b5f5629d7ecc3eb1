"""The `titan` config section: shipped defaults, and one clear line for each bad value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import ConfigError, load_stage_config
from tests.support import cdk_json_context


@pytest.fixture
def context() -> dict[str, Any]:
    return copy.deepcopy(cdk_json_context())


def _titan(context: dict[str, Any]) -> dict[str, Any]:
    titan: dict[str, Any] = context["atelier"]["defaults"]["titan"]
    return titan


def _error(context: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, "dev")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_shipped_defaults_follow_spec(context: dict[str, Any]) -> None:
    titan = load_stage_config(context, "dev").titan
    # No Bedrock image model can be fine-tuned today (docs/image-customization.md).
    assert titan.base_model_id is None
    assert not titan.customizable
    # Recommended: batch 8, learning rate 1e-5, steps by dataset size (null: from the manifest).
    assert titan.hyperparameters.batch_size == 8
    assert titan.hyperparameters.learning_rate == pytest.approx(1e-5)
    assert titan.hyperparameters.step_count is None
    # 1 model unit, no commitment, for testing; the cost guard releases it after 4 h.
    assert (titan.model_units, titan.commitment, titan.throughput_ttl_hours) == (1, "none", 4)
    # Nothing the cost guard cannot undo: no commitment term, one model unit.
    assert (titan.allowed_commitments, titan.max_model_units) == (("none",), 1)
    assert titan.notification_email is None
    assert load_stage_config(context, "prod").titan == titan


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("base_model_id", "amazon.titan-image-generator-v9:0", "takes fine-tuning"),
        ("base_model_id", "stability.sd3-5-large-v1:0", "amazon.nova-canvas-v1:0"),
        ("model_units", 0, "from 1 to 100"),
        ("commitment", "OneYear", "allowed values: none, OneMonth, SixMonths"),
        ("throughput_ttl_hours", 0, "from 1 to 8760"),
        ("job_poll_seconds", 10, "from 60 to 3600"),
        ("sweep_interval_minutes", 1, "from 5 to 60"),
        ("notification_email", "not-an-address", "an email address or null"),
        ("max_job_runtime_hours", True, "whole number"),
        ("max_model_units", 0, "from 1 to 100"),
        ("max_model_units", 101, "from 1 to 100"),
        ("allowed_commitments", [], "non-empty list of commitments"),
        ("allowed_commitments", "none", "non-empty list of commitments"),
        ("allowed_commitments", ["none", "OneYear"], "among none, OneMonth, SixMonths"),
        ("allowed_commitments", ["none", "none"], "lists a commitment twice"),
    ],
)
def test_bad_values_name_the_key(
    context: dict[str, Any], key: str, value: Any, message: str
) -> None:
    _titan(context)[key] = value
    error = _error(context)
    assert f"titan.{key}" in error
    assert message in error


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("stepCount", 5, "null (chosen from the number of images) or"),
        ("stepCount", 40_001, "or a whole number from 10 to 40000"),
        ("batchSize", 4, "from 8 to 192"),
        ("learningRate", 2, "from 1e-07 to 1.0"),
    ],
)
def test_hyperparameters_follow_bedrocks_ranges(
    context: dict[str, Any], name: str, value: Any, message: str
) -> None:
    _titan(context)["base_model_id"] = "amazon.titan-image-generator-v2:0"
    _titan(context)["hyperparameters"][name] = value
    error = _error(context)
    assert f"titan.hyperparameters.{name}" in error
    assert message in error


def test_a_fixed_step_count_is_kept(context: dict[str, Any]) -> None:
    _titan(context)["hyperparameters"]["stepCount"] = 5000
    assert load_stage_config(context, "dev").titan.hyperparameters.step_count == 5000


def test_an_unknown_hyperparameter_is_refused(context: dict[str, Any]) -> None:
    _titan(context)["hyperparameters"]["epochCount"] = 3
    assert "titan.hyperparameters.epochCount is not a known key" in _error(context)


def test_the_ttl_must_fit_under_its_ceiling(context: dict[str, Any]) -> None:
    _titan(context)["throughput_ttl_hours"] = 200
    assert "throughput_ttl_hours = 200 is larger than" in _error(context)


def test_polls_must_fit_in_an_execution_history(context: dict[str, Any]) -> None:
    _titan(context)["max_job_runtime_hours"] = 720
    _titan(context)["job_poll_seconds"] = 60
    error = _error(context)
    assert "polls" in error
    assert "25,000 events" in error


def test_a_notification_address_is_accepted(context: dict[str, Any]) -> None:
    _titan(context)["notification_email"] = "ops@example.com"
    assert load_stage_config(context, "dev").titan.notification_email == "ops@example.com"


def test_more_units_and_terms_can_be_allowed(context: dict[str, Any]) -> None:
    _titan(context).update(
        allowed_commitments=["none", "OneMonth", "SixMonths"],
        max_model_units=4,
        model_units=2,
        commitment="OneMonth",
    )
    titan = load_stage_config(context, "dev").titan
    assert titan.allowed_commitments == ("none", "OneMonth", "SixMonths")
    assert (titan.max_model_units, titan.model_units, titan.commitment) == (4, 2, "OneMonth")


def test_the_default_units_must_fit_under_the_limit(context: dict[str, Any]) -> None:
    _titan(context)["model_units"] = 2
    assert "titan.model_units = 2 is larger than titan.max_model_units = 1" in _error(context)


def test_the_default_commitment_must_be_allowed(context: dict[str, Any]) -> None:
    _titan(context)["commitment"] = "SixMonths"
    error = _error(context)
    assert "titan.commitment = 'SixMonths' is not in titan.allowed_commitments" in error


# --- the base model's own limits (infra/image_models.py) -------------------------------------


@pytest.mark.parametrize(
    "model_id",
    [
        "amazon.titan-image-generator-v1:0",
        "amazon.titan-image-generator-v1",
        "amazon.titan-image-generator-v2:0",
        "amazon.nova-canvas-v1:0",
    ],
)
def test_every_image_model_of_the_table_is_a_base(context: dict[str, Any], model_id: str) -> None:
    _titan(context)["base_model_id"] = model_id
    titan = load_stage_config(context, "dev").titan
    assert model_id in titan.limits.model_ids


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        # Nova Canvas takes at most 20,000 steps and a learning rate of at most 1e-4 ...
        ("stepCount", 30_000, "from 10 to 20000"),
        ("learningRate", 0.001, "from 1e-07 to 0.0001"),
    ],
)
def test_hyperparameters_follow_the_chosen_models_ranges(
    context: dict[str, Any], name: str, value: Any, message: str
) -> None:
    # ... which Titan G1 allows: the same values pass with the Titan base model.
    _titan(context)["hyperparameters"][name] = value
    _titan(context)["base_model_id"] = "amazon.titan-image-generator-v2:0"
    load_stage_config(context, "dev")
    _titan(context)["base_model_id"] = "amazon.nova-canvas-v1:0"
    error = _error(context)
    assert f"titan.hyperparameters.{name}" in error
    assert message in error
    assert "Amazon Nova Canvas" in error


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        # Without a base model the defaults must suit every entry of the table: Nova Canvas's
        # ceilings, Titan's floors.
        ("stepCount", 30_000, "from 10 to 20000"),
        ("learningRate", 0.001, "from 1e-07 to 0.0001"),
        ("batchSize", 4, "from 8 to 192"),
    ],
)
def test_without_a_base_model_the_defaults_suit_every_image_model(
    context: dict[str, Any], name: str, value: Any, message: str
) -> None:
    assert _titan(context)["base_model_id"] is None
    _titan(context)["hyperparameters"][name] = value
    error = _error(context)
    assert f"titan.hyperparameters.{name}" in error
    assert message in error
    assert "every fine-tunable image model" in error


def test_a_null_or_missing_base_model_means_not_configured(context: dict[str, Any]) -> None:
    titan = load_stage_config(context, "dev").titan
    assert (titan.base_model_id, titan.customizable) == (None, False)
    assert titan.limits.step_count == (10, 20_000)
    assert titan.limits.learning_rate == (1e-7, 1e-4)
    del _titan(context)["base_model_id"]
    assert load_stage_config(context, "dev").titan.base_model_id is None
    # A stage may switch customization on (and back off) on its own.
    context["atelier"]["stages"]["prod"] = {"titan": {"base_model_id": "amazon.nova-canvas-v1:0"}}
    prod = load_stage_config(context, "prod").titan
    assert (prod.base_model_id, prod.customizable) == ("amazon.nova-canvas-v1:0", True)
    assert prod.limits.name == "Amazon Nova Canvas"


def test_the_warning_days_of_the_lifecycle_check(context: dict[str, Any]) -> None:
    assert load_stage_config(context, "dev").lifecycle.warning_days == 90
    context["atelier"]["defaults"]["lifecycle"]["warning_days"] = 0
    assert "lifecycle.warning_days = 0 is not valid" in _error(context)
