"""Typed, validated stage configuration.

The configuration lives in `cdk.json` under the context key `atelier`:

    "atelier": {
      "default_stage": "dev",
      "defaults": { ...keys shared by every stage... },
      "stages": { "dev": { ...overrides... }, "prod": { ...overrides... } }
    }

`-c stage=NAME` picks the stage. A stage's values are the defaults with the stage's own keys laid
over them (nested sections are merged key by key). Every key is checked: an unknown, missing or
invalid key stops synthesis with one line that names the key and what is allowed, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

CONTEXT_KEY = "atelier"
STAGE_CONTEXT_KEY = "stage"

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
REMOVAL_POLICIES = ("destroy", "retain")
LAMBDA_ARCHITECTURES = ("x86_64", "arm64")
# Lambda runtimes the public Powertools v3 layer is published for.
LAMBDA_PYTHON_RUNTIMES = ("python3.12", "python3.13", "python3.14")

_NAME_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_ACCOUNT = re.compile(r"^\d{12}$")
# Commercial partition only: the public Powertools layer is published from another account in
# China and GovCloud.
_REGION = re.compile(r"^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-\d$")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$")
_TAG_KEY = re.compile(r"^[\w.:/=+@ -]{1,128}$")


class ConfigError(ValueError):
    """A configuration value is wrong; the one-line message names the key and what is allowed."""


@dataclass(frozen=True)
class DataConfig:
    """Lifecycle knobs of the Data stack's buckets."""

    # Prefixes whose objects are scratch space (staging, multipart leftovers of tools, retries).
    temporary_prefixes: tuple[str, ...]
    temporary_object_expiration_days: int
    abort_incomplete_multipart_upload_days: int
    noncurrent_version_expiration_days: int
    access_log_expiration_days: int


@dataclass(frozen=True)
class LambdaConfig:
    """Knobs shared by every Lambda function of the app."""

    runtime: str
    architecture: Literal["x86_64", "arm64"]
    powertools_layer_version: int
    log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"]


@dataclass(frozen=True)
class StageConfig:
    """Everything that differs between deployments of Atelier."""

    stage: str
    name_prefix: str
    account: str | None
    region: str | None
    removal_policy: Literal["destroy", "retain"]
    log_retention_days: int
    data: DataConfig
    lambdas: LambdaConfig
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_production_like(self) -> bool:
        """Retained data means users' data is at stake: also protect tables from deletion."""
        return self.removal_policy == "retain"

    def resource_name(self, suffix: str) -> str:
        """A readable physical name fragment, unique per prefix and stage."""
        return f"{self.name_prefix}-{self.stage}-{suffix}"

    @property
    def ssm_prefix(self) -> str:
        """Root of the SSM parameters that publish this stage's resource names."""
        return f"/{self.name_prefix}/{self.stage}"


# --------------------------------------------------------------------------------------------
# Parsing. Each section is read through a _Reader that knows its dotted location, so every
# error names the exact key (e.g. `stages.prod.data.access_log_expiration_days`).
# --------------------------------------------------------------------------------------------

T = TypeVar("T")
_MISSING = object()


class _Reader:
    def __init__(self, values: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
        if not isinstance(values, Mapping):
            label = where or f"the '{CONTEXT_KEY}' context"
            raise ConfigError(f"{label} must be an object, got {_show(values)}")
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{_join(where, unknown[0])} is not a known key; allowed keys: {', '.join(known)}"
            )
        self._values = values
        self._where = where

    def key(self, name: str) -> str:
        return _join(self._where, name)

    def get(self, name: str, parse: Callable[[str, Any], T], *, optional: bool = False) -> T:
        value = self._values.get(name, _MISSING)
        if value is _MISSING or (value is None and not optional):
            if optional:
                return parse(self.key(name), None)
            raise ConfigError(f"{self.key(name)} is missing; {_describe(parse)}")
        return parse(self.key(name), value)

    def section(self, name: str, known: tuple[str, ...]) -> _Reader:
        value = self._values.get(name, _MISSING)
        if value is _MISSING:
            raise ConfigError(
                f"{self.key(name)} is missing; expected an object with keys: {', '.join(known)}"
            )
        return _Reader(value, self.key(name), known)


def _join(where: str, name: str) -> str:
    return f"{where}.{_name(name)}" if where else _name(name)


def _name(name: Any) -> str:
    """A key as written in cdk.json, quoted and escaped if it could break the one-line message."""
    if isinstance(name, str) and re.fullmatch(r"[\w.:/=+@ -]{1,128}", name):
        return name
    return repr(name)


def _show(value: Any) -> str:
    # repr escapes newlines and quotes, so a message stays on one line whatever the value.
    return repr(value)


def _describe(parse: Callable[..., Any]) -> str:
    return getattr(parse, "expected", "see the README's configuration table")


