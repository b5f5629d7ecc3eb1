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

from infra.constructs.workflows import observed_state_machine
from infra.nag import acknowledge
from infra.workflows.states import (
    aws_call,
    fail_states,
    input_checks,
    jsonata,
    literal,
    notify_task,
)
from infra.workflows.titan_common import (
    DEPLOYMENT_TAG,
    MAX_REASON_CHARACTERS,
    PROVISIONED_MODEL_ARN_IS_VALID,
    REASON_IS_VALID,
    RELEASE_INPUT_IS_AN_OBJECT,
    _or_empty,
    deployment_name,
)

if TYPE_CHECKING:
    from infra.stacks.bedrock import BedrockStack

# The release workflow waits out Bedrock's ConflictException (a throughput still being created or
# updated) for up to about 50 minutes.
RELEASE_TIMEOUT = Duration.hours(2)


def build_release_workflow(stack: BedrockStack) -> sfn.StateMachine:
    config = stack.config
    deployment = deployment_name(config)

    fail = fail_states(stack, "Release")

    validate = input_checks(
        stack,
        "ReleaseValidateInput",
        [
            (
                RELEASE_INPUT_IS_AN_OBJECT,
                fail(
                    "InvalidInput",
                    "the input must be a JSON object with 'provisionedModelArn' and 'reason' "
                    "(both optional) and no other keys",
                ),
            ),
            (
                PROVISIONED_MODEL_ARN_IS_VALID,
                fail(
                    "InvalidProvisionedModelArn",
                    jsonata(
                        "'provisionedModelArn must be a provisioned throughput ARN such as "
                        "arn:aws:bedrock:<region>:<account>:provisioned-model/<id>; got ' & "
                        "$string($states.input.provisionedModelArn)"
                    ),
                ),
            ),
            (
                REASON_IS_VALID,
                fail(
                    "InvalidReason",
                    f"reason must be a string of at most {MAX_REASON_CHARACTERS} characters",
                ),
            ),
        ],
    )
    prepare = sfn.Pass.jsonata(
        stack,
        "ReleasePrepare",
        state_name="Prepare release",
        assign={
            "request": jsonata("$states.input"),
            "reason": jsonata("$exists($states.input.reason) ? $states.input.reason : 'asked for'"),
            "outcome": "released",
            "parameterCleared": False,
            # Read by the failure paths before a throughput is known.
            "arn": "",
            "recorded": "",
        },
    )
    use_named = sfn.Pass.jsonata(
        stack,
        "ReleaseUseNamed",
        state_name="Use the named throughput",
        assign={"arn": jsonata("$request.provisionedModelArn")},
    )
    read_recorded_arn = aws_call(
        stack,
        "ReleaseReadRecordedArn",
        state_name="Read the recorded throughput",
        service="ssm",
        action="getParameter",
        iam_resources=[stack.parameter_arn],
        parameters={"Name": stack.parameter_name},
        assign={"arn": jsonata("$states.result.Parameter.Value")},
    )
    nothing_to_release = sfn.Succeed.jsonata(
        stack,
        "ReleaseNothing",
        state_name="Nothing to release",
        outputs={
            "released": False,
            "message": f"no provisionedModelArn given and none recorded in {stack.parameter_name}",
        },
    )
    read_recorded_arn.add_catch(nothing_to_release, errors=["Ssm.ParameterNotFoundException"])
    release_failed = fail(
        "ReleaseFailed",
        jsonata(
            "'could not release ' & $arn & ': ' & $states.input.Error & ': ' & "
            "$states.input.Cause & ' (a throughput with a commitment term can only be "
            "deleted after its term ends)'"
        ),
        error=jsonata("$states.input.Error"),
    )
    read_recorded_arn.add_catch(release_failed, errors=["States.ALL"])

    check_owner = aws_call(
        stack,
        "ReleaseCheckOwner",
        state_name="Check the owner",
        service="bedrock",
        action="listTagsForResource",
        iam_resources=[stack.provisioned_model_arns],
        parameters={"ResourceARN": jsonata("$arn")},
        assign={
            "owner": jsonata(_or_empty(f"$states.result.Tags[Key = '{DEPLOYMENT_TAG}'].Value"))
        },
    )
    already_released = sfn.Pass.jsonata(
        stack,
        "ReleaseAlreadyGone",
        state_name="Already released",
        assign={"outcome": "already released"},
    )
    check_owner.add_catch(already_released, errors=["Bedrock.ResourceNotFoundException"])
    check_owner.add_catch(release_failed, errors=["States.ALL"])

    delete = aws_call(
        stack,
        "ReleaseDelete",
        state_name="Delete the throughput",
        service="bedrock",
        action="deleteProvisionedModelThroughput",
        iam_resources=[stack.provisioned_model_arns],
        parameters={"ProvisionedModelId": jsonata("$arn")},
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
    delete.add_catch(release_failed, errors=["States.ALL"])

    owned = (
        sfn.Choice.jsonata(stack, "ReleaseOwned", state_name="This deployment's?")
        .when(sfn.Condition.jsonata(jsonata(f"$owner = '{deployment}'")), delete)
        .otherwise(
            fail(
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

    read_record = aws_call(
        stack,
        "ReleaseReadRecord",
        state_name="Read the record",
        service="ssm",
        action="getParameter",
        iam_resources=[stack.parameter_arn],
        parameters={"Name": stack.parameter_name},
        assign={"recorded": jsonata("$states.result.Parameter.Value")},
    )
    clear_record = aws_call(
        stack,
        "ReleaseClearRecord",
        state_name="Clear the record",
        service="ssm",
        action="deleteParameter",
        iam_resources=[stack.parameter_arn],
        parameters={"Name": stack.parameter_name},
        assign={"parameterCleared": True},
    )
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
    notify = notify_task(
        stack,
        "ReleaseNotify",
        topic=stack.topic,
        subject=jsonata(f"$substring('[{deployment}] Titan throughput ' & $outcome, 0, 100)"),
        message=message,
        outputs={
            "provisionedModelArn": jsonata("$arn"),
            "outcome": jsonata("$outcome"),
            "parameterCleared": jsonata("$parameterCleared"),
        },
    )
    notify.add_catch(
        fail(
            "NotificationFailed",
            jsonata(
                "$arn & ': ' & $outcome & ', but the notification failed: ' & "
                "$states.input.Error & ': ' & $states.input.Cause"
            ),
            error=jsonata("$states.input.Error"),
        ),
        errors=["States.ALL"],
    )
    read_record.add_catch(
        notify, errors=["Ssm.ParameterNotFoundException"], assign={"recorded": ""}
    )
    read_record.add_catch(release_failed, errors=["States.ALL"])
    clear_record.add_catch(notify, errors=["Ssm.ParameterNotFoundException"])
    clear_record.add_catch(release_failed, errors=["States.ALL"])

    still_recorded = (
        sfn.Choice.jsonata(stack, "ReleaseStillRecorded", state_name="Still recorded?")
        .when(sfn.Condition.jsonata(jsonata("$recorded = $arn")), clear_record.next(notify))
        .otherwise(notify)
    )
    read_record.next(still_recorded)
    already_released.next(read_record)
    delete.next(read_record)
    check_owner.next(owned)
    named = (
        sfn.Choice.jsonata(stack, "ReleaseNamed", state_name="Throughput named?")
        .when(
            sfn.Condition.jsonata(jsonata("$exists($request.provisionedModelArn)")),
            use_named.next(check_owner),
        )
        .otherwise(read_recorded_arn.next(check_owner))
    )
    definition = validate.otherwise(prepare.next(named))

    role = iam.Role(
        stack,
        "TitanReleaseRole",
        assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
        description=f"Atelier {config.stage}: releases Titan provisioned throughputs",
    )
    tasks_policy = iam.Policy(
        stack,
        "TitanReleasePolicy",
        roles=[role],
        statements=[
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
        ],
    )
    acknowledge(
        tasks_policy,
        f"AwsSolutions-IAM5[Resource::{stack.nag_arn('provisioned-model/*')}]",
        "Bedrock names provisioned throughputs by an id it makes; the workflow deletes only "
        f"those tagged {DEPLOYMENT_TAG}={deployment}, which it checks before deleting.",
    )
    return observed_state_machine(
        stack,
        "TitanRelease",
        config=config,
        name=config.resource_name("titan-release"),
        comment="Releases a Titan provisioned throughput and clears its SSM record",
        definition=definition,
        role=role,
        policies=[tasks_policy],
        timeout=RELEASE_TIMEOUT,
    )
