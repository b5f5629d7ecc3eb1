"""The committed OpenAPI document of the diffusion API is the one the code generates."""

from __future__ import annotations

import json

from diffusion.openapi import DOCUMENT_PATH, document


def test_committed_openapi_matches_the_code() -> None:
    assert DOCUMENT_PATH.read_text() == document(), "run `make openapi` and commit the result"


def test_the_document_describes_both_routes_their_ranges_and_our_errors() -> None:
    spec = json.loads(document())

    for path, request in (("/generations", "GenerationRequest"), ("/styling", "StylingRequest")):
        post = spec["paths"][path]["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith(f"/{request}")
        assert set(post["responses"]) == {
            "200",
            "400",
            "409",
            "413",
            "415",
            "422",
            "502",
            "503",
            "504",
        }
    # Our 422 is the endpoint's refusal, in our error shape, not Powertools' validation body.
    assert "HTTPValidationError" not in json.dumps(spec)
    schemas = spec["components"]["schemas"]
    assert schemas["GenerationRequest"]["required"] == ["prompt"]
    assert schemas["GenerationRequest"]["additionalProperties"] is False
    styling = schemas["StylingRequest"]
    assert styling["required"] == ["prompt", "image"]
    assert set(styling["properties"]) >= {"image", "mask", "maskPrompt", "imageLength"}
    assert set(schemas["InputImage"]["properties"]) == {"base64", "key"}
    assert set(schemas["StylingAnswer"]["properties"]) == {"requestId", "images", "mask", "seed"}
    assert spec["security"] == [{"sigv4": []}]
