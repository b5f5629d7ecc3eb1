"""No code path in training/ downloads at job start: every call that can fetch from the Hub
(`from_pretrained`, `load_config`, `snapshot_download`, `hf_hub_download`, ...) sits in a
function that is handed an already resolved local folder (common/base_model_channel.py inside a
job, the archive folder on an endpoint), or in a tool run by hand.

A new direct Hub load anywhere in training/ fails this test until it is routed through the
resolved folder and listed here with where its folder comes from. The training tests in
test_training_from_channels.py run the listed training paths with sockets refused.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

TRAINING_ROOT = Path(__file__).resolve().parents[2] / "training"
# Calls that read a model from a Hub id when given one.
HUB_LOADERS = frozenset(
    {
        "from_pretrained",
        "load_config",
        "from_single_file",
        "snapshot_download",
        "hf_hub_download",
        "cached_download",
        "cached_file",
        "cached_path",
    }
)
# (file, function) -> where the folder it loads from comes from.
ALLOWED = {
    ("dreambooth/components.py", "load_components"): "dreambooth.train: resolve_base_model",
    ("dreambooth/components.py", "load_frozen_components"): "dreambooth.train: resolve_base_model",
    ("dreambooth/components.py", "build_pipeline"): "dreambooth.train: resolve_base_model",
    ("dreambooth/export.py", "_load_clipseg"): "dreambooth.train: resolve_clipseg",
    ("sdxl_lora/components.py", "load_components"): "sdxl_lora.train: resolve_base_model",
    ("sdxl_lora/components.py", "build_pipeline"): "sdxl_lora.train: resolve_base_model",
    ("vqa/train.py", "load_base_model"): "vqa.train.main: resolve_base_model",
    ("vqa/train.py", "load_processor"): "vqa.train.main: resolve_base_model",
    ("vqa/train.py", "export_model"): "vqa.train.main: resolve_base_model; adapter in output",
    ("vqa/inference.py", "model_fn"): "the endpoint's model_dir (the archive)",
    ("styling/inference.py", "model_fn"): "the endpoint's model_dir (the archive)",
    ("sd_serving.py", "load_pipeline"): "the endpoint's model_dir (the archive)",
    ("styling/package.py", "package"): "run by hand to build a stock archive, never in a job",
}


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def hub_load_sites(root: Path) -> dict[tuple[str, str], list[int]]:
    """(file, enclosing function or "<module>") -> line numbers of each Hub-capable call, and of
    every huggingface_hub import (its functions all reach the Hub)."""
    sites: dict[tuple[str, str], list[int]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        def visit(node: ast.AST, function: str, relative: str = relative) -> None:
            for child in ast.iter_child_nodes(node):
                inner = function
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    inner = child.name if function == "<module>" else f"{function}.{child.name}"
                hub_import = (
                    isinstance(child, ast.ImportFrom)
                    and (child.module or "").split(".")[0] == "huggingface_hub"
                ) or (
                    isinstance(child, ast.Import)
                    and any(alias.name.split(".")[0] == "huggingface_hub" for alias in child.names)
                )
                hub_call = isinstance(child, ast.Call) and _called_name(child) in HUB_LOADERS
                if hub_import or hub_call:
                    sites.setdefault((relative, function), []).append(child.lineno)  # type: ignore[attr-defined]
                visit(child, inner)

        visit(tree, "<module>")
    return sites


def test_every_hub_capable_call_in_training_loads_a_resolved_folder() -> None:
    sites = hub_load_sites(TRAINING_ROOT)
    unexpected = {site: lines for site, lines in sites.items() if site not in ALLOWED}
    assert not unexpected, (
        f"Hub-capable loads outside the allow-list: {unexpected}. A job runs network isolated: "
        "load from the folder common/base_model_channel.resolve_model_input returns, and list "
        "the function in ALLOWED with where that folder comes from"
    )


def test_the_allow_list_names_only_functions_that_still_load() -> None:
    # A stale entry would let a new load in a function of that name pass unseen.
    assert set(ALLOWED) <= set(hub_load_sites(TRAINING_ROOT))


@pytest.mark.parametrize(
    "added",
    [
        "from transformers import CLIPModel\n\n"
        "def f():\n    return CLIPModel.from_pretrained('openai/clip')\n",
        "from huggingface_hub import snapshot_download\n",
        "import huggingface_hub\n\nhuggingface_hub.hf_hub_download('a/b', 'c')\n",
    ],
    ids=["from_pretrained", "import", "hf_hub_download"],
)
def test_a_new_direct_hub_load_is_caught(tmp_path: Path, added: str) -> None:
    # Given the training code with one more module that loads straight from the Hub
    copy = Path(shutil.copytree(TRAINING_ROOT, tmp_path / "training"))
    (copy / "vqa" / "shortcut.py").write_text(added, encoding="utf-8")

    # Then the scan reports it, outside the allow-list
    sites = hub_load_sites(copy)
    assert {site for site in sites if site not in ALLOWED} == {
        ("vqa/shortcut.py", "f" if "def f" in added else "<module>")
    }
