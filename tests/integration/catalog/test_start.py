"""The start step against moto: the source must exist, the run's request is recorded."""

from __future__ import annotations

from typing import Any

import pytest

from catalog.handlers import start as start_module
from catalog.handlers.environment import CatalogEnvironment
from catalog.handlers.start import Starter
from catalog.logic.errors import CatalogInputError
from catalog.logic.sources import run_id_for
from shared.adapters.catalog_sources import S3CatalogSource
from shared.adapters.run_files import RunFiles
from shared.environment import DeploymentError
from tests.catalog_support import (
    FOREIGN_BUCKET,
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
    CatalogAws,
    catalog_aws,
    catalog_environ,
    make_jpeg,
    read_json,
)
from tests.descriptions_support import FakeContext

pytestmark = pytest.mark.integration
__all__ = ["catalog_aws"]

START_TIME = "2026-11-22T08:16:45.123Z"


def _starter(aws: CatalogAws) -> Starter:
    return Starter(
        environment=aws.environment(),
        sources=S3CatalogSource(s3=aws.s3),
        files=RunFiles(aws.catalog.results_bucket, s3=aws.s3),
    )


def _event(execution_input: Any, name: str = "spring") -> dict[str, Any]:
    return {"input": execution_input, "executionName": name, "startTime": START_TIME}


def _refused(aws: CatalogAws, execution_input: Any) -> CatalogInputError:
    with pytest.raises(CatalogInputError) as caught:
        _starter(aws).handle(_event(execution_input))
    return caught.value


def test_a_prefix_of_images_starts_a_run(catalog_aws: CatalogAws) -> None:
    # Given images under a prefix
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key="spring/", Body=b"")
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key="spring/1.jpg", Body=make_jpeg())
    # When the run starts
    result = _starter(catalog_aws).handle(
        _event({"source": f"s3://{UPLOADS_BUCKET}/spring/", "languages": ["en", "de"]})
    )
    # Then it answers what the map needs, and keeps the normalized request
    run_id = run_id_for("spring", START_TIME)
    assert result == {
        "runId": run_id,
        "kind": "prefix",
        "bucket": UPLOADS_BUCKET,
        "prefix": "spring/",
        "languages": ["en", "de"],
        "attributeSet": "default",
        "force": False,
    }
    recorded = read_json(catalog_aws.s3, RESULTS_BUCKET, f"catalog/{run_id}/request.json")
    assert recorded == {
        **result,
        "source": f"s3://{UPLOADS_BUCKET}/spring/",
        "executionName": "spring",
        "startTime": START_TIME,
    }


@pytest.mark.parametrize(("name", "kind"), [("m.csv", "csv"), ("failures.jsonl", "jsonl")])
def test_an_existing_manifest_starts_a_run(catalog_aws: CatalogAws, name: str, kind: str) -> None:
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key=f"manifests/{name}", Body=b"x\n")
    result = _starter(catalog_aws).handle(
        _event({"source": f"s3://{UPLOADS_BUCKET}/manifests/{name}", "force": True})
    )
    assert (result["kind"], result["key"], result["force"]) == (kind, f"manifests/{name}", True)
    assert "prefix" not in result


def test_an_empty_prefix_is_refused(catalog_aws: CatalogAws) -> None:
    # Only folder markers (and a similarly named sibling prefix) are there
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key="spring/", Body=b"")
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key="spring/sub/", Body=b"")
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key="spring-2/1.jpg", Body=b"x")
    error = _refused(catalog_aws, {"source": f"s3://{UPLOADS_BUCKET}/spring/"})
    assert error.code == "source_empty"
    assert f"s3://{UPLOADS_BUCKET}/spring/ holds no objects" in error.message
    assert "case-sensitive" in error.message


def test_a_missing_or_empty_manifest_is_refused(catalog_aws: CatalogAws) -> None:
    error = _refused(catalog_aws, {"source": f"s3://{UPLOADS_BUCKET}/m.csv"})
    assert error.code == "manifest_missing"
    assert f"s3://{UPLOADS_BUCKET}/m.csv does not exist" in error.message
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key="m.csv", Body=b"")
    error = _refused(catalog_aws, {"source": f"s3://{UPLOADS_BUCKET}/m.csv"})
    assert error.code == "manifest_empty"
    assert "product_id and image_key" in error.message


def test_nothing_is_written_for_a_refused_request(catalog_aws: CatalogAws) -> None:
    catalog_aws.s3.put_object(Bucket=FOREIGN_BUCKET, Key="i/1.jpg", Body=make_jpeg())
    error = _refused(catalog_aws, {"source": f"s3://{FOREIGN_BUCKET}/i/"})
    assert error.code == "source_bucket_not_allowed"
    assert catalog_aws.s3.list_objects_v2(Bucket=RESULTS_BUCKET).get("KeyCount") == 0


def test_the_handler_wires_itself_from_the_environment(
    catalog_aws: CatalogAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's environment variables and a source
    for name, value in catalog_environ(catalog_aws.catalog, catalog_aws.descriptions).items():
        monkeypatch.setenv(name, value)
    catalog_aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key="spring/1.jpg", Body=make_jpeg())
    start_module.starter.cache_clear()
    try:
        # When Step Functions invokes the handler
        result = start_module.handler(
            _event({"source": f"s3://{UPLOADS_BUCKET}/spring/"}), FakeContext()
        )
        # Then the run starts; and a client error surfaces as CatalogInputError
        assert result["runId"] == run_id_for("spring", START_TIME)
        with pytest.raises(CatalogInputError, match="unknown field 'sorce'"):
            start_module.handler(_event({"sorce": "s3://x/"}), FakeContext())
    finally:
        start_module.starter.cache_clear()


def test_a_state_machine_event_without_execution_data_is_a_bug_not_a_client_error(
    catalog_aws: CatalogAws,
) -> None:
    with pytest.raises(ValueError, match=r"Execution\.Name"):
        _starter(catalog_aws).handle({"input": {"source": f"s3://{UPLOADS_BUCKET}/x/"}})


def test_the_environment_needs_both_settings() -> None:
    environ = catalog_environ()
    assert CatalogEnvironment.load(environ).catalog.results_bucket == RESULTS_BUCKET
    with pytest.raises(DeploymentError, match="DESCRIPTIONS_SETTINGS"):
        CatalogEnvironment.load({"CATALOG_SETTINGS": environ["CATALOG_SETTINGS"]})
    with pytest.raises(DeploymentError, match="CATALOG_SETTINGS is not valid"):
        CatalogEnvironment.load({**environ, "CATALOG_SETTINGS": '{"resultsBucket": ""}'})
