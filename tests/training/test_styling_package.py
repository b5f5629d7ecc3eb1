"""`python -m styling.package`: stock models → the styling endpoint's archive, files at its root."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from dreambooth.export import ExportError
from styling import inference, package


def test_stock_models_package_into_a_tar_the_styling_handler_loads(
    tiny_sd_inpainting: Path, tiny_clipseg: Path, tmp_path: Path
) -> None:
    # Given stock inpainting and CLIPSeg models (local folders instead of hub ids)
    out, tar = tmp_path / "styling", tmp_path / "styling.tar.gz"

    # When they are packaged
    argv = ["--out", str(out), "--tar", str(tar), "--inpainting-model", str(tiny_sd_inpainting)]
    assert package.main([*argv, "--clipseg-model", str(tiny_clipseg)]) == 0

    # Then the tar holds the pipeline, clipseg/ and code/ at its root, not inside a folder
    with tarfile.open(tar, "r:gz") as archive:
        names = set(archive.getnames())
        archive.extractall(tmp_path / "extracted", filter="data")
    expected = {"model_index.json", "unet", "clipseg", "code/inference.py", "code/sd_serving.py"}
    assert expected <= names
    assert (out / "code" / "inference.py").read_bytes() == Path(inference.__file__).read_bytes()
    summary = json.loads((out / "training_summary.json").read_text())
    assert (summary["status"], summary["base_model"]) == ("stock", str(tiny_sd_inpainting))
    # And the styling handler loads what SageMaker would extract
    loaded = inference.model_fn(str(tmp_path / "extracted"))
    assert type(loaded.pipeline).__name__ == "StableDiffusionInpaintPipeline"


def test_a_text_to_image_model_is_refused_and_nothing_is_written(
    tiny_sd: Path, tiny_clipseg: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="needs a UNet with 9 input channels"):
        package.package(
            tmp_path / "styling", inpainting_model=str(tiny_sd), clipseg_model=str(tiny_clipseg)
        )
    assert not (tmp_path / "styling").exists()


def test_the_cli_names_a_wrong_model_and_exits_2(
    tiny_sd: Path, tiny_clipseg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path / "styling"), "--inpainting-model", str(tiny_sd)]
    assert package.main([*argv, "--clipseg-model", str(tiny_clipseg)]) == 2
    assert "needs a UNet with 9 input channels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "{full}"], "must be a new or empty folder"),
        (["--out", "{new}", "--tar", "{new}.tar"], "must end in .tar.gz"),
    ],
)
def test_bad_arguments_are_refused_before_any_model_loads(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.txt").write_text("keep me")
    args = [arg.format(full=full, new=tmp_path / "new") for arg in argv]
    with pytest.raises(SystemExit) as exited:
        package.parse_args(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert (full / "old.txt").read_text() == "keep me"


def test_the_defaults_are_the_pinned_community_copies() -> None:
    args = package.parse_args(["--out", "/tmp/never-written"])
    assert (args.inpainting_model, args.inpainting_revision) == (
        "sd2-community/stable-diffusion-2-inpainting",
        "5f74973cbb64c8568780732c17f43eb269d63a0d",
    )
    assert (args.clipseg_model, args.clipseg_revision) == (
        "CIDAS/clipseg-rd64-refined",
        "999e0328d9e10b484360c477313983f9afdd7050",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--inpainting-model", "stabilityai/stable-diffusion-2-inpainting"],
            "stabilityai/stable-diffusion-2-inpainting is a Hugging Face Hub id without a pinned "
            "revision: set --inpainting-revision",
        ),
        (
            ["--clipseg-model", "CIDAS/clipseg-rd64-refined", "--clipseg-revision", "main"],
            "--clipseg-revision 'main' for CIDAS/clipseg-rd64-refined is not a commit hash",
        ),
    ],
)
def test_an_unpinned_hub_model_is_refused_before_any_download(
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no network (a download would fail differently) and an unpinned hub id
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["--out", str(tmp_path / "styling"), *extra]

    # When packaging, then the CLI exits 2 saying why, and nothing is written
    assert package.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "HfApi().model_info(" in err
    assert not (tmp_path / "styling").exists()
