"""Paper-style FPS beside the end-to-end figure (``python -m benchmarks.paper_fps`` and its
section of ``video-speed``), both labelled. Nothing about the speed itself is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_paper_style_and_end_to_end_fps_are_both_reported_and_labelled(tmp_path: Path) -> None:
    out = tmp_path / "fps.json"
    proc = _run("benchmarks.paper_fps", "--model", "sam2.1_hiera_nano", "--image-size", "256", "--frames", "3",
                "--runs", "2", "--warmup", "1", "--video", "synthetic", "--device", "cpu", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    paper, e2e = r["paper_style"], r["end_to_end"]
    assert paper["fps"] > 0 and e2e["fps"] > 0 and r["frames"] == 3
    assert paper["timed_frames"] == 6 and paper["runs"] == 2 and paper["warmup_runs"] == 1 and paper["objects"] == 1
    assert paper["label"].startswith("paper-style FPS: propagate_in_video only, 1 object, after warm-up")
    assert e2e["label"].startswith("end-to-end FPS: init_state")
    assert "paper-style FPS" in proc.stdout and "end-to-end FPS" in proc.stdout
    assert _run("benchmarks.paper_fps", "--frames", "0").returncode == 2  # a clear usage error


def test_video_speed_has_the_paper_fps_section() -> None:
    proc = _run("benchmarks", "video-speed", "--help")
    assert proc.returncode == 0 and "--paper-fps-runs" in proc.stdout
