"""Print what a synthesized cloud assembly would deploy: `python -m infra.summary cdk.out`.

Read from the assembly on disk (not from the CDK app) so it describes exactly what `cdk deploy`
would send: stacks, resource counts, and the compute that bills by the hour (SageMaker endpoint
instances), which is what a user most wants to know before deploying.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.checkov_gate import load_report

STACK_ARTIFACT = "aws:cloudformation:stack"
ACKNOWLEDGED_RULES = "aws:cdk:acknowledged-rules"
# Instance families with an accelerator (GPU or Inferentia/Trainium).
ACCELERATED_FAMILIES = ("ml.g", "ml.p", "ml.inf", "ml.trn")


@dataclass(frozen=True)
class EndpointVariant:
    stack: str
    endpoint_config: str
    variant: str
    instance_type: str
    initial_instance_count: int

    @property
    def accelerated(self) -> bool:
        return self.instance_type.startswith(ACCELERATED_FAMILIES)


@dataclass(frozen=True)
class StackSummary:
    name: str
    template_file: str
    resource_counts: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.resource_counts.values())


Artifacts = list[tuple[str, dict[str, Any]]]


def stack_artifacts(assembly_dir: Path) -> Artifacts:
    """(artifact id, artifact) of each stack in the assembly's manifest, sorted by id."""
    manifest_path = assembly_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no cloud assembly at {assembly_dir} (run `make synth` first)")
    artifacts = json.loads(manifest_path.read_text()).get("artifacts", {})
    return sorted(
        (artifact_id, artifact)
        for artifact_id, artifact in artifacts.items()
        if artifact.get("type") == STACK_ARTIFACT
    )


def load_acknowledgments(
    assembly_dir: Path, artifacts: Artifacts | None = None
) -> list[tuple[str, str, str]]:
    """(construct path, rule, reason) of every cdk-nag acknowledgment recorded in the assembly."""
    found: list[tuple[str, str, str]] = []
    for _, artifact in artifacts if artifacts is not None else stack_artifacts(assembly_dir):
        metadata_file = artifact.get("additionalMetadataFile")
        if not metadata_file:
            continue
        metadata = json.loads((assembly_dir / metadata_file).read_text())
        for path, entries in sorted(metadata.items()):
            for entry in entries:
                if entry.get("type") == ACKNOWLEDGED_RULES:
                    found.extend((path, rule, reason) for rule, reason in entry["data"].items())
    return found


def load_stacks(
    assembly_dir: Path, artifacts: Artifacts
) -> list[tuple[StackSummary, dict[str, Any]]]:
    stacks = []
    for artifact_id, artifact in artifacts:
        template_file = artifact["properties"]["templateFile"]
        template = json.loads((assembly_dir / template_file).read_text())
        counts = Counter(resource["Type"] for resource in template.get("Resources", {}).values())
        stacks.append((StackSummary(artifact_id, template_file, counts), template))
    return stacks


def endpoint_variants(stack: str, template: dict[str, Any]) -> list[EndpointVariant]:
    variants = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::SageMaker::EndpointConfig":
            continue
        for variant in resource.get("Properties", {}).get("ProductionVariants", []):
            instance_type = variant.get("InstanceType")
            if not isinstance(instance_type, str):
                # Serverless variants have no instance type and bill per request.
                instance_type = "serverless"
            variants.append(
                EndpointVariant(
                    stack=stack,
                    endpoint_config=logical_id,
                    variant=str(variant.get("VariantName", "?")),
                    instance_type=instance_type,
                    initial_instance_count=int(variant.get("InitialInstanceCount", 0) or 0),
                )
            )
    return variants


@dataclass(frozen=True)
class CheckovSkip:
    resource: str  # <stack>/<logical id>
    check_id: str
    reason: str


def checkov_skips(stack: str, template: dict[str, Any]) -> list[CheckovSkip]:
    """The checkov skips written on the template's resources (infra/checkov_skips.py)."""
    skips = []
    for logical_id, resource in sorted(template.get("Resources", {}).items()):
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            reason = str(skip.get("comment", "")).strip()
            skips.append(CheckovSkip(f"{stack}/{logical_id}", str(skip.get("id")), reason))
    return skips


