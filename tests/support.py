"""Helpers shared by the tests: the real cdk.json context and a synthesized app."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cdk_json_context() -> dict[str, Any]:
    """The context block of the real cdk.json, exactly as `cdk synth` would pass it."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass(frozen=True)
class SynthesizedApp:
    stage: str
    assembly_dir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, suffix: str) -> dict[str, Any]:
        matches = [name for name in self.templates if name.endswith(suffix)]
        assert len(matches) == 1, f"expected one stack ending in {suffix!r}, got {matches}"
        return self.templates[matches[0]]


def synthesize(stage: str, outdir: Path) -> SynthesizedApp:
    from aws_cdk import App

    from app import build_app

    app = App(context={**cdk_json_context(), "stage": stage}, outdir=str(outdir))
    assembly = build_app(app).synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return SynthesizedApp(stage=stage, assembly_dir=outdir, templates=templates)
