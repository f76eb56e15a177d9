"""Registration: `sam2-plugins fiftyone install` links the plugin where FiftyOne finds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fiftyone_sam2 import _install

REPO = Path(__file__).resolve().parents[2]


def test_install_links_and_uninstall_removes(tmp_path):
    target = _install.install(tmp_path)
    assert target.is_symlink() and (target / "fiftyone.yml").is_file()
    assert target.resolve() == _install.plugin_source()
    assert _install.install(tmp_path) == target  # idempotent
    assert _install.uninstall(tmp_path) and not target.exists()
    assert not _install.uninstall(tmp_path)


def test_install_copy_and_refuses_foreign_target(tmp_path):
    (tmp_path / _install.LINK_NAME).mkdir()
    with pytest.raises(ValueError, match="already exists"):
        _install.install(tmp_path)
    target = _install.install(tmp_path, copy=True, force=True)
    assert not target.is_symlink() and (target / "__init__.py").is_file()
    assert not (target / "__pycache__").exists()


def test_console_script_installs_into_the_given_dir(tmp_path):
    from sam2_plugins.cli import main

    assert main(["fiftyone", "install", "--plugins-dir", str(tmp_path)]) == 0
    assert (tmp_path / _install.LINK_NAME / "fiftyone.yml").exists()
    assert main(["fiftyone", "where"]) == 0
    assert main(["fiftyone", "uninstall", "--plugins-dir", str(tmp_path)]) == 0


def test_fiftyone_discovers_the_installed_plugin(tmp_path):
    """A fresh process with only FIFTYONE_PLUGINS_DIR set finds the four operators."""
    import os

    _install.install(tmp_path)
    code = ("import fiftyone.operators as foo; "
            "print(sorted(o.uri for o in foo.list_operators(builtin=False)))")
    env = {**os.environ, "FIFTYONE_PLUGINS_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for op in ("sam2_auto_label", "sam2_segment", "sam2_track", "sam2_evaluate"):
        assert f"@sam2-plugins/sam2/{op}" in out.stdout


def test_manifest_lists_every_registered_operator():
    from fiftyone_sam2._operators import OPERATORS

    text = (_install.plugin_source() / "fiftyone.yml").read_text()
    assert 'name: "@sam2-plugins/sam2"' in text
    for op in OPERATORS:
        assert f"- {op().config.name}" in text
