"""The hard-case benchmark: its videos have the properties their categories promise (exact GT),
identity switches are counted as defined, and the CLI compares modes in one report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sam2_plugins.evaluation.hard import CATEGORIES, identity_switches, make_hard_video

REPO = Path(__file__).resolve().parents[2]


def test_categories_keep_their_promises() -> None:
    occ = make_hard_video("occlusion", 1, num_frames=64, height=96, width=128)
    hidden = [t for t in range(64) if not (occ.masks[t] == 1).any()]
    assert hidden and hidden[-1] < 63 and 5 <= len(hidden) <= 40, hidden  # hidden, then back
    fast = make_hard_video("fast", 2, num_frames=32, height=96, width=128)
    c = [np.argwhere(fast.masks[t] == 1).mean(0) for t in range(32)]
    size = max(np.ptp(np.argwhere(fast.masks[0] == 1), 0))
    moves = [np.linalg.norm(c[t + 1] - c[t]) for t in range(31)]
    assert np.median(moves) > size, (np.median(moves), size)  # more than its size per frame (bounces aside)
    cut = make_hard_video("cut", 3, num_frames=48, height=96, width=128)
    c1, c2 = cut.cuts
    assert not cut.masks[c1:c2].any() and cut.masks[c1 - 1].any() and cut.others[c1:c2].any()
    crowd = make_hard_video("crowd", 4, num_frames=32, height=96, width=128)
    assert set(np.unique(crowd.masks[0])) - {0} == {1, 2}
    assert len(set(np.unique(crowd.others)) - {0}) == 10
    a = make_hard_video("distractor", 5, num_frames=32, height=96, width=128)
    b = make_hard_video("distractor", 5, num_frames=32, height=96, width=128)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)  # seeded
    with pytest.raises(ValueError, match="categories: " + ", ".join(CATEGORIES)):
        make_hard_video("blur", 0)


def test_identity_switch_definition() -> None:
    obj = np.zeros((10, 10), bool)
    obj[:, :5] = True
    others = np.zeros((10, 10), int)
    others[:, 6:] = 101
    pred = np.zeros((10, 10), bool)
    pred[:, 3:] = True  # 20 px of the object, 40 px of the other shape
    assert identity_switches(pred, obj, others)
    pred[:, 8:] = False  # 20 vs 20: not more
    assert not identity_switches(pred, obj, others)
    assert not identity_switches(np.zeros((10, 10), bool), obj, others)


def test_cli_compares_modes_in_one_report(tmp_path: Path) -> None:
    out = tmp_path / "hard"
    raw = tmp_path / "results" / "raw.json"
    cmd = [sys.executable, "-m", "benchmarks", "vos", "--dataset", "hard", "--categories", "cut",
           "--videos-per-category", "1", "--ordinary-clips", "1", "--max-frames", "32",
           "--memory-mode", "sam2,samurai", "--checkpoint", "demo", "--output-dir", str(out),
           "--results-json", str(raw)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    assert json.loads(raw.read_text())["results"]["modes"] == ["sam2", "samurai"]
    per = rep["results"]["per_mode"]
    assert set(per) == {"sam2", "samurai"} and set(per["sam2"]["summary"]) == {"cut", "ordinary", "hard (all)"}
    # SAMURAI detects shot cuts by default, SAM 2 does not look for them
    assert per["samurai"]["summary"]["cut"]["cuts_flagged"] == 2 and per["sam2"]["summary"]["cut"]["cuts_flagged"] == 0
    md = (out / "report.md").read_text()
    assert "| category | sam2 | samurai |" in md
    pytest.importorskip("matplotlib")
    assert (out / "hard_jf.png").stat().st_size > 1000


def test_cli_refuses_unknown_mode(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks", "vos", "--dataset", "hard", "--memory-mode", "sam2,fast",
                          "--output-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "valid modes: sam2, samurai, distractor, long" in run.stderr
    assert not (tmp_path / "report.json").exists()
