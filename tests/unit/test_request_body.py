"""The shared request-body reader at its limits (the handlers' property test covers the rest)."""

from __future__ import annotations

import base64
import json

import pytest

from shared.models.errors import RequestError
from shared.request_body import MAX_INTEGER_DIGITS, MAX_NESTING, read_json_object


def read(
    body: object, content_type: str | None = "application/json", *, b64: bool = False
) -> object:
    return read_json_object(body, content_type=content_type, is_base64_encoded=b64)


def refusal(
    body: object, content_type: str | None = "application/json", *, b64: bool = False
) -> RequestError:
    with pytest.raises(RequestError) as caught:
        read(body, content_type, b64=b64)
    return caught.value


def nested(depth: int) -> str:
    """An object whose innermost value sits `depth` containers down (the object counts)."""
    return '{"a": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"


@pytest.mark.parametrize("body", [None, ""])
def test_no_body_is_none_so_the_route_says_what_it_needs(body: str | None) -> None:
    assert read(body) is None


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "Application/JSON", "application/json; charset=UTF-8",
     'application/json;charset="utf-8"', "application/json ; charset=utf8", "application/json;"],
)  # fmt: skip
def test_json_media_types_are_read(content_type: str | None) -> None:
    assert read('{"a": 1}', content_type) == {"a": 1}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded",
     "application/jsonp", "application/json-patch+json", "application/json; charset=latin-1",
     "application/json\u00a0", "*/*"],
)  # fmt: skip
def test_other_media_types_are_415(content_type: str) -> None:
    error = refusal('{"a": 1}', content_type)
    assert (error.status, error.code) == (415, "unsupported_media_type")
    assert "Content-Type: application/json" in error.message


def test_nesting_up_to_the_limit_is_read_and_one_more_is_refused() -> None:
    assert read(nested(MAX_NESTING)) is not None
    error = refusal(nested(MAX_NESTING + 1))
    assert (error.status, error.code) == (400, "body_too_deep")


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_nesting_past_pythons_recursion_limit_is_refused_not_raised(depth: int) -> None:
    assert refusal("[" * depth + "]" * depth).code == "body_too_deep"
    assert refusal('{"a": ' + "[" * depth + "]" * depth + "}").code == "body_too_deep"


def test_integers_up_to_the_digit_limit_are_read_and_longer_ones_refused() -> None:
    longest = "9" * MAX_INTEGER_DIGITS
    assert read(f'{{"a": {longest}, "b": -{longest}}}') == {"a": int(longest), "b": -int(longest)}
    for digits in (MAX_INTEGER_DIGITS + 1, 4_301, 50_000):
        error = refusal(f'{{"a": {"9" * digits}}}')
        assert (error.status, error.code) == (400, "number_too_long")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_pythons_extra_constants_are_not_json(constant: str) -> None:
    assert refusal(f'{{"a": {constant}}}').code == "invalid_json"


@pytest.mark.parametrize(
    ("body", "kind"), [("[{}]", "an array"), ('"{}"', "a string"), ("1", "a number"),
                       ("true", "a boolean"), ("null", "null")],
)  # fmt: skip
def test_a_body_that_is_not_an_object_is_refused_naming_what_it_is(body: str, kind: str) -> None:
    error = refusal(body)
    assert (error.code, error.message) == (
        "invalid_request",
        f"body: must be a JSON object, not {kind}",
    )


def test_base64_bodies_are_decoded_strictly() -> None:
    text = json.dumps({"prompt": "caf\u00e9"})
    encoded = base64.b64encode(text.encode()).decode()
    assert read(encoded, b64=True) == {"prompt": "caf\u00e9"}
    # Python's own decoder would take each of these.
    for sloppy in (text, encoded + "=", encoded + "\n", encoded.replace("e", "-"), encoded[:-1]):
        assert refusal(sloppy, b64=True).code == "invalid_body_encoding", sloppy


def test_a_base64_body_must_decode_to_utf8() -> None:
    latin1 = base64.b64encode(json.dumps({"a": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"))
    error = refusal(latin1.decode(), b64=True)
    assert (error.status, error.code, error.message) == (
        400,
        "invalid_body_encoding",
        "the body is not UTF-8 text",
    )


@pytest.mark.parametrize("body", [{"a": 1}, [1], 42, b"{}"])
def test_a_direct_invocations_body_that_is_not_text_is_refused(body: object) -> None:
    assert refusal(body).code == "invalid_request"
