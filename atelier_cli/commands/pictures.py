"""`atelier generate PROMPT` and `atelier style IMAGE`: images from the customized Titan model
(`POST /images`), the DreamBooth endpoint (`POST /generations`) and virtual styling
(`POST /styling`). The API stores the images and answers presigned links; they are saved here."""

from __future__ import annotations

import base64
import secrets
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.console import Console

from atelier_cli.aws import translated_errors
from atelier_cli.errors import UsageError
from atelier_cli.local_files import CONTENT_TYPES, IMAGE_FORMATS, read_image, safe_name, save_new
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command
from atelier_cli.signed_api import Api

# lambdas/diffusion/logic/inputs.py: inline images up to diffusion.max_inline_image_bytes (at
# most 2 MiB); larger ones go to the uploads bucket under styling/ and are passed by key.
MAX_INLINE_BYTES = 2 * 1024 * 1024
STYLING_UPLOADS_PREFIX = "styling/"


class Generator(StrEnum):
    titan = "titan"
    dreambooth = "dreambooth"


class Quality(StrEnum):
    standard = "standard"
    premium = "premium"


OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Folder for the images (created if needed).")
]
SeedOption = Annotated[int | None, typer.Option("--seed", min=0)]
NegativeOption = Annotated[str | None, typer.Option("--negative", help="What not to draw.")]


def register(root: typer.Typer) -> None:
    root.command("generate")(generate)
    root.command("style")(style)


def generation_request(
    model: Generator,
    prompt: str,
    *,
    count: int,
    width: int | None,
    height: int | None,
    seed: int | None,
    negative: str | None,
    quality: Quality | None,
    cfg_scale: float | None,
    steps: int | None,
    guidance: float | None,
) -> tuple[str, dict[str, Any]]:
    """(path, body) in each API's own field names (lambdas/images and lambdas/diffusion)."""
    if not prompt.strip():
        raise UsageError("PROMPT is empty", fix="say what to draw")
    if model is Generator.titan:
        if steps is not None or guidance is not None:
            raise UsageError(
                "--steps and --guidance apply to --model dreambooth",
                fix="use --cfg-scale with Titan",
            )
        body: dict[str, Any] = {
            "prompt": prompt,
            "width": width or 1024,
            "height": height or 1024,
            "numberOfImages": count,
        }
        optional = {"quality": quality.value if quality else None, "cfgScale": cfg_scale}
        path = "/images"
    else:
        if quality is not None or cfg_scale is not None:
            raise UsageError(
                "--quality and --cfg-scale apply to --model titan",
                fix="use --guidance and --steps with DreamBooth",
            )
        body = {"prompt": prompt, "numImages": count}
        optional = {"width": width, "height": height, "steps": steps, "guidanceScale": guidance}
        path = "/generations"
    optional |= {"seed": seed, "negativePrompt": negative}
    body |= {name: value for name, value in optional.items() if value is not None}
    return path, body


def post_and_save(run: Run, path: str, body: dict[str, Any], out: Path) -> None:
    """Call an image route and save what it returns; the command's answer."""
    api = Api(run)
    run.note(f"POST {path} ...")
    answer = api.call("POST", path, body)
    saved = save_images(api, answer, out, run)
    result = {"requestId": answer.get("requestId"), "seed": answer.get("seed"), "saved": saved}
    run.done(result, lambda console: _print_saved(console, result))


def save_images(api: Api, answer: dict[str, Any], out: Path, run: Run) -> list[dict[str, Any]]:
    """Download every returned image (and a styling mask) into `out`; never overwrite."""
    stored = [("image", image) for image in answer.get("images", [])]
    if answer.get("mask"):
        stored.append(("mask", answer["mask"]))
    saved = []
    for number, (role, image) in enumerate(stored):
        fallback = f"{role}-{number}{PurePosixPath(image['key']).suffix or '.jpg'}"
        name = safe_name(PurePosixPath(image["key"]).name, fallback)
        path = save_new(out, name, api.download(image["url"]))
        run.note(f"saved {path}")
        saved.append({"role": role, "key": image["key"], "path": str(path)})
    return saved


def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[Generator, typer.Option("--model", help="Which model.")] = Generator.titan,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=5)] = 1,
    width: Annotated[int | None, typer.Option("--width", min=1)] = None,
    height: Annotated[int | None, typer.Option("--height", min=1)] = None,
    seed: SeedOption = None,
    negative: NegativeOption = None,
    quality: Annotated[Quality | None, typer.Option("--quality", help="Titan only.")] = None,
    cfg_scale: Annotated[
        float | None, typer.Option("--cfg-scale", min=1.1, max=10, help="Titan only.")
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, max=100, help="DreamBooth only.")
    ] = None,
    guidance: Annotated[
        float | None, typer.Option("--guidance", min=0, max=20, help="DreamBooth only.")
    ] = None,
    out: OutOption = Path("."),
    json_output: JsonFlag = False,
) -> None:
    """Generate images with the customized Titan model (needs provisioned throughput:
    `atelier throughput list`) or the DreamBooth endpoint, and save them."""
    with command(ctx, "generate", json_output) as run:
        path, body = generation_request(
            model,
            prompt,
            count=count,
            width=width,
            height=height,
            seed=seed,
            negative=negative,
            quality=quality,
            cfg_scale=cfg_scale,
            steps=steps,
            guidance=guidance,
        )
        post_and_save(run, path, body, out)


