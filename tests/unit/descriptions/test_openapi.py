"""The committed OpenAPI document is the one the code generates."""

from __future__ import annotations

import json

from descriptions.openapi import DOCUMENT_PATH, document


def test_committed_openapi_matches_the_code() -> None:
    assert DOCUMENT_PATH.read_text() == document(), "run `make openapi` and commit the result"


def test_the_document_describes_both_routes_with_our_error_shape() -> None:
    spec = json.loads(document())

    post = spec["paths"]["/descriptions"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DescribeRequest"
    )
    assert {"200", "400", "413", "415", "502", "503"} <= set(post["responses"])
    assert "422" not in post["responses"]
    assert "404" in spec["paths"]["/descriptions/{productId}"]["get"]["responses"]
    assert spec["security"] == [{"sigv4": []}]
