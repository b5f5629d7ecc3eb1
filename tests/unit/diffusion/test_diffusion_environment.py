"""The diffusion function reads its settings from the variables the Api stack sets, and wires
clients fit for minute-long model calls."""

from __future__ import annotations

import json

import pytest

from diffusion.handlers.environment import Environment
from diffusion.handlers.wiring import build_service
from shared.adapters.diffusion_images import S3InputImages, S3OutputImages
from shared.environment import DeploymentError
from tests.diffusion_support import RESULTS_BUCKET, UPLOADS_BUCKET, settings_document

VARIABLES = {
    "DIFFUSION_SETTINGS": json.dumps(settings_document()),
    "UPLOADS_BUCKET": UPLOADS_BUCKET,
    "RESULTS_BUCKET": RESULTS_BUCKET,
}


def test_the_stacks_variables_load() -> None:
    environment = Environment.load(VARIABLES)
    assert (environment.uploads_bucket, environment.results_bucket) == (
        UPLOADS_BUCKET,
        RESULTS_BUCKET,
    )
    s = environment.settings
    assert s.generation.endpoint_name == "atelier-dev-dreambooth"
    assert s.styling.endpoint_name == "atelier-dev-styling"
    assert s.styling.config_key == "styling.hosting.model_data_url"
    assert s.model_read_timeout_seconds == 26


@pytest.mark.parametrize("missing", sorted(VARIABLES))
def test_a_missing_variable_is_a_deployment_error(missing: str) -> None:
    variables = {name: value for name, value in VARIABLES.items() if name != missing}
    with pytest.raises(DeploymentError, match=missing):
        Environment.load(variables)


def test_malformed_settings_are_a_deployment_error() -> None:
    broken = {**VARIABLES, "DIFFUSION_SETTINGS": json.dumps({"maxImagesPerRequest": 9})}
    with pytest.raises(DeploymentError, match="DIFFUSION_SETTINGS is not valid"):
        Environment.load(broken)


def test_the_wiring_builds_clients_fit_for_diffusion() -> None:
    service = build_service(Environment.load(VARIABLES))

    assert isinstance(service.uploads, S3InputImages)
    assert service.uploads.bucket == UPLOADS_BUCKET
    assert isinstance(service.store, S3OutputImages)
    assert service.store.bucket == RESULTS_BUCKET
    # One attempt per call (the service retries itself), as long as the function has left.
    runtime = service.model.client_for(60).meta.config
    assert (runtime.read_timeout, runtime.retries["total_max_attempts"]) == (26, 1)
    # Objects under SSE-KMS only accept Signature Version 4.
    assert service.store._client.meta.config.signature_version == "s3v4"
