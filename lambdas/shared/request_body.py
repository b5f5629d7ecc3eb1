"""The request body of every POST route: UTF-8 JSON text holding one object, read strictly.

Powertools' own body parsing takes any `application/json...` prefix, form and multipart bodies,
and hands a list to a model field by its first element; base64 flags, deep nesting or a huge
integer make it raise (RecursionError, ValueError, UnicodeDecodeError), which API Gateway turns
into a bare 502. The APIs must refuse such requests themselves, whatever sits in front of them,
so `json_api()` builds the Powertools resolver with the body read here instead: every refusal is
a `RequestError` (4xx in our error shape, through the API's own exception handler and metrics)
and nothing reaches a model.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any, NoReturn

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from shared.api_responses import error_doc
from shared.models.errors import RequestError

# Our request bodies nest two levels; this leaves room for any future field, and keeps deep
# documents from pydantic and the code after it. (A document too deep for Python's parser itself,
# whose RecursionError used to escape as a 502, is refused with the same code.)
MAX_NESTING = 32
# Past every integer a field takes (a seed is below 2**31), and far below Python's 4,300-digit
# int-from-string limit, whose ValueError used to escape as a 502.
MAX_INTEGER_DIGITS = 20

JSON_MEDIA_TYPE = "application/json"
UNSUPPORTED_MEDIA_TYPE_DOC: OpenAPIResponse = error_doc(
    "The body is not JSON: send it as UTF-8 with `Content-Type: application/json`"
)


def json_api() -> APIGatewayRestResolver:
    """A validating REST resolver whose routes read their body with `read_json_object`."""
    app = APIGatewayRestResolver(enable_validation=True)
    if not hasattr(app, "_request_validation_middleware"):
        raise RuntimeError(_SEAM_MOVED)
    # Powertools runs this middleware first on every validated route; replacing its instance is
    # the one seam that lets our reader run before Powertools parses the body.
    # (Powertools' middleware __init__ has no annotations.)
    app._request_validation_middleware = _StrictBodyValidation()  # type: ignore[no-untyped-call]
    return app


# Both seams are Powertools internals (pinned: pyproject.toml, the layer version in cdk.json):
# fail loudly, never fall back to Powertools' parsing, if an upgrade moves them.
_SEAM_MOVED = "Powertools changed how it reads request bodies: update shared/request_body.py"
if not callable(getattr(OpenAPIRequestValidationMiddleware, "_get_body", None)):
    raise RuntimeError(_SEAM_MOVED)


class _StrictBodyValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, with the body read by `read_json_object`."""

    def _get_body(self, app: Any) -> Any:
        event = app.current_event
        return read_json_object(
            event.get("body"),
            content_type=_header(event.get("headers"), "content-type"),
            is_base64_encoded=event.get("isBase64Encoded") is True,
        )


def read_json_object(
    body: object, *, content_type: str | None, is_base64_encoded: bool
) -> dict[str, Any] | None:
    """The body's JSON object, or None when there is no body (the route then says what it needs).

    Raises `RequestError`: 415 for a content type other than JSON in UTF-8; 400 for a body that
    is not base64 although flagged so, not UTF-8, not JSON, nested deeper than MAX_NESTING, with
    an integer longer than MAX_INTEGER_DIGITS, or not an object.
    """
    if body is None or body == "":
        return None
    if not isinstance(body, str):
        # Only a direct invocation can do this; API Gateway always sends text.
        _refuse("invalid_request", "the event's body must be a string of JSON text")
    _check_media_type(content_type)
    text = _decode_base64(body) if is_base64_encoded else body
    document = _parse(text)
    if not isinstance(document, dict):
        _refuse("invalid_request", f"body: must be a JSON object, not {_json_kind(document)}")
    _check_nesting(document)
    return document


def _check_media_type(content_type: str | None) -> None:
    """No content type is read as JSON (a plain `curl --data-binary` sends none); otherwise it
    must be `application/json`, with no charset or UTF-8."""
    if content_type is None or not content_type.strip(" \t"):
        return
    if not content_type.isascii():
        _unsupported("the Content-Type header is not ASCII")
    media_type, *parameters = content_type.split(";")
    media_type = media_type.strip(" \t").lower()
    if media_type != JSON_MEDIA_TYPE:
        _unsupported(f"Content-Type {_quoted(media_type)} is not {JSON_MEDIA_TYPE}")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip(" \t").lower() == "charset":
            charset = value.strip(" \t").strip('"').lower()
            if charset not in ("utf-8", "utf8"):
                _unsupported(f"charset {_quoted(charset)} is not UTF-8")


def _decode_base64(body: str) -> str:
    """API Gateway's base64 (the event's isBase64Encoded): strict alphabet and padding."""
    try:
        if not body.isascii() or len(body) % 4:
            raise ValueError("not base64")
        raw = binascii.a2b_base64(body, strict_mode=True)
    except (binascii.Error, ValueError):
        _refuse("invalid_body_encoding", "the body is flagged isBase64Encoded but is not base64")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        _refuse("invalid_body_encoding", "the body is not UTF-8 text")


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        _refuse("number_too_long", f"a number has more than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _no_constant(name: str) -> NoReturn:
    # Python's parser accepts NaN and Infinity, which JSON does not have.
    _refuse("invalid_json", f"the body is not valid JSON: {name} is not a JSON value")


def _parse(text: str) -> Any:
    """Python's parser, with the hooks above (their RequestError passes through it)."""
    try:
        return json.loads(text, parse_int=_integer, parse_constant=_no_constant)
    except RecursionError:
        _too_deep()
    except json.JSONDecodeError as error:
        _refuse("invalid_json", f"the body is not valid JSON: {error.msg} at character {error.pos}")


def _check_nesting(document: dict[str, Any]) -> None:
    """Iterative, so a document of any depth is measured without recursion."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_NESTING:
            _too_deep()
        children = node.values() if isinstance(node, dict) else node
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _too_deep() -> NoReturn:
    _refuse("body_too_deep", f"the body nests objects or arrays more than {MAX_NESTING} deep")


def _json_kind(document: Any) -> str:
    if isinstance(document, list):
        return "an array"
    if isinstance(document, str):
        return "a string"
    if isinstance(document, bool):
        return "a boolean"
    return "null" if document is None else "a number"


def _header(headers: object, name: str) -> str | None:
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else None
    return None


def _quoted(value: str) -> str:
    """A client-sent value for a message: short, and only when it is printable."""
    return repr(value[:60]) if value.isprintable() else "(unprintable)"


def _unsupported(reason: str) -> NoReturn:
    raise RequestError(
        "unsupported_media_type",
        f"{reason}: send the body as JSON with Content-Type: {JSON_MEDIA_TYPE}",
        status=415,
    )


def _refuse(code: str, message: str) -> NoReturn:
    raise RequestError(code, message)
