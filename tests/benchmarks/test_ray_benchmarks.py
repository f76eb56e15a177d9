"""``python -m benchmarks vos / interactive-image / interactive-video --executor ray``: the same report as
in-process (only timings differ), on a local Ray cluster the test starts (loopback only)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.ray_local import PY, local_cluster, require_ray, subprocess_env

TIMING_KEYS = {"created", "seconds", "fps_end_to_end", "wall_seconds", "execution"}


def _strip(obj: Any) -> Any:
    """The report without its timings and its execution block (workers differ by design)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _bench(*args: str) -> dict:
    r = subprocess.run([PY, "-m", "benchmarks", *args], capture_output=True, text=True, env=subprocess_env(),
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = Path(args[args.index("--output-dir") + 1])
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def cluster():
    require_ray()
    with local_cluster(2) as addr:
        yield addr


def _check_execution(rep: dict, unit: str, items: int) -> None:
    ex = rep["execution"]
    assert ex["executor"] == "ray" and ex["workers"] == 2 and ex["unit"] == unit
    per = ex["per_worker"]
    assert sum(w["items"] for w in per.values()) == items and not ex["failed_items"]
    assert all(w["units_per_second"] > 0 for w in per.values())


def test_vos_on_ray_gives_the_in_process_report(tmp_path: Path, cluster: str) -> None:
    common = ["vos", "--dataset", "synthetic", "--max-sequences", "6", "--max-frames", "8", "--model", "nano",
              "--checkpoint", "demo", "--prompt", "mask,click1", "--save-predictions"]
    ref = _bench(*common, "--output-dir", str(tmp_path / "ref"))
    ray = _bench(*common, "--output-dir", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2",
                 "--ray-address", cluster)
    assert len(ref["settings"]["sequences"]) == 6
    assert ref["execution"] == {"executor": "inprocess", "workers": 1}
    assert _strip(ray) == _strip(ref)
    assert ray["results"]["J&F-Mean"] > 0 and len(ray["results"]["per_sequence"]) == 6
    _check_execution(ray, "frames", 12)  # 6 videos x 2 prompt settings
    def pngs(run: str) -> list:
        root = tmp_path / run
        return sorted(p.relative_to(root) for p in root.rglob("*.png") if "predictions" in p.parts)

    assert pngs("ref") and pngs("ref") == pngs("ray")
    assert all((tmp_path / "ref" / p).read_bytes() == (tmp_path / "ray" / p).read_bytes() for p in pngs("ref"))
    md = (tmp_path / "ray" / "report.md").read_text()
    assert "## Execution" in md and "| ray-0 |" in md and "| ray-1 |" in md


def test_interactive_image_on_ray_gives_the_in_process_report(tmp_path: Path, cluster: str) -> None:
    common = ["interactive-image", "--dataset", "synthetic", "--model", "nano", "--checkpoint", "demo",
              "--max-clicks", "3", "--max-instances", "7"]
    ref = _bench(*common, "--output-dir", str(tmp_path / "ref"))
    ray = _bench(*common, "--output-dir", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2",
                 "--ray-address", cluster)
    assert _strip(ray) == _strip(ref)
    assert ref["results"]["n_instances"] == 7  # the per-dataset cap is kept across images on workers
    _check_execution(ray, "images", 3)


@pytest.mark.slow
def test_interactive_video_on_ray_gives_the_in_process_report(tmp_path: Path, cluster: str) -> None:
    common = ["interactive-video", "--dataset", "synthetic", "--max-sequences", "3", "--max-frames", "6",
              "--max-interacted", "2", "--mode", "both", "--model", "nano", "--checkpoint", "demo"]
    ref = _bench(*common, "--output-dir", str(tmp_path / "ref"))
    ray = _bench(*common, "--output-dir", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2",
                 "--ray-address", cluster)
    assert _strip(ray) == _strip(ref)
    _check_execution(ray, "frames", 6)  # 3 videos x 2 modes


def test_executor_options_are_checked_before_any_work(tmp_path: Path) -> None:
    from benchmarks.cli import main

    assert main(["vos", "--dataset", "synthetic", "--output-dir", str(tmp_path / "a"), "--workers", "2"]) == 2
    assert main(["vos", "--dataset", "synthetic", "--output-dir", str(tmp_path / "b"), "--executor", "ray",
                 "--layout", "sav"]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _davis_folder(root: Path, n: int = 3, frames: int = 5) -> list:
    from PIL import Image

    from sam2_plugins.evaluation.readers import write_index_png
    from sam2_plugins.evaluation.synthetic import make_video

    names = []
    for i in range(n):
        name = f"seq{i}"
        video, masks = make_video(frames, 64, 96, 2, seed=i)
        for t in range(frames):
            img = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            img.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(video[t]).save(img, quality=95)
            write_index_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", masks[t].astype("uint8"))
        names.append(name)
    return names


@pytest.mark.slow
def test_vos_on_ray_records_an_unreadable_video_and_goes_on(tmp_path: Path, cluster: str) -> None:
    names = _davis_folder(tmp_path / "davis")
    (tmp_path / "davis" / "JPEGImages" / "480p" / "seq1" / "00002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    rep = _bench("vos", "--dataset", str(tmp_path / "davis"), "--model", "nano", "--checkpoint", "demo",
                 "--output-dir", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2",
                 "--ray-address", cluster)
    failed = rep["execution"]["failed_items"]
    assert list(failed) == ["mask/seq1"] and "00002.jpg" in failed["mask/seq1"]
    assert sorted(rep["results"]["per_sequence"]) == [n for n in names if n != "seq1"]
    assert "1 video(s) failed" in rep["results"]["per_prompt"]["mask"]["note"]