def _expects(text: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def mark(parse: Callable[..., T]) -> Callable[..., T]:
        parse.expected = text  # type: ignore[attr-defined]
        return parse

    return mark


def _one_of(allowed: tuple[Any, ...]) -> Callable[[str, Any], Any]:
    text = "allowed values: " + ", ".join(str(a) for a in allowed)

    @_expects(text)
    def parse(key: str, value: Any) -> Any:
        # bool is an int in Python: never let `true` pass as 1.
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{key} = {_show(value)} is not allowed; {text}")
        return value

    return parse


def _matching(pattern: re.Pattern[str], text: str, *, optional: bool = False) -> Callable[..., Any]:
    @_expects(f"expected {text}")
    def parse(key: str, value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ConfigError(f"{key} = {_show(value)} is not valid; expected {text}")
        return value

    return parse


def _int_between(low: int, high: int) -> Callable[[str, Any], int]:
    text = f"expected a whole number from {low} to {high}"

    @_expects(text)
    def parse(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key} = {_show(value)} is not valid; {text}")
        return value

    return parse


@_expects("expected a list of S3 prefixes ending in '/', e.g. [\"tmp/\"]")
def _s3_prefixes(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_s3_prefixes.expected}")  # type: ignore[attr-defined]
    for index, prefix in enumerate(value):
        if not isinstance(prefix, str) or not _S3_PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"{key}[{index}] = {_show(prefix)} is not valid; expected an S3 prefix such as "
                "'tmp/' (no leading '/', ends with '/')"
            )
    return tuple(value)


@_expects("expected an object of tag names to string values")
def _tags(key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_tags.expected}")  # type: ignore[attr-defined]
    for name, tag_value in value.items():
        if not _TAG_KEY.fullmatch(name) or name.lower().startswith("aws:"):
            raise ConfigError(
                f"{key}.{_name(name)} is not a valid tag name; expected 1-128 characters, "
                "not starting with 'aws:'"
            )
        if not isinstance(tag_value, str) or len(tag_value) > 256:
            raise ConfigError(
                f"{key}.{_name(name)} = {_show(tag_value)} is not valid; expected a string "
                "of at most 256 characters"
            )
    return dict(value)


_DATA_KEYS = (
    "temporary_prefixes",
    "temporary_object_expiration_days",
    "abort_incomplete_multipart_upload_days",
    "noncurrent_version_expiration_days",
    "access_log_expiration_days",
)
_LAMBDA_KEYS = ("runtime", "architecture", "powertools_layer_version", "log_level")
_STAGE_KEYS = (
    "name_prefix",
    "account",
    "region",
    "removal_policy",
    "log_retention_days",
    "data",
    "lambdas",
    "tags",
)


def _parse_data(reader: _Reader) -> DataConfig:
    days = _int_between(1, 3650)
    return DataConfig(
        temporary_prefixes=reader.get("temporary_prefixes", _s3_prefixes),
        temporary_object_expiration_days=reader.get("temporary_object_expiration_days", days),
        abort_incomplete_multipart_upload_days=reader.get(
            "abort_incomplete_multipart_upload_days", _int_between(1, 30)
        ),
        noncurrent_version_expiration_days=reader.get("noncurrent_version_expiration_days", days),
        access_log_expiration_days=reader.get("access_log_expiration_days", days),
    )


def _parse_lambdas(reader: _Reader) -> LambdaConfig:
    return LambdaConfig(
        runtime=reader.get("runtime", _one_of(LAMBDA_PYTHON_RUNTIMES)),
        architecture=reader.get("architecture", _one_of(LAMBDA_ARCHITECTURES)),
        powertools_layer_version=reader.get("powertools_layer_version", _int_between(1, 10_000)),
        log_level=reader.get("log_level", _one_of(("DEBUG", "INFO", "WARN", "ERROR"))),
    )


def _merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_stage_config(stage: str, values: Mapping[str, Any]) -> StageConfig:
    """Validate one stage's merged values (defaults with the stage's overrides laid over)."""
    reader = _Reader(values, "", _STAGE_KEYS)
    config = StageConfig(
        stage=stage,
        name_prefix=reader.get(
            "name_prefix",
            _matching(
                _NAME_PREFIX, "3-20 lowercase letters, digits or hyphens, starting with a letter"
            ),
        ),
        account=reader.get(
            "account",
            _matching(_ACCOUNT, "a 12-digit AWS account id or null", optional=True),
            optional=True,
        ),
        region=reader.get(
            "region",
            _matching(_REGION, "an AWS region such as 'eu-west-1' or null", optional=True),
            optional=True,
        ),
        removal_policy=reader.get("removal_policy", _one_of(REMOVAL_POLICIES)),
        log_retention_days=reader.get("log_retention_days", _one_of(LOG_RETENTION_DAYS)),
        data=_parse_data(reader.section("data", _DATA_KEYS)),
        lambdas=_parse_lambdas(reader.section("lambdas", _LAMBDA_KEYS)),
        tags=reader.get("tags", _tags, optional=True),
    )
    if (config.account is None) != (config.region is None):
        raise ConfigError(
            "account and region must be set together (both null means an environment-agnostic "
            "synthesis)"
        )
    return config


def load_stage_config(context: Mapping[str, Any], stage: str | None) -> StageConfig:
    """Read the stage named by `-c stage=...` (or the default stage) from the `atelier` context."""
    root = context.get(CONTEXT_KEY)
    if root is None:
        raise ConfigError(f"context key '{CONTEXT_KEY}' is missing from cdk.json")
    reader = _Reader(root, "", ("default_stage", "defaults", "stages"))
    stages = root.get("stages")
    if not isinstance(stages, Mapping) or not stages:
        raise ConfigError("stages is missing; expected an object of stage name to settings")
    names = tuple(stages)
    for name in names:
        if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
            raise ConfigError(
                f"stages.{_name(name)} is not a valid stage name; expected 1-12 lowercase "
                "letters or digits, starting with a letter"
            )

    default_stage = reader.get("default_stage", _one_of(names))
    chosen = stage if stage is not None else default_stage
    if chosen not in stages:
        raise ConfigError(
            f"stage = {_show(chosen)} is not allowed; allowed values: {', '.join(names)}"
        )
    defaults = root.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"defaults must be an object, got {_show(defaults)}")
    overrides = stages[chosen]
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"stages.{chosen} must be an object, got {_show(overrides)}")
    try:
        return parse_stage_config(chosen, _merge(defaults, overrides))
    except ConfigError as error:
        # Values are the stage's overrides laid over `defaults`: name the stage, not one block.
        raise ConfigError(f"stage '{chosen}': {error}") from None
