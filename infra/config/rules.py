"""How a configuration key is declared: `name: type = rule(...)`, once.

A `Rule` holds everything about one key besides its type: its description (the generated table
in docs/configuration.md), its bounds or allowed values, and the words its error messages use.
Pydantic checks the type, strictly (a bool is never a number, a string never a number); the rule
checks the value. `errors.config_error` turns any refusal into the one-line `ConfigError`.

Value checks run only while a stage is loaded (`LOADING` validation context). Building a section
directly, as `dataclasses.replace` does in tests, checks types only, as plain dataclasses did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast, dataclass_transform

from pydantic import ConfigDict, Field, ValidationInfo
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined, core_schema

# The validation context under which values, not only types, are checked.
LOADING: Mapping[str, str] = {"atelier": "loading"}
# The error type of every refusal a rule or a section's cross-field check raises.
REFUSED = "config_refused"
# In a cross-field message, stands for the section's own dotted key and a dot (the section does
# not know where it sits). repr() escapes it, so no configured value can contain it raw.
HERE = "\x00"

_STRICT_TYPES = {"int", "float", "str", "bool", "literal"}
_SECTION = ConfigDict(extra="forbid")
T = TypeVar("T")


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(Field,))
def section(cls: type[T]) -> type[T]:
    """A config section: a frozen, keyword-only pydantic dataclass that refuses unknown keys."""
    decorated: Any = pydantic_dataclass(frozen=True, kw_only=True, config=_SECTION)(cls)
    return cast(type[T], decorated)


def is_loading(info: ValidationInfo) -> bool:
    """Whether a stage is being loaded (values checked), not a section built in code."""
    context = info.context
    return isinstance(context, Mapping) and context.get("atelier") == LOADING["atelier"]


def show(value: Any) -> str:
    """A value in a message: repr escapes newlines and quotes, so the message stays one line."""
    return repr(value)


def refuse(detail: str, suffix: str = "") -> PydanticCustomError:
    """Refuse the value of the key being validated: the message is `<key><suffix> <detail>`."""
    return PydanticCustomError(REFUSED, "{detail}", {"detail": detail, "suffix": suffix})


def refuse_section(text: str) -> PydanticCustomError:
    """A cross-field refusal of a section; HERE in `text` stands for the section's key and '.'."""
    return PydanticCustomError(REFUSED, "{text}", {"text": text})


@dataclass(frozen=True)
class Rule:
    """One key's bounds, allowed values and error words (see the module docstring)."""

    description: str
    # After `<key> is missing; `: "expected a whole number from 1 to 30", "allowed values: ...".
    expected: str
    # After `<key> = <value> <verb>; ` (defaults to `expected`).
    refusal: str = ""
    verb: str = "is not valid"
    # Whether a value of the right type is allowed (None: any).
    check: Callable[[Any], bool] | None = None
    # Reads the raw value itself (collections): returns the field's value or raises refuse().
    parse: Callable[[Any], Any] | None = None
    # For the docs: what is allowed, shorter than `expected`.
    allowed: str = ""

    @property
    def refusal_text(self) -> str:
        return self.refusal or self.expected

    def texts(self, owner: type | None) -> tuple[str, str]:
        """(expected, refusal) with the section's `config_texts` filled in: one declaration of
        a key shared by sections whose examples differ (`{archive_prefix}`)."""
        return fill(self.expected, owner), fill(self.refusal_text, owner)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: Callable[[Any], core_schema.CoreSchema]
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        _make_strict(schema)
        if self.check is not None:
            schema = core_schema.with_info_after_validator_function(self._check, schema)
        if self.parse is not None:
            schema = core_schema.with_info_before_validator_function(self._parse, schema)
        return schema

    def _check(self, value: Any, info: ValidationInfo) -> Any:
        if value is None or self.check is None or not is_loading(info):
            return value
        if not self.check(value):
            # Worded by errors.config_error from this rule, with its section's texts filled in.
            raise PydanticCustomError(REFUSED, "refused by its rule", {"by_rule": True})
        return value

    def _parse(self, value: Any, info: ValidationInfo) -> Any:
        if self.parse is None or not is_loading(info):
            return value
        return self.parse(value)


