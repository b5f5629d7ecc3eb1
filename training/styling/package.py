"""Package the stock styling models into the archive the styling endpoint serves, no training.

    python -m styling.package --out /tmp/styling [--tar /tmp/styling.tar.gz] \
        [--inpainting-model <hub id or folder> --inpainting-revision <40-hex commit>] \
        [--clipseg-model <hub id or folder> --clipseg-revision <40-hex commit>]

The endpoint runs network isolated, so everything it loads must be in the archive: the inpainting
pipeline at the root, CLIPSeg in `clipseg/`, the handler in `code/`. This is the same layout, and
the same `export_archive` call, as an inpainting DreamBooth run writes; only the weights differ.
Each model is a Hugging Face hub id (downloaded once into the local cache) or a local folder.
A hub id is loaded at a pinned commit only (hub_pins.py says why): without `--*-model` the
defaults of dreambooth/base_models.py come with their commits (the SD 2 inpainting copy in
`sd2-community`, unofficial; docs/base-models.md), and a named hub id needs its `--*-revision`.

`--tar` also writes the `.tar.gz` with the files at its root (SageMaker extracts it into
`/opt/ml/model`; a top-level folder would hide `code/` from the toolkit). Upload it to the models
bucket and set `styling.hosting.model_data_url` to its S3 URI.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file (`python training/styling/package.py`): the training code's root on the path.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreambooth.base_models import (
    CLIPSEG_MODEL,
    CLIPSEG_REVISION,
    INPAINTING_BASE_MODEL,
    INPAINTING_BASE_REVISION,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m styling.package",
        description="Write the styling endpoint's model archive from stock models.",
        allow_abbrev=False,
    )
    parser.add_argument("--out", type=Path, required=True, help="new or empty folder to fill")
    parser.add_argument("--tar", type=Path, help="also write this .tar.gz, files at its root")
    parser.add_argument("--inpainting-model", help=f"default: {INPAINTING_BASE_MODEL}")
    parser.add_argument("--inpainting-revision", help="40-hex Hub commit of --inpainting-model")
    parser.add_argument("--clipseg-model", help=f"default: {CLIPSEG_MODEL}")
    parser.add_argument("--clipseg-revision", help="40-hex Hub commit of --clipseg-model")
    args = parser.parse_args(argv)
    for name, model, revision in (
        ("inpainting", INPAINTING_BASE_MODEL, INPAINTING_BASE_REVISION),
        ("clipseg", CLIPSEG_MODEL, CLIPSEG_REVISION),
    ):
        if getattr(args, f"{name}_model") is None:
            if getattr(args, f"{name}_revision") is not None:
                parser.error(f"--{name}-revision needs --{name}-model: the model it is a commit of")
            setattr(args, f"{name}_model", model)
            setattr(args, f"{name}_revision", revision)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        parser.error(f"--out {args.out} must be a new or empty folder")
    if args.tar is not None and not args.tar.name.endswith(".tar.gz"):
        parser.error(f"--tar {args.tar} must end in .tar.gz (SageMaker reads gzipped tar)")
    return args


def write_tar(model_dir: Path, tar_path: Path) -> Path:
    """`model_dir`'s contents at the root of a gzipped tar (no leading folder)."""
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return tar_path


def package(
    out: Path,
    *,
    inpainting_model: str,
    clipseg_model: str,
    inpainting_revision: str | None = None,
    clipseg_revision: str | None = None,
    tar: Path | None = None,
) -> Path:
    """Load the stock models, write the archive folder (and tar); return the folder. A hub id
    without its 40-hex revision is refused (ExportError) before anything is downloaded."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
        StableDiffusionInpaintPipeline,
    )
    from hub_pins import UnpinnedModelError, hub_revision

    from dreambooth.export import INPAINTING, ExportError, export_archive

    try:
        pinned = hub_revision(inpainting_model, inpainting_revision, flag="--inpainting-revision")
        clipseg_pinned = hub_revision(clipseg_model, clipseg_revision, flag="--clipseg-revision")
    except UnpinnedModelError as error:
        raise ExportError(str(error)) from error
    pipeline = StableDiffusionInpaintPipeline.from_pretrained(
        inpainting_model,
        revision=pinned,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    export_archive(
        out,
        pipeline,
        mode=INPAINTING,
        clipseg_source=clipseg_model,
        clipseg_revision=clipseg_revision,
        summary={
            "status": "stock",
            "base_model": inpainting_model,
            "base_model_revision": pinned,
            "clipseg_model": clipseg_model,
            "clipseg_model_revision": clipseg_revision,
            "note": "packaged by styling.package; not fine-tuned",
        },
        manifest_source={
            "kind": "stock-package",
            "base": _source(inpainting_model, pinned),
            "clipseg": _source(clipseg_model, clipseg_pinned),
        },
    )
    if tar is not None:
        write_tar(out, tar)
    return out


def _source(model: str, revision: str | None) -> dict[str, str]:
    """A manifest source for what was packaged: the hub id at its commit, or a folder."""
    return {"kind": "hub", "model": model, "revision": revision} if revision else {"kind": "folder"}


def main(argv: Sequence[str] | None = None) -> int:
    from dreambooth.export import ExportError

    args = parse_args(argv)
    try:
        out = package(
            args.out,
            inpainting_model=args.inpainting_model,
            clipseg_model=args.clipseg_model,
            inpainting_revision=args.inpainting_revision,
            clipseg_revision=args.clipseg_revision,
            tar=args.tar,
        )
    except ExportError as error:
        print(f"cannot package the styling archive: {error}", file=sys.stderr)
        return 2
    print(f"styling archive folder: {out}")
    if args.tar is not None:
        print(f"archive: {args.tar} (upload it, then set styling.hosting.model_data_url)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
