"""The documentation stays walkable: every relative link in README.md and docs/ resolves (file and
heading), every repository path it names in backticks exists, and the README stays an entry point.

Headings become anchors as GitHub makes them: lower case, punctuation other than `-` and `_` dropped,
spaces turned into `-`.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
README_LIMIT_BYTES = 12_500

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
# A path into the repository as the docs write it: `hub/intake/accept.py`, `tests/test_mappings.py`.
# The made-up partner the how-tos add (docs/howto/add-a-partner.md): its files exist only while you follow them.
MADE_UP = "observatoire"
REPO_PATH = re.compile(r"`((?:hub|connectors|registry|sandbox|bench|tests|mappings|schemas|config)/[\w./-]+)`")


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (links and paths inside examples are not checked)."""
    kept, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return "\n".join(kept)


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    for line in _prose(page).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", match.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(_prose(page))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked here


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no file {destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(ROOT)}")
    assert not broken, f"broken links in {page.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(page):
    missing = sorted({path for path in REPO_PATH.findall(_prose(page))
                      if "<" not in path and "*" not in path and MADE_UP not in path.lower()
                      and not (ROOT / path).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {', '.join(missing)}"


def test_every_docs_page_says_what_it_is_for():
    for page in PAGES[1:]:
        lines = [line for line in page.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert lines[0].startswith("# ") and not lines[1].startswith("#"), \
            f"{page.relative_to(ROOT)}: a title, then one sentence saying what the page is for"


def test_readme_is_an_entry_point():
    size = len(README.read_bytes())
    assert size <= README_LIMIT_BYTES, (f"README.md is {size:,} bytes (limit {README_LIMIT_BYTES:,}): move the detail "
                                        "into a page under docs/ and link to it")


def test_the_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nSee [there](missing.md) and [here](#title), [a](#nowhere).\n\n```\n[x](ignored.md)\n```\n",
                    encoding="utf-8")
    assert relative_links(page) == ["missing.md", "#title", "#nowhere"]
    assert anchors(page) == {"title"}
