"""``import sam2_plugins`` loads no framework and does no work (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "fiftyone", "lightning",
             "pytorch_lightning", "hydra", "omegaconf", "torchvision")


def _modules_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_is_lazy_and_framework_free() -> None:
    mods = _modules_after("import sam2_plugins")
    assert not [m for m in mods if m.split(".")[0] in FORBIDDEN]
    # No work at import: not even torch is imported until a name is used.
    assert "torch" not in mods


def test_public_api_and_core_modules_import_no_framework() -> None:
    code = (
        "import sam2_plugins as s\n"
        "from sam2_plugins import build_sam2, SAM2ImagePredictor, SAM2VideoPredictor, SAM2AutomaticMaskGenerator\n"
        "import sam2_plugins.evaluation, sam2_plugins.io, sam2_plugins.checkpoints, sam2_plugins.device\n"
        "import importlib, pkgutil\n"
        "for m in pkgutil.walk_packages(s.__path__, 'sam2_plugins.'):\n"
        "    if m.name != 'sam2_plugins.cli': importlib.import_module(m.name)\n"
    )
    mods = _modules_after(code)
    assert not [m for m in mods if m.split(".")[0] in FORBIDDEN]
    assert "sam2" not in mods  # never upstream's package


def test_unknown_attribute_is_a_clear_error() -> None:
    import pytest
    import sam2_plugins

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sam2_plugins.nope  # noqa: B018
