"""The docs' "where next" lists: the home page and the tutorial link every guide in the nav."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
MKDOCS = DOCS.parent / "mkdocs.yml"


def guides_in_nav() -> list[str]:
    """Every ``guides/...md`` page that mkdocs.yml's nav lists."""
    return re.findall(r":\s*(guides/[\w./-]+\.md)\s*$", MKDOCS.read_text(), flags=re.M)


def test_the_nav_lists_guides() -> None:
    assert len(guides_in_nav()) >= 5


@pytest.mark.parametrize(
    ("page", "heading"), [("index.md", "Where next"), ("tutorial.md", "What next")]
)
def test_where_next_links_every_guide(page: str, heading: str) -> None:
    text = (DOCS / page).read_text()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\]\((guides/[\w./-]+\.md)[)#]", section))
    missing = [guide for guide in guides_in_nav() if guide not in linked]
    assert not missing, f"docs/{page} '{heading}' does not link {missing}"


def test_install_commands_live_on_the_install_page_only() -> None:
    # Until the release, `pip install asignals-dispatch` fails: the other pages link the
    # Install page, which says how to install from a checkout or a wheel, instead.
    pages = [*DOCS.rglob("*.md"), DOCS.parent / "README.md"]
    pages = [page for page in pages if page.name not in ("install.md", "changelog.md")]
    command = re.compile(r"pip install \"?asignals-dispatch")
    repeating = [
        str(page.relative_to(DOCS.parent)) for page in pages if command.search(page.read_text())
    ]
    assert not repeating, f"{repeating} repeat the install command: link install.md instead"
    assert "install.md" in MKDOCS.read_text()
