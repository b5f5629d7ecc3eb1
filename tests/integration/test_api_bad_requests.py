"""Property, on every POST route: a bad request is a 4xx in our error shape and reaches no model.

Each route's real handler (Powertools resolver, request parsing, pydantic models, service) runs
with in-memory models and stores that count their calls. Hypothesis sends at least 1,000
generated bad requests per route (tests/bad_requests_support.py: malformed JSON, deep nesting,
huge numbers, wrong types, wrong content types, non-object bodies, base64 flags, huge strings,
unicode). A handler that raises counts as the 502 API Gateway would answer.

`pytest -s` prints each route's figure: requests sent, 5xx seen, model calls.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from descriptions.handlers import api as descriptions_api
from descriptions.logic.pipeline import DescriptionPipeline
from diffusion.handlers import api as diffusion_api
from diffusion.logic.service import DiffusionService
from images.handlers import api as images_api
from images.logic.service import ImageService
from shared.models.diffusion import MAX_PROMPT_CHARACTERS
from shared.models.images import TITAN_MAX_PROMPT_CHARACTERS
from tests import descriptions_support, diffusion_support, images_support
from tests.bad_requests_support import BadRequest, Shape, bad_requests
from tests.descriptions_support import FakeContext, api_event

pytestmark = pytest.mark.integration

BAD_REQUESTS_PER_ROUTE = 1000

_DESCRIPTIONS_SETTINGS = descriptions_support.settings()
_DIFFUSION_NUMBERS = ("numImages", "steps", "guidanceScale", "seed")
# Well inside every stage's photo limits.
_PHOTO = diffusion_support.b64(diffusion_support.photo_bytes((384, 256)))


@dataclass(frozen=True)
class Route:
    name: str
    api: ModuleType
    path: str
    shape: Shape
    # Puts in-memory dependencies behind the handler; returns a count of model calls and
    # stored objects (each model answers once, for the good request).
    install: Callable[[pytest.MonkeyPatch], Callable[[], int]]


def _install_descriptions(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    attributes = descriptions_support.FakeAttributeModel()
    text = descriptions_support.FakeTextModel()
    archive = descriptions_support.InMemoryArchive()
    table = descriptions_support.InMemoryTable()
    pipeline = DescriptionPipeline(
        settings=_DESCRIPTIONS_SETTINGS,
        attribute_model=attributes,
        text_model=text,
        archive=archive,
        table=table,
    )
    monkeypatch.setattr(descriptions_api, "pipeline", lambda: pipeline)
    return lambda: attributes.calls + len(text.requests) + len(archive.documents) + len(table.items)


def _install_images(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    model = images_support.FakeImageModel([images_support.titan_answer()])
    store = images_support.InMemoryImageStore()
    service = ImageService(
        settings=images_support.settings(),
        model_arn=images_support.FakeModelArn(),
        image_model=model,
        store=store,
        sleep=lambda _: None,
    )
    monkeypatch.setattr(images_api, "service", lambda: service)
    return lambda: len(model.calls) + len(store.objects)


def _install_diffusion(monkeypatch: pytest.MonkeyPatch, *, mask: bool) -> Callable[[], int]:
    model = diffusion_support.FakeDiffusionModel([diffusion_support.endpoint_answer(mask=mask)])
    uploads = diffusion_support.FakeInputImages()
    store = diffusion_support.InMemoryOutputStore()
    service = DiffusionService(
        settings=diffusion_support.settings(),
        uploads=uploads,
        model=model,
        store=store,
        sleep=lambda _: None,
    )
    monkeypatch.setattr(diffusion_api, "service", lambda: service)
    return lambda: len(model.calls) + len(uploads.reads) + len(store.objects)


ROUTES = [
    Route(
        name="descriptions",
        api=descriptions_api,
        path="/descriptions",
        shape=Shape(
            good_body=json.loads(descriptions_support.describe_body()),
            kinds={"productId": "string", "image": "string", "category": "string",
                   "languages": "list"},
            required=("productId", "image"),
            # base64 carries 3 bytes in 4 characters
            capped_strings={
                "productId": 128,
                "image": (_DESCRIPTIONS_SETTINGS.image.max_bytes + 2) // 3 * 4,
            },
        ),
        install=_install_descriptions,
    ),
    Route(
        name="images",
        api=images_api,
        path="/images",
        shape=Shape(
            good_body=json.loads(images_support.images_body()),
            kinds={"prompt": "string", "negativePrompt": "string", "numberOfImages": "number",
                   "width": "number", "height": "number", "cfgScale": "number",
                   "seed": "number", "quality": "string"},
            required=("prompt", "width", "height"),
            capped_strings={"prompt": TITAN_MAX_PROMPT_CHARACTERS,
                            "negativePrompt": TITAN_MAX_PROMPT_CHARACTERS},
        ),
        install=_install_images,
    ),
    Route(
        name="generations",
        api=diffusion_api,
        path="/generations",
        shape=Shape(
            good_body=json.loads(diffusion_support.generation_body(numImages=1)),
            kinds={"prompt": "string", "negativePrompt": "string", "width": "number",
                   "height": "number", **dict.fromkeys(_DIFFUSION_NUMBERS, "number")},
            required=("prompt",),
            capped_strings={"prompt": MAX_PROMPT_CHARACTERS,
                            "negativePrompt": MAX_PROMPT_CHARACTERS},
        ),
        install=partial(_install_diffusion, mask=False),
    ),
    Route(
        name="styling",
        api=diffusion_api,
        path="/styling",
        shape=Shape(
            good_body=json.loads(
                diffusion_support.styling_body(image={"base64": _PHOTO}, numImages=1)
            ),
            kinds={"prompt": "string", "negativePrompt": "string", "maskPrompt": "string",
                   "image": "object", "mask": "object", "imageLength": "number",
                   "maskThreshold": "number", **dict.fromkeys(_DIFFUSION_NUMBERS, "number")},
            required=("image", "prompt"),
            capped_strings={"prompt": MAX_PROMPT_CHARACTERS,
                            "maskPrompt": MAX_PROMPT_CHARACTERS},
        ),
        install=partial(_install_diffusion, mask=True),
    ),
]  # fmt: skip
_IDS = [route.name for route in ROUTES]


def send(route: Route, request: BadRequest) -> tuple[int, Any]:
    """The status and parsed body the client would get; a raised exception is API Gateway's
    502 (its body then names the exception, for the failure report)."""
    event = api_event("POST", route.path, **request.event_fields())
    try:
        response = route.api.handler(event, FakeContext())
    except Exception as error:
        return 502, f"handler raised {type(error).__name__}: {str(error)[:200]}"
    try:
        return response["statusCode"], json.loads(response["body"])
    except (TypeError, ValueError):
        return response["statusCode"], response.get("body")


def assert_refused_in_our_shape(status: int, document: Any, why: str) -> None:
    assert 400 <= status < 500, f"{why}: {status} {str(document)[:300]}"
    assert isinstance(document, dict), f"{why}: {status} body is not a JSON object: {document!r}"
    assert set(document) == {"error"}, f"{why}: {status} not our error shape: {document}"
    error = document["error"]
    assert isinstance(error, dict), f"{why}: {document}"
    assert set(error) == {"code", "message"}, f"{why}: {document}"
    assert isinstance(error["code"], str), f"{why}: {document}"
    assert isinstance(error["message"], str), f"{why}: {document}"
    assert error["code"], f"{why}: {document}"
    assert error["message"], f"{why}: {document}"


@pytest.mark.parametrize("route", ROUTES, ids=_IDS)
def test_the_good_request_and_its_encodings_reach_the_model(
    route: Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the base every bad request is made from is good, in each form a client may
    send it, and the dependency count sees it (so zero below means refused before the model)."""
    good = json.dumps(route.shape.good_body)
    forms = [
        BadRequest("plain", good),
        BadRequest("no content type", good, headers={}),
        BadRequest("case, charset", good, {"content-type": "Application/JSON; charset=UTF-8"}),
        BadRequest("base64", base64.b64encode(good.encode()).decode(), is_base64_encoded=True),
    ]  # fmt: skip
    if "prompt" in route.shape.good_body:
        prompt = route.shape.good_body["prompt"] + " \u2014 caf\u00e9 \u2615 \U0001f415"
        document = {**route.shape.good_body, "prompt": prompt}
        forms.append(BadRequest("unicode text", json.dumps(document, ensure_ascii=False)))
    for form in forms:
        calls = route.install(monkeypatch)
        status, document = send(route, form)
        assert status == 200, (form.why, document)
        assert calls() > 0, form.why


