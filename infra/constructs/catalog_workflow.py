"""The `describe-catalog` state machine (JSONata): fan out over a catalog with Distributed Map,
read the attributes with the stage's source and write the text with Bedrock batch inference, one
group of products at a time, or take the online path for small catalogs.

    start → (kind) Distributed Map over the S3 prefix / CSV manifest / JSONL manifest
          → plan → (route) none | online: inline Map → online function
                         | batch (endpoint source): read the VQA archive (SSM) → create the model
                                  → Distributed Map over groups:
                                      Batch Transform (.sync) → bedrock input → Bedrock job
                                      (poll) → results
                                  → delete the model (also when a group fails)
                         | batch (vision-llm source): Distributed Map over groups:
                                      attribute input → Bedrock job on the vision model (poll)
                                      → bedrock input → Bedrock job (poll) → results
          → finalize → Succeed

The source is read from the config at synthesis (`StageConfig.attribute_source`): each stage's
state machine holds one branch, and the endpoint source's definition is the same as before the
vision source existed.

The groups run as child executions of a Distributed Map, not as an inline Map: each group polls
its Bedrock job for up to `bedrock.timeout_hours`, and a catalog of many groups polling inside
one execution would exhaust its 25,000-event history. Every state's error ends in a Fail state
that names what happened, and a model created by the run is deleted on the way out.

The functions and roles are made by the Catalog stack (`infra/stacks/catalog_functions.py` and
`catalog_roles.py`); this module only wires states.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.catalog_group_states import (
    BUILD_PART_STATE,
    CATALOG_PREFIX,
    ERROR_MESSAGE,
    INPUT_ERROR,
    MANIFEST_COLUMNS,
    MAP_RESULTS,
    MAX_INPUT_BYTES_PER_BATCH,
    SOURCE_KINDS,
    CatalogFunctions,
    CatalogGroupStates,
    CatalogResources,
    optional,
)
from infra.constructs.network import sagemaker_vpc_config
from infra.workflows.states import (
    aws_call,
    error_output,
    jsonata,
    lambda_task,
    read_parameter,
)


class CatalogWorkflow(CatalogGroupStates):
    """The states of the describe-catalog workflow; `definition` is their first state."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        functions: CatalogFunctions,
        resources: CatalogResources,
    ) -> None:
        super().__init__(
            scope, construct_id, config=config, functions=functions, resources=resources
        )
        self.definition = self._build()

    def _reader(self, kind: str) -> dict[str, Any]:
        bucket = jsonata("$request.bucket")
        if kind == "prefix":
            return {
                "Resource": f"arn:{Aws.PARTITION}:states:::s3:listObjectsV2",
                "Arguments": {"Bucket": bucket, "Prefix": jsonata("$request.prefix")},
            }
        reader_config = (
            {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}
            if kind == "csv"
            else {"InputType": "JSONL"}
        )
        return {
            "Resource": f"arn:{Aws.PARTITION}:states:::s3:getObject",
            "ReaderConfig": reader_config,
            "Arguments": {"Bucket": bucket, "Key": jsonata("$request.key")},
        }

    def _build_map(self, kind: str) -> sfn.CustomState:
        catalog = self._config.catalog
        # Rows keep only the columns a child reads, so their size (and the batch's) does not
        # depend on what else a manifest carries, such as a failures report's reasons. A column
        # a row lacks (category is optional; a bad row may lack any) arrives as null, and the
        # child reports the row (or uses the attribute set): it must not fail the whole run.
        item_selector = (
            {}
            if kind == "prefix"
            else {
                "ItemSelector": {
                    name: optional(f"$states.context.Map.Item.Value.{name}")
                    for name in MANIFEST_COLUMNS
                }
            }
        )
        part_state = BUILD_PART_STATE.format(kind=kind)
        return sfn.CustomState(
            self,
            f"Build{kind.capitalize()}",
            state_json={
                "Type": "Map",
                "Comment": f"One child per {catalog.records_per_part} products of the {kind} "
                "source: validate, skip the described, write transform input parts",
                "ItemReader": self._reader(kind),
                **item_selector,
                "ItemBatcher": {
                    "MaxItemsPerBatch": catalog.records_per_part,
                    "MaxInputBytesPerBatch": MAX_INPUT_BYTES_PER_BATCH,
                    "BatchInput": {
                        name: jsonata(f"$request.{name}")
                        for name in ("kind", "bucket", "languages", "attributeSet", "force")
                    }
                    | {"runId": jsonata("$runId")},
                },
                "MaxConcurrency": catalog.build_concurrency,
                "ToleratedFailurePercentage": 0,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": part_state,
                    "States": {
                        part_state: self._lambda_state_json(
                            self._functions.transform_input,
                            "Writes one transform input part and its index",
                        )
                    },
                },
                "ResultWriter": {
                    "Resource": f"arn:{Aws.PARTITION}:states:::s3:putObject",
                    "Arguments": {
                        "Bucket": self._resources.results_bucket,
                        "Prefix": jsonata(f"'{CATALOG_PREFIX}' & $runId & '/{MAP_RESULTS}'"),
                    },
                },
                "Output": jsonata("$request"),
            },
        )

    def _groups_map(self) -> sfn.DistributedMap:
        config = self._config
        prefix = self._resources.job_name_prefix
        job_name = jsonata(f"'{prefix}-' & $runId & '-' & $states.context.Map.Item.Value.group")
        item_selector: dict[str, Any] = {
            "runId": jsonata("$runId"),
            "group": jsonata("$states.context.Map.Item.Value"),
            "languages": jsonata("$request.languages"),
        }
        if self._vision:
            comment = (
                "One child execution per group: Bedrock batch inference of the attributes, "
                "then of the descriptions"
            )
            # Group g0001's attributes job is <prefix>-<runId>-a0001: as long as the
            # description job's name, which the name prefix is sized for.
            item_selector["jobName"] = job_name
            item_selector["attributesJobName"] = jsonata(
                f"'{prefix}-' & $runId & '-a' & "
                "$substringAfter($states.context.Map.Item.Value.group, 'g')"
            )
        else:
            comment = "One child execution per group: Batch Transform, then Bedrock batch inference"
            item_selector["modelName"] = jsonata("$modelName")
            item_selector["jobName"] = job_name
        groups = sfn.DistributedMap.jsonata(
            self,
            "Groups",
            state_name="Describe groups",
            comment=comment,
            items=sfn.ProvideItems.jsonata(jsonata("$plan.groups")),
            item_selector=item_selector,
            max_concurrency=config.catalog.max_concurrent_groups,
            tolerated_failure_percentage=0,
            map_execution_type=sfn.StateMachineType.STANDARD,
        )
        groups.item_processor(self._group())
        return groups

    def _report_failed_run(
        self, construct_id: str, *, route: str, then: sfn.Fail
    ) -> sfn.IChainable:
        """Finalize for a run that is about to fail; the run fails whatever finalize does."""
        # A build fails before the plan exists: its counts are then unknown, written as 0.
        plan = {
            name: 0 if route == "none" else jsonata(f"$plan.{name}")
            for name in ("records", "skipped", "failed")
        }
        report = lambda_task(
            self,
            construct_id,
            state_name=f"Write report ({'failed build' if route == 'none' else 'failed groups'})",
            function=self._functions.finalize,
            payload={"runId": jsonata("$runId"), "route": route, "plan": plan},
        )
        report.add_catch(then, errors=["States.ALL"])
        return report.next(then)

    def _transform_batch(
        self,
        groups: sfn.DistributedMap,
        *,
        finalize: sfn.IChainable,
        report_groups: sfn.IChainable,
    ) -> sfn.IChainable:
        """The endpoint source's batch route: read the recorded VQA archive, create the run's
        SageMaker model, run the groups, delete the model (also when a group fails)."""
        config, resources, transform = self._config, self._resources, self._transform
        parameter = transform.model_data_parameter
        parameter_arn = (
            f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter{parameter}"
        )
        read_model = read_parameter(
            self,
            "ReadModel",
            state_name="Read VQA model archive",
            parameter=(parameter_arn, parameter),
            assign_to="modelDataUrl",
        )
        read_model.add_catch(
            self._fail(
                "ModelNotTrained",
                error="VqaModelNotTrained",
                cause=f"SSM parameter {parameter} holds no VQA model archive: run the VQA "
                f"training workflow ({config.resource_name('vqa-training')}) first; it records "
                "the archive there",
            ),
            errors=["Ssm.ParameterNotFoundException"],
        )
        read_model.add_catch(
            self._fail(
                "ReadModelFailed",
                error=jsonata("$states.input.Error"),
                cause=jsonata(f"'could not read {parameter}: ' & $string($states.input.Cause)"),
            ),
            errors=["States.ALL"],
        )
        vpc_config = sagemaker_vpc_config(config)
        network = {"VpcConfig": vpc_config} if vpc_config is not None else {}
        create_model = aws_call(
            self,
            "CreateModel",
            state_name="Create transform model",
            service="sagemaker",
            action="createModel",
            iam_resources=["*"],
            parameters={
                "ModelName": jsonata(f"'{resources.job_name_prefix}-' & $runId"),
                "PrimaryContainer": {
                    "Image": transform.image.uri,
                    "ModelDataUrl": jsonata("$modelDataUrl"),
                    "Environment": dict(transform.inference_environment),
                },
                "ExecutionRoleArn": transform.role.role_arn,
                # The archive carries the model and its code: the container needs no network.
                "EnableNetworkIsolation": True,
                # With the stage's `network` section set, its transform jobs run in the VPC.
                **network,
                "Tags": self._tags(key="Key", value="Value"),
            },
            assign={"modelName": jsonata(f"'{resources.job_name_prefix}-' & $runId")},
        )
        create_model.add_catch(
            self._fail(
                "CreateModelFailed",
                error=jsonata("$states.input.Error"),
                cause=jsonata(
                    "'could not create the transform model from ' & $modelDataUrl & ': ' & "
                    "$string($states.input.Cause)"
                ),
            ),
            errors=["States.ALL"],
        )

        def delete_model(construct_id: str, state_name: str) -> tasks.CallAwsService:
            return aws_call(
                self,
                construct_id,
                state_name=state_name,
                service="sagemaker",
                action="deleteModel",
                iam_resources=["*"],
                parameters={"ModelName": jsonata("$modelName")},
            )

        cleanup = delete_model("DeleteModelAfterFailure", "Delete model (failed run)")
        cleanup.add_catch(report_groups, errors=["States.ALL"])
        cleanup.next(report_groups)
        groups.add_catch(
            cleanup,
            errors=["States.ALL"],
            assign={"groupsError": error_output()},
        )
        # A model bills nothing while no job uses it: a failed delete does not fail the run.
        delete = delete_model("DeleteModel", "Delete model")
        delete.add_catch(finalize, errors=["States.ALL"])
        return read_model.next(create_model).next(groups).next(delete).next(finalize)

    def _build(self) -> sfn.IChainable:
        config, functions = self._config, self._functions

        start = lambda_task(
            self,
            "Start",
            state_name="Check request",
            function=functions.start,
            payload={
                "input": jsonata("$states.input"),
                "executionName": jsonata("$states.context.Execution.Name"),
                "startTime": jsonata("$states.context.Execution.StartTime"),
            },
            assign={
                "request": jsonata("$states.result.Payload"),
                "runId": jsonata("$states.result.Payload.runId"),
            },
        )
        start.add_catch(
            self._fail("InvalidInput", error=INPUT_ERROR, cause=jsonata(ERROR_MESSAGE)),
            errors=[INPUT_ERROR],
        )
        start.add_catch(
            self._fail(
                "StartFailed",
                error=jsonata("$states.input.Error"),
                cause=jsonata(f"'the request could not be checked: ' & {ERROR_MESSAGE}"),
            ),
            errors=["States.ALL"],
        )

        build_failed = self._fail(
            "BuildFailed",
            error=jsonata("$buildError.Error"),
            cause=jsonata(
                "'building the Batch Transform input of run ' & $runId & ' failed: ' & "
                "$string($buildError.Cause)"
            ),
        )
        plan = lambda_task(
            self,
            "Plan",
            state_name="Plan run",
            function=functions.plan,
            payload=jsonata("$request"),
            assign={"plan": jsonata("$states.result.Payload")},
        )
        builds = {kind: self._build_map(kind) for kind in SOURCE_KINDS}
        # A failed build still reports the products it refused and deletes the image copies of
        # the parts it wrote, before the run fails.
        report_build = self._report_failed_run("ReportFailedBuild", route="none", then=build_failed)
        for build in builds.values():
            build.add_catch(
                report_build,
                errors=["States.ALL"],
                assign={"buildError": error_output()},
            )
            build.next(plan)
        choose_kind = sfn.Choice.jsonata(self, "ChooseKind", state_name="Source kind?")
        for kind, build in builds.items():
            choose_kind.when(sfn.Condition.jsonata(jsonata(f"$request.kind = '{kind}'")), build)
        choose_kind.otherwise(
            self._fail(
                "UnknownKind",
                error="UnknownSourceKind",
                cause=jsonata("'the start step returned kind ' & $string($request.kind)"),
            )
        )

        finalize = lambda_task(
            self,
            "Finalize",
            state_name="Write report",
            function=functions.finalize,
            payload={
                "runId": jsonata("$runId"),
                "route": jsonata("$plan.route"),
                "plan": {
                    name: jsonata(f"$plan.{name}") for name in ("records", "skipped", "failed")
                },
            },
            assign={"summary": jsonata("$states.result.Payload")},
        )
        done = sfn.Succeed.jsonata(self, "Done", state_name="Done", outputs=jsonata("$summary"))
        finalize.next(done)

        online = sfn.Map.jsonata(
            self,
            "Online",
            state_name="Describe online",
            items=sfn.ProvideItems.jsonata(jsonata("$plan.products")),
            item_selector={
                "runId": jsonata("$runId"),
                "product": jsonata("$states.context.Map.Item.Value"),
                "languages": jsonata("$request.languages"),
            },
            max_concurrency=config.catalog.online_concurrency,
        )
        online.item_processor(
            lambda_task(
                self,
                "OnlineProduct",
                state_name="Describe product",
                function=functions.online,
                payload=jsonata("$states.input"),
                outputs=jsonata("$states.result.Payload"),
            )
        )
        online.next(finalize)

        groups_failed = self._fail(
            "GroupsFailed",
            error=jsonata("$groupsError.Error"),
            cause=jsonata("'a group of run ' & $runId & ' failed: ' & $string($groupsError.Cause)"),
        )
        # The groups that finished keep their descriptions: the report and summary say what
        # they did (and the image copies go) before the run fails.
        report_groups = self._report_failed_run(
            "ReportFailedGroups", route="batch", then=groups_failed
        )
        groups = self._groups_map()
        if self._vision:
            # No model to create or delete: Bedrock jobs name the model themselves.
            groups.add_catch(
                report_groups, errors=["States.ALL"], assign={"groupsError": error_output()}
            )
            batch: sfn.IChainable = groups.next(finalize)
        else:
            batch = self._transform_batch(groups, finalize=finalize, report_groups=report_groups)

        route = (
            sfn.Choice.jsonata(self, "Route", state_name="Route?")
            .when(sfn.Condition.jsonata(jsonata("$plan.route = 'none'")), finalize)
            .when(sfn.Condition.jsonata(jsonata("$plan.route = 'online'")), online)
            .when(sfn.Condition.jsonata(jsonata("$plan.route = 'batch'")), batch)
            .otherwise(
                self._fail(
                    "UnknownRoute",
                    error="UnknownRoute",
                    cause=jsonata("'the plan step returned route ' & $string($plan.route)"),
                )
            )
        )
        plan.next(route)
        return start.next(choose_kind)
