"""Write a Stable Diffusion model archive the endpoints serve (`SM_MODEL_DIR`, tarred at its
root by SageMaker): the pipeline, CLIPSeg for styling, the handler code and a summary.

Layout (the shared archive contract):

- text-to-image: a `StableDiffusionPipeline` saved with `save_pretrained` at the root
  (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), `code/inference.py`
  (= dreambooth/inference.py), `code/requirements.txt` (= dreambooth/serving-requirements.txt),
  `code/sd_serving.py` (what both handlers share), `training_summary.json`.
- inpainting (virtual styling): a `StableDiffusionInpaintPipeline` at the root, `clipseg/`
  (CLIPSegForImageSegmentation + CLIPSegProcessor), `code/inference.py` (= styling/inference.py),
  `code/requirements.txt` (= styling/serving-requirements.txt), `code/sd_serving.py`,
  `training_summary.json`.
- both: `atelier-manifest.json` (common/manifest.py), written last, listing every other file
  with its size and SHA-256 and, as its source, what the archive was made from (for a training
  run `{"kind": "training-job", "job": ..., "base": ...}`), so the archive can be checked and be
  the `model` channel of a later run (sequential fine-tuning). The handlers ignore it.

`dreambooth/train.py` calls `export_archive` with the fine-tuned pipeline; packaging a stock
model for the styling endpoint is the same call with the stock pipeline, e.g.

    pipeline = StableDiffusionInpaintPipeline.from_pretrained(
        INPAINTING_BASE_MODEL, revision=INPAINTING_BASE_REVISION, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    export_archive(Path("model"), pipeline, mode="inpainting", clipseg_source=CLIPSEG_MODEL,
                   clipseg_revision=CLIPSEG_REVISION, summary={"base_model": ...},
                   manifest_source={"kind": "stock-package", ...})

(the names from dreambooth/base_models.py; a hub id is loaded at a pinned commit only, see
hub_pins.py).

Everything the endpoint needs is inside the archive, so it downloads nothing at start-up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# From their modules rather than `diffusers`: its lazy top level shows type checkers stand-ins.
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)

from common.manifest import write_manifest

TEXT_TO_IMAGE = "text-to-image"
INPAINTING = "inpainting"
MODES = (TEXT_TO_IMAGE, INPAINTING)
SUMMARY_FILE = "training_summary.json"
CLIPSEG_DIR = "clipseg"
CODE_DIR = "code"
# The UNet's input channels per mode: noisy latents (4), plus mask (1) and masked-image
# latents (4) for inpainting.
UNET_IN_CHANNELS = {TEXT_TO_IMAGE: 4, INPAINTING: 9}
_TRAINING_ROOT = Path(__file__).resolve().parents[1]
# The module both handlers import, copied into `code/` beside them (the toolkit puts `code/` on
# the import path), relative to the training code's root.
SHARED_SERVING_MODULE = "sd_serving.py"
# (handler, its requirements) per mode, relative to the training code's root.
SERVING_CODE = {
    TEXT_TO_IMAGE: ("dreambooth/inference.py", "dreambooth/serving-requirements.txt"),
    INPAINTING: ("styling/inference.py", "styling/serving-requirements.txt"),
}


class ExportError(RuntimeError):
    """The archive cannot be written as asked; the message names what is wrong."""


def serving_files(mode: str) -> tuple[Path, Path, Path]:
    """The handler, requirements and shared module that go to `code/` for `mode`; they must
    exist."""
    if mode not in MODES:
        raise ExportError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    handler, requirements = (_TRAINING_ROOT / name for name in SERVING_CODE[mode])
    shared = _TRAINING_ROOT / SHARED_SERVING_MODULE
    for path in (handler, requirements, shared):
        if not path.is_file():
            raise ExportError(f"{path} is missing: the {mode} archive needs it under code/")
    return handler, requirements, shared


def check_pipeline(pipeline: DiffusionPipeline, mode: str) -> None:
    expected = StableDiffusionInpaintPipeline if mode == INPAINTING else StableDiffusionPipeline
    if not isinstance(pipeline, expected):
        raise ExportError(
            f"mode {mode} exports a {expected.__name__}, got {type(pipeline).__name__}"
        )
    channels = pipeline.unet.config["in_channels"]
    if channels != UNET_IN_CHANNELS[mode]:
        raise ExportError(
            f"mode {mode} needs a UNet with {UNET_IN_CHANNELS[mode]} input channels; this "
            f"pipeline's has {channels}"
        )


def export_archive(
    model_dir: Path,
    pipeline: DiffusionPipeline,
    *,
    mode: str,
    clipseg_source: str | Path | None = None,
    clipseg_revision: str | None = None,
    summary: Mapping[str, Any],
    manifest_source: Mapping[str, Any],
) -> Path:
    """Write the archive for `mode` into `model_dir` and return `model_dir`.

    `manifest_source` is the source recorded in the archive's manifest (written last).

    `clipseg_source` (a hub id or a local directory holding a CLIPSegForImageSegmentation and its
    processor) is required for inpainting and refused for text-to-image; a hub id needs its
    40-hex `clipseg_revision` (hub_pins.py). Everything is checked
    before anything is written, so a wrong call leaves `model_dir` as it was.
    """
    handler, requirements, shared = serving_files(mode)
    check_pipeline(pipeline, mode)
    if mode == INPAINTING and clipseg_source is None:
        raise ExportError("an inpainting archive needs clipseg_source (hub id or directory)")
    if mode == TEXT_TO_IMAGE and clipseg_source is not None:
        raise ExportError("a text-to-image archive has no CLIPSeg; leave clipseg_source unset")
    clipseg = (
        _load_clipseg(clipseg_source, clipseg_revision) if clipseg_source is not None else None
    )

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(model_dir, safe_serialization=True)
    if clipseg is not None:
        model, processor = clipseg
        model.save_pretrained(model_dir / CLIPSEG_DIR, safe_serialization=True)
        processor.save_pretrained(model_dir / CLIPSEG_DIR)
    code_dir = model_dir / CODE_DIR
    code_dir.mkdir(exist_ok=True)
    shutil.copyfile(handler, code_dir / "inference.py")
    shutil.copyfile(requirements, code_dir / "requirements.txt")
    shutil.copyfile(shared, code_dir / SHARED_SERVING_MODULE)
    write_summary(model_dir, summary)
    # Last, so that it lists every file above.
    write_manifest(model_dir, manifest_source)
    return model_dir


def write_summary(directory: Path, summary: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _load_clipseg(source: str | Path, revision: str | None) -> tuple[Any, Any]:
    from hub_pins import UnpinnedModelError, hub_revision
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    try:
        pinned = hub_revision(str(source), revision, flag="the CLIPSeg revision")
    except UnpinnedModelError as error:
        raise ExportError(str(error)) from error
    try:
        model = CLIPSegForImageSegmentation.from_pretrained(str(source), revision=pinned)
        # A local folder has no revision (pinned None): the library's default, ignored there.
        processor = CLIPSegProcessor.from_pretrained(str(source), revision=pinned or "main")
    except (OSError, ValueError) as error:
        raise ExportError(f"cannot load CLIPSeg from {source}: {error}") from error
    return model, processor
