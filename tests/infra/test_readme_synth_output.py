"""The README's "What `make synth` shows" block is what `make synth` prints for dev today.

The block is pasted from a real run (`make synth`), shortened with `...` lines. Every line it
shows from the summary (`python -m infra.summary`) must be a line the summary prints for the
session's dev synthesis, every stack must be listed with its resource count, and the tool figures
above it must count this app's templates and state machines. Only the checkov figure, which needs
checkov's report, is left to the real run (tests/infra/test_checkov.py checks checkov itself).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.summary import render
from tests.support import SynthesizedApp

pytestmark = pytest.mark.infra

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## What `make synth` shows"
STACK_LINE = re.compile(r"^  (\S+): (\d+) resources \(")


def synth_block(readme: str) -> list[str]:
    """The first fenced block after the section heading."""
    after = readme.split(SECTION, 1)[1]
    block = after.split("```", 2)[1]
    return block.split("\n")[1:-1]


def shown_summary_problems(block: list[str], rendered: str) -> list[str]:
    """Lines of the block's summary part that the real summary does not print."""
    real = rendered.split("\n")
    start = next(i for i, line in enumerate(block) if line.startswith("Synthesized "))
    problems = []
    for line in block[start:]:
        if line.strip() in ("", "...") or line.startswith("checkov:"):
            continue
        if line.startswith("Synthesized "):
            line = re.sub(r" into \S+$", "", line)
            matched = any(r.startswith(line + " into ") for r in real)
        elif line.endswith(" ..."):
            matched = any(r.startswith(line.removesuffix(" ...")) for r in real)
        else:
            matched = line in real
        if not matched:
            problems.append(line)
    shown_stacks = {m.group(1) for line in block if (m := STACK_LINE.match(line))}
    real_stacks = {m.group(1) for line in real if (m := STACK_LINE.match(line))}
    if shown_stacks != real_stacks:
        problems.append(f"stacks shown {sorted(shown_stacks)}, synthesized {sorted(real_stacks)}")
    return problems


def as_the_cli_prints(app: SynthesizedApp) -> str:
    """The summary of `app` as after `cdk synth`: the CLI adds one AWS::CDK::Metadata resource
    (version reporting) to every stack, which an in-process synthesis leaves out."""
    lines = []
    for line in render(app.assembly_dir).split("\n"):
        match = STACK_LINE.match(line)
        resources = app.templates[match.group(1)]["Resources"] if match else {}
        if match and all(r["Type"] != "AWS::CDK::Metadata" for r in resources.values()):
            counted = f": {len(resources) + 1} resources"
            line = line.replace(f": {match.group(2)} resources", counted)
        lines.append(line)
    return "\n".join(lines)


def test_the_summary_lines_are_what_synth_prints_for_dev(dev_app: SynthesizedApp) -> None:
    block = synth_block(README.read_text(encoding="utf-8"))
    assert shown_summary_problems(block, as_the_cli_prints(dev_app)) == []


def test_the_tool_figures_count_this_apps_templates(dev_app: SynthesizedApp) -> None:
    text = "\n".join(synth_block(README.read_text(encoding="utf-8")))
    templates = len(dev_app.templates)
    state_machines = sum(
        resource["Type"] == "AWS::StepFunctions::StateMachine"
        for template in dev_app.templates.values()
        for resource in template["Resources"].values()
    )
    assert f"cfn-lint: 0 errors in {templates} template(s)" in text
    assert f"asl-validator: 0 errors in {state_machines} state machines" in text


def test_a_stale_block_is_caught(dev_app: SynthesizedApp) -> None:
    # Given the block as it stood with five stacks and other resource counts
    stale = [
        "Synthesized 5 stack(s) into cdk.out/",
        "  atelier-dev-api: 57 resources (atelier-dev-api.template.json)",
        "        3  AWS::Lambda::Function",
        "  atelier-dev-hosting: 2 resources (atelier-dev-hosting.template.json)",
    ]
    # Then every line that does not match the real summary is reported, and the missing stacks
    problems = shown_summary_problems(stale, as_the_cli_prints(dev_app))
    assert "Synthesized 5 stack(s)" in problems
    assert any(p.startswith("stacks shown") for p in problems)
    assert "  atelier-dev-api: 57 resources (atelier-dev-api.template.json)" in problems


def test_the_endpoint_example_is_what_synth_prints_with_an_endpoint(
    variant_app: SynthesizedApp,
) -> None:
    # The second block: the summary of a stage with the endpoints hosted (the test variant).
    readme = README.read_text(encoding="utf-8")
    after = readme.split(SECTION, 1)[1].split("```", 3)[3]
    shown = [line for line in after.split("```", 1)[0].split("\n")[1:] if line.strip()]
    real = as_the_cli_prints(variant_app).split("\n")
    assert shown
    assert [line for line in shown if line not in real] == []