def style(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="The photo to restyle (JPEG, PNG, WebP).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The new style.")],
    mask: Annotated[
        str | None, typer.Option("--mask", help="What to replace, e.g. 'the skirt' (CLIPSeg).")
    ] = None,
    mask_image: Annotated[
        Path | None,
        typer.Option("--mask-image", help="Your own mask: white = paint, black = keep."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="CLIPSeg probability, between 0 and 1.")
    ] = None,
    mask_mode: Annotated[
        str | None,
        typer.Option(
            "--mask-mode",
            help="threshold (hard edge, the default) or soft (the normal CDF of CLIPSeg's "
            "logits, blended).",
        ),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, max=4, help="Images (API default: 2).")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, max=100)] = None,
    guidance: Annotated[
        float | None, typer.Option("--guidance", min=0, max=20, help="API default: 6.5.")
    ] = None,
    image_length: Annotated[
        int | None, typer.Option("--image-length", help="512 or 768 (the model's working side).")
    ] = None,
    seed: SeedOption = None,
    negative: NegativeOption = None,
    out: OutOption = Path("."),
    json_output: JsonFlag = False,
) -> None:
    """Restyle what --mask names in a photo (CLIPSeg + Stable Diffusion inpainting) and save
    the results and the mask that was found."""
    with command(ctx, "style", json_output) as run:
        if (mask is None) == (mask_image is None):
            raise UsageError(
                "give exactly one of --mask (a text, e.g. 'the skirt') and --mask-image",
                code="mask_required",
            )
        if threshold is not None and mask is None:
            raise UsageError("--threshold applies to --mask", fix="leave --threshold out")
        if threshold is not None and not 0 < threshold < 1:
            raise UsageError("--threshold must be between 0 and 1 (exclusive)")
        if mask_mode is not None and mask_mode not in ("threshold", "soft"):
            raise UsageError("--mask-mode must be threshold or soft", code="invalid_argument")
        if mask_mode is not None and mask is None:
            raise UsageError("--mask-mode applies to --mask", fix="leave --mask-mode out")
        if mask_mode == "soft" and threshold is not None:
            raise UsageError(
                "--threshold applies only to --mask-mode threshold",
                fix="leave --threshold out with --mask-mode soft",
            )
        if image_length is not None and image_length not in (512, 768):
            raise UsageError("--image-length must be 512 or 768", code="invalid_argument")
        if not prompt.strip():
            raise UsageError("--prompt is empty", fix="describe the new style")
        body: dict[str, Any] = {"prompt": prompt}
        body["image"] = input_image(run, image, "IMAGE")
        if mask_image is not None:
            body["mask"] = input_image(run, mask_image, "--mask-image")
        else:
            body["maskPrompt"] = mask
        optional = {
            "maskThreshold": threshold,
            "maskMode": mask_mode,
            "numImages": count,
            "steps": steps,
            "guidanceScale": guidance,
            "imageLength": image_length,
            "seed": seed,
            "negativePrompt": negative,
        }
        body |= {name: value for name, value in optional.items() if value is not None}
        post_and_save(run, "/styling", body, out)


def input_image(run: Run, path: Path, option: str) -> dict[str, str]:
    """Inline base64 when small enough, else uploaded to `styling/` of the uploads bucket."""
    data, kind = read_image(path, option=option)
    if len(data) <= MAX_INLINE_BYTES:
        return {"base64": base64.b64encode(data).decode()}
    bucket = run.resources.published("data", "uploads-bucket")
    key_arn = run.resources.published("data", "kms-key-arn")
    # A random name: two runs with photos of the same name must not read each other's.
    key = f"{STYLING_UPLOADS_PREFIX}{secrets.token_hex(8)}-{path.stem[:100]}{IMAGE_FORMATS[kind]}"
    with translated_errors(f"upload {path} to s3://{bucket}/{key}"):
        run.aws.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=CONTENT_TYPES[kind],
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_arn,
        )
    run.note(f"{path} is over {MAX_INLINE_BYTES:,} bytes: uploaded to s3://{bucket}/{key}")
    return {"key": key}


def _print_saved(console: Console, result: dict[str, Any]) -> None:
    for entry in result["saved"]:
        console.print(f"{entry['role']}: {escape(entry['path'])}")
    console.print(f"seed {result['seed']} (pass --seed to draw the same again)")
