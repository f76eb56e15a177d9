"""The built wheel, as pip installs it: top-level names that cannot collide, the data files the
docs rely on, and the console script, the benchmark CLI and the adapters working from a fresh
virtual environment (no checkout on the path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

EXPECTED_TOP = {"sam2_plugins", "napari_sam2", "fiftyone_sam2", "sam2_exec", "sam2_plugins_bench",
                "sam2_plugins_lightning"}
# names another project may also install at the top level of site-packages
GENERIC = {"benchmarks", "lightning_module", "tests", "tools", "configs", "training", "data", "utils"}
DATA_FILES = [
    "sam2_plugins/py.typed",
    "sam2_plugins/weights/sam2.1_hiera_nano_demo.pt",
    "sam2_plugins/weights/sam2.1_hiera_nano_demo.pt.json",
    "napari_sam2/napari.yaml",
    "fiftyone_sam2/fiftyone.yml",
    "sam2_plugins_lightning/configs/finetune_nuclei.yaml",
    "sam2_plugins_lightning/configs/finetune_nuclei_3d.yaml",
    "sam2_plugins_bench/configs/sam2_paper_vos.json",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools' build/ folder in the checkout could carry stale modules
    src = out / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".ref", ".gpu_site", "out", "artifacts",
        ".mypy_cache", ".ruff_cache"))
    # --no-build-isolation: the build backend is the one this environment has (offline builds)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(src)], check=True, cwd=out)
    (whl,) = out.glob("sam2_plugins-*.whl")
    return whl


def test_wheel_top_level_names_and_data_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == EXPECTED_TOP, f"top-level names in the wheel: {sorted(top)}"
    assert not top & GENERIC
    missing = [f for f in DATA_FILES if f not in names]
    assert not missing, f"data files missing from the wheel: {missing}"
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for line in ("sam2-plugins = sam2_plugins.cli:main", "bench = sam2_plugins_bench.cli:main",
                 "finetune = sam2_plugins_lightning.cli:main"):
        assert line in entry, entry


def _torch_requirement() -> str:
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def test_wheel_installs_and_runs_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # torch first and pinned to the version of this environment (a bare "torch" requirement
    # could pull a multi-GB CUDA build); then the wheel with its own dependencies
    subprocess.run(pip + [_torch_requirement()], check=True)
    subprocess.run(pip + [str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # not the checkout

    r = subprocess.run([str(venv / "bin" / "sam2-plugins"), "--help"], **run)
    assert r.returncode == 0, r.stderr
    assert "bench" in r.stdout and "finetune" in r.stdout and "segment" in r.stdout
    r = subprocess.run([str(venv / "bin" / "sam2-plugins"), "models"], **run)
    assert r.returncode == 0 and "sam2.1_hiera_nano" in r.stdout, r.stderr
    for cmd in ([str(py), "-m", "sam2_plugins_bench", "--help"],
                [str(venv / "bin" / "sam2-plugins"), "bench", "--help"]):
        r = subprocess.run(cmd, **run)
        assert r.returncode == 0 and "vos" in r.stdout and "interactive-image" in r.stdout, (cmd, r.stderr)
    # (the adapters' own libraries, napari / FiftyOne / Lightning, are extras: not installed here)
    code = ("import sys, napari_sam2, fiftyone_sam2, sam2_plugins_bench, sam2_plugins_lightning, sam2_plugins;"
            "from importlib.resources import files;"
            "assert (files('sam2_plugins_lightning') / 'configs' / 'finetune_nuclei.yaml').is_file();"
            "assert 'benchmarks' not in sys.modules and 'lightning_module' not in sys.modules;"
            "print(sam2_plugins.__file__)")
    r = subprocess.run([str(py), "-c", code], **run)
    assert r.returncode == 0, r.stderr
    assert str(venv) in r.stdout and str(REPO) not in r.stdout, r.stdout  # the installed copy, not the checkout
    # the shipped demo model loads from the installed package
    load = "from sam2_plugins import build_sam2; print(build_sam2('sam2.1_hiera_nano', checkpoint='demo').image_size)"
    r = subprocess.run([str(py), "-c", load], **run)
    assert r.returncode == 0 and r.stdout.strip() == "256", r.stderr