def fill(text: str, owner: type | None) -> str:
    """`text` with `{name}` replaced by the section's `config_texts[name]`."""
    for name, value in getattr(owner, "config_texts", {}).items():
        text = text.replace("{" + name + "}", value)
    return text


def _make_strict(schema: Any) -> None:
    """Strict scalars: JSON's true is not 1, "1" is not 1 (ints stay allowed where a number is)."""
    if schema.get("type") == "nullable":
        schema = schema["schema"]
    if schema.get("type") in _STRICT_TYPES:
        schema["strict"] = True


def declare(
    rule: Rule,
    *,
    default: Any = PydanticUndefined,
    default_factory: Callable[[], Any] | None = None,
    alias: str | None = None,
) -> Any:
    """The field of a key: `name: type = whole(1, 30, "what it is")`. The annotation stays the
    plain type (what `dataclasses.fields` shows); the rule rides in the field's metadata."""
    info: FieldInfo = (
        Field(default_factory=default_factory, alias=alias, description=rule.description)
        if default_factory is not None
        else Field(default, alias=alias, description=rule.description)
    )
    info.metadata.append(rule)
    return info


def whole(low: int, high: int, description: str, **field: Any) -> Any:
    return declare(
        Rule(
            description,
            expected=f"expected a whole number from {low} to {high}",
            check=lambda value: low <= value <= high,
            allowed=f"{low} to {high}",
        ),
        **field,
    )


def number(low: float, high: float, description: str, **field: Any) -> Any:
    return declare(
        Rule(
            description,
            expected=f"expected a number from {low} to {high}",
            check=lambda value: low <= value <= high,
            allowed=f"{low} to {high}",
        ),
        **field,
    )


def choice(values: Iterable[Any], description: str, **field: Any) -> Any:
    allowed = tuple(values)
    text = ", ".join(str(value) for value in allowed)
    return declare(
        Rule(
            description,
            expected=f"allowed values: {text}",
            verb="is not allowed",
            check=lambda value: value in allowed,
            allowed=text,
        ),
        **field,
    )


def flag(description: str, **field: Any) -> Any:
    return declare(
        Rule(description, expected="expected true or false", allowed="true, false"), **field
    )


def matching(
    pattern: re.Pattern[str], text: str, description: str, allowed: str = "", **field: Any
) -> Any:
    """A string matching `pattern`; `text` says what that is ("an AWS region such as ...")."""
    return declare(
        Rule(
            description,
            expected=f"expected {text}",
            check=lambda value: pattern.fullmatch(value) is not None,
            allowed=allowed or text,
        ),
        **field,
    )


def parsed(
    expected: str, parse: Callable[[Any], Any], description: str, allowed: str, **field: Any
) -> Any:
    """A value read by `parse` (lists and objects, whose items have messages of their own)."""
    return declare(Rule(description, expected=expected, parse=parse, allowed=allowed), **field)


def custom(rule: Rule, **field: Any) -> Any:
    """A key whose rule is written out (special wording or checks)."""
    return declare(rule, **field)


def key_name(name: Any) -> str:
    """A key as written in cdk.json, quoted and escaped if it could break the one-line message."""
    if isinstance(name, str) and re.fullmatch(r"[\w.:/=+@ -]{1,128}", name):
        return name
    return repr(name)


def string_list(
    pattern: re.Pattern[str], text: str, *, min_items: int = 1, max_items: int = 50
) -> tuple[str, Callable[[Any], tuple[str, ...]]]:
    """The expected text and parser of a list of distinct strings matching `pattern`."""
    expected = f"expected a list of {min_items}-{max_items} {text}"

    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not min_items <= len(value) <= max_items:
            raise refuse(f"= {show(value)} is not valid; {expected}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not pattern.fullmatch(item):
                raise refuse(f"= {show(item)} is not valid; expected {text}", f"[{index}]")
        if len(set(value)) != len(value):
            raise refuse(f"= {show(value)} lists a value twice")
        return tuple(value)

    return expected, parse
