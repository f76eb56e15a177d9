"""ARCHITECTURE.md stays true: every path in its "Where is X" table exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_where_is_x_paths_exist() -> None:
    text = (REPO / "ARCHITECTURE.md").read_text()
    table = text.split("## Where is X", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"`([\w./-]+\.(?:py|yaml|yml|md|json))`", table)
    assert len(paths) >= 20, "the table lost its rows"
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_readme_links_the_architecture() -> None:
    assert "ARCHITECTURE.md" in (REPO / "README.md").read_text()
