"""The `<prefix>-<stage>-titan-customize` workflow: check the input and the training manifest (a
Lambda function reads it and HEADs every image), check the base model's lifecycle, run a
customization job to its end (polling), create a provisioned throughput tagged with its expiry,
record its ARN in the SSM parameter `POST /images` reads and notify the topic. A throughput it
cannot bring into service or record is handed to the release workflow.

    {"manifest": "titan/<name>/manifest.jsonl", "customModelName"?: "...",
     "hyperparameters"?: {"stepCount", "batchSize", "learningRate"}, "modelUnits"?: 1,
     "commitment"?: null | "OneMonth" | "SixMonths", "ttlHours"?: 4}

Built directly in the Bedrock stack for the reason given in `titan_release`: logical ids stay
what the stack deployed with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from infra.constructs.workflows import pass_role_statement
from infra.workflows.states import (
    BEDROCK_TRANSIENT_ERRORS,
    PollUntil,
    catch_all,
    caught_failure,
    either,
    input_checks,
    jsonata,
    lambda_task,
    literal,
    retry,
)
from infra.workflows.titan_common import (
    EXPIRES_AT_TAG,
    ISO_UTC_PICTURE,
    MAX_REASON_CHARACTERS,
    TITAN_OUTPUT_PREFIX,
    TitanWorkflow,
    _or_empty,
    bedrock_key_grant,
    commitment_expression,
    customize_input_checks,
    default_or_input,
    deployment_name,
    hyperparameters_expression,
    job_name_expression,
    job_name_prefix,
    provisioning_arguments,
    ready_message,
    resource_tags,
    titan_notify,
    titan_state_machine,
)

if TYPE_CHECKING:
    from infra.stacks.bedrock import BedrockStack


class TitanCustomizeWorkflow(TitanWorkflow):
    """The workflow's states, role and state machine, built in the Bedrock stack's scope (ids
    unchanged, see the module docstring); one method per phase, each given the state it goes on
    to, so no method is longer than its phase."""

    kind = "Customize"

    def __init__(self, stack: BedrockStack) -> None:
        super().__init__(stack)
        self.titan = stack.config.titan
        throughput = self._throughput()
        job = self._job(then=throughput)
        check_manifest = self._check_manifest(then=job)
        definition = self._validate().otherwise(
            self._prepare().next(self._base_model_gate(then=check_manifest))
        )
        self.state_machine = self._state_machine(definition)

    def _status_poll(
        self,
        subject: str,
        call: tuple[str, str, dict[str, str]],
        every_seconds: int,
        **assign: str,
    ) -> PollUntil:
        """Poll the Bedrock `subject` (job or throughput) every `every_seconds` with `call`
        (action, its resource ARN, its parameters as JSONata expressions), keeping its status
        and failure message in `$<subject>Status` and `$<subject>Failure`, and `assign`."""
        stack = self.stack
        action, resource, parameters = call
        noun = subject.capitalize()
        get_status = self._call(
            f"Get{noun}",
            f"Get {subject} status",
            f"bedrock:{action}",
            resource,
            {name: jsonata(value) for name, value in parameters.items()},
            assign={
                f"{subject}Status": jsonata("$states.result.Status"),
                f"{subject}Failure": jsonata(_or_empty("$states.result.FailureMessage")),
                **assign,
            },
        )
        wait_name = f"Wait for {subject}"
        every = Duration.seconds(every_seconds)
        return PollUntil(
            stack, f"CustomizeWaitFor{noun}", state_name=wait_name, every=every, poll=get_status
        )

    # --- input ----------------------------------------------------------------------------------

    def _validate(self) -> sfn.Choice:
        checks = customize_input_checks(self.titan, self.fail)
        return input_checks(self.stack, "CustomizeValidateInput", checks)

    def _prepare(self) -> sfn.Pass:
        stack, config, titan = self.stack, self.config, self.titan
        prefix = job_name_prefix(config)
        return sfn.Pass.jsonata(
            stack,
            "CustomizePrepare",
            state_name="Prepare run",
            assign={
                "request": jsonata("$states.input"),
                "jobName": jsonata(job_name_expression(prefix)),
                "jobToken": jsonata("$uuid()"),
                "modelUnits": jsonata(default_or_input("modelUnits", titan.model_units)),
                "commitment": jsonata(commitment_expression(titan.commitment)),
                "ttlHours": jsonata(default_or_input("ttlHours", titan.throughput_ttl_hours)),
                # Read by the failure paths before they are known.
                "jobArn": "",
                "customModelName": "",
                "customModelArn": "",
                "provisionedModelArn": "",
                "expiresAt": "",
            },
        )

    def _check_manifest(self, then: sfn.IChainable) -> sfn.IChainable:
        stack, fail = self.stack, self.fail
        # The function raises DependencyError only when S3 itself failed.
        check_manifest = lambda_task(
            stack,
            "CustomizeCheckManifest",
            state_name="Check manifest",
            function=stack.manifest_function.function,
            payload={"manifest": jsonata("$request.manifest")},
            assign={"manifestReport": jsonata("$states.result.Payload")},
        )
        catch_all(
            check_manifest,
            caught_failure(
                fail,
                "ManifestCheckFailed",
                "'could not check manifest ' & $request.manifest & ': '",
            ),
        )
        manifest_rejected = fail(
            "ManifestRejected",
            jsonata(
                "$manifestReport.manifestUri & ' has ' & $string($manifestReport.problemCount) & "
                "' problem(s)' & ($manifestReport.problemCount > $count($manifestReport.problems)"
                " ? ' (the first ' & $string($count($manifestReport.problems)) & ' shown)' : '') "
                "& ': ' & $join($manifestReport.problems, '; ')"
            ),
        )
        manifest_usable = either(
            stack,
            "CustomizeManifestUsable",
            state_name="Manifest usable?",
            condition="$manifestReport.valid = true",
            then=then,
            otherwise=manifest_rejected,
        )
        return check_manifest.next(manifest_usable)

    # --- the customization job ----------------------------------------------------------------

    def _job(self, then: sfn.IChainable) -> sfn.IChainable:
        """Start the job, poll it to its end, stop it when it runs too long or cannot be read."""
        stack, config, titan, fail = self.stack, self.config, self.titan, self.fail
        data = stack.data
        datasets = data.datasets_bucket.bucket_name
        models = data.models_bucket.bucket_name
        prepare_job = sfn.Pass.jsonata(
            stack,
            "CustomizePrepareJob",
            state_name="Prepare customization job",
            assign={
                "customModelName": jsonata(
                    "$exists($request.customModelName) ? $request.customModelName : $jobName"
                ),
                "hyperParameters": jsonata(hyperparameters_expression(config)),
            },
        )

        tags = [{"Key": key, "Value": value} for key, value in resource_tags(config).items()]
        start_job = self._call(
            "StartJob",
            "Start customization job",
            "bedrock:createModelCustomizationJob",
            [stack.foundation_model_arn, stack.custom_model_arns, stack.job_arns],
            {
                "JobName": jsonata("$jobName"),
                "CustomModelName": jsonata("$customModelName"),
                "RoleArn": stack.customization_role.role_arn,
                # Makes a retried call (throttling) create the job once.
                "ClientRequestToken": jsonata("$jobToken"),
                "BaseModelIdentifier": titan.base_model_id,
                "CustomizationType": "FINE_TUNING",
                "CustomModelKmsKeyId": data.key.key_arn,
                "TrainingDataConfig": {"S3Uri": jsonata(f"'s3://{datasets}/' & $request.manifest")},
                "OutputDataConfig": {
                    "S3Uri": jsonata(f"'s3://{models}/{TITAN_OUTPUT_PREFIX}' & $jobName & '/'")
                },
                "HyperParameters": jsonata("$hyperParameters"),
                "JobTags": tags,
                "CustomModelTags": tags,
            },
            assign={
                "jobArn": jsonata("$states.result.JobArn"),
                "jobStartedMillis": jsonata("$millis()"),
            },
        )
        catch_all(
            start_job,
            caught_failure(
                fail, "JobNotStarted", "'could not start customization job ' & $jobName & ': '"
            ),
        )

        # The name identifies the job as well as its ARN does.
        job = ("getModelCustomizationJob", stack.job_arns, {"JobIdentifier": "$jobName"})
        poll_job = self._status_poll(
            "job",
            job,
            titan.job_poll_seconds,
            customModelArn=jsonata(_or_empty("$states.result.OutputModelArn")),
        )
        get_job = poll_job.poll
        job_failed = fail(
            "JobFailed",
            jsonata(
                "'customization job ' & $jobName & ' ended ' & $jobStatus & ': ' & "
                "($jobFailure != '' ? $jobFailure : 'Bedrock gave no failure message')"
            ),
        )
        max_job_ms = titan.max_job_runtime_hours * 3_600_000
        # Why a job is stopped ($stop.error names the run's error): it ran too long, or its
        # status could not be read, so it may still be running (and billing).
        timed_out = (
            "{ 'error': 'JobTimedOut', 'cause': 'customization job ' & $jobName & ' ran longer "
            f"than titan.max_job_runtime_hours ({titan.max_job_runtime_hours} h) and' }}"
        )
        status_unknown = (
            "{ 'error': 'JobStatusUnknown', 'cause': 'could not read the status of customization "
            "job ' & $jobName & ' (' & $jobArn & '): ' & $states.errorOutput.Error & ': ' & "
            "$states.errorOutput.Cause & '; as it may still be running, it' }"
        )
        stop_job = self._call(
            "StopJob",
            "Stop job",
            "bedrock:stopModelCustomizationJob",
            stack.job_arns,
            {"JobIdentifier": jsonata("$jobName")},
        )
        stop_failed = fail(
            "JobStopFailed",
            jsonata(
                "$stop.cause & ' could not be stopped: ' & $states.input.Error & ': ' & "
                "$states.input.Cause & '; stop it with aws bedrock "
                "stop-model-customization-job --job-identifier ' & $jobName"
            ),
        )
        catch_all(stop_job, stop_failed)
        stop_job.next(
            fail(
                "JobStopped", jsonata("$stop.cause & ' was stopped'"), error=jsonata("$stop.error")
            )
        )
        catch_all(get_job, stop_job, assign={"stop": jsonata(status_unknown)})
        job_finished = (
            sfn.Choice.jsonata(stack, "CustomizeJobFinished", state_name="Job finished?")
            .when(sfn.Condition.jsonata(jsonata("$jobStatus = 'Completed'")), then)
            .when(sfn.Condition.jsonata(jsonata("$jobStatus in ['Failed', 'Stopped']")), job_failed)
            .when(
                sfn.Condition.jsonata(
                    jsonata(
                        "$jobStatus = 'InProgress' and "
                        f"$millis() - $jobStartedMillis > {max_job_ms}"
                    )
                ),
                stop_job,
                assign={"stop": jsonata(timed_out)},
            )
            .otherwise(poll_job.wait)
        )
        return prepare_job.next(start_job).next(poll_job.until(job_finished))

    # --- the provisioned throughput -----------------------------------------------------------

    def _throughput(self) -> sfn.IChainable:
        """Provision, poll until in service, set its expiry, record and notify; a throughput that
        fails, takes too long or cannot be read or recorded goes to the release workflow."""
        stack, config, titan, fail = self.stack, self.config, self.titan, self.fail
        prepare_throughput = sfn.Pass.jsonata(
            stack,
            "CustomizePrepareThroughput",
            state_name="Prepare throughput",
            assign={
                # Creation may take up to titan.max_throughput_wait_hours: until the throughput is
                # in service (when "Set expiry" moves the tag to now + ttlHours) its tag allows
                # for that wait, so the sweeper never releases one still being created, while an
                # orphan (a run that died meanwhile) is still released.
                "expiresAt": jsonata(
                    "$fromMillis($millis() + ($ttlHours + "
                    f"{titan.max_throughput_wait_hours}) * 3600000, '{ISO_UTC_PICTURE}')"
                ),
                "throughputToken": jsonata("$uuid()"),
            },
        )
        # The Arguments are one expression, so CommitmentDuration can be left out: CallAwsService
        # takes only an object of fields.
        provision = sfn.CustomState(
            stack,
            # A custom state takes its construct id as its name.
            "Provision throughput",
            state_json={
                "Type": "Task",
                "Comment": "Creates the provisioned throughput, tagged with its expiry",
                "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:bedrock:"
                "createProvisionedModelThroughput",
                "Arguments": jsonata(provisioning_arguments(config)),
                "Assign": {
                    "provisionedModelArn": jsonata("$states.result.ProvisionedModelArn"),
                    "provisioningStartedMillis": jsonata("$millis()"),
                },
            },
        )
        provision.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **retry())
        not_created = caught_failure(
            fail,
            "ThroughputNotCreated",
            "'could not create a provisioned throughput for custom model ' & $customModelArn & "
            "' (' & $customModelName & '): '",
            note=" (ServiceQuotaExceededException: ask for a Provisioned Throughput quota for the "
            "model in Service Quotas); the custom model is kept",
        )
        catch_all(provision, not_created)
        release = self._release()

        def failure(error: str, cause: str) -> dict[str, str]:
            return {"failure": jsonata(f"{{ 'error': {literal(error)}, 'cause': {cause} }}")}

        caught = {
            "failure": jsonata(
                "{ 'error': $states.errorOutput.Error, 'cause': 'provisioned throughput for ' & "
                "$jobName & ' failed: ' & $states.errorOutput.Error & ': ' & "
                "$states.errorOutput.Cause }"
            )
        }
        throughput = (
            "getProvisionedModelThroughput",
            stack.provisioned_model_arns,
            {"ProvisionedModelId": "$provisionedModelArn"},
        )
        poll_throughput = self._status_poll("throughput", throughput, titan.throughput_poll_seconds)
        get_throughput = poll_throughput.poll
        catch_all(get_throughput, release, assign=caught)
        throughput_failed = sfn.Pass.jsonata(
            stack,
            "CustomizeThroughputFailed",
            state_name="Throughput failed",
            assign=failure(
                "ThroughputFailed",
                "'provisioned throughput for ' & $jobName & ' failed: ' & "
                "($throughputFailure != '' ? $throughputFailure : 'Bedrock gave no failure "
                "message')",
            ),
        )
        max_wait_ms = titan.max_throughput_wait_hours * 3_600_000
        throughput_too_slow = sfn.Pass.jsonata(
            stack,
            "CustomizeThroughputTooSlow",
            state_name="Throughput too slow",
            assign=failure(
                "ThroughputTimedOut",
                "'provisioned throughput for ' & $jobName & ' was not in service after "
                f"titan.max_throughput_wait_hours ({titan.max_throughput_wait_hours} h)'",
            ),
        )
        throughput_failed.next(release)
        throughput_too_slow.next(release)
        set_expiry = self._record_and_notify(release, caught)
        throughput_ready = (
            sfn.Choice.jsonata(stack, "CustomizeThroughputReady", state_name="Throughput ready?")
            .when(
                sfn.Condition.jsonata(jsonata("$throughputStatus = 'InService'")),
                set_expiry,
                assign={
                    "inServiceExpiresAt": jsonata(
                        f"$fromMillis($millis() + $ttlHours * 3600000, '{ISO_UTC_PICTURE}')"
                    )
                },
            )
            .when(sfn.Condition.jsonata(jsonata("$throughputStatus = 'Failed'")), throughput_failed)
            .when(
                sfn.Condition.jsonata(
                    jsonata(f"$millis() - $provisioningStartedMillis > {max_wait_ms}")
                ),
                throughput_too_slow,
            )
            .otherwise(poll_throughput.wait)
        )
        return prepare_throughput.next(provision).next(poll_throughput.until(throughput_ready))

    def _release(self) -> tasks.StepFunctionsStartExecution:
        """Hand the throughput to the release workflow; the run then fails with the reason."""
        stack, fail = self.stack, self.fail
        release_name = stack.release.state_machine_name
        release = tasks.StepFunctionsStartExecution.jsonata(
            stack,
            "CustomizeRelease",
            state_name="Release throughput",
            state_machine=stack.release,
            input=sfn.TaskInput.from_object(
                {
                    "provisionedModelArn": jsonata("$provisionedModelArn"),
                    "reason": jsonata(f"$substring($failure.cause, 0, {MAX_REASON_CHARACTERS})"),
                }
            ),
            assign={
                "releaseNote": jsonata(
                    "'It was handed to the release workflow (execution ' & "
                    "$states.result.ExecutionArn & ').'"
                )
            },
        )
        provisioning_failed = fail(
            "ProvisioningFailed",
            jsonata("$failure.cause & ' Throughput ' & $provisionedModelArn & ': ' & $releaseNote"),
            error=jsonata("$failure.error"),
        )
        catch_all(
            release,
            provisioning_failed,
            assign={
                "releaseNote": jsonata(
                    f"'starting {release_name} failed (' & $states.errorOutput.Error & '); the "
                    "cost guard releases it after ' & $expiresAt & '.'"
                )
            },
        )
        release.next(provisioning_failed)
        return release

    def _record_and_notify(
        self, release: sfn.IChainable, caught: Mapping[str, str]
    ) -> sfn.IChainable:
        """Set the in-service expiry, record the throughput in SSM and notify; returns the first."""
        stack, config, fail = self.stack, self.config, self.fail
        deployment = deployment_name(config)
        record = self._parameter_call(
            "Record",
            "Record throughput",
            "putParameter",
            fields={
                "Value": jsonata("$provisionedModelArn"),
                "Type": "String",
                "Overwrite": True,
                "Description": jsonata(
                    "'Titan provisioned throughput of customization ' & $jobName & ', expires ' "
                    "& $expiresAt"
                ),
            },
        )
        catch_all(record, release, assign=caught)

        message = ready_message(
            deployment,
            release_state_machine_arn=stack.release.state_machine_arn,
            parameter_name=stack.parameter_name,
        )
        outputs = {
            "jobName": jsonata("$jobName"),
            "customModelName": jsonata("$customModelName"),
            "customModelArn": jsonata("$customModelArn"),
            "provisionedModelArn": jsonata("$provisionedModelArn"),
            "expiresAt": jsonata("$expiresAt"),
            "provisionedModelParameter": stack.parameter_name,
            "hyperParameters": jsonata("$hyperParameters"),
            "records": jsonata("$manifestReport.records"),
        }
        subject = ("Titan model ready: ", "$jobName")
        notify = titan_notify(stack, "CustomizeNotify", subject, message, outputs)
        notice_failed = (
            "'throughput ' & $provisionedModelArn & ' is in service and recorded (expires ' & "
            "$expiresAt & '), but the notification failed: '"
        )
        catch_all(notify, caught_failure(fail, "NotificationFailed", notice_failed))

        # In service: the throughput's time starts now. Should tagging fail (after its retries)
        # the creation tag stands, later by titan.max_throughput_wait_hours, and is reported.
        set_expiry = self._throughput_call(
            "SetExpiry",
            "Set expiry",
            "tagResource",
            {
                "ResourceARN": jsonata("$provisionedModelArn"),
                "Tags": [{"Key": EXPIRES_AT_TAG, "Value": jsonata("$inServiceExpiresAt")}],
            },
            assign={"expiresAt": jsonata("$inServiceExpiresAt")},
        )
        catch_all(set_expiry, record)
        set_expiry.next(record).next(notify)
        return set_expiry

    # --- role and state machine ---------------------------------------------------------------

    def _state_machine(self, definition: sfn.IChainable) -> sfn.StateMachine:
        stack, titan = self.stack, self.titan
        data = stack.data
        statements = [
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[stack.manifest_function.function.function_arn],
            ),
            iam.PolicyStatement(
                actions=["bedrock:GetFoundationModel"], resources=[stack.foundation_model_arn]
            ),
            iam.PolicyStatement(
                actions=["bedrock:CreateModelCustomizationJob"],
                resources=[stack.foundation_model_arn, stack.custom_model_arns, stack.job_arns],
            ),
            iam.PolicyStatement(
                actions=[
                    "bedrock:GetModelCustomizationJob",
                    "bedrock:StopModelCustomizationJob",
                ],
                resources=[stack.job_arns],
            ),
            # The service authorization reference lists custom-model and foundation-model
            # (the custom model's base) as resources of this action.
            iam.PolicyStatement(
                actions=["bedrock:CreateProvisionedModelThroughput"],
                resources=[
                    stack.foundation_model_arn,
                    stack.custom_model_arns,
                    stack.provisioned_model_arns,
                ],
            ),
            iam.PolicyStatement(
                actions=["bedrock:GetProvisionedModelThroughput"],
                resources=[stack.provisioned_model_arns],
            ),
            # Tags given at creation (job, custom model, throughput) need TagResource too.
            iam.PolicyStatement(
                actions=["bedrock:TagResource"],
                resources=[
                    stack.custom_model_arns,
                    stack.job_arns,
                    stack.provisioned_model_arns,
                ],
            ),
            pass_role_statement(stack.customization_role.role_arn, "bedrock.amazonaws.com"),
            # The custom model is encrypted with the data key: creating it, and serving it
            # from a throughput, use the key through Bedrock.
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
                resources=[data.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"bedrock.{stack.region}.amazonaws.com"}
                },
            ),
            # Grants only for Bedrock's own use of the key.
            bedrock_key_grant(data.key.key_arn, stack.region),
            iam.PolicyStatement(actions=["ssm:PutParameter"], resources=[stack.parameter_arn]),
            iam.PolicyStatement(
                actions=["states:StartExecution"],
                resources=[stack.release.state_machine_arn],
            ),
            *stack.publish_statements(),
        ]
        acknowledged = [
            (
                "custom-model/*",
                "Custom models are named by Bedrock (base model and a generated id) when a job "
                "completes; the workflow creates them and provisions throughput for them.",
            ),
            (
                "model-customization-job/*",
                "Job ARNs carry an id Bedrock makes per job; the workflow creates, polls and "
                "stops only the jobs it starts (names unique per run).",
            ),
            (
                "provisioned-model/*",
                "Provisioned throughputs are named by an id Bedrock makes at creation; the "
                "workflow creates, tags and polls only the one it creates.",
            ),
        ]
        hours = titan.max_job_runtime_hours + titan.max_throughput_wait_hours + 2
        return titan_state_machine(
            stack, "Customize", definition, statements, acknowledged, Duration.hours(hours)
        )

    def _base_model_gate(self, then: sfn.IChainable) -> sfn.IChainable:
        """Before anything is paid for: the base model's lifecycle, from Bedrock itself. A Legacy
        model takes no new customization job or provisioned throughput, and one past its end of
        life is not found: either way the run stops here with what to change."""
        stack, fail = self.stack, self.fail
        titan = stack.config.titan
        named = f"{titan.base_model_id} ({titan.limits.name})"
        fix = (
            "Set titan.base_model_id in cdk.json to an Active Bedrock image model that supports "
            "fine-tuning (docs/image-customization.md lists them; `atelier doctor` shows each "
            "model's state), then deploy again. Nothing was started or billed."
        )
        read = self._call(
            "CheckBaseModel",
            "Check base model lifecycle",
            "bedrock:getFoundationModel",
            stack.foundation_model_arn,
            {"ModelIdentifier": titan.base_model_id},
            assign={
                "baseModelLifecycle": jsonata(
                    "($l := $states.result.ModelDetails.ModelLifecycle; $exists($l) ? $l : {})"
                )
            },
        )
        read.add_catch(
            fail(
                "BaseModelEndOfLife",
                f"{named} is not offered by Bedrock in this region: it is past its end of life "
                f"(or was never offered here). {fix}",
            ),
            errors=["Bedrock.ResourceNotFoundException", "Bedrock.ValidationException"],
        )
        catch_all(
            read,
            caught_failure(
                fail, "BaseModelCheckFailed", f"'could not read the lifecycle of {named}: '"
            ),
        )
        legacy = fail(
            "BaseModelLegacy",
            jsonata(
                f"{literal(named + ' is Legacy on Bedrock')} & "
                "($exists($baseModelLifecycle.EndOfLifeTime) ? ' (end of life ' & "
                "$string($baseModelLifecycle.EndOfLifeTime) & ')' : '') & "
                f"{literal(': Bedrock takes no new customization job or provisioned throughput ')}"
                f" & {literal('on a Legacy model. ' + fix)}"
            ),
        )
        usable = either(
            stack,
            "CustomizeBaseModelUsable",
            state_name="Base model usable?",
            condition="$baseModelLifecycle.Status = 'LEGACY'",
            then=legacy,
            otherwise=then,
        )
        return read.next(usable)


def build_customize_workflow(stack: BedrockStack) -> sfn.StateMachine:
    return TitanCustomizeWorkflow(stack).state_machine
