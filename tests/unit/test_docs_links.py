"""Every relative link in the README and docs/ points at a file of this repository, and every
`#anchor` at a heading of its target, so no page cites something the repository lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "lambdas" / "README.md",
        ROOT / "training" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a link or heading inside a fence is just text)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = github_anchor(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.is_relative_to(root):
                problems.append(f"{target}: outside the repository")
            elif not resolved.exists():
                problems.append(f"{target}: no file {resolved.relative_to(root)}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    # Given a page that links to a missing file and a missing heading
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Title with `code` (and more)\n\n"
        "[ok](#title-with-code-and-more) [gone](missing.md) [nowhere](#no-such-heading)\n"
        "[up](../../outside.md)\n"
        "```\n[ignored in a fence](missing-too.md)\n```\n",
        encoding="utf-8",
    )
    (tmp_path.parent / "outside.md").write_text("# Outside\n", encoding="utf-8")
    # Then the missing file, the missing heading and the file outside are reported, nothing else
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 3, problems
    assert "missing.md: no file docs/missing.md" in problems[0]
    assert "no heading #no-such-heading" in problems[1]
    assert "outside the repository" in problems[2]


def test_github_anchor_matches_githubs_rules() -> None:
    assert github_anchor("Describing a whole catalog (`describe-catalog`)") == (
        "describing-a-whole-catalog-describe-catalog"
    )
    assert github_anchor("Scripting: `--json` and exit codes") == "scripting---json-and-exit-codes"
    assert github_anchor("Stable Diffusion API: `POST /generations` and `POST /styling`") == (
        "stable-diffusion-api-post-generations-and-post-styling"
    )
