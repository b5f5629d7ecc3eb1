"""The committed OpenAPI document of the images API is the one the code generates."""

from __future__ import annotations

import json

from images.openapi import DOCUMENT_PATH, document


def test_committed_openapi_matches_the_code() -> None:
    assert DOCUMENT_PATH.read_text() == document(), "run `make openapi` and commit the result"


def test_the_document_describes_the_route_its_ranges_and_our_errors() -> None:
    spec = json.loads(document())

    post = spec["paths"]["/images"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/GenerateImagesRequest"
    )
    assert {"200", "400", "409", "415", "422", "502", "503"} == set(post["responses"])
    # Our 422 is the content filter's, in our error shape, not Powertools' validation body.
    assert "HTTPValidationError" not in json.dumps(spec)
    schema = spec["components"]["schemas"]["GenerateImagesRequest"]
    assert schema["required"] == ["prompt", "width", "height"]
    assert schema["additionalProperties"] is False
    properties = schema["properties"]
    assert (properties["prompt"]["minLength"], properties["prompt"]["maxLength"]) == (1, 512)
    assert (properties["numberOfImages"]["minimum"], properties["numberOfImages"]["maximum"]) == (
        1,
        5,
    )
    assert (properties["cfgScale"]["minimum"], properties["cfgScale"]["maximum"]) == (1.1, 10)
    assert properties["cfgScale"]["default"] == 8
    assert properties["quality"]["enum"] == ["standard", "premium"]
    assert "1173x640" in properties["width"]["description"]
    assert spec["security"] == [{"sigv4": []}]
