"""Pydantic's validation errors as one line naming the key, the value and what is allowed.

The only place that words a configuration error from a `ValidationError`: by the error's type
and the field's `Rule` (infra/config/rules.py), never per field.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from infra.config.rules import HERE, REFUSED, Rule, key_name, show

# Keys a section takes that are not read from cdk.json (StageConfig.stage).
INTERNAL_FIELDS = frozenset({"stage"})
_UNKNOWN_KEY_ERRORS = {"unexpected_keyword_argument", "extra_forbidden"}
_NOT_AN_OBJECT_ERRORS = {"dataclass_type", "dataclass_exact_type", "dict_type", "model_type"}


class ConfigError(ValueError):
    """A configuration value is wrong; the one-line message names the key and what is allowed."""


def section_fields(cls: type) -> dict[str, FieldInfo]:
    """A section's fields by the key cdk.json names them with (the alias where one is set)."""
    fields: dict[str, FieldInfo] = getattr(cls, "__pydantic_fields__", {})
    return {
        (info.alias or name): info for name, info in fields.items() if name not in INTERNAL_FIELDS
    }


def section_type(annotation: Any) -> type | None:
    """The config section a field holds (unwrapping `X | None`), or None for a plain value."""
    if get_origin(annotation) in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = options[0] if len(options) == 1 else None
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    return None


def rule_of(info: FieldInfo) -> Rule | None:
    return next((item for item in info.metadata if isinstance(item, Rule)), None)


def _walk(root: type, loc: Sequence[int | str]) -> Iterator[tuple[type | None, FieldInfo | None]]:
    """(section, field) for each step of `loc`; (None, None) past a plain value."""
    current: type | None = root
    for part in loc:
        if current is None or isinstance(part, int):
            yield None, None
            continue
        info = section_fields(current).get(part)
        yield current, info
        current = section_type(info.annotation) if info is not None else None


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{key_name(part)}" if text else key_name(part)
    return text


def _order(root: type, error: ErrorDetails) -> tuple[Any, ...]:
    """Sections are checked in field order, and a section's unknown keys before its values (a
    typo is reported as such, not as the missing key it was meant to be)."""
    position: list[Any] = []
    for (owner, info), part in zip(_walk(root, error["loc"]), error["loc"], strict=True):
        if isinstance(part, int):
            position.append((0, part, ""))
        elif info is None and owner is not None:
            position.append((-1, 0, str(part)))
        else:
            names = list(section_fields(owner)) if owner is not None else []
            position.append((0, names.index(part) if part in names else len(names), ""))
    return tuple(position)


def _message(root: type, error: ErrorDetails, display: Callable[[str], str]) -> str:
    loc = error["loc"]
    key = display(_dotted(loc))
    kind = error["type"]
    steps = list(_walk(root, loc))
    owner, info = steps[-1] if steps else (None, None)
    context = error.get("ctx") or {}
    if kind == REFUSED and "by_rule" not in context:
        if "text" in context:
            return str(context["text"]).replace(HERE, f"{key}." if key else "")
        return f"{key}{context['suffix']} {context['detail']}"
    if kind in _UNKNOWN_KEY_ERRORS and owner is not None:
        return f"{key} is not a known key; allowed keys: {', '.join(section_fields(owner))}"
    held = section_type(info.annotation) if info is not None else None
    if held is not None:
        if kind == "missing":
            keys = ", ".join(section_fields(held))
            return f"{key} is missing; expected an object with keys: {keys}"
        return f"{key} must be an object, got {show(error['input'])}"
    rule = rule_of(info) if info is not None else None
    if rule is None:  # not reached for declared keys: every field has a rule
        return f"{key} = {show(error.get('input'))} is not valid; {error['msg']}"
    expected, refusal = rule.texts(owner)
    if kind == "missing" or error["input"] is None:
        return f"{key} is missing; {expected}"
    return f"{key} = {show(error['input'])} {rule.verb}; {refusal}"


def config_error(
    error: ValidationError, root: type, display: Callable[[str], str] = lambda key: key
) -> ConfigError:
    """The first refusal, in the order the sections are read, as a ConfigError; `display` maps a
    dotted key to the one the user wrote (a renamed key's old name)."""
    first = min(error.errors(), key=lambda item: _order(root, item))
    return ConfigError(_message(root, first, display))
