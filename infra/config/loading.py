"""Reading a stage from the `atelier` context: pick the stage, move renamed keys, lay the stage's
keys over the defaults, validate, and word any refusal as one line.

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

import copy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from infra.config.constants import CONTEXT_KEY, STAGE_NAME_PATTERN
from infra.config.errors import ConfigError, config_error, section_fields
from infra.config.rules import LOADING, key_name, show
from infra.config.stage import StageConfig

_STAGE = TypeAdapter(StageConfig)
_ROOT_KEYS = ("default_stage", "defaults", "stages")
_REMOVAL_NOTE = "the old key will be removed in the next release"


@dataclass(frozen=True)
class RenamedKey:
    """A key that moved: the old one is still read, with a warning, for one release."""

    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def old_key(self) -> str:
        return ".".join(self.old)

    @property
    def new_key(self) -> str:
        return ".".join(self.new)


# One name per capability: the VQA endpoint's name is a `vqa.hosting` setting, and the styling
# model's training is `styling.training`.
RENAMED_KEYS = (
    RenamedKey(("descriptions", "endpoint_name"), ("vqa", "hosting", "endpoint_name")),
    RenamedKey(("dreambooth", "inpainting_training"), ("styling", "training")),
)


def _lookup(block: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = block
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _has(block: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    parent = _lookup(block, path[:-1]) if len(path) > 1 else block
    return isinstance(parent, Mapping) and path[-1] in parent


def move_renamed_keys(
    block: Mapping[str, Any], where: str, warn: Callable[[str], None]
) -> tuple[dict[str, Any], list[RenamedKey]]:
    """`block` (the defaults or one stage's keys, at `where`) with every old key moved to its new
    place, and the renames it used; both keys set at once is refused."""
    moved: dict[str, Any] = copy.deepcopy(dict(block))
    used: list[RenamedKey] = []
    for rename in RENAMED_KEYS:
        if not _has(moved, rename.old):
            continue
        old, new = f"{where}.{rename.old_key}", f"{where}.{rename.new_key}"
        if _has(moved, rename.new):
            raise ConfigError(
                f"{old} and {new} are both set; keep only {rename.new_key} ({old} is its "
                f"deprecated name; {_REMOVAL_NOTE})"
            )
        parent = _lookup(moved, rename.old[:-1]) if len(rename.old) > 1 else moved
        value = parent.pop(rename.old[-1])
        target = moved
        for part in rename.new[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):  # not an object: its own error reports it
                break
            target = child
        else:
            target[rename.new[-1]] = value
        used.append(rename)
        warn(f"warning: {old} is deprecated; use {rename.new_key} ({_REMOVAL_NOTE})")
    return moved, used


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _as_written(renames: list[RenamedKey]) -> Callable[[str], str]:
    """A dotted key as the user wrote it: under a renamed key's old name where they used it."""

    def display(key: str) -> str:
        for rename in renames:
            if key == rename.new_key or key.startswith(f"{rename.new_key}."):
                return rename.old_key + key[len(rename.new_key) :]
        return key

    return display


def parse_stage_config(
    stage: str, values: Mapping[str, Any], renames: list[RenamedKey] | None = None
) -> StageConfig:
    """Validate one stage's merged values (defaults with the stage's overrides laid over)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"the '{CONTEXT_KEY}' context must be an object, got {show(values)}")
    if "stage" in values:  # the stage's name comes from `-c stage=...`, not from its keys
        allowed = ", ".join(section_fields(StageConfig))
        raise ConfigError(f"stage is not a known key; allowed keys: {allowed}")
    try:
        config: StageConfig = _STAGE.validate_python(
            {"stage": stage, **values}, context=dict(LOADING)
        )
    except ValidationError as error:
        raise config_error(error, StageConfig, _as_written(renames or [])) from None
    return config


def load_stage_config(context: Mapping[str, Any], stage: str | None) -> StageConfig:
    """Read the stage named by `-c stage=...` (or the default stage) from the `atelier` context."""
    root = context.get(CONTEXT_KEY)
    if root is None:
        raise ConfigError(f"context key '{CONTEXT_KEY}' is missing from cdk.json")
    if not isinstance(root, Mapping):
        raise ConfigError(f"the '{CONTEXT_KEY}' context must be an object, got {show(root)}")
    unknown = sorted(set(root) - set(_ROOT_KEYS), key=str)
    if unknown:
        raise ConfigError(
            f"{key_name(unknown[0])} is not a known key; allowed keys: {', '.join(_ROOT_KEYS)}"
        )
    stages = root.get("stages")
    if not isinstance(stages, Mapping) or not stages:
        raise ConfigError("stages is missing; expected an object of stage name to settings")
    names = tuple(stages)
    for name in names:
        if not isinstance(name, str) or not STAGE_NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"stages.{key_name(name)} is not a valid stage name; expected 1-12 lowercase "
                "letters or digits, starting with a letter"
            )
    default_stage = root.get("default_stage")
    allowed = "allowed values: " + ", ".join(names)
    if default_stage is None:
        raise ConfigError(f"default_stage is missing; {allowed}")
    if isinstance(default_stage, bool) or default_stage not in names:
        raise ConfigError(f"default_stage = {show(default_stage)} is not allowed; {allowed}")
    chosen = stage if stage is not None else default_stage
    if chosen not in stages:
        raise ConfigError(f"stage = {show(chosen)} is not allowed; {allowed}")
    defaults = root.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"defaults must be an object, got {show(defaults)}")
    overrides = stages[chosen]
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"stages.{chosen} must be an object, got {show(overrides)}")
    defaults, from_defaults = move_renamed_keys(defaults, "defaults", _warn)
    overrides, from_stage = move_renamed_keys(overrides, f"stages.{chosen}", _warn)
    try:
        return parse_stage_config(
            chosen, _merge(defaults, overrides), [*from_defaults, *from_stage]
        )
    except ConfigError as error:
        # Values are the stage's overrides laid over `defaults`: name the stage, not one block.
        raise ConfigError(f"stage '{chosen}': {error}") from None
