"""The images function reads its settings from the variables the Api stack sets."""

from __future__ import annotations

import json

import pytest

from images.handlers.environment import Environment
from images.handlers.wiring import build_service
from shared.adapters.image_store import S3ImageStore
from shared.adapters.parameters import CachedParameter
from shared.environment import DeploymentError
from tests.images_support import PARAMETER, RESULTS_BUCKET, settings_document

VARIABLES = {
    "IMAGES_SETTINGS": json.dumps(settings_document()),
    "RESULTS_BUCKET": RESULTS_BUCKET,
    "MODEL_ARN_PARAMETER": PARAMETER,
}


def test_the_stacks_variables_load() -> None:
    environment = Environment.load(VARIABLES)
    assert environment.results_bucket == RESULTS_BUCKET
    assert environment.model_arn_parameter == PARAMETER
    assert environment.settings.model_read_timeout_seconds == 26
    assert len(environment.settings.allowed_sizes()) == 25
    assert (1173, 640) in environment.settings.allowed_sizes()


@pytest.mark.parametrize("missing", sorted(VARIABLES))
def test_a_missing_variable_is_a_deployment_error(missing: str) -> None:
    variables = {name: value for name, value in VARIABLES.items() if name != missing}
    with pytest.raises(DeploymentError, match=missing):
        Environment.load(variables)


def test_malformed_settings_are_a_deployment_error() -> None:
    broken = {**VARIABLES, "IMAGES_SETTINGS": json.dumps({"maxImagesPerRequest": 9})}
    with pytest.raises(DeploymentError, match="IMAGES_SETTINGS is not valid"):
        Environment.load(broken)


def test_the_wiring_builds_clients_fit_for_images() -> None:
    service = build_service(Environment.load(VARIABLES))

    assert isinstance(service.model_arn, CachedParameter)
    assert service.model_arn.name == PARAMETER
    assert isinstance(service.store, S3ImageStore)
    assert service.store.bucket == RESULTS_BUCKET
    # Titan may take most of the function's time, in one attempt (the service retries itself).
    # Each attempt's read timeout is the configured one, cut to the time left.
    bedrock = service.image_model.client_for(60).meta.config
    assert bedrock.read_timeout == 26
    assert bedrock.retries["total_max_attempts"] == 1
    assert service.image_model.client_for(12).meta.config.read_timeout == 12
    # Objects under SSE-KMS only accept Signature Version 4.
    s3 = service.store._client.meta.config
    assert s3.signature_version == "s3v4"
