"""docs/configuration.md's table of keys is generated from infra/config: a stale page fails."""

from __future__ import annotations

from dataclasses import fields

import pytest

from infra.config import StageConfig
from infra.config.docs import BEGIN, END, PAGE, render, table
from infra.config.errors import rule_of, section_fields, section_type
from tests.support import cdk_json_context


def test_the_page_shows_the_current_declarations() -> None:
    page = PAGE.read_text()
    assert render(page, cdk_json_context()) == page, "docs/configuration.md is stale: make docs"


def test_a_stale_table_is_detected() -> None:
    # Given the page with one description edited by hand
    page = PAGE.read_text()
    edited = page.replace("days access logs are kept", "days access logs stay", 1)
    assert edited != page
    # Then rendering puts the declared description back, so the check above would fail
    assert render(edited, cdk_json_context()) == page


def test_the_table_has_one_row_per_key_and_keeps_the_prose() -> None:
    rows = table(cdk_json_context()).splitlines()[2:]
    keys = [row.split(" | ")[0].strip("| `") for row in rows]
    assert len(keys) == len(set(keys))
    assert {"vqa.hosting.endpoint_name", "styling.training.clipseg_model", "tags"} <= set(keys)
    assert "descriptions.endpoint_name" not in keys
    page = PAGE.read_text()
    assert page.index(BEGIN) < page.index(END)
    assert page.startswith("# Configuration\n")
    assert "## Notes on some defaults" in page.split(END)[1]


def _leaf_sections(cls: type) -> list[type]:
    found = [cls]
    for info in section_fields(cls).values():
        held = section_type(info.annotation)
        if held is not None:
            found += _leaf_sections(held)
    return found


@pytest.mark.parametrize("section", _leaf_sections(StageConfig), ids=lambda cls: cls.__name__)
def test_every_key_declares_its_rule_and_description(section: type) -> None:
    # The error messages and the table read each key's rule: none may be left without one.
    for name, info in section_fields(section).items():
        if section_type(info.annotation) is not None:
            continue
        rule = rule_of(info)
        assert rule is not None, f"{section.__name__}.{name} has no rule"
        assert rule.description, f"{section.__name__}.{name} has no description"
    assert [item.name for item in fields(section)]
