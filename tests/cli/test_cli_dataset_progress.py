"""`atelier dataset vqa` at a terminal: a progress bar per build step on stderr while the real
builder runs, the path of report.json in the answer, and a fix that points at a report that
exists. JSON mode stays one document with no progress."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from atelier_cli.commands.datasets import BUILD_STEPS
from atelier_cli.errors import ExitCode
from tests.cli_support import invoke, json_document
from tests.vqa_data_support import STYLES_HEADER, make_fashion_dataset
from vqa import prepare

pytestmark = pytest.mark.integration


def test_the_build_shows_a_bar_per_step_and_where_the_report_is(tmp_path: Path) -> None:
    source = make_fashion_dataset(tmp_path / "fashion", products=7)
    out = tmp_path / "out"

    result = invoke(["dataset", "vqa", "--source", str(source), "--out", str(out),
                     "--article-types", "all"])  # fmt: skip

    assert result.exit_code == 0, result.output
    # A bar per step, in order: every line read, then every product checked and written
    bars = result.stderr.splitlines()
    steps = (prepare.READING, prepare.CHECKING, prepare.WRITING)
    assert len(bars) == len(steps), result.stderr
    for bar, step in zip(bars, steps, strict=True):
        description, unit = BUILD_STEPS[step]
        assert bar.startswith(description), bars
        assert re.search(rf"\b7/7 {unit}\b", bar), bars
    # And the answer says where report.json is, and it is there
    report_line = next(line for line in result.stdout.splitlines() if line.startswith("Report:"))
    assert report_line == f"Report: {out / 'report.json'}"
    assert json.loads((out / "report.json").read_text())["counts"]["products_kept"] == 7


def test_json_mode_has_the_report_path_and_no_progress(tmp_path: Path) -> None:
    source = make_fashion_dataset(tmp_path / "fashion", products=3)
    out = tmp_path / "out"

    result = invoke(["--json", "dataset", "vqa", "--source", str(source), "--out", str(out),
                     "--article-types", "all"])  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    document = json_document(result)["result"]
    assert document["reportFile"] == str(out / "report.json")
    assert Path(document["reportFile"]).is_file()


def test_a_refusal_never_points_at_a_report_file_that_was_not_written(tmp_path: Path) -> None:
    # Given a catalog where every product is filtered out: vqa.prepare writes nothing then
    source = make_fashion_dataset(tmp_path / "fashion", products=3)
    out = tmp_path / "out"

    result = invoke(["dataset", "vqa", "--source", str(source), "--out", str(out),
                     "--article-types", "Sarees"])  # fmt: skip

    assert result.exit_code == ExitCode.USAGE
    fix = next(line for line in result.stderr.splitlines() if line.startswith("Fix:"))
    assert not (out / "report.json").exists()
    assert "report.json" not in fix
    assert "--json" in fix


def test_the_builder_reports_every_line_and_product_through_each_step(tmp_path: Path) -> None:
    source = make_fashion_dataset(tmp_path / "fashion", products=5)
    events: list[tuple[str, int, int | None]] = []

    report = prepare.build_dataset(
        source,
        tmp_path / "out",
        article_types=("Shirts",),
        progress=lambda step, done, total: events.append((step, done, total)),
    )

    # 5 products read, 3 of them shirts: all 5 are checked, the 3 kept are written
    kept = report.products_kept
    assert kept == 3
    checking = [(done, total) for step, done, total in events if step == prepare.CHECKING]
    writing = [(done, total) for step, done, total in events if step == prepare.WRITING]
    assert checking == [(done, 5) for done in range(6)]
    assert writing == [(done, kept) for done in range(kept + 1)]
    # Reading is heard of at once (before styles.csv is parsed), and ends before checking starts
    assert events[0] == (prepare.READING, 0, None)
    assert events.index((prepare.READING, 5, 5)) < events.index((prepare.CHECKING, 0, 5))
    assert events.index((prepare.WRITING, 0, kept)) > events.index((prepare.CHECKING, 5, 5))


def test_a_long_styles_csv_is_reported_while_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    rows = (f"{n},Men,Apparel,Topwear,Shirts,Red,Summer,2012,Casual,Shirt {n}" for n in range(4500))
    path.write_text("\n".join([STYLES_HEADER, *rows]) + "\n", encoding="utf-8")
    events: list[tuple[str, int, int | None]] = []

    table = prepare.read_styles(path, progress=lambda *event: events.append(event))

    assert len(table.records) == 4500
    # Line numbers count the header: lines 2000 and 4000 are data lines 1999 and 3999
    assert events == [(prepare.READING, 2000, None), (prepare.READING, 4000, None)]
