"""The `<prefix>-<stage>-titan-release` workflow: delete a provisioned throughput of this
deployment (by default the recorded one), clear the SSM parameter if it still names that
throughput, and notify the topic.

    {"provisionedModelArn"?: "arn:aws:bedrock:...:provisioned-model/...", "reason"?: "..."}

`build_release_workflow` builds its states, role, policies and state machine directly in the
Bedrock stack (as `TrainingWorkflow` does in its stack), not in a construct subtree of its own:
the construct ids, and so the CloudFormation logical ids, stay what the stack deployed with. A
state machine with a fixed name cannot move to a new logical id (CloudFormation would create the
new one before deleting the old, and the name is taken).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from infra.workflows.states import (
    catch_all,
    caught_failure,
    either,
    input_checks,
    jsonata,
    literal,
    read_parameter,
)
from infra.workflows.titan_common import (
    DEPLOYMENT_TAG,
    TitanWorkflow,
    _or_empty,
    release_input_checks,
    titan_notify,
    titan_state_machine,
)

if TYPE_CHECKING:
    from infra.stacks.bedrock import BedrockStack

# The release workflow waits out Bedrock's ConflictException (a throughput still being created or
# updated) for up to about 50 minutes.
RELEASE_TIMEOUT = Duration.hours(2)


class TitanReleaseWorkflow(TitanWorkflow):
    """The workflow's states, role and state machine, built in the Bedrock stack's scope (ids
    unchanged, see the module docstring); one method per step, each given the state it goes on
    to: validate → prepare → find the throughput → check its owner → delete → clear the record
    → notify."""

    kind = "Release"

    def __init__(self, stack: BedrockStack) -> None:
        super().__init__(stack)
        self.release_failed = caught_failure(
            self.fail,
            "ReleaseFailed",
            "'could not release ' & $arn & ': '",
            note=" (a throughput with a commitment term can only be deleted after its term ends)",
        )
        record = self._clear_record_and_notify()
        already_released = sfn.Pass.jsonata(
            stack,
            "ReleaseAlreadyGone",
            state_name="Already released",
            assign={"outcome": "already released"},
        )
        already_released.next(record)
        delete = self._delete(then=record, already_released=already_released)
        check_owner = self._check_owner(then=delete, already_released=already_released)
        definition = input_checks(
            stack, "ReleaseValidateInput", release_input_checks(self.fail)
        ).otherwise(self._prepare().next(self._find_throughput(then=check_owner)))
        self.state_machine = self._state_machine(definition)

    def _read_record(
        self, construct_id: str, state_name: str, *, assign_to: str
    ) -> tasks.CallAwsService:
        """Read the SSM parameter that records the throughput `POST /images` uses."""
        stack = self.stack
        return read_parameter(
            stack,
            construct_id,
            state_name=state_name,
            parameter=(stack.parameter_arn, stack.parameter_name),
            assign_to=assign_to,
        )

    # --- input ----------------------------------------------------------------------------------

    def _prepare(self) -> sfn.Pass:
        return sfn.Pass.jsonata(
            self.stack,
            "ReleasePrepare",
            state_name="Prepare release",
            assign={
                "request": jsonata("$states.input"),
                "reason": jsonata(
                    "$exists($states.input.reason) ? $states.input.reason : 'asked for'"
                ),
                "outcome": "released",
                "parameterCleared": False,
                # Read by the failure paths before a throughput is known.
                "arn": "",
                "recorded": "",
            },
        )

    def _find_throughput(self, then: sfn.IChainable) -> sfn.Choice:
        """The named throughput, or the recorded one; nothing to do when neither exists."""
        stack = self.stack
        use_named = sfn.Pass.jsonata(
            stack,
            "ReleaseUseNamed",
            state_name="Use the named throughput",
            assign={"arn": jsonata("$request.provisionedModelArn")},
        )
        read_recorded_arn = self._read_record(
            "ReleaseReadRecordedArn", "Read the recorded throughput", assign_to="arn"
        )
        nothing_to_release = sfn.Succeed.jsonata(
            stack,
            "ReleaseNothing",
            state_name="Nothing to release",
            outputs={
                "released": False,
                "message": "no provisionedModelArn given and none recorded in "
                f"{stack.parameter_name}",
            },
        )
        read_recorded_arn.add_catch(nothing_to_release, errors=["Ssm.ParameterNotFoundException"])
        catch_all(read_recorded_arn, self.release_failed)
        return either(
            stack,
            "ReleaseNamed",
            state_name="Throughput named?",
            condition="$exists($request.provisionedModelArn)",
            then=use_named.next(then),
            otherwise=read_recorded_arn.next(then),
        )

    # --- the throughput -------------------------------------------------------------------------

    def _check_owner(
        self, then: sfn.IChainable, already_released: sfn.IChainable
    ) -> sfn.IChainable:
        """Only a throughput tagged with this deployment's name goes on to `then`."""
        stack, config, deployment = self.stack, self.config, self.deployment
        check_owner = self._throughput_call(
            "CheckOwner",
            "Check the owner",
            "listTagsForResource",
            {"ResourceARN": jsonata("$arn")},
            assign={
                "owner": jsonata(_or_empty(f"$states.result.Tags[Key = '{DEPLOYMENT_TAG}'].Value"))
            },
        )
        check_owner.add_catch(already_released, errors=["Bedrock.ResourceNotFoundException"])
        catch_all(check_owner, self.release_failed)
        owned = (
            sfn.Choice.jsonata(stack, "ReleaseOwned", state_name="This deployment's?")
            .when(sfn.Condition.jsonata(jsonata(f"$owner = '{deployment}'")), then)
            .otherwise(
                self.fail(
                    "NotThisDeployment",
                    jsonata(
                        f"$arn & ' is not tagged {DEPLOYMENT_TAG}={deployment}; this workflow "
                        f"releases only throughputs that {config.resource_name('titan-customize')}"
                        " created (delete others with aws bedrock "
                        "delete-provisioned-model-throughput)'"
                    ),
                )
            )
        )
        return check_owner.next(owned)

    def _delete(
        self, then: sfn.IChainable, already_released: sfn.IChainable
    ) -> tasks.CallAwsService:
        delete = self._throughput_call(
            "Delete",
            "Delete the throughput",
            "deleteProvisionedModelThroughput",
            {"ProvisionedModelId": jsonata("$arn")},
        )
        # A throughput still being created or updated answers ConflictException: wait it out.
        delete.add_retry(
            errors=["Bedrock.ConflictException"],
            interval=Duration.seconds(60),
            max_attempts=8,
            backoff_rate=1.5,
            max_delay=Duration.minutes(10),
        )
        delete.add_catch(already_released, errors=["Bedrock.ResourceNotFoundException"])
        catch_all(delete, self.release_failed)
        delete.next(then)
        return delete

    # --- the record and the notice ----------------------------------------------------------------

    def _clear_record_and_notify(self) -> tasks.CallAwsService:
        """Clear the SSM parameter if it still names the throughput, then notify; returns the
        first state."""
        stack = self.stack
        read_record = self._read_record(
            "ReleaseReadRecord", "Read the record", assign_to="recorded"
        )
        clear_record = self._parameter_call(
            "ClearRecord", "Clear the record", "deleteParameter", assign={"parameterCleared": True}
        )
        notify = self._notify()
        read_record.add_catch(
            notify, errors=["Ssm.ParameterNotFoundException"], assign={"recorded": ""}
        )
        catch_all(read_record, self.release_failed)
        clear_record.add_catch(notify, errors=["Ssm.ParameterNotFoundException"])
        catch_all(clear_record, self.release_failed)
        still_recorded = either(
            stack,
            "ReleaseStillRecorded",
            state_name="Still recorded?",
            condition="$recorded = $arn",
            then=clear_record.next(notify),
            otherwise=notify,
        )
        read_record.next(still_recorded)
        return read_record

    def _notify(self) -> tasks.SnsPublish:
        stack, deployment = self.stack, self.deployment
        message = " & ".join(
            [
                literal("Provisioned throughput "),
                "$arn",
                literal(" of Atelier " + deployment + ": "),
                "$outcome",
                literal(".\nWhy: "),
                "$reason",
                literal(".\n"),
                "($parameterCleared ? "
                + literal(
                    f"{stack.parameter_name} named it and was deleted: POST /images answers "
                    "'no model' until the next customization records a throughput."
                )
                + " : "
                + literal(f"{stack.parameter_name} names another throughput (or none); unchanged.")
                + ")",
            ]
        )
        outputs = {
            "provisionedModelArn": jsonata("$arn"),
            "outcome": jsonata("$outcome"),
            "parameterCleared": jsonata("$parameterCleared"),
        }
        subject = ("Titan throughput ", "$outcome")
        notify = titan_notify(stack, "ReleaseNotify", subject, message, outputs)
        failed = "$arn & ': ' & $outcome & ', but the notification failed: '"
        catch_all(notify, caught_failure(self.fail, "NotificationFailed", failed))
        return notify

    # --- role and state machine ---------------------------------------------------------------

    def _state_machine(self, definition: sfn.IChainable) -> sfn.StateMachine:
        stack = self.stack
        statements = [
            iam.PolicyStatement(
                actions=["ssm:DeleteParameter", "ssm:GetParameter"],
                resources=[stack.parameter_arn],
            ),
            # No aws:ResourceTag condition on the delete: whether Bedrock evaluates it for
            # DeleteProvisionedModelThroughput is not verified, and a wrong guess would make
            # every release (the cost guard) fail. The workflow checks the
            # atelier:deployment tag itself ("Check the owner") before deleting.
            iam.PolicyStatement(
                actions=[
                    "bedrock:DeleteProvisionedModelThroughput",
                    "bedrock:ListTagsForResource",
                ],
                resources=[stack.provisioned_model_arns],
            ),
            *stack.publish_statements(),
        ]
        acknowledged = [
            (
                "provisioned-model/*",
                "Bedrock names provisioned throughputs by an id it makes; the workflow deletes "
                f"only those tagged {DEPLOYMENT_TAG}={self.deployment}, which it checks before "
                "deleting.",
            )
        ]
        return titan_state_machine(
            stack, "Release", definition, statements, acknowledged, RELEASE_TIMEOUT
        )


def build_release_workflow(stack: BedrockStack) -> sfn.StateMachine:
    return TitanReleaseWorkflow(stack).state_machine
