"""Property: whatever a client sends, the API answers 2xx or 4xx in the error shape, never 5xx."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descriptions.handlers import api
from descriptions.logic.pipeline import DescriptionPipeline
from tests.descriptions_support import (
    FakeAttributeModel,
    FakeContext,
    FakeTextModel,
    InMemoryArchive,
    InMemoryTable,
    api_event,
    image_bytes,
)
from tests.descriptions_support import settings as pipeline_settings

pytestmark = pytest.mark.integration

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_IMAGES = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=200).map(lambda data: base64.b64encode(data).decode()),
    # real images, cut at any point
    st.integers(min_value=0, max_value=2000).map(
        lambda cut: base64.b64encode(image_bytes()[:cut]).decode()
    ),
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "productId": st.one_of(st.text(max_size=12), st.integers(), st.just("38642")),
        "image": st.one_of(_IMAGES, _JSON),
        "category": st.one_of(st.text(max_size=10), st.just("default"), _JSON),
        "languages": st.one_of(st.lists(st.text(max_size=3), max_size=6), _JSON),
        "extra": _JSON,
    },
)
_BODIES = st.one_of(
    st.none(),
    st.text(max_size=60),
    _JSON.map(json.dumps),
    _FIELDS.map(json.dumps),
)


@pytest.fixture(scope="module")
def fake_pipeline() -> DescriptionPipeline:
    return DescriptionPipeline(
        settings=pipeline_settings(),
        attribute_model=FakeAttributeModel(),
        text_model=FakeTextModel(),
        archive=InMemoryArchive(),
        table=InMemoryTable(),
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_BODIES,
    method=st.sampled_from(["POST", "GET"]),
    product_path=st.text(min_size=1, max_size=20).filter(lambda p: "/" not in p),
)
def test_no_request_makes_the_api_fail_with_a_5xx(
    fake_pipeline: DescriptionPipeline,
    monkeypatch: pytest.MonkeyPatch,
    body: str | None,
    method: str,
    product_path: str,
) -> None:
    monkeypatch.setattr(api, "pipeline", lambda: fake_pipeline)
    path = "/descriptions" if method == "POST" else f"/descriptions/{product_path}"

    response: dict[str, Any] = api.handler(api_event(method, path, body), FakeContext())

    assert response["statusCode"] < 500, response["body"]
    document = json.loads(response["body"])
    if response["statusCode"] >= 400:
        assert set(document) == {"error"}
        assert isinstance(document["error"]["code"], str)
        assert document["error"]["message"]
