"""``evaluate --layout sav`` side by side with the official SA-V evaluator
(``../shared/reference/upstream_clients/sav_dataset``, run unchanged as a client would).

Agreement on well-formed folders (default protocol and all frames), and on each edge case
either the same outcome or a documented, deliberate difference:

* frame names that sort differently as text and as numbers (``4.png``, ``12.png``): the
  official tool sorts them as text (not the frames' order); ours refuses them;
* a prediction PNG with three values: both refuse it (theirs with an AssertionError);
* an object whose GT is empty on every scored frame: theirs crashes; ours leaves it out of the
  means, lists it under ``dropped_objects`` and warns, and the other objects score the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest

from sam2_plugins.evaluation.folders import evaluate_sav_folders
from sam2_plugins.evaluation.readers import write_index_png
from sam2_plugins.evaluation.synthetic import make_video
from tests.conftest import REPO, SHARED_DATA

OFFICIAL = SHARED_DATA.parent / "reference" / "upstream_clients" / "sav_dataset"


@pytest.fixture(scope="module")
def official():
    """The official ``benchmark`` function (needs opencv, scikit-image, tqdm, as upstream)."""
    if not (OFFICIAL / "utils" / "sav_benchmark.py").is_file():
        pytest.skip(f"the official SA-V evaluator is not present at {OFFICIAL}")
    for mod in ("cv2", "skimage", "tqdm"):
        pytest.importorskip(mod)
    sys.path.insert(0, str(OFFICIAL))
    try:
        from utils.sav_benchmark import benchmark
    finally:
        sys.path.remove(str(OFFICIAL))
    return benchmark


def _write(
    root: Path, objs: Dict[Tuple[str, int], np.ndarray], name=lambda t: f"{t * 4:05d}.png", values: int = 255
) -> None:
    for (video, k), masks in objs.items():
        for t, m in enumerate(masks):
            write_index_png(root / video / f"{k:03d}" / name(t), m.astype(np.uint8) * values)


def _dataset(root: Path, name=lambda t: f"{t * 4:05d}.png", empty_object: bool = False) -> None:
    """Two videos: overlapping objects, one entering late, predictions shifted and one lost."""
    gt, pred = {}, {}
    rng = np.random.default_rng(3)
    for v, seed in (("sav_a", 1), ("sav_b", 2)):
        _, lab = make_video(12, 36, 48, 2, seed=seed)
        objs = {0: lab == 1, 1: (lab == 2) | (lab == 1)}
        late = np.zeros_like(objs[0])
        late[5:, 4:14, 6:20] = True
        objs[2] = late
        if empty_object and v == "sav_b":
            objs[3] = np.zeros_like(late)
        for k, m in objs.items():
            p = np.roll(m, int(rng.integers(1, 4)), axis=2)
            p[7] = False  # lost on one frame
            if k == 3:
                p[4:6, 2:5, 2:5] = True  # predicted where there is nothing
            gt[(v, k)], pred[(v, k)] = m, p
    _write(root / "gt", gt, name)
    _write(root / "pred", pred, name, values=1)


def _theirs(benchmark, root: Path, skip: bool):
    pred = root / "pred_official"  # the official tool writes results.csv into its prediction root
    if pred.exists():
        shutil.rmtree(pred)
    shutil.copytree(root / "pred", pred)
    jf, j, f, objects = benchmark([str(root / "gt")], [str(pred)], True, 1, verbose=False, skip_first_and_last=skip)
    per_obj = {f"{v}_{int(k)}": (iou[k], bf[k]) for v, (iou, bf) in objects[0].items() for k in iou}
    return jf[0], j[0], f[0], per_obj


@pytest.mark.parametrize("skip", [True, False], ids=["default", "all-frames"])
def test_well_formed_folders_agree(official, tmp_path: Path, skip: bool) -> None:
    _dataset(tmp_path)
    jf, j, f, per_obj = _theirs(official, tmp_path, skip)
    ours = evaluate_sav_folders(tmp_path / "gt", tmp_path / "pred", workers=1, skip_first_last=skip)
    assert abs(ours["J&F-Mean"] * 100 - jf) < 1e-9 and abs(ours["J-Mean"] * 100 - j) < 1e-9
    assert abs(ours["F-Mean"] * 100 - f) < 1e-9
    assert set(ours["per_object"]) == set(per_obj) and len(per_obj) == 6
    for key, (jj, ff) in per_obj.items():
        assert abs(ours["per_object"][key]["J-Mean"] * 100 - jj) < 1e-9, key
        assert abs(ours["per_object"][key]["F-Mean"] * 100 - ff) < 1e-9, key
    assert ours["dropped_objects"] == []


def test_cli_layout_sav_agrees_as_a_subprocess(official, tmp_path: Path) -> None:
    _dataset(tmp_path)
    jf, _, _, _ = _theirs(official, tmp_path, True)
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "evaluate",
            "--layout",
            "sav",
            "--gt-root",
            str(tmp_path / "gt"),
            "--pred-root",
            str(tmp_path / "pred"),
            "--output",
            str(out),
            "--quiet",
            "--workers",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr
    assert abs(json.loads(out.read_text())["J&F-Mean"] * 100 - jf) < 1e-9


def test_unpadded_frame_names_official_sorts_as_text_ours_refuses(official, tmp_path: Path) -> None:
    _dataset(tmp_path, name=lambda t: f"{t * 4}.png")  # 0, 4, 8, 12, ...: "12.png" < "4.png" as text
    jf_text, _, _, _ = _theirs(official, tmp_path, True)
    with pytest.raises(ValueError, match=r"sort differently as text .* zero-padded"):
        evaluate_sav_folders(tmp_path / "gt", tmp_path / "pred", workers=1)
    # the same masks with padded names: the official number changes, i.e. its text order was
    # not the frames' order; ours gives the padded number
    padded = tmp_path / "padded"
    _dataset(padded)
    jf_padded, _, _, _ = _theirs(official, padded, True)
    assert abs(jf_text - jf_padded) > 1e-3
    ours = evaluate_sav_folders(padded / "gt", padded / "pred", workers=1)
    assert abs(ours["J&F-Mean"] * 100 - jf_padded) < 1e-9


def test_three_valued_prediction_both_refuse(official, tmp_path: Path) -> None:
    _dataset(tmp_path)
    bad = tmp_path / "pred" / "sav_a" / "001" / "00016.png"
    m = np.zeros((36, 48), np.uint8)
    m[2:10, 2:10], m[20:30, 20:30] = 1, 2
    write_index_png(bad, m)
    with pytest.raises(AssertionError, match="more than 1 object"):
        _theirs(official, tmp_path, True)
    with pytest.raises(ValueError, match=r"00016.png holds 3 values"):
        evaluate_sav_folders(tmp_path / "gt", tmp_path / "pred", workers=1)


def test_object_empty_everywhere_is_listed_and_warned(official, tmp_path: Path) -> None:
    _dataset(tmp_path, empty_object=True)
    with pytest.raises(AssertionError):
        _theirs(official, tmp_path, True)  # the official tool stops on it
    with pytest.warns(UserWarning, match=r"no GT pixel on any scored frame.*sav_b_3"):
        ours = evaluate_sav_folders(tmp_path / "gt", tmp_path / "pred", workers=1)
    assert ours["dropped_objects"] == ["sav_b_3"] and "sav_b_3" not in ours["per_object"]
    for sub in ("gt", "pred"):  # without that object the official tool runs: same numbers
        shutil.rmtree(tmp_path / sub / "sav_b" / "003")
    jf, _, _, per_obj = _theirs(official, tmp_path, True)
    assert abs(ours["J&F-Mean"] * 100 - jf) < 1e-9 and set(per_obj) == set(ours["per_object"])


def test_davis_tree_with_sav_layout_is_a_clear_error(tmp_path: Path) -> None:
    _, lab = make_video(3, 20, 30, 1, seed=0)
    for t in range(3):
        write_index_png(tmp_path / "davis" / "Annotations" / "480p" / "seq" / f"{t:05d}.png", lab[t])
        write_index_png(tmp_path / "pred" / "seq" / f"{t:05d}.png", lab[t])
    with pytest.raises(ValueError, match=r"Annotations.*looks like a DAVIS tree: use --layout davis"):
        evaluate_sav_folders(tmp_path / "davis", tmp_path / "pred", workers=1)
    with pytest.raises(ValueError, match=r"480p.*looks like a DAVIS tree"):
        evaluate_sav_folders(tmp_path / "davis" / "Annotations", tmp_path / "pred", workers=1)
    with pytest.raises(ValueError, match=r"PNG files directly .*use --layout davis"):
        evaluate_sav_folders(tmp_path / "davis" / "Annotations" / "480p", tmp_path / "pred", workers=1)
