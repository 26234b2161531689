"""Every relative link in the README and docs/ reaches a file of the checkout,
and every #anchor a heading of the page it names (GitHub's heading ids)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target); images checked as files too
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def heading_ids(page: Path) -> set[str]:
    """GitHub's ids: the heading lower-cased, punctuation but - and _ dropped,
    spaces as -, a repeat suffixed -1, -2 ...; fenced code is no heading."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    ids: set[str] = set()
    for title in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n, unique = 0, slug
        while unique in ids:
            n += 1
            unique = f"{slug}-{n}"
        ids.add(unique)
    return ids


def links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return LINK.findall(text) + IMAGE.findall(text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not checked (no network)
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in heading_ids(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


def test_heading_ids_follow_github():
    page = ROOT / "docs" / "benchmarks.md"
    ids = heading_ids(page)
    assert {"front-end-check-summary", "passes-compression", "language-server-strata-lsp",
            "depth-2000-layers", "export-onnx-runtime"} <= ids
