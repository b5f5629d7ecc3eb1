"""Bad requests for the POST routes, generated with hypothesis, each bad by construction.

Every strategy starts from a request the route accepts and breaks it in one way that no route
may accept: the body is not JSON, is too deep or not an object, carries a number or a string no
field allows, a field of the wrong JSON type, an unknown field, a lone surrogate, a content type
other than JSON, or a base64 flag the body does not honour. The routes' tests send these through
the real handler and require a 4xx in the error shape with no model call, so a generator that
could produce a good request would make those tests fail: keep every one bad by construction.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from hypothesis import strategies as st

# The JSON kinds a field holds; a value of any other kind is wrong for it.
Kind = Literal["string", "number", "list", "object"]
_PLACEHOLDER = "@@raw@@"


@dataclass(frozen=True)
class Shape:
    """What a route accepts: a good body, the JSON kind of each field, the required fields, and
    the string fields whose length is capped (with the cap, in characters)."""

    good_body: Mapping[str, Any]
    kinds: Mapping[str, Kind]
    required: tuple[str, ...]
    capped_strings: Mapping[str, int]


@dataclass(frozen=True)
class BadRequest:
    """What a client controls in an API Gateway REST proxy event."""

    why: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    is_base64_encoded: bool = False

    def event_fields(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "headers": dict(self.headers),
            "multiValueHeaders": {name: [value] for name, value in self.headers.items()},
            "isBase64Encoded": self.is_base64_encoded,
        }


def _json(document: Any) -> str:
    return json.dumps(document)


def _with_raw(shape: Shape, name: str, raw: str) -> str:
    """The good body with field `name` set to the raw JSON text `raw` (it need not be JSON)."""
    document = {**shape.good_body, name: _PLACEHOLDER}
    return _json(document).replace(f'"{_PLACEHOLDER}"', raw, 1)


def _field_names(shape: Shape) -> st.SearchStrategy[str]:
    # An unknown field is refused too (every request model forbids extra fields).
    return st.sampled_from([*shape.kinds, "unexpected"])


# -- malformed JSON --------------------------------------------------------------------------------

_NOT_JSON_ANYWHERE = [chr(code) for code in range(0x20) if chr(code) not in "\t\n\r"]


def malformed_json(shape: Shape) -> st.SearchStrategy[BadRequest]:
    good = _json(shape.good_body)
    cut = st.integers(min_value=0, max_value=len(good) - 1).map(
        lambda at: BadRequest("cut short", good[:at])
    )
    # A raw control character is invalid both inside a JSON string and between tokens.
    control = st.tuples(
        st.integers(min_value=0, max_value=len(good)), st.sampled_from(_NOT_JSON_ANYWHERE)
    ).map(lambda pair: BadRequest("control character", good[: pair[0]] + pair[1] + good[pair[0] :]))
    not_json_syntax = st.sampled_from(
        [
            good.replace('"', "'"),  # single quotes
            good[:-1] + ",}",  # trailing comma
            "// comment\n" + good,
            "\ufeff" + good,  # byte order mark
            good + good,  # two documents
            good + "x",
        ]
    ).map(lambda body: BadRequest("not JSON syntax", body))
    constants = st.tuples(
        _field_names(shape), st.sampled_from(["NaN", "Infinity", "-Infinity", "undefined"])
    ).map(lambda pair: BadRequest("not a JSON value", _with_raw(shape, *pair)))
    text = (
        st.text(max_size=80)
        .filter(lambda body: not body.lstrip().startswith("{"))
        .map(lambda body: BadRequest("random text", body))
    )
    return st.one_of(cut, control, not_json_syntax, constants, text)


# -- deep nesting ----------------------------------------------------------------------------------


def _nested(depth: int, opener: str) -> str:
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def deep_nesting(shape: Shape) -> st.SearchStrategy[BadRequest]:
    # Up to well past Python's recursion limit (1,000): the depth that crashed the handlers.
    depth = st.integers(min_value=40, max_value=3000)
    opener = st.sampled_from(["[", "{"])
    whole = st.tuples(depth, opener).map(
        lambda pair: BadRequest(f"body nested {pair[0]} deep", _nested(*pair))
    )
    in_field = st.tuples(_field_names(shape), depth, opener).map(
        lambda triple: BadRequest(
            f"{triple[0]} nested {triple[1]} deep",
            _with_raw(shape, triple[0], _nested(triple[1], triple[2])),
        )
    )
    return st.one_of(whole, in_field)


# -- huge numbers ----------------------------------------------------------------------------------


def huge_numbers(shape: Shape) -> st.SearchStrategy[BadRequest]:
    # 21+ digits is past every integer field's range; 4,301+ is past Python's int-string limit.
    digits = st.one_of(
        st.integers(min_value=21, max_value=200), st.integers(min_value=4300, max_value=20_000)
    )
    integer = st.tuples(digits, st.booleans()).map(
        lambda pair: ("-" if pair[1] else "") + "9" * pair[0]
    )
    # These overflow to infinity, which no field allows.
    overflowing = st.sampled_from(["1e400", "-1e400", "1" + "0" * 400 + ".5", "9e99999999"])
    return st.tuples(_field_names(shape), st.one_of(integer, overflowing)).map(
        lambda pair: BadRequest(
            f"{pair[0]}: {len(pair[1])}-character number", _with_raw(shape, *pair)
        )
    )


# -- wrong types -----------------------------------------------------------------------------------


def _value_of_kind(kind: str) -> st.SearchStrategy[Any]:
    return {
        # Letters only: pydantic's lax mode reads "2", "inf" or "nan" as numbers.
        "string": st.text(alphabet="xyz", max_size=10),
        "number": st.integers(min_value=-5, max_value=5),
        "boolean": st.booleans(),
        "list": st.lists(st.integers(), max_size=3),
        "object": st.dictionaries(st.sampled_from(["unexpected", "x"]), st.integers(), min_size=1),
    }[kind]


def wrong_types(shape: Shape) -> st.SearchStrategy[BadRequest]:
    def wrong_value(name: str) -> st.SearchStrategy[BadRequest]:
        right = shape.kinds[name]
        # null is a value for optional fields, and lax pydantic reads a boolean as a number.
        kinds = [
            kind
            for kind in ("string", "number", "boolean", "list", "object")
            if kind != right and not (kind == "boolean" and right == "number")
        ]
        return st.sampled_from(kinds).flatmap(
            lambda kind: _value_of_kind(kind).map(
                lambda value: BadRequest(
                    f"{name} as {kind}", _json({**shape.good_body, name: value})
                )
            )
        )

    wrong = st.sampled_from(sorted(shape.kinds)).flatmap(wrong_value)
    unknown_field = st.tuples(
        st.text(min_size=1, max_size=12).filter(lambda name: name not in shape.kinds),
        st.recursive(st.none() | st.integers() | st.text(max_size=5), st.lists, max_leaves=4),
    ).map(
        lambda pair: BadRequest(
            f"unknown field {pair[0]!r}", _json({**shape.good_body, pair[0]: pair[1]})
        )
    )
    missing = st.sampled_from(shape.required).map(
        lambda name: BadRequest(
            f"{name} missing",
            _json({key: value for key, value in shape.good_body.items() if key != name}),
        )
    )
    # What a direct invocation might hand over instead of the body's text.
    not_text = st.sampled_from([dict(shape.good_body), [dict(shape.good_body)], 42, True]).map(
        lambda body: BadRequest(f"body as {type(body).__name__}", body)
    )
    return st.one_of(wrong, unknown_field, missing, not_text)


# -- wrong content types -------------------------------------------------------------------------

_OTHER_MEDIA_TYPES = [
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",  # no boundary: crashed Powertools' parser
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/octet-stream",
    "application/jsonp",
    "application/json-patch+json",
    "application/json; charset=iso-8859-1",
    "application/json; charset=utf-16",
    "image/jpeg",
    "*/*",
    "json",
    "application/json\u00a0",  # a non-ASCII header value
    "application/jsón",
]


def _form_body(document: Mapping[str, Any]) -> str:

    return urlencode({key: str(value) for key, value in document.items()})


def _multipart_body(document: Mapping[str, Any]) -> str:
    parts = [
        f'--xyz\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        for key, value in document.items()
        if isinstance(value, str | int | float)
    ]
    return "".join(parts) + "--xyz--\r\n"


def wrong_content_types(shape: Shape) -> st.SearchStrategy[BadRequest]:
    good = _json(shape.good_body)
    media_type = st.one_of(
        st.sampled_from(_OTHER_MEDIA_TYPES),
        st.from_regex(r"\A[a-z]{1,8}/[a-z0-9.+-]{1,12}\Z").filter(
            lambda value: value != "application/json"
        ),
    )
    # The body in the form the content type names (the form a client would send), or JSON.
    body = st.sampled_from([good, _form_body(shape.good_body), _multipart_body(shape.good_body)])
    return st.tuples(media_type, body).map(
        lambda pair: BadRequest(
            f"Content-Type {pair[0]!r}", pair[1], headers={"Content-Type": pair[0]}
        )
    )


# -- not an object ---------------------------------------------------------------------------------


def not_objects(shape: Shape) -> st.SearchStrategy[BadRequest]:
    good = dict(shape.good_body)
    arrays = st.sampled_from([[good], [good, good], [good, 1], [], [[good]], [_json(good)]]).map(
        lambda document: BadRequest("array body", _json(document))
    )
    scalars = st.one_of(
        st.text(max_size=20), st.integers(), st.floats(allow_nan=False), st.booleans()
    ).map(lambda document: BadRequest("scalar body", _json(document)))
    as_string = st.just(BadRequest("the good body as a JSON string", _json(_json(good))))
    return st.one_of(arrays, scalars, as_string)


# -- base64 flags ---------------------------------------------------------------------------------


def base64_flags(shape: Shape) -> st.SearchStrategy[BadRequest]:
    good = _json(shape.good_body)
    encoded = base64.b64encode(good.encode()).decode()
    not_base64 = st.sampled_from(
        [
            good,  # flagged but sent as text
            encoded[:-1],  # bad padding
            encoded + "=",
            "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n!",
            encoded.replace("e", "-", 1) if "e" in encoded else encoded + "-",
            "####",
        ]
    ).map(lambda body: BadRequest("flagged base64, is not", body, is_base64_encoded=True))
    # Decodes, but to bytes that are not UTF-8 text.
    not_utf8 = st.binary(max_size=60).map(
        lambda noise: BadRequest(
            "base64 of non-UTF-8 bytes",
            base64.b64encode(b"\xff" + noise + good.encode()).decode(),
            is_base64_encoded=True,
        )
    )
    latin1 = st.just(
        BadRequest(
            "base64 of Latin-1 text",
            base64.b64encode(
                _json({**shape.good_body, "unexpected": "caf\u00e9"}).encode("latin-1")
            ).decode(),
            is_base64_encoded=True,
        )
    )
    bad_json = st.integers(min_value=1, max_value=len(good) - 1).map(
        lambda at: BadRequest(
            "base64 of cut JSON",
            base64.b64encode(good[:at].encode()).decode(),
            is_base64_encoded=True,
        )
    )
    return st.one_of(not_base64, not_utf8, latin1, bad_json)


# -- huge strings --------------------------------------------------------------------------------


def huge_strings(shape: Shape) -> st.SearchStrategy[BadRequest]:
    def over_cap(name: str) -> st.SearchStrategy[BadRequest]:
        cap = shape.capped_strings[name]
        return st.tuples(
            st.integers(min_value=cap + 1, max_value=cap + 100_000),
            st.sampled_from(["x", "\u00e9", "\U0001f600", "a "]),
        ).map(
            lambda pair: BadRequest(
                f"{name}: {pair[0]} repeats",
                _json({**shape.good_body, name: pair[1] * pair[0]}),
            )
        )

    capped = st.sampled_from(sorted(shape.capped_strings)).flatmap(over_cap)
    huge_key = st.integers(min_value=1000, max_value=200_000).map(
        lambda size: BadRequest(
            f"{size}-character field name", _json({**shape.good_body, "k" * size: 1})
        )
    )
    return st.one_of(capped, huge_key)


# -- unicode ---------------------------------------------------------------------------------------


def unicode_trouble(shape: Shape) -> st.SearchStrategy[BadRequest]:
    string_fields = [name for name, kind in shape.kinds.items() if kind == "string"]
    # A lone surrogate is valid JSON syntax but not Unicode text: no model should see it.
    surrogate = st.tuples(
        st.sampled_from(string_fields),
        st.integers(min_value=0xD800, max_value=0xDFFF),
        st.text(alphabet="abc ", max_size=5),
    ).map(
        lambda triple: BadRequest(
            f"{triple[0]} with lone surrogate {triple[1]:04x}",
            _with_raw(shape, triple[0], f'"{triple[2]}\\u{triple[1]:04x}"'),
        )
    )
    # Field names that look like ours but are not (the models forbid unknown names).
    lookalike = st.sampled_from(sorted(shape.good_body)).flatmap(
        lambda name: (
            st.sampled_from(
                [name.upper(), name + "\u200b", "\ufeff" + name, name.replace("e", "\u0435")]
            )
            .filter(lambda other: other != name)
            .map(
                lambda other: BadRequest(
                    f"look-alike name {other!r}",
                    _json(
                        {
                            other if key == name else key: value
                            for key, value in shape.good_body.items()
                        }
                    ),
                )
            )
        )
    )
    # Unicode text (any plane) in an unknown field.
    text = st.text(min_size=1, max_size=30).map(
        lambda value: BadRequest(
            "unicode in an unknown field",
            json.dumps({**shape.good_body, "unexpected": value}, ensure_ascii=False),
        )
    )
    return st.one_of(surrogate, lookalike, text)


def bad_requests(shape: Shape) -> st.SearchStrategy[BadRequest]:
    return st.one_of(
        malformed_json(shape),
        deep_nesting(shape),
        huge_numbers(shape),
        wrong_types(shape),
        wrong_content_types(shape),
        not_objects(shape),
        base64_flags(shape),
        huge_strings(shape),
        unicode_trouble(shape),
    )