def render_checkov(assembly_dir: Path, skips: list[CheckovSkip]) -> list[str]:
    """The gate's figure, then each skip reason once with the resources it is written on."""
    report = load_report(assembly_dir)
    lines = [
        report.figure()
        if report is not None
        else "checkov: not run on this assembly (`make synth` runs it)"
    ]
    grouped: dict[tuple[str, str], list[str]] = {}
    for skip in skips:
        grouped.setdefault((skip.check_id, skip.reason), []).append(skip.resource)
    lines.append(
        f"checkov skips, each with its reason: {len(skips)} on "
        f"{len({skip.resource for skip in skips})} resource(s)"
    )
    for (check_id, reason), resources in sorted(grouped.items()):
        lines.append(f"  {check_id} on {len(resources)} resource(s): {reason}")
        lines.extend(
            textwrap.wrap(
                ", ".join(resources),
                width=100,
                initial_indent=" " * 6,
                subsequent_indent=" " * 6,
                break_on_hyphens=False,
            )
        )
    return lines


def attribute_sources(stack: str, template: dict[str, Any]) -> dict[str, list[str]]:
    """Where the stage's description functions read attributes ("vision-llm: <model> (<mode>)"
    or "endpoint: <endpoint name>"), each with the functions that do: from their environment."""
    found: dict[str, list[str]] = {}
    for logical_id, resource in sorted(template.get("Resources", {}).items()):
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        source = variables.get("ATTRIBUTE_SOURCE")
        if source is None:
            continue
        if source == "vision-llm":
            what = (
                f"vision-llm: {variables.get('ATTRIBUTE_MODEL_ID')} "
                f"({variables.get('ATTRIBUTE_STRUCTURED_OUTPUT')})"
            )
        else:
            settings = json.loads(variables.get("DESCRIPTIONS_SETTINGS", "{}"))
            what = f"endpoint: {settings.get('endpointName', '?')}"
        found.setdefault(what, []).append(f"{stack}/{logical_id}")
    return found


def render(assembly_dir: Path) -> str:
    artifacts = stack_artifacts(assembly_dir)
    stacks = load_stacks(assembly_dir, artifacts)
    lines = [f"Synthesized {len(stacks)} stack(s) into {assembly_dir}/"]
    variants: list[EndpointVariant] = []
    skips: list[CheckovSkip] = []
    sources: dict[str, list[str]] = {}
    for summary, template in stacks:
        lines.append(f"  {summary.name}: {summary.total} resources ({summary.template_file})")
        for resource_type, count in sorted(summary.resource_counts.items()):
            lines.append(f"      {count:>3}  {resource_type}")
        variants.extend(endpoint_variants(summary.name, template))
        skips.extend(checkov_skips(summary.name, template))
        for what, functions in attribute_sources(summary.name, template).items():
            sources.setdefault(what, []).extend(functions)

    if variants:
        lines.append(
            "SageMaker endpoints that would run (billed per instance-hour while deployed):"
        )
        for variant in variants:
            marker = "GPU/accelerator" if variant.accelerated else "CPU"
            lines.append(
                f"  {variant.stack}/{variant.endpoint_config} [{variant.variant}]: "
                f"{variant.initial_instance_count} x {variant.instance_type} ({marker})"
            )
    else:
        lines.append("SageMaker endpoints that would run: none in this assembly")

    # descriptions.attributes.source: what a new stage describes photos with.
    for what, functions in sorted(sources.items()):
        lines.append(f"Attribute source: {what}, in {len(functions)} function(s)")
    acknowledged = load_acknowledgments(assembly_dir, artifacts)
    lines.append(f"cdk-nag acknowledgments, each with its reason: {len(acknowledged)}")
    for path, rule, reason in acknowledged:
        lines.append(f"  {rule.removeprefix('AwsSolutions::')} on {path}: {reason}")
    lines.extend(render_checkov(assembly_dir, skips))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("assembly_dir", nargs="?", default="cdk.out", type=Path)
    args = parser.parse_args(argv)
    try:
        print(render(args.assembly_dir))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
