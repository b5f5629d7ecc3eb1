"""The pinned CDK CLI reads this app's cloud assembly (a CLI/library mismatch fails here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.infra


def test_npx_cdk_synth_lists_the_data_stack(tmp_path: Path) -> None:
    # Given the project-local CDK CLI and Node from the venv (installed by `make test`)
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "node_modules is missing: run `make install` (make test does)"
    venv_bin = ROOT / ".venv" / "bin"
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    assert shutil.which("node", path=env["PATH"]), "no node on PATH"
    # When the CLI synthesizes the app into a scratch folder
    result = subprocess.run(
        [str(cdk), "synth", "--quiet", "-c", "stage=prod", "-o", str(tmp_path), "--no-notices"],
        cwd=ROOT,
        env={**env, "CDK_DISABLE_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then it succeeds and the assembly holds the prod data stack
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "atelier-prod-data.template.json").is_file()
