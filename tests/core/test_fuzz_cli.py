"""Fuzz: bad input to the ``sam2-plugins`` console script (``segment``, ``download``, ...), each
with its outcome: exit code 2 and a clear message, or a warning, or the documented result; no
file is written that the user did not name as output (random nano weights, 40 x 50 images)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import pytest

from tests.core._fuzz import INTERNAL

REPO = Path(__file__).resolve().parents[2]


def _cli(argv: List[str], capsys: pytest.CaptureFixture) -> Tuple[int, str]:
    from sam2_plugins.cli import main

    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors
        rc = int(e.code or 0)
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    from PIL import Image

    p = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(p)
    return p


def _digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


SEG = ["segment", "--checkpoint", "none", "--device", "cpu"]
CASES: List[Tuple[str, Callable[[Path, Path], List[str]], str]] = [
    (
        "missing_image",
        lambda img, out: SEG + [str(out / "nope.png"), "--point", "5,5", "--out", str(out / "o")],
        "No such file",
    ),
    (
        "corrupt_image",
        lambda img, out: SEG + [str(_junk(out)), "--point", "5,5", "--out", str(out / "o")],
        "cannot identify image|corrupt",
    ),
    ("point_one_number", lambda img, out: SEG + [str(img), "--point", "5"], "expected 2 numbers"),
    ("point_three_numbers", lambda img, out: SEG + [str(img), "--point", "5,5,5"], "expected 2 numbers"),
    ("point_letters", lambda img, out: SEG + [str(img), "--point", "a,b"], "expected numbers separated by commas"),
    ("box_three_numbers", lambda img, out: SEG + [str(img), "--box", "1,2,3"], "expected 4 numbers"),
    (
        "label_without_point",
        lambda img, out: SEG + [str(img), "--box", "1,2,30,30", "--label", "1"],
        "--label given 1 times for 0 --point",
    ),
    (
        "label_7",
        lambda img, out: SEG + [str(img), "--point", "5,5", "--label", "7", "--out", str(out / "o")],
        "integers in",
    ),
    ("label_word", lambda img, out: SEG + [str(img), "--point", "5,5", "--label", "pos"], "invalid int value"),
    (
        "labels_count",
        lambda img, out: SEG + [str(img), "--point", "5,5", "--point", "9,9", "--label", "1"],
        "--label given 1 times for 2 --point",
    ),
    ("no_prompt", lambda img, out: SEG + [str(img), "--out", str(out / "o")], "no prompt"),
    ("point_nan", lambda img, out: SEG + [str(img), "--point", "nan,5", "--out", str(out / "o")], "NaN or infinite"),
    ("out_is_a_file", lambda img, out: SEG + [str(img), "--point", "5,5", "--out", str(img)], "is an existing file"),
    (
        "out_would_replace_the_image",
        lambda img, out: SEG + [str(_as_mask(img)), "--point", "5,5", "--out", str(_as_mask(img).parent)],
        "would overwrite the input image",
    ),
    (
        "missing_checkpoint",
        lambda img, out: [
            "segment",
            str(img),
            "--point",
            "5,5",
            "--checkpoint",
            str(out / "none.pt"),
            "--out",
            str(out / "o"),
        ],
        "checkpoint file not found",
    ),
    (
        "unknown_model",
        lambda img, out: SEG + [str(img), "--point", "5,5", "--model", "sam9", "--out", str(out / "o")],
        "unknown model name",
    ),
    ("download_unknown", lambda img, out: ["download", "sam9_giant"], "unknown model name"),
    ("unknown_command", lambda img, out: ["explode"], "invalid choice"),
]


def _junk(out: Path) -> Path:
    p = out / "junk.png"
    p.write_bytes(b"not a png")
    return p


def _as_mask(img: Path) -> Path:
    p = img.parent / "in" / "mask.png"
    p.parent.mkdir(exist_ok=True)
    if not p.exists():
        p.write_bytes(img.read_bytes())
    return p


@pytest.mark.parametrize("make,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_segment_and_friends_refuse_bad_input(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture, make: Callable[[Path, Path], List[str]], match: str
) -> None:
    import re

    argv = make(image, tmp_path)
    before = _digest(tmp_path)
    rc, err = _cli(argv, capsys)
    assert rc == 2 and re.search(match, err), (rc, err)
    assert not [f for f in INTERNAL if f in err], err
    assert _digest(tmp_path) == before  # nothing written, nothing replaced


def test_existing_results_need_overwrite(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o"
    assert _cli(SEG + [str(image), "--point", "20,20", "--out", str(out)], capsys)[0] == 0
    first = _digest(out)
    assert set(first) == {"mask.png", "overlay.png"}
    rc, err = _cli(SEG + [str(image), "--point", "5,5", "--out", str(out)], capsys)
    assert rc == 2 and "mask.png exists; pass --overwrite" in err and _digest(out) == first
    assert _cli(SEG + [str(image), "--point", "5,5", "--out", str(out), "--overwrite"], capsys)[0] == 0
    assert set(_digest(out)) == {"mask.png", "overlay.png"} and not list(out.glob(".*tmp"))


def test_flipped_box_warns_and_segments(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.warns(UserWarning, match="reordered"):
        rc, _ = _cli(SEG + [str(image), "--box", "40,30,5,5", "--out", str(tmp_path / "o")], capsys)
    assert rc == 0 and (tmp_path / "o" / "mask.png").is_file()


def test_console_script_as_a_subprocess(tmp_path: Path, image: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "sam2_plugins.cli", *a],
        cwd=REPO,
        env=env,  # noqa: E731
        capture_output=True,
        text=True,
        timeout=300,
    )
    proc = run("segment", str(image), "--point", "5,5", "--label", "0.7")
    assert proc.returncode == 2 and "invalid int value" in proc.stderr
    proc = run("models")
    assert proc.returncode == 0 and "sam2.1_hiera_tiny" in proc.stdout
