"""Where a stage's resources are: the SSM parameters its stacks and workflows publish.

Every stack publishes its names twice (infra/constructs/publishing.py): as the SSM parameter
`/<prefix>/<stage>/<section>/<name>` and as the stack output `<Name>` (kebab-case name in
PascalCase). One `GetParametersByPath` reads them all; when SSM is out of reach (a role without
ssm:GetParametersByPath) the stack outputs are read instead. A missing value becomes an error that
names the stack to deploy, or the workflow that records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from atelier_cli.aws import ACCESS_CODES, Aws, error_code, translated_errors
from atelier_cli.errors import AccessError, NotDeployedError

DEFAULT_PREFIX = "atelier"
DEFAULT_STAGE = "dev"


@dataclass(frozen=True)
class Stage:
    """A deployment: `name_prefix` and stage of cdk.json, and the region it lives in."""

    prefix: str
    name: str
    region: str

    def stack_name(self, section: str) -> str:
        return f"{self.prefix}-{self.name}-{section}"

    @property
    def parameter_root(self) -> str:
        return f"/{self.prefix}/{self.name}"

    def parameter(self, section: str, name: str) -> str:
        return f"{self.parameter_root}/{section}/{name}"

    def deploy_fix(self, section: str) -> str:
        return (
            f"deploy it: make deploy STAGE={self.name} (or npx cdk deploy "
            f"{self.stack_name(section)} -c stage={self.name}), in region {self.region}; "
            "or pass the --stage, --prefix and --region it was deployed with"
        )


def output_key(name: str) -> str:
    """The stack output a published name is also exported as (`api-url` → `ApiUrl`)."""
    return "".join(part.capitalize() for part in name.split("-"))


class Resources:
    """The published names of one stage, read once per command."""

    def __init__(self, aws: Aws, stage: Stage) -> None:
        self._aws = aws
        self.stage = stage
        self._parameters: dict[str, str] | None = None
        self._ssm_denied: ClientError | None = None
        self._outputs: dict[str, dict[str, str] | None] = {}

    # --- published by the stacks ------------------------------------------------------------

    def published(self, section: str, name: str) -> str:
        """A name the `<section>` stack publishes (e.g. ("data", "datasets-bucket"))."""
        value = self._parameter_values().get(self.stage.parameter(section, name))
        if value is not None:
            return value
        stack = self.stage.stack_name(section)
        try:
            outputs = self._stack_outputs(section)
        except AccessError:
            if self._ssm_denied is not None:
                raise
            # SSM answered without the name; CloudFormation would only have told us why.
            raise NotDeployedError(
                f"SSM has no parameter {self.stage.parameter(section, name)}: stack {stack} is "
                f"not deployed in {self.stage.region}, or was deployed without it",
                fix=self.stage.deploy_fix(section),
                code="stack_not_deployed",
            ) from None
        if outputs is None:
            raise NotDeployedError(
                f"stack {stack} is not deployed in {self.stage.region} (it publishes "
                f"{self.stage.parameter(section, name)})",
                fix=self.stage.deploy_fix(section),
                code="stack_not_deployed",
            )
        value = outputs.get(self.stage.parameter(section, name))
        if value is None:
            raise NotDeployedError(
                f"stack {stack} has no output {output_key(name)} and SSM has no parameter "
                f"{self.stage.parameter(section, name)}: it was deployed from an older Atelier, "
                "or without that feature",
                fix=f"update it: npx cdk deploy {stack} -c stage={self.stage.name}",
                code="output_missing",
            )
        return value

    def section_values(self, section: str) -> dict[str, str]:
        """Everything the `<section>` stack publishes, by name; empty when it is not deployed."""
        root = f"{self.stage.parameter_root}/{section}/"
        values = {
            name[len(root) :]: value
            for name, value in self._parameter_values().items()
            if name.startswith(root) and "/" not in name[len(root) :]
        }
        if values or self._ssm_denied is None:
            return values
        return {
            name[len(root) :]: value
            for name, value in (self._stack_outputs(section) or {}).items()
            if name.startswith(root)
        }

    # --- recorded by workflows (not stack resources) -----------------------------------------

    def recorded(self, section: str, name: str) -> str | None:
        """A value a workflow writes at run time (`titan/provisioned-model-arn`,
        `vqa/model-data-url`...): None while no run has recorded one."""
        parameter = self.stage.parameter(section, name)
        values = self._parameter_values()
        if self._ssm_denied is not None:
            raise AccessError(
                f"cannot read SSM parameter {parameter}: "
                f"{error_code(self._ssm_denied)}: {self._ssm_denied}",
                fix="grant your role ssm:GetParametersByPath on "
                f"{self.stage.parameter_root}/*, or pass --profile with a role that has it",
            )
        return values.get(parameter)

    # --- reading ------------------------------------------------------------------------------

    def _parameter_values(self) -> dict[str, str]:
        if self._parameters is None:
            self._parameters = {}
            ssm = self._aws.client("ssm")
            try:
                with translated_errors("read the stage's SSM parameters"):
                    for page in ssm.get_paginator("get_parameters_by_path").paginate(
                        Path=self.stage.parameter_root + "/", Recursive=True
                    ):
                        for parameter in page.get("Parameters", []):
                            self._parameters[parameter["Name"]] = parameter["Value"]
            except AccessError as error:
                # Fall back to the stack outputs; `recorded` values have no such fallback.
                cause = error.__cause__
                if not isinstance(cause, ClientError) or error_code(cause) not in ACCESS_CODES:
                    raise
                self._ssm_denied = cause
        return self._parameters

    def _stack_outputs(self, section: str) -> dict[str, str] | None:
        """The stack's published outputs by parameter name, or None when it does not exist."""
        if section not in self._outputs:
            stack = self.stage.stack_name(section)
            cloudformation = self._aws.client("cloudformation")
            try:
                with translated_errors(f"describe stack {stack}"):
                    try:
                        stacks: list[dict[str, Any]] = cloudformation.describe_stacks(
                            StackName=stack
                        )["Stacks"]
                    except ClientError as error:
                        # CloudFormation answers a missing stack with a ValidationError.
                        if error_code(error) == "ValidationError" and "does not exist" in str(
                            error
                        ):
                            stacks = []
                        else:
                            raise
            except AccessError as error:
                if self._ssm_denied is None:
                    raise
                raise AccessError(
                    f"cannot read the stage's names: SSM ({error_code(self._ssm_denied)}) and "
                    f"CloudFormation ({error.message}) both refused",
                    fix="grant your role ssm:GetParametersByPath on "
                    f"{self.stage.parameter_root}/* (or cloudformation:DescribeStacks), or "
                    "pass --profile with a role that has it",
                ) from error
            live = [s for s in stacks if s.get("StackStatus") not in DEAD_STATUSES]
            self._outputs[section] = published_outputs(live[0]) if live else None
        return self._outputs[section]


def published_outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    """{SSM parameter name: value} of a stack's outputs: each published output's description
    names its parameter (`Also in SSM parameter /atelier/dev/api/api-url`)."""
    values: dict[str, str] = {}
    for output in stack.get("Outputs", []):
        description = output.get("Description", "")
        if description.startswith(OUTPUT_DESCRIPTION):
            values[description.removeprefix(OUTPUT_DESCRIPTION)] = output["OutputValue"]
    return values


# What infra/constructs/publishing.py writes before the parameter name in each output.
OUTPUT_DESCRIPTION = "Also in SSM parameter "
# A stack in these states has no usable resources: it is as good as not deployed.
DEAD_STATUSES = frozenset({"DELETE_COMPLETE", "ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"})
