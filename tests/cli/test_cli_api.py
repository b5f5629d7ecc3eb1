"""`atelier describe|description|generate|style`: SigV4-signed calls to the stage's API, the
bodies each route's own request model accepts, error mapping, and saved results."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from moto import mock_aws
from PIL import Image

from atelier_cli.errors import ExitCode
from atelier_cli.runtime import Hooks
from shared.models.descriptions import DescribeRequest
from shared.models.diffusion import GenerationRequest, StylingRequest
from shared.models.images import GenerateImagesRequest
from tests.cli_support import (
    REGION,
    client_factory,
    cloudformation_without_stacks,
    invoke,
    json_document,
    no_sleep,
    publish,
)

pytestmark = pytest.mark.integration

API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/v1/"


def jpeg(size: tuple[int, int] = (64, 48), *, noise: bool = False) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    if noise:
        image = Image.effect_noise(size, 80).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def stored(product_id: str, created_at: str = "2026-11-22T12:00:00.000+00:00") -> dict[str, Any]:
    return {
        "productId": product_id,
        "createdAt": created_at,
        "descriptions": {
            "en": {"title": "Blue cotton shirt", "bullets": ["Cotton", "Long sleeves"]}
        },
    }


class FakeApi:
    """The `http_send` hook: answers by route, records every request."""

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)
        self.requests: list[dict[str, Any]] = []

    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        self.requests.append({"method": method, "url": url, "headers": dict(headers), "body": body})
        answer = self.answers[f"{method} {url}"]
        if callable(answer):
            answer = answer()
        status, document = answer
        payload = document if isinstance(document, bytes) else json.dumps(document).encode()
        return status, {"Retry-After": "7"} if status == 503 else {}, payload

    def bodies(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.requests if r["body"] is not None]


@pytest.fixture
def api_stage() -> Iterator[None]:
    with mock_aws():
        publish("api", "api-url", API_URL)
        publish("api", "uploads-prefix", "incoming/")
        publish("data", "uploads-bucket", "atelier-dev-uploads")
        key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        publish("data", "kms-key-arn", key)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="atelier-dev-uploads")
        yield


def api_hooks(fake: FakeApi, **extra: Any) -> Hooks:
    return Hooks(
        client_factory=client_factory(cloudformation=cloudformation_without_stacks()),
        http_send=fake,
        sleep=no_sleep,
        **extra,
    )


# --- signing, for real ---------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.received.append(
            {"path": self.path, "headers": dict(self.headers.items()), "body": body}
        )
        answer = json.dumps(stored("38642")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        del args


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_requests_are_signed_with_sigv4_that_verifies(tmp_path: Path) -> None:
    """A local server recomputes the signature from what it received, as API Gateway does."""
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    photo = tmp_path / "38642.jpg"
    photo.write_bytes(jpeg())
    try:
        with mock_aws():
            publish("api", "api-url", f"http://127.0.0.1:{server.server_port}/v1/")
            result = invoke(
                ["--json", "describe", str(photo)],
                hooks=Hooks(client_factory=client_factory(), sleep=no_sleep),
            )
            credentials = boto3.Session().get_credentials().get_frozen_credentials()
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    (request,) = _Recorder.received
    headers = request["headers"]
    authorization = headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/")
    assert "/us-east-1/execute-api/aws4_request" in authorization
    signed_names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed_names)
    # Recompute: the signed headers as received, the same credentials and timestamp
    lower = {name.lower(): value for name, value in headers.items()}
    replay = AWSRequest(
        method="POST",
        url=f"http://127.0.0.1:{server.server_port}{request['path']}",
        data=request["body"],
        headers={name: lower[name] for name in signed_names},
    )
    replay.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(credentials, "execute-api", REGION)
    canonical = signer.canonical_request(replay)
    expected = signer.signature(signer.string_to_sign(replay, canonical), replay)
    assert authorization.endswith(f"Signature={expected}")
    assert lower["x-amz-security-token"] == credentials.token


# --- describe ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("api_stage")
def test_describe_posts_one_valid_request_per_image(tmp_path: Path) -> None:
    photos = [tmp_path / "38642.jpg", tmp_path / "1163.jpg"]
    for photo in photos:
        photo.write_bytes(jpeg())
    fake = FakeApi({f"POST {API_URL}descriptions": lambda: (200, stored("x"))})

    result = invoke(
        ["--json", "describe", *map(str, photos), "-l", "en", "-l", "de", "--category", "Shirts"],
        hooks=api_hooks(fake),
    )

    assert result.exit_code == 0, result.output
    bodies = fake.bodies()
    assert [body["productId"] for body in bodies] == ["38642", "1163"]
    for body, photo in zip(bodies, photos, strict=True):
        # The handler's own request model accepts exactly this body
        request = DescribeRequest.model_validate(body)
        assert base64.b64decode(request.image) == photo.read_bytes()
        assert body["languages"] == ["en", "de"]
        assert body["category"] == "Shirts"
    document = json_document(result)["result"]
    assert document["described"] == 2
    assert document["failed"] == 0


@pytest.mark.usefixtures("api_stage")
def test_describe_goes_on_past_a_refused_image_and_exits_6(tmp_path: Path) -> None:
    good, bad = tmp_path / "1.jpg", tmp_path / "2.jpg"
    good.write_bytes(jpeg())
    bad.write_bytes(jpeg())
    answers = iter(
        [
            (400, {"error": {"code": "image_too_small", "message": "64 px is below 224 px"}}),
            (200, stored("2")),
        ]
    )
    fake = FakeApi({f"POST {API_URL}descriptions": lambda: next(answers)})

    result = invoke(["--json", "describe", str(bad), str(good)], hooks=api_hooks(fake))

    assert result.exit_code == ExitCode.FAILED
    error = json_document(result)["error"]
    assert error["code"] == "some_failed"
    results = error["details"]["results"]
    assert results[0]["ok"] is False
    assert results[0]["error"]["code"] == "image_too_small"
    assert results[1]["ok"] is True


@pytest.mark.usefixtures("api_stage")
@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [
        (400, "image_corrupt", ExitCode.USAGE),
        (413, "image_too_large", ExitCode.USAGE),
        (403, "access_denied", ExitCode.ACCESS),
        (409, "endpoint_not_deployed", ExitCode.NOT_DEPLOYED),
        (502, "description_ungrounded", ExitCode.SERVICE),
        (503, "attribute_model_unavailable", ExitCode.SERVICE),
    ],
)
def test_one_image_fails_with_the_apis_code_and_its_exit_status(
    tmp_path: Path, status: int, code: str, exit_code: int
) -> None:
    photo = tmp_path / "38642.jpg"
    photo.write_bytes(jpeg())
    fake = FakeApi(
        {f"POST {API_URL}descriptions": (status, {"error": {"code": code, "message": "why"}})}
    )

    result = invoke(["--json", "describe", str(photo)], hooks=api_hooks(fake))

    assert result.exit_code == exit_code
    error = json_document(result)["error"]
    assert error["code"] == code
    assert f"POST /descriptions answered {status}: {code}: why" == error["message"]
    if status == 403:
        assert "execute-api:Invoke" in error["fix"]
    if status == 503:
        assert error["fix"] == "retry in 7 s"


@pytest.mark.usefixtures("api_stage")
def test_a_missing_endpoint_stops_a_batch_at_the_first_image(tmp_path: Path) -> None:
    photos = [tmp_path / f"{n}.jpg" for n in range(3)]
    for photo in photos:
        photo.write_bytes(jpeg())
    fake = FakeApi(
        {f"POST {API_URL}descriptions": (409, {"error": {"code": "x", "message": "no endpoint"}})}
    )

    result = invoke(["describe", *map(str, photos)], hooks=api_hooks(fake))

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("files", "arguments", "message"),
    [
        ({"a.txt": b"hello"}, [], "is not a JPEG, PNG or WebP"),
        ({"a b.jpg": None}, [], "is not 1-128 letters"),
        ({"a.jpg": None, "b.jpg": None}, ["--product-id", "x"], "one IMAGE only"),
        ({"a.jpg": None}, ["--wait"], "--wait applies to --async"),
        ({"big.jpg": "big"}, [], "the API takes at most 4,194,304"),
    ],
)
def test_describe_checks_files_before_any_call(
    tmp_path: Path, files: dict[str, Any], arguments: list[str], message: str
) -> None:
    paths = []
    for name, content in files.items():
        path = tmp_path / name
        if content == "big":
            path.write_bytes(jpeg() + b"\0" * (4 * 1024 * 1024))
        else:
            path.write_bytes(content or jpeg())
        paths.append(str(path))
    fake = FakeApi({})

    result = invoke(["--json", "describe", *paths, *arguments], hooks=api_hooks(fake))

    assert result.exit_code == ExitCode.USAGE
    assert message in json_document(result)["error"]["message"]
    assert fake.requests == []


def test_describe_refuses_a_missing_file(tmp_path: Path) -> None:
    result = invoke(["describe", str(tmp_path / "nope.jpg")])

    assert result.exit_code == ExitCode.USAGE
    assert "no such file" in result.stderr


@mock_aws
def test_describe_without_the_api_stack_names_it(tmp_path: Path) -> None:
    photo = tmp_path / "1.jpg"
    photo.write_bytes(jpeg())

    result = invoke(["--json", "describe", str(photo)])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert "atelier-dev-api" in json_document(result)["error"]["message"]


# --- describe --async ---------------------------------------------------------------------------


@pytest.mark.usefixtures("api_stage")
def test_async_uploads_with_the_metadata_the_worker_reads_and_waits(tmp_path: Path) -> None:
    photo = tmp_path / "38642.png"
    Image.new("RGB", (32, 32)).save(photo)
    # First look: an old description (an earlier run); then none; then the new one
    answers = iter(
        [
            (200, stored("38642", created_at="2020-01-01T00:00:00.000+00:00")),
            (404, {"error": {"code": "not_found", "message": "none"}}),
            (200, stored("38642", created_at="2100-01-01T00:00:00.000+00:00")),
        ]
    )
    fake = FakeApi({f"GET {API_URL}descriptions/38642": lambda: next(answers)})
    clock = iter(range(0, 1000, 10))
    hooks = api_hooks(fake, clock=lambda: float(next(clock)))

    result = invoke(
        ["--json", "describe", str(photo), "--async", "--wait", "-l", "en", "--category", "Tops"],
        hooks=hooks,
    )

    assert result.exit_code == 0, result.output
    head = boto3.client("s3", region_name=REGION).head_object(
        Bucket="atelier-dev-uploads", Key="incoming/38642.png"
    )
    assert head["Metadata"] == {"product-id": "38642", "languages": "en", "category": "Tops"}
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ContentType"] == "image/png"
    document = json_document(result)["result"]
    assert document["uploaded"][0]["uri"] == "s3://atelier-dev-uploads/incoming/38642.png"
    assert document["results"][0]["description"]["createdAt"].startswith("2100")
    assert len(fake.requests) == 3


@pytest.mark.usefixtures("api_stage")
def test_async_wait_gives_up_after_the_timeout(tmp_path: Path) -> None:
    photo = tmp_path / "7.jpg"
    photo.write_bytes(jpeg())
    fake = FakeApi(
        {f"GET {API_URL}descriptions/7": (404, {"error": {"code": "not_found", "message": "-"}})}
    )
    clock = iter(range(0, 1000, 30))
    hooks = api_hooks(fake, clock=lambda: float(next(clock)))

    result = invoke(
        ["--json", "describe", str(photo), "--async", "--wait", "--timeout", "60"], hooks=hooks
    )

    assert result.exit_code == ExitCode.SERVICE
    error = json_document(result)["error"]
    assert error["code"] == "wait_timeout"
    assert "dead-letter queue" in error["fix"]
    assert error["details"]["pending"] == ["7"]


@pytest.mark.usefixtures("api_stage")
def test_description_shows_stored_ones() -> None:
    fake = FakeApi({f"GET {API_URL}descriptions/38642": (200, stored("38642"))})

    result = invoke(["description", "38642"], hooks=api_hooks(fake))

    assert result.exit_code == 0
    assert "Blue cotton shirt" in result.stdout


# --- generate and style -------------------------------------------------------------------------


def stored_images(prefix: str, count: int, *, mask: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "requestId": "r-1",
        "seed": 42,
        "images": [
            {
                "key": f"{prefix}/2026/11/22/r-1/{n}.jpg",
                "url": f"https://results.s3.amazonaws.com/{prefix}/{n}.jpg?X-Amz-Signature=s",
                "expiresAt": "2026-11-22T13:00:00Z",
            }
            for n in range(count)
        ],
    }
    if mask:
        answer["mask"] = {
            "key": f"{prefix}/2026/11/22/r-1/mask.png",
            "url": "https://results.s3.amazonaws.com/mask.png?X-Amz-Signature=s",
            "expiresAt": "2026-11-22T13:00:00Z",
        }
    return answer


def downloads(answer: dict[str, Any]) -> dict[str, Any]:
    urls = [image["url"] for image in answer["images"]]
    if "mask" in answer:
        urls.append(answer["mask"]["url"])
    return {f"GET {url}": (200, f"bytes of {url}".encode()) for url in urls}


@pytest.mark.usefixtures("api_stage")
def test_generate_with_titan_saves_every_image_without_overwriting(tmp_path: Path) -> None:
    answer = stored_images("generations", 2)
    fake = FakeApi({f"POST {API_URL}images": (200, answer), **downloads(answer)})
    (tmp_path / "0.jpg").write_bytes(b"mine")

    result = invoke(
        ["--json", "generate", "Ron the dog on a beach", "-n", "2", "--seed", "7",
         "--quality", "premium", "--out", str(tmp_path)],
        hooks=api_hooks(fake),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    body = fake.bodies()[0]
    assert GenerateImagesRequest.model_validate(body).numberOfImages == 2
    assert body == {
        "prompt": "Ron the dog on a beach",
        "width": 1024,
        "height": 1024,
        "numberOfImages": 2,
        "quality": "premium",
        "seed": 7,
    }
    saved = json_document(result)["result"]["saved"]
    assert [Path(entry["path"]).name for entry in saved] == ["0-1.jpg", "1.jpg"]
    assert (tmp_path / "0.jpg").read_bytes() == b"mine"
    assert Path(saved[0]["path"]).read_bytes() == f"bytes of {answer['images'][0]['url']}".encode()
    # Downloads are plain GETs of the presigned links, never signed again
    assert "Authorization" not in fake.requests[1]["headers"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".atelier-")]


@pytest.mark.usefixtures("api_stage")
def test_generate_with_dreambooth_uses_its_own_fields(tmp_path: Path) -> None:
    answer = stored_images("generations", 1)
    fake = FakeApi({f"POST {API_URL}generations": (200, answer), **downloads(answer)})

    result = invoke(
        ["generate", "a photo of sks dog", "--model", "dreambooth", "--steps", "30",
         "--guidance", "7.5", "--width", "512", "--height", "512", "--negative", "blurry",
         "--out", str(tmp_path)],
        hooks=api_hooks(fake),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    body = fake.bodies()[0]
    GenerationRequest.model_validate(body)
    assert body == {
        "prompt": "a photo of sks dog",
        "numImages": 1,
        "width": 512,
        "height": 512,
        "steps": 30,
        "guidanceScale": 7.5,
        "negativePrompt": "blurry",
    }


@pytest.mark.parametrize(
    "arguments",
    [
        ["x", "--model", "titan", "--steps", "3"],
        ["x", "--model", "dreambooth", "--quality", "premium"],
        ["x", "--count", "6"],
        [" "],
    ],
)
def test_generate_refuses_options_of_the_other_model(arguments: list[str]) -> None:
    result = invoke(["generate", *arguments])

    assert result.exit_code == ExitCode.USAGE


@pytest.mark.usefixtures("api_stage")
def test_titan_without_throughput_is_not_deployed(tmp_path: Path) -> None:
    fake = FakeApi(
        {
            f"POST {API_URL}images": (
                409,
                {"error": {"code": "throughput_not_provisioned", "message": "provision first"}},
            )
        }
    )

    result = invoke(["--json", "generate", "x", "--out", str(tmp_path)], hooks=api_hooks(fake))

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert json_document(result)["error"]["code"] == "throughput_not_provisioned"


@pytest.mark.usefixtures("api_stage")
def test_style_sends_the_photo_inline_and_saves_images_and_mask(tmp_path: Path) -> None:
    photo = tmp_path / "model.jpg"
    photo.write_bytes(jpeg())
    answer = stored_images("styling", 2, mask=True)
    fake = FakeApi({f"POST {API_URL}styling": (200, answer), **downloads(answer)})
    out = tmp_path / "styled"

    result = invoke(
        ["--json", "style", str(photo), "--mask", "the skirt", "--prompt", "a long floral skirt",
         "-n", "2", "--threshold", "0.4", "--image-length", "768", "--out", str(out)],
        hooks=api_hooks(fake),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    body = fake.bodies()[0]
    StylingRequest.model_validate(body)
    assert base64.b64decode(body["image"]["base64"]) == photo.read_bytes()
    assert body["maskPrompt"] == "the skirt"
    assert body["maskThreshold"] == 0.4
    assert body["imageLength"] == 768
    saved = json_document(result)["result"]["saved"]
    assert [entry["role"] for entry in saved] == ["image", "image", "mask"]
    assert sorted(p.name for p in out.iterdir()) == ["0.jpg", "1.jpg", "mask.png"]


@pytest.mark.usefixtures("api_stage")
def test_style_uploads_a_large_photo_under_styling_and_passes_its_key(tmp_path: Path) -> None:
    photo = tmp_path / "big.jpg"
    photo.write_bytes(jpeg((1600, 1600), noise=True))
    assert photo.stat().st_size > 2 * 1024 * 1024
    mask = tmp_path / "mask.png"
    Image.new("L", (1600, 1600), 255).save(mask)
    answer = stored_images("styling", 1)
    fake = FakeApi({f"POST {API_URL}styling": (200, answer), **downloads(answer)})

    result = invoke(
        ["--json", "style", str(photo), "--mask-image", str(mask), "--prompt", "denim",
         "--out", str(tmp_path / "o")],
        hooks=api_hooks(fake),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    body = fake.bodies()[0]
    StylingRequest.model_validate(body)
    key = body["image"]["key"]
    assert key.startswith("styling/")
    assert key.endswith("-big.jpg")
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_object(Bucket="atelier-dev-uploads", Key=key)["Body"].read() == (
        photo.read_bytes()
    )
    assert "base64" in body["mask"]
    assert "maskPrompt" not in body
    # Unset options are left to the API's defaults (two images, guidance 6.5, hard threshold)
    assert not {"numImages", "guidanceScale", "maskMode"} & set(body)


@pytest.mark.usefixtures("api_stage")
def test_style_asks_for_the_soft_mask(tmp_path: Path) -> None:
    photo = tmp_path / "model.jpg"
    photo.write_bytes(jpeg())
    answer = stored_images("styling", 2, mask=True)
    fake = FakeApi({f"POST {API_URL}styling": (200, answer), **downloads(answer)})

    result = invoke(
        ["--json", "style", str(photo), "--mask", "the skirt", "--prompt", "a long floral skirt",
         "--mask-mode", "soft", "--out", str(tmp_path / "o")],
        hooks=api_hooks(fake),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    body = fake.bodies()[0]
    StylingRequest.model_validate(body)
    assert body["maskMode"] == "soft"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--prompt", "x"], "exactly one of --mask"),
        (["--prompt", "x", "--mask", "a", "--mask-image", "m.png"], "exactly one of --mask"),
        (["--prompt", "x", "--mask", "a", "--threshold", "1"], "between 0 and 1"),
        (["--prompt", "x", "--mask", "a", "--image-length", "640"], "512 or 768"),
        (["--prompt", "x", "--mask", "a", "--mask-mode", "fuzzy"], "threshold or soft"),
        (
            ["--prompt", "x", "--mask", "a", "--mask-mode", "soft", "--threshold", "0.3"],
            "--threshold applies only to --mask-mode threshold",
        ),
        (["--prompt", "x", "--mask-image", "m.png", "--mask-mode", "soft"], "applies to --mask"),
    ],
)
def test_style_checks_its_options(tmp_path: Path, arguments: list[str], message: str) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg())

    result = invoke(["--json", "style", str(photo), *arguments])

    assert result.exit_code == ExitCode.USAGE
    assert message in json_document(result)["error"]["message"]


@pytest.mark.parametrize(
    ("key", "saved"),
    [
        ("styling/r/0.jpg", "0.jpg"),
        ("styling/r/..", "image-0.jpg"),
        ("a/.hidden.png", "image-0.png"),
    ],
)
@pytest.mark.usefixtures("api_stage")
def test_saved_names_come_from_the_key_only_when_safe(tmp_path: Path, key: str, saved: str) -> None:
    image = {"key": key, "url": "https://x/y", "expiresAt": "2026-11-22T13:00:00Z"}
    answer = {"requestId": "r", "seed": 1, "images": [image]}
    fake = FakeApi({f"POST {API_URL}images": (200, answer), "GET https://x/y": (200, b"img")})

    result = invoke(
        ["--json", "generate", "x", "--out", str(tmp_path / "o")], hooks=api_hooks(fake)
    )

    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == [saved]


def test_the_clis_copies_of_the_api_rules_are_the_apis() -> None:
    """The installed command cannot import the Lambda code: its copies of the API's rules must
    stay the handlers' (a stage may set lower limits; the API then refuses with its own code)."""
    from atelier_cli.commands import descriptions, pictures
    from descriptions.logic import uploads
    from diffusion.logic.keys import STYLING_PREFIX
    from infra.config import MAX_API_IMAGE_BYTES
    from shared.models.descriptions import PRODUCT_ID_PATTERN
    from shared.models.diffusion import MAX_INLINE_IMAGE_BYTES

    assert descriptions.PRODUCT_ID.pattern == PRODUCT_ID_PATTERN
    assert descriptions.MAX_SYNC_IMAGE_BYTES == MAX_API_IMAGE_BYTES
    assert (
        descriptions.PRODUCT_ID_METADATA,
        descriptions.CATEGORY_METADATA,
        descriptions.LANGUAGES_METADATA,
    ) == (uploads.PRODUCT_ID_METADATA, uploads.CATEGORY_METADATA, uploads.LANGUAGES_METADATA)
    assert pictures.MAX_INLINE_BYTES == MAX_INLINE_IMAGE_BYTES
    assert pictures.STYLING_UPLOADS_PREFIX == STYLING_PREFIX
