"""``import sam2_plugins`` loads no framework and does no work (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "fiftyone", "lightning",
             "pytorch_lightning", "hydra", "omegaconf", "torchvision", "ray",
             # the adapters and runners themselves: the core never imports them
             "napari_sam2", "fiftyone_sam2", "lightning_module", "benchmarks", "sam2_exec")


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
        "    importlib.import_module(m.name)\n"
        "import sam2_plugins.cli as cli\n"
        "cli.build_parser()\n"
    )
    mods = _modules_after(code)
    assert not [m for m in mods if m.split(".")[0] in FORBIDDEN]
    assert "sam2" not in mods  # never upstream's package


def test_unknown_attribute_is_a_clear_error() -> None:
    import pytest

    import sam2_plugins

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sam2_plugins.nope  # noqa: B018


def test_core_uses_no_other_package_and_no_private_names() -> None:
    """No module of the core imports an adapter or runner package (by source), and no module
    anywhere imports another package's underscored names."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    packages = ("sam2_plugins", "napari_sam2", "fiftyone_sam2", "lightning_module", "benchmarks", "sam2_exec")
    core_bad, private = [], []
    for pkg in packages:
        for path in (repo / pkg).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                m = re.match(r"\s*(?:from\s+([\w.]+)\s+import\s+(.+)|import\s+([\w.]+))", line)
                if not m:
                    continue
                mod = m.group(1) or m.group(3) or ""
                top = mod.split(".")[0]
                if pkg == "sam2_plugins" and top in packages[1:]:
                    core_bad.append(f"{path.relative_to(repo)}:{i}")
                if top in packages and top != pkg:
                    names = (m.group(2) or "").replace("(", "").split(",")
                    parts = mod.split(".")[1:] + [n.split(" as ")[0].strip() for n in names if n.strip()]
                    if any(p.startswith("_") and not p.startswith("__") for p in parts):
                        private.append(f"{path.relative_to(repo)}:{i}: {line.strip()}")
    assert not core_bad, f"the core imports an adapter: {core_bad}"
    assert not private, "modules import another package's private names:\n" + "\n".join(private)
