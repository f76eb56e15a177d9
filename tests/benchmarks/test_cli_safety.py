"""``python -m benchmarks``: argument ranges, output paths that would replace inputs or mix runs,
and layout errors, each refused before any work with exit code 2 and a clear message; no input
is ever changed. The acceptance cases run as subprocesses (the user's door); the rest call
``main`` in-process for speed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

from benchmarks.cli import main
from sam2_plugins.evaluation.readers import write_index_png
from sam2_plugins.evaluation.synthetic import make_video
from tests.core._fuzz import INTERNAL

REPO = Path(__file__).resolve().parents[2]


def _folders(root: Path, names=lambda t: f"{t:05d}.png") -> Tuple[Path, Path]:
    gt, pred = root / "gt" / "Annotations" / "480p", root / "pred"
    _, masks = make_video(5, 24, 32, 2, seed=3)
    for t in range(5):
        write_index_png(gt / "seq" / names(t), masks[t])
        write_index_png(pred / "seq" / names(t), np.roll(masks[t], 2, axis=1))
    return root / "gt", pred


def _digest(folder: Path) -> Dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _main(argv: List[str], capsys: pytest.CaptureFixture) -> Tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse range errors
        rc = int(e.code or 0)
    return rc, capsys.readouterr().err


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def _ev(gt: Path, pred: Path, *extra: str) -> List[str]:
    return ["evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--quiet", "--workers", "1", *extra]


def _cases() -> List[Tuple[str, Callable[[Path, Path, Path], List[str]], str]]:
    out = lambda root: str(root / "r.json")  # noqa: E731
    return [
        ("workers_0", lambda r, g, p: _ev(g, p, "--output", out(r)).__add__(["--workers", "0"]), "must be >= 1, got 0"),
        ("workers_minus_2", lambda r, g, p: _ev(g, p, "--output", out(r), "--workers", "-2"), "must be >= 1, got -2"),
        ("workers_word", lambda r, g, p: _ev(g, p, "--output", out(r), "--workers", "many"), "expected an integer"),
        (
            "output_is_gt_png",
            lambda r, g, p: _ev(g, p, "--output", str(g / "Annotations/480p/seq/00002.png")),
            "lies inside the --gt-root folder",
        ),
        (
            "output_is_pred_png",
            lambda r, g, p: _ev(g, p, "--output", str(p / "seq/00001.png")),
            "lies inside the --pred-root folder",
        ),
        ("output_is_gt_root", lambda r, g, p: _ev(g, p, "--output", str(g)), "is an existing folder"),
        ("output_is_a_folder", lambda r, g, p: _ev(g, p, "--output", str(r)), "is an existing folder"),
        (
            "output_parent_is_a_file",
            lambda r, g, p: _ev(g, p, "--output", str(g / "Annotations/480p/seq/00000.png/x.json")),
            "lies inside the --gt-root|is a file, not a folder",
        ),
        (
            "report_dir_in_pred",
            lambda r, g, p: _ev(g, p, "--output", out(r), "--report-dir", str(p / "rep")),
            "lies inside the --pred-root",
        ),
        (
            "report_dir_foreign",
            lambda r, g, p: _ev(g, p, "--output", out(r), "--report-dir", str(_foreign(r))),
            "already exists and is not empty.*--overwrite",
        ),
        (
            "report_dir_foreign_overwrite",
            lambda r, g, p: _ev(g, p, "--output", out(r), "--report-dir", str(_foreign(r)), "--overwrite"),
            "not written by sam2-plugins",
        ),
        (
            "report_dir_contains_gt",
            lambda r, g, p: _ev(g, p, "--output", out(r), "--report-dir", str(r)),
            "already exists and is not empty",
        ),
        (
            "missing_sequence",
            lambda r, g, p: _ev(g, p, "--output", out(r), "--sequences", "nope"),
            r"sequences not found in the GT .*\['nope'\]",
        ),
        (
            "empty_annotations_480p",
            lambda r, g, p: _ev(_empty_davis(r), p, "--output", out(r)),
            r"no sequence folders in .*480p",
        ),
        (
            "sav_layout_on_davis",
            lambda r, g, p: _ev(g, p, "--output", out(r), "--layout", "sav"),
            "looks like a DAVIS tree: use --layout davis",
        ),
        ("unfinished_run", lambda r, g, p: _ev(g, _unfinished(r, p), "--output", out(r)), "did not finish"),
        (
            "vos_max_frames_0",
            lambda r, g, p: ["vos", "--output-dir", str(r / "v"), "--max-frames", "0"],
            "must be >= 1, got 0",
        ),
        (
            "vos_max_frames_minus_1",
            lambda r, g, p: ["vos", "--output-dir", str(r / "v"), "--max-frames", "-1"],
            "must be >= 1, got -1",
        ),
        ("vos_max_sequences_0", lambda r, g, p: ["vos", "--output-dir", str(r / "v"), "--max-sequences", "0"], ">= 1"),
        ("vos_warmup_negative", lambda r, g, p: ["vos", "--output-dir", str(r / "v"), "--warmup", "-1"], ">= 0"),
        (
            "vos_output_in_dataset",
            lambda r, g, p: ["vos", "--dataset", str(g), "--output-dir", str(g / "out")],
            "lies inside the --dataset folder",
        ),
        (
            "vos_unknown_prompt",
            lambda r, g, p: ["vos", "--output-dir", str(r / "v"), "--prompt", "laser", "--max-frames", "2"],
            "unknown prompt",
        ),
        (
            "image_max_clicks_0",
            lambda r, g, p: ["interactive-image", "--output-dir", str(r / "i"), "--max-clicks", "0"],
            ">= 1",
        ),
        (
            "video_clicks_per_frame_0",
            lambda r, g, p: ["interactive-video", "--output-dir", str(r / "iv"), "--clicks-per-frame", "0"],
            ">= 1",
        ),
        ("demo_max_frames_0", lambda r, g, p: ["demo", "--output-dir", str(r / "d"), "--max-frames", "0"], ">= 1"),
        (
            "demo_existing_folder",
            lambda r, g, p: ["demo", "--output-dir", str(_foreign(r))],
            "already exists and is not empty",
        ),
        (
            "report_onto_a_run",
            lambda r, g, p: ["report", str(_run_json(r)), "--output", str(_run_json(r))],
            "is the run",
        ),
        (
            "report_onto_a_folder",
            lambda r, g, p: ["report", str(_run_json(r)), "--output", str(r)],
            "is an existing folder",
        ),
    ]


def _foreign(root: Path) -> Path:
    d = root / "mine"
    d.mkdir(exist_ok=True)
    (d / "notes.txt").write_text("my own file")
    return d


def _empty_davis(root: Path) -> Path:
    (root / "empty" / "Annotations" / "480p").mkdir(parents=True, exist_ok=True)
    return root / "empty"


def _unfinished(root: Path, pred: Path) -> Path:
    from sam2_plugins.output_paths import prepare_output_dir

    run = prepare_output_dir(root / "run", command="test")  # marker: complete = false
    (run / "predictions").mkdir()
    (run / "predictions" / "seq").symlink_to(pred / "seq", target_is_directory=True)
    return run / "predictions"


def _run_json(root: Path) -> Path:
    p = root / "run.json"
    if not p.exists():
        p.write_text(json.dumps({"schema": "sam2-plugins-benchmark/1", "results": {}}))
    return p


CASES = _cases()


@pytest.mark.parametrize("make,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, make: Callable[[Path, Path, Path], List[str]], match: str
) -> None:
    gt, pred = _folders(tmp_path / "data")
    argv = make(tmp_path, gt, pred)

    def files() -> Dict[str, str]:  # the named report folder may be created, marked unfinished
        return {k: v for k, v in _digest(tmp_path).items() if not k.endswith(".sam2-plugins-output")}

    before = files()
    rc, err = _main(argv, capsys)
    assert rc == 2 and re.search(match, err), (rc, err)
    assert not [f for f in INTERNAL if f in err], err
    assert files() == before  # no input changed, nothing written


def test_evaluate_output_onto_gt_png_is_refused_and_the_png_unchanged(tmp_path: Path) -> None:
    gt, pred = _folders(tmp_path)
    target = gt / "Annotations" / "480p" / "seq" / "00002.png"
    data = target.read_bytes()
    proc = _subprocess(*_ev(gt, pred, "--output", str(target)))
    assert proc.returncode == 2 and "lies inside the --gt-root folder" in proc.stderr, proc.stderr
    assert target.read_bytes() == data
    proc = _subprocess(*_ev(gt, pred, "--output", str(tmp_path / "r.json")))  # a proper output works
    assert proc.returncode == 0 and json.loads((tmp_path / "r.json").read_text())["J&F-Mean"] > 0


def test_evaluate_unpadded_frame_names_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt, pred = _folders(tmp_path, names=lambda t: f"{t * 4}.png")  # 0, 4, 8, 12, 16: "12" < "4" as text
    rc, err = _main(_ev(gt, pred, "--output", str(tmp_path / "r.json")), capsys)
    assert rc == 2 and "sort differently as text" in err and not (tmp_path / "r.json").exists()


def test_report_folder_overwrite_holds_only_the_new_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt, pred = _folders(tmp_path / "data")
    rep = tmp_path / "rep"
    assert _main(_ev(gt, pred, "--output", str(tmp_path / "a.json"), "--report-dir", str(rep)), capsys)[0] == 0
    (rep / "stale.png").write_bytes(b"from an earlier run")
    rc, err = _main(_ev(gt, pred, "--output", str(tmp_path / "a.json"), "--report-dir", str(rep)), capsys)
    assert rc == 2 and "--overwrite" in err and (rep / "stale.png").exists()
    assert (
        _main(_ev(gt, pred, "--output", str(tmp_path / "a.json"), "--report-dir", str(rep), "--overwrite"), capsys)[0]
        == 0
    )
    assert not (rep / "stale.png").exists() and (rep / "report.json").is_file()
    marker = json.loads((rep / ".sam2-plugins-output").read_text())
    assert marker["complete"] is True


def test_vos_save_predictions_second_run_needs_overwrite_and_then_holds_only_its_files(tmp_path: Path) -> None:
    """Acceptance: a second ``vos --save-predictions`` into the same folder is refused; with
    ``--overwrite`` the folder holds only the second (shorter) run's files."""
    out = tmp_path / "vos"
    common = (
        "vos",
        "--dataset",
        "synthetic",
        "--model",
        "nano",
        "--checkpoint",
        "none",
        "--prompt",
        "mask",
        "--max-sequences",
        "1",
        "--device",
        "cpu",
        "--output-dir",
        str(out),
        "--save-predictions",
    )
    first = _subprocess(*common, "--max-frames", "4")
    assert first.returncode == 0, first.stderr
    pngs = sorted(p.name for p in (out / "predictions").rglob("*.png"))
    assert len(pngs) == 4
    again = _subprocess(*common, "--max-frames", "2")
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
    assert sorted(p.name for p in (out / "predictions").rglob("*.png")) == pngs  # untouched
    second = _subprocess(*common, "--max-frames", "2", "--overwrite")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in (out / "predictions").rglob("*.png")) == pngs[:2]
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["max_frames"] == 2
    assert json.loads((out / ".sam2-plugins-output").read_text())["complete"] is True


def test_overwrite_accepts_a_report_folder_from_before_the_marker(tmp_path: Path) -> None:
    from sam2_plugins.output_paths import OutputPathError, prepare_output_dir

    old = tmp_path / "out" / "demo"
    (old / "vos-synthetic").mkdir(parents=True)
    (old / "vos-synthetic" / "report.json").write_text(json.dumps({"schema": "sam2-plugins-benchmark/1"}))
    (old / "summary.md").write_text("old")
    with pytest.raises(OutputPathError, match="already exists and is not empty"):
        prepare_output_dir(old)
    prepare_output_dir(old, overwrite=True)  # `make demo` run again over an older out/demo
    assert [p.name for p in old.iterdir()] == [".sam2-plugins-output"]
