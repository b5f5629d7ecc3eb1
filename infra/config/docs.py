"""docs/configuration.md's table of keys, generated from the sections' declarations.

    python -m infra.config.docs          # rewrite the block between the markers (`make docs`)
    python -m infra.config.docs --check  # exit 1 if the page is stale

Each row is one key: its dotted name, type, default (cdk.json's `defaults`, and each stage that
overrides it), what is allowed and its description, all read from the field's `Rule`.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from infra.config.constants import CONTEXT_KEY
from infra.config.errors import rule_of, section_fields, section_type
from infra.config.rules import fill
from infra.config.stage import StageConfig

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED: keys (make docs; edit infra/config/, not this table) -->"
END = "<!-- END GENERATED: keys -->"
_MISSING = object()
_LONGEST_VALUE = 48


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        options = [_type_name(arg) for arg in args if arg is not type(None)]
        return " or ".join([*options, "null"]) if type(None) in args else " or ".join(options)
    if origin is Literal:
        return "string" if all(isinstance(arg, str) for arg in args) else "integer"
    if origin is tuple:
        return "list"
    if origin is not None and issubclass(origin, Mapping):
        return "object"
    names = {int: "integer", float: "number", bool: "boolean", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _lookup(values: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(values, Mapping) or part not in values:
            return _MISSING
        values = values[part]
    return values


def _show(value: Any) -> str:
    if value is _MISSING:
        return ""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > _LONGEST_VALUE:
        count = f"{len(value)} entries" if isinstance(value, list | dict) else "long"
        text = f"{text[: _LONGEST_VALUE - 8].rstrip()}… ({count})"
    return f"`{text}`".replace("|", "\\|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(
    cls: type, path: tuple[str, ...], context: Mapping[str, Any]
) -> Iterator[tuple[str, ...]]:
    atelier = context[CONTEXT_KEY]
    for name, info in section_fields(cls).items():
        key = (*path, name)
        held = section_type(info.annotation)
        if held is not None:
            yield from _rows(held, key, context)
            continue
        rule = rule_of(info)
        assert rule is not None, f"{'.'.join(key)} has no rule"
        expected, _ = rule.texts(cls)
        default = _show(_lookup(atelier["defaults"], key))
        overrides = [
            f"{stage}: {_show(value)}"
            for stage, values in atelier["stages"].items()
            if (value := _lookup(values, key)) is not _MISSING
        ]
        yield (
            f"`{'.'.join(key)}`",
            _type_name(info.annotation),
            "; ".join([default or "(none)", *overrides]),
            _cell(fill(rule.allowed, cls) or expected),
            _cell(rule.description),
        )


def table(context: Mapping[str, Any]) -> str:
    lines = [
        "| key | type | default | allowed | description |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in _rows(StageConfig, (), context)),
    ]
    return "\n".join(lines)


def render(page: str, context: Mapping[str, Any]) -> str:
    """`page` with the block between the markers replaced by the current table."""
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    return f"{page[:start]}\n{table(context)}\n{page[end:]}"


def _context() -> Mapping[str, Any]:
    context: Mapping[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def main(argv: list[str]) -> int:
    page = PAGE.read_text()
    current = render(page, _context())
    if "--check" in argv:
        if current != page:
            print(f"{PAGE.relative_to(ROOT)} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if current != page:
        PAGE.write_text(current)
        print(f"rewrote the table of keys in {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