@pytest.mark.parametrize("route", ROUTES, ids=_IDS)
def test_no_bad_request_gets_a_5xx_or_reaches_the_model(
    route: Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = route.install(monkeypatch)
    tally: Counter[str] = Counter()
    started, cpu_started = time.perf_counter(), time.process_time()

    @settings(
        max_examples=BAD_REQUESTS_PER_ROUTE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=bad_requests(route.shape))
    def refused(request: BadRequest) -> None:
        tally["sent"] += 1
        before = calls()
        status, document = send(route, request)
        tally["5xx"] += status >= 500
        tally["model calls"] += calls() - before
        assert calls() == before, f"{request.why}: reached the model ({status})"
        assert_refused_in_our_shape(status, document, request.why)

    refused()

    print(
        f"\n{route.name}: {tally['sent']} bad requests sent, {tally['5xx']} answered 5xx, "
        f"{tally['model calls']} model calls; {time.perf_counter() - started:.1f} s "
        f"({time.process_time() - cpu_started:.1f} s of CPU)"
    )
    assert tally["sent"] >= BAD_REQUESTS_PER_ROUTE
    assert (tally["5xx"], tally["model calls"]) == (0, 0)


# The crashes and leaks first reported, pinned on every route: the property above finds them
# (and their relatives) again, these make each one's answer explicit.
_DEEP = "[" * 1000 + "]" * 1000


def _reported(shape: Shape) -> list[tuple[str, BadRequest, int, str]]:
    good = json.dumps(shape.good_body)
    first_field = shape.required[0]
    return [
        ("deep nesting", BadRequest("", _DEEP), 400, "body_too_deep"),
        ("deep field", BadRequest("", good.replace("{", '{"x": ' + _DEEP + ", ", 1)), 400,
         "body_too_deep"),
        ("4,301-digit integer", BadRequest("", good.replace("{", '{"x": ' + "9" * 4301 + ", ", 1)),
         400, "number_too_long"),
        ("multipart, no boundary", BadRequest("", good, {"Content-Type": "multipart/form-data"}),
         415, "unsupported_media_type"),
        ("other content type", BadRequest("", good, {"Content-Type": "text/plain"}), 415,
         "unsupported_media_type"),
        ("base64 flag, text body", BadRequest("", good, is_base64_encoded=True), 400,
         "invalid_body_encoding"),
        ("base64 of non-UTF-8", BadRequest("", base64.b64encode(b"\xff" + good.encode()).decode(),
         is_base64_encoded=True), 400, "invalid_body_encoding"),
        ("array of a good body", BadRequest("", f"[{good}]"), 400, "invalid_request"),
        ("lone surrogate", BadRequest("", good.replace("{", '{"x": "\\ud800", ', 1)), 400,
         "invalid_request"),
        (f"{first_field} missing", BadRequest("", "{}"), 400, "invalid_request"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("route", "case"),
    [(route, index) for route in ROUTES for index in range(len(_reported(route.shape)))],
    ids=[f"{route.name}-{case[0]}" for route in ROUTES for case in _reported(route.shape)],
)
def test_each_reported_crash_is_a_4xx_with_its_own_code(
    route: Route, case: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = route.install(monkeypatch)
    why, request, status, code = _reported(route.shape)[case]

    got_status, document = send(route, request)

    assert_refused_in_our_shape(got_status, document, why)
    assert (got_status, document["error"]["code"]) == (status, code), document
    assert calls() == 0


def test_the_generated_requests_cover_every_kind_of_trouble() -> None:
    """The strategy draws from each family (a guard against a family silently left out)."""
    seen: set[str] = set()

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=bad_requests(ROUTES[1].shape))
    def collect(request: BadRequest) -> None:
        seen.add(_family(request))

    collect()
    assert seen >= {"json", "base64", "content type", "depth", "number", "size", "unicode"}


def _family(request: BadRequest) -> str:
    why = request.why
    if request.is_base64_encoded:
        return "base64"
    if why.startswith("Content-Type"):
        return "content type"
    if "deep" in why:
        return "depth"
    if "number" in why:
        return "number"
    if "repeats" in why or "-character field name" in why:
        return "size"
    if "surrogate" in why or "look-alike" in why or "unicode" in why:
        return "unicode"
    return "json"
