"""FiftyOne test setup: a private, temporary database and plugins folder.

The environment must be set before ``fiftyone`` is first imported (FiftyOne reads its config
at import), so it is done at the top of this conftest, which pytest imports before the test
modules of this folder. Subprocess workers inherit it through ``os.environ``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="sam2_fo_tests_"))
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["FIFTYONE_DATABASE_DIR"] = str(_ROOT / "db")
os.environ["FIFTYONE_PLUGINS_DIR"] = str(_ROOT / "plugins")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
_ALREADY_IMPORTED = "fiftyone" in sys.modules

# Run after FiftyOne's own exit handlers (LIFO order) have stopped mongod.
atexit.register(shutil.rmtree, _ROOT, True)

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fiftyone)


@pytest.fixture(scope="session")
def fo_env() -> Path:
    """The temporary root (``db/``, ``plugins/``, media); installs the plugin there once."""
    if _ALREADY_IMPORTED:
        pytest.skip("fiftyone was imported before tests/fiftyone/conftest.py could point it at a "
                    "temporary database; run tests/fiftyone in its own pytest process")
    try:
        import fiftyone  # noqa: F401
        import fiftyone.operators  # noqa: F401
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.skip(f"fiftyone is not usable here: {exc}")
    from fiftyone_sam2._install import install

    install(Path(os.environ["FIFTYONE_PLUGINS_DIR"]))
    return _ROOT


@pytest.fixture(scope="session")
def media_dir(fo_env: Path) -> Path:
    d = fo_env / "media"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def checkpoint() -> str | None:
    """The demo checkpoint when it ships, else random weights (plumbing tests only)."""
    from sam2_plugins.checkpoints import demo_checkpoint_path

    return "demo" if demo_checkpoint_path().exists() else None


@pytest.fixture(scope="session")
def demo_checkpoint() -> str:
    """Skips where the demo weights are not in this tree (accuracy tests need them)."""
    from sam2_plugins.checkpoints import demo_checkpoint_path

    if not demo_checkpoint_path().exists():
        pytest.skip(f"demo checkpoint {demo_checkpoint_path()} is not present yet")
    return "demo"
