"""``python -m benchmarks suite``: a config mixing present and absent datasets (as a subprocess),
the shipped configs of the SAM 2 paper's tables, and bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.cli import main
from benchmarks.suite import load_config
from sam2_plugins.evaluation.readers import write_index_png
from sam2_plugins.evaluation.synthetic import make_video

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "benchmarks" / "configs"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _tiny_vos_folder(root: Path) -> None:
    """A MOSE-like folder: JPEGImages/<video>/*.jpg and Annotations/<video>/*.png, one video."""
    frames, masks = make_video(5, 48, 64, 2, seed=3)
    for t in range(5):
        (root / "JPEGImages" / "v0").mkdir(parents=True, exist_ok=True)
        Image.fromarray(frames[t]).save(root / "JPEGImages" / "v0" / f"{t:05d}.jpg", quality=95)
        write_index_png(root / "Annotations" / "v0" / f"{t:05d}.png", masks[t].astype(np.uint8))


def test_suite_runs_present_datasets_and_skips_absent_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _tiny_vos_folder(data / "tiny")
    cfg = {"name": "two of three", "protocol": "vos", "defaults": {"prompt": "mask", "layout": "vos"},
           "datasets": [{"name": "tiny", "path": "{data_root}/tiny"},
                        {"name": "absent", "path": "{data_root}/not-downloaded"},
                        {"name": "tiny (J only)", "path": "{data_root}/tiny", "metric": "J"}]}
    (tmp_path / "suite.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = _run("suite", "--config", str(tmp_path / "suite.json"), "--data-root", str(data), "--output-dir", str(out),
                "--model", "nano", "--checkpoint", "demo", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "report.json").read_text())
    rows = {r["dataset"]: r for r in rep["results"]["rows"]}
    assert rows["absent"]["values"] is None and rows["absent"]["note"].startswith("skipped: not found")
    assert "not-downloaded" in rows["absent"]["note"]
    jf, j = rows["tiny"]["values"]["mask"], rows["tiny (J only)"]["values"]["mask"]
    assert rows["tiny"]["metric"] == "J&F-Mean" and rows["tiny (J only)"]["metric"] == "J-Mean"
    assert 0 < jf <= 1 and 0 < j <= 1 and jf != j
    assert rep["results"]["means"]["vos mask"] == pytest.approx((jf + j) / 2)  # mean over the datasets that ran
    assert rep["results"]["n_ran"] == 2 and rep["results"]["n_skipped"] == 1
    detail = json.loads(Path(rows["tiny"]["result"]).read_text())
    assert detail["per_prompt"]["mask"]["J&F-Mean"] == jf
    md = (out / "report.md").read_text()
    assert "| absent |" in md and "skipped: not found" in md and "Means over datasets" in md
    assert "skipped" in proc.stdout and "mean vos mask" in proc.stdout


def test_paper_configs_name_the_papers_datasets(tmp_path: Path) -> None:
    vos = load_config(CONFIGS / "sam2_paper_vos.json")
    iv = load_config(CONFIGS / "sam2_paper_interactive_video.json")
    img = load_config(CONFIGS / "sam2_paper_images.json")
    assert len(vos["datasets"]) == 17 and len(iv["datasets"]) == 9 and len(img["datasets"]) == 37
    names = [d["name"] for d in vos["datasets"]]
    assert len(set(names)) == 17 and "VOST" in names and "Drosophila Heart" in names
    assert [d["name"] for d in iv["datasets"]] == names[:9]  # the 9 densely annotated ones
    assert [d.get("metric", "J&F") for d in vos["datasets"] if d["name"] == "VOST"] == ["J"]
    assert sum(d["group"] == "SA-23" for d in img["datasets"]) == 23
    for cfg in (vos, iv, img):
        assert all(d["path"].startswith("{data_root}/") and d.get("layout_note") for d in cfg["datasets"])
    # without the data every dataset is skipped with a note, and no model is built
    out = tmp_path / "out"
    rc = main(["suite", "--config", str(CONFIGS / "sam2_paper_vos.json"), "--data-root", str(tmp_path / "none"),
               "--output-dir", str(out)])
    rep = json.loads((out / "report.json").read_text())
    assert rc == 0 and rep["results"]["n_skipped"] == 17 and rep["results"]["means"] == {}
    assert rep["checkpoint"] is None


def test_bad_configs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.json"
    for cfg, msg in (({"datasets": []}, "non-empty 'datasets'"),
                     ({"protocol": "vos", "datasets": [{"name": "x"}]}, "needs a 'name' and a 'path'"),
                     ({"protocol": "painting", "datasets": [{"name": "x", "path": "p"}]}, "protocol 'painting'"),
                     ({"protocol": "vos", "datasets": [{"name": "x", "path": "p", "clicks": 3}]}, "unknown option")):
        bad.write_text(json.dumps(cfg))
        with pytest.raises(ValueError, match=msg):
            load_config(bad)
    bad.write_text("{not json")
    assert main(["suite", "--config", str(bad), "--output-dir", str(tmp_path / "o")]) == 2
    assert "could not parse suite config" in capsys.readouterr().err
