"""The npe2 manifest: every python_name imports (no viewer needed), and the sample data."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MANIFEST = Path(__file__).resolve().parents[2] / "napari_sam2" / "napari.yaml"


def test_manifest_python_names_import_without_a_viewer():
    from npe2 import PluginManifest

    m = PluginManifest.from_file(MANIFEST)
    names = [c.python_name for c in m.contributions.commands]
    assert len(names) >= 4 and m.name == "sam2-plugins"
    for pn in names:
        mod, attr = pn.split(":")
        assert callable(getattr(importlib.import_module(mod), attr)), pn
    ids = {c.id for c in m.contributions.commands}
    assert {w.command for w in m.contributions.widgets} <= ids
    assert {s.command for s in m.contributions.sample_data} <= ids


def test_package_import_is_light():
    """``import napari_sam2`` (what npe2 does to find the manifest) pulls in no Qt, napari
    or torch; the core's import rule is checked elsewhere."""
    code = ("import sys, napari_sam2; bad = [m for m in ('qtpy', 'napari', 'torch') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=MANIFEST.parents[1])
    assert r.returncode == 0, r.stdout + r.stderr


def test_sample_data_shapes_and_ground_truth():
    from napari_sam2 import sample_data as sd

    (img, meta, kind), (gt, _, gkind) = sd.synthetic_timelapse()
    assert kind == "image" and gkind == "labels" and meta["rgb"]
    assert img.shape == (12, 96, 128, 3) and img.dtype == np.uint8 and gt.shape == img.shape[:3]
    assert set(np.unique(gt)) >= {0, 1, 2}
    (img, _, _), (gt, _, _) = sd.synthetic_tzyx()
    assert img.shape == (4, 5, 64, 80, 3) and gt.shape == (4, 5, 64, 80)
    assert np.array_equal(img[1, 0], img[0, 1])  # Z is time shifted by one
    (img, meta, _), (gt, _, _) = sd.synthetic_nuclei_3d()
    assert img.dtype == np.uint16 and img.ndim == 3 and img.max() > 1000 and gt.max() >= 8
    inside, outside = img[gt > 0].mean(), img[gt == 0].mean()
    assert inside > 2 * outside
    img, gt = sd.make_nuclei_2d(512, 40, seed=2)  # the large sample's generator, smaller
    sizes = np.bincount(gt.ravel())[1:]
    assert img.shape == (512, 512, 3) and gt.max() == 40 and sizes.min() >= 0.75 * 36 and sizes.max() <= 1.25 * 400


def test_sample_data_opens_through_npe2():
    """Register the manifest in a private npe2 plugin manager (as an installed package would
    be) and open a sample into a napari viewer model (no Qt)."""
    from napari.components import ViewerModel
    from npe2 import PluginManager, PluginManifest

    pm = PluginManager()
    pm.register(PluginManifest.from_file(MANIFEST))
    samples = {s.key: s for s in dict(pm.iter_sample_data())["sam2-plugins"]}
    assert set(samples) == {"timelapse", "tzyx", "nuclei3d", "nuclei_large"}
    cmd = {c.id: c for c in pm.get_manifest("sam2-plugins").contributions.commands}[samples["tzyx"].command]
    mod, attr = cmd.python_name.split(":")
    viewer = ViewerModel()
    for data, meta, kind in getattr(importlib.import_module(mod), attr)():
        viewer._add_layer_from_data(data, meta, kind)
    assert [ly.name for ly in viewer.layers] == ["synthetic 3D+t", "3D+t ground truth"]
    assert viewer.layers[0].rgb and viewer.layers[1].data.shape == (4, 5, 64, 80)


def test_installed_entry_point_is_discovered_by_npe2():
    """The ``napari.manifest`` entry point of the installed distribution validates (npe2 requires
    the manifest name to equal the distribution name) and is found by discovery."""
    import importlib.metadata as md

    from npe2 import PluginManager

    eps = [e for e in md.entry_points(group="napari.manifest") if e.value == "napari_sam2:napari.yaml"]
    if not eps:
        pytest.skip("sam2-plugins is not pip-installed in this environment (make test installs it)")
    pm = PluginManager()
    pm.discover(include_npe1=False)
    m = pm.get_manifest("sam2-plugins")
    assert m.package_metadata is None or m.package_metadata.name == "sam2-plugins"
    assert {c.id for c in m.contributions.commands} >= {"sam2-plugins.widget"}


def test_benchmarks_use_only_public_plugin_modules():
    """benchmarks/ drives the plugin through its public doors (the manifest, the controller,
    sample data), never its private modules."""
    import re

    root = MANIFEST.parents[1] / "benchmarks"
    bad = [f"{p.name}: {m}" for p in root.glob("*.py")
           for m in re.findall(r"napari_sam2\._\w+", p.read_text())]
    assert not bad, bad
