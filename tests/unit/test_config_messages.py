"""How pydantic's refusals read (infra/config/errors.py): strict types, sections that are not
objects, and a typo reported before the values of its section."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import ConfigError, load_stage_config
from tests.support import cdk_json_context


def _error(overrides: dict[str, Any]) -> str:
    context = copy.deepcopy(cdk_json_context())
    context["atelier"]["stages"]["dev"].update(overrides)
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, "dev")
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix("stage 'dev': ")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # A string is never a number, a number never a string, a bool never a whole number.
        (
            {"descriptions": {"temperature": "0.1"}},
            "descriptions.temperature = '0.1' is not valid; expected a number from 0.0 to 1.0",
        ),
        (
            {"name_prefix": 5},
            "name_prefix = 5 is not valid; expected 3-20 lowercase letters, digits or hyphens, "
            "starting with a letter",
        ),
        ({"log_retention_days": True}, "log_retention_days = True is not allowed; allowed values"),
        ({"log_retention_days": 30.0}, "log_retention_days = 30.0 is not allowed; allowed values"),
        ({"data": 5}, "data must be an object, got 5"),
        ({"data": None}, "data must be an object, got None"),
        (
            {"lambdas": {"log_level": None}},
            "lambdas.log_level is missing; allowed values: DEBUG, INFO, WARN, ERROR",
        ),
        # The typo is what the user must fix first, not the value next to it.
        (
            {"data": {"zzz": 1, "temporary_object_expiration_days": 0}},
            "data.zzz is not a known key; allowed keys: temporary_prefixes,",
        ),
        ({"stage": "prod"}, "stage is not a known key; allowed keys: name_prefix,"),
        (
            {"descriptions": {"categories": {"default": ["fabric"], "bad!": []}}},
            "descriptions.categories.'bad!' is not a valid category name",
        ),
    ],
)
def test_refusals_read_as_one_line(overrides: dict[str, Any], expected: str) -> None:
    assert _error(overrides).startswith(expected)


def test_a_stage_without_values_checks_types_only() -> None:
    # dataclasses.replace builds sections directly (tests, derived configs): values are checked
    # only when a stage is loaded, as with plain dataclasses, but types still are.
    from dataclasses import replace

    config = load_stage_config(cdk_json_context(), "dev")
    bigger = replace(config.catalog, records_per_part=2000)
    assert bigger.records_per_part == 2000
    with pytest.raises(ValueError, match="records_per_part"):
        replace(config.catalog, records_per_part="many")
