"""``vos --layout sav`` end to end on an SA-V-layout folder built from real frames, its scores
checked against SA-V's official evaluator (upstream's ``sav_dataset/``, imported unchanged) on
the written predictions, and against ``evaluate --layout sav``."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2_plugins.evaluation.readers import read_index_png, write_index_png

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def _official(shared_data: Path):  # noqa: ANN202
    path = shared_data.parent / "reference" / "upstream_clients" / "sav_dataset" / "utils" / "sav_benchmark.py"
    if not path.is_file():
        pytest.skip(f"SA-V's official evaluator is not at {path}")
    for mod in ("cv2", "skimage", "tqdm"):
        pytest.importorskip(mod)
    spec = importlib.util.spec_from_file_location("sav_benchmark_official", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its worker pool pickles VideoEvaluator by module name
    spec.loader.exec_module(module)
    return module


def _build(shared_data: Path, root: Path, n_frames: int = 13) -> None:
    """Two DAVIS-2016 sequences at half size as SA-V videos: every frame in JPEGImages_24fps,
    every 4th frame annotated; object 000 is the GT object, object 001 its lower half
    (overlapping object 000, as SA-V masklets may)."""
    davis = shared_data / "davis2016-val"
    for seq in ("blackswan", "car-shadow"):
        img_dir = root / "JPEGImages_24fps" / seq
        img_dir.mkdir(parents=True)
        for t in range(n_frames):
            im = Image.open(davis / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")
            im.resize((im.width // 2, im.height // 2), Image.BILINEAR).save(img_dir / f"{t:05d}.jpg", quality=95)
            if t % 4:
                continue
            gt = read_index_png(davis / "Annotations" / "480p" / seq / f"{t:05d}.png") > 0
            gt = np.asarray(Image.fromarray(gt.astype(np.uint8) * 255).resize((im.width // 2, im.height // 2),
                                                                             Image.NEAREST)) > 127
            ys = np.nonzero(gt)[0]
            lower = gt & (np.arange(gt.shape[0])[:, None] >= (ys.min() + ys.max()) // 2)
            write_index_png(root / "Annotations_6fps" / seq / "000" / f"{t:05d}.png", gt.astype(np.uint8))
            write_index_png(root / "Annotations_6fps" / seq / "001" / f"{t:05d}.png", lower.astype(np.uint8))


@pytest.mark.data
@pytest.mark.slow
def test_vos_sav_layout_matches_the_official_sav_evaluator(tmp_path: Path, shared_data: Path) -> None:
    official = _official(shared_data)
    root = tmp_path / "sav_val"
    _build(shared_data, root)
    out = tmp_path / "run"
    proc = _run("vos", "--layout", "sav", "--dataset", str(root), "--model", "nano", "--checkpoint", "demo",
                "--prompt", "mask", "--output-dir", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "report.json").read_text())
    res = rep["results"]
    pred = out / "predictions" / "mask"
    # one binary PNG per object and 24 fps frame
    for seq in ("blackswan", "car-shadow"):
        for obj in ("000", "001"):
            assert len(list((pred / seq / obj).glob("*.png"))) == 13
    assert set(res["per_object"]) == {"blackswan_0", "blackswan_1", "car-shadow_0", "car-shadow_1"}
    assert 0.2 < res["J&F-Mean"] <= 1.0  # the demo model tracks these objects, not perfectly
    # the official evaluator on a copy (it writes results.csv into the prediction folder)
    copy = tmp_path / "official_pred"
    shutil.copytree(pred, copy)
    jf, j, f, objects = official.benchmark([str(root / "Annotations_6fps")], [str(copy)], True, 1, verbose=False)
    for seq, (ious, fs) in objects[0].items():
        for obj, value in ious.items():
            ours = res["per_object"][f"{seq}_{int(obj)}"]
            assert ours["J-Mean"] * 100 == pytest.approx(value, abs=1e-9)
            assert ours["F-Mean"] * 100 == pytest.approx(fs[obj], abs=1e-9)
    assert res["J&F-Mean"] * 100 == pytest.approx(jf[0], abs=1e-9)
    assert res["J-Mean"] * 100 == pytest.approx(j[0], abs=1e-9) and res["F-Mean"] * 100 == pytest.approx(f[0], abs=1e-9)
    # and exactly what `evaluate --layout sav` gives on the same folders
    proc = _run("evaluate", "--layout", "sav", "--gt-root", str(root / "Annotations_6fps"), "--pred-root", str(pred),
                "--output", str(tmp_path / "E.json"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((tmp_path / "E.json").read_text())
    assert ev["per_object"] == res["per_object"] and ev["J&F-Mean"] == res["J&F-Mean"]
