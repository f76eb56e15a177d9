"""The default-model rule (sam2_plugins.default_model) and the CLI's default: official tiny
weights downloaded once (from a file server on 127.0.0.1 here) and cached; offline, a message
that says so and offers the shipped demo model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sam2_plugins import default_model as dm
from sam2_plugins.checkpoints import demo_checkpoint_path
from tests.file_server import FileServer, closed_port_url

REPO = Path(__file__).resolve().parents[2]


def test_choices_follow_one_rule():
    assert dm.resolve_choice() == dm.ModelChoice("sam2.1_hiera_tiny", "download", "sam2.1_hiera_tiny")
    assert dm.resolve_choice("default").needs_download
    for demo in (dm.resolve_choice("demo"), dm.resolve_choice(dm.DEMO_LABEL), dm.resolve_choice("tiny", "demo"),
                 dm.resolve_choice(dm.DEMO_MODEL)):
        assert demo.is_demo and demo.name == dm.DEMO_MODEL and demo.label == dm.DEMO_LABEL
    assert dm.resolve_choice("sam2.1_hiera_small", "none").checkpoint is None
    assert dm.resolve_choice("sam2.1_hiera_small", "/x/y.pt").checkpoint == "/x/y.pt"
    assert "synthetic shapes only" in dm.DEMO_LABEL


def test_download_once_with_progress_then_cached(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(demo_checkpoint_path(), served / "sam2.1_hiera_nano.pt")
    server = FileServer(served)
    try:
        monkeypatch.setenv("SAM2_PLUGINS_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv(dm.MIRROR_ENV, server.url)
        seen = []
        assert not dm.is_cached("sam2.1_hiera_nano")
        path = dm.fetch_default("sam2.1_hiera_nano", progress=lambda d, t: seen.append((d, t)))
        assert path == tmp_path / "cache" / "sam2.1_hiera_nano.pt" and dm.is_cached("sam2.1_hiera_nano")
        assert seen and seen[-1][0] == seen[-1][1] == path.stat().st_size
        assert server.requests == ["/sam2.1_hiera_nano.pt"]
        model = dm.build_model(dm.ModelChoice("sam2.1_hiera_nano", "download", "nano"), device="cpu",
                               progress=False)
        assert model.image_size == 256
        assert server.requests == ["/sam2.1_hiera_nano.pt"], "the second use reads the cache"
    finally:
        server.close()


def test_offline_message_offers_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2_PLUGINS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(dm.MIRROR_ENV, closed_port_url())
    with pytest.raises(dm.DefaultModelUnavailable) as info:
        dm.fetch_default(progress=False, how_to_use_demo="Run again with --model demo.")
    msg = str(info.value)
    assert "could not download the sam2.1_hiera_tiny weights" in msg and "offline" in msg
    assert dm.DEMO_LABEL in msg and "--model demo" in msg
    assert not (tmp_path / "cache" / "sam2.1_hiera_tiny.pt").exists()


def _cli(args, env_extra, tmp_path):
    import os

    env = dict(os.environ, PYTHONPATH=str(REPO), SAM2_PLUGINS_CACHE=str(tmp_path / "cache"), **env_extra)
    return subprocess.run([sys.executable, "-m", "sam2_plugins.cli", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_cli_segment_default_offline_then_demo(tmp_path):
    from PIL import Image

    img = np.zeros((64, 80, 3), np.uint8)
    img[20:40, 30:50] = (200, 60, 60)
    Image.fromarray(img).save(tmp_path / "im.png")
    env = {dm.MIRROR_ENV: closed_port_url()}
    r = _cli(["segment", "im.png", "--point", "40,30", "--out", "o1"], env, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "sam2.1_hiera_tiny" in r.stderr and dm.DEMO_LABEL in r.stderr and "--model demo" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli(["segment", "im.png", "--point", "40,30", "--model", "demo", "--out", "o2"], env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert dm.DEMO_LABEL in r.stderr and (tmp_path / "o2" / "mask.png").exists()
