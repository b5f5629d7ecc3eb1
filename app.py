#!/usr/bin/env python3
"""Entry point of the CDK app: stage config → stacks → cdk-nag.

`npx cdk synth -c stage=prod` (or `make synth STAGE=prod`) picks the stage from cdk.json.
"""

from __future__ import annotations

import sys

from aws_cdk import App, Environment

from infra.config import STAGE_CONTEXT_KEY, ConfigError, StageConfig, load_stage_config
from infra.constructs.log_groups import encrypt_log_groups
from infra.models import hosted_models, listed, trained_models
from infra.nag import attach_nag
from infra.stacks.api import ApiStack
from infra.stacks.bedrock import BedrockStack
from infra.stacks.catalog import CatalogStack
from infra.stacks.data import DataStack
from infra.stacks.hosting import HostingStack
from infra.stacks.training import TrainingStack


def read_config(app: App) -> StageConfig:
    context = {"atelier": app.node.try_get_context("atelier")}
    if context["atelier"] is None:
        context = {}
    return load_stage_config(context, app.node.try_get_context(STAGE_CONTEXT_KEY))


def build_app(app: App) -> App:
    """Add every stack of the configured stage to `app` and attach the security checks."""
    config = read_config(app)
    env = (
        Environment(account=config.account, region=config.region)
        if config.account is not None
        else None
    )

    # Stack tags: CloudFormation puts them on every resource that supports tags (cost allocation).
    tags = {**config.tags, "atelier:stage": config.stage}

    data = DataStack(
        app,
        config.resource_name("data"),
        config=config,
        env=env,
        tags=tags,
        description=f"Atelier ({config.stage}) data: KMS key, S3 buckets, products table",
        termination_protection=config.is_production_like,
    )
    TrainingStack(
        app,
        config.resource_name("training"),
        config=config,
        data=data,
        env=env,
        tags=tags,
        description=f"Atelier ({config.stage}) training: "
        f"{listed([m.training.title for m in trained_models() if m.training])} training "
        "workflows, their SageMaker execution roles, training code",
        termination_protection=config.is_production_like,
    )
    hosted = [
        f"{model.endpoint_name(config)} on {model.hosting(config).instance_type}"
        for model in hosted_models()
        if model.is_hosted(config)
    ]
    keys = listed([model.key for model in hosted_models()])
    hosting_description = (
        f"SageMaker endpoints {', '.join(hosted)}"
        if hosted
        else f"no endpoint ({keys} hosting.model_data_url are null)"
    )
    hosting = HostingStack(
        app,
        config.resource_name("hosting"),
        config=config,
        data=data,
        env=env,
        tags=tags,
        description=f"Atelier ({config.stage}) hosting: {hosting_description}",
        termination_protection=config.is_production_like,
    )
    # Titan customization workflows and the throughput cost guard. The Api stack finds the
    # throughput through the SSM parameter the workflow writes, so it does not depend on this one.
    BedrockStack(
        app,
        config.resource_name("bedrock"),
        config=config,
        data=data,
        env=env,
        tags=tags,
        description=f"Atelier ({config.stage}) bedrock: "
        + (
            "Titan Image Generator customization and provisioned-throughput workflows, "
            if config.titan.customizable
            else "no image customization (titan.base_model_id is null), "
        )
        + "throughput cost guard, model lifecycle check",
        termination_protection=config.is_production_like,
    )
    # No stack depends on hosting: the Api stack grants by endpoint name, so the endpoint (and
    # its bill) can be destroyed on its own.
    ApiStack(
        app,
        config.resource_name("api"),
        config=config,
        data=data,
        attribute_endpoint=hosting.vqa_endpoint,
        env=env,
        tags=tags,
        description=f"Atelier ({config.stage}) api: REST API, upload queue and description "
        "functions",
        termination_protection=config.is_production_like,
    )
    # Depends on the Data stack only: the VQA model comes from the training workflow's SSM
    # parameter at run time and the online path's endpoint is granted by name.
    CatalogStack(
        app,
        config.resource_name("catalog"),
        config=config,
        data=data,
        env=env,
        tags=tags,
        description=f"Atelier ({config.stage}) catalog: describe-catalog workflow (Distributed "
        f"Map, Batch Transform on {config.catalog.transform.instance_type}, Bedrock batch "
        "inference) and its functions",
        termination_protection=config.is_production_like,
    )

    # After every stack exists: one place encrypts every log group with the stage's data key.
    encrypt_log_groups(app, key=data.key, config=config)
    attach_nag(app)
    return app


def main() -> int:
    app = App()
    try:
        build_app(app)
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
