"""Model choice for the plugin: name + checkpoint + device -> a cached SAM 2 model.

A delegated worker often runs several operations in one process; models are cached per
``(name, checkpoint, device)`` so each is built once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

DEFAULT_MODEL = "sam2.1_hiera_nano"
DEFAULT_CHECKPOINT = "demo"

_CACHE: dict[tuple[str, str | None, str], Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run.

    Attributes:
        name: a model name known to ``sam2_plugins.configs`` (e.g. ``"sam2.1_hiera_tiny"``).
        checkpoint: ``"demo"`` (shipped weights of the nano model), ``"download"`` (official
            weights, cached), a local file path, or None (random init: only for tests).
        device: ``None``/``"auto"`` (cuda > mps > cpu), ``"cpu"``, ``"cuda:1"``, ...
    """

    name: str = DEFAULT_MODEL
    checkpoint: str | None = DEFAULT_CHECKPOINT
    device: str | None = None

    def settings(self) -> dict[str, Any]:
        """What identifies the run's results (the device does not)."""
        return {"model": self.name, "checkpoint": self.checkpoint}


def model_names() -> list[str]:
    """All model names the core knows."""
    from sam2_plugins.configs import list_models

    return list(list_models())


def check_spec(spec: ModelSpec) -> None:
    """Validate a spec without building anything (cheap; used before any write).

    Raises:
        ValueError: unknown model name, unknown checkpoint keyword, a missing checkpoint file,
            or an unavailable device.
    """
    from pathlib import Path

    from sam2_plugins.configs import get_config
    from sam2_plugins.device import pick_device

    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"expected a model name such as 'sam2.1_hiera_tiny', received {spec.name!r}")
    get_config(spec.name)  # ValueError naming the known models
    ck = spec.checkpoint
    if ck is not None:
        if not isinstance(ck, str):
            raise TypeError("expected checkpoint 'demo', 'download', a file path or None, received "
                            f"{type(ck).__name__}")
        if ck not in ("demo", "download") and not Path(ck).expanduser().is_file():
            raise ValueError(f"unknown checkpoint {ck!r}: expected 'demo', 'download' or the path of "
                             "an existing checkpoint file")
    pick_device(spec.device)


def load_model(spec: ModelSpec) -> Any:
    """Build (or reuse) the model for ``spec``, in eval mode on its device.

    Raises:
        ValueError: see :func:`check_spec`; also a checkpoint that does not load (the core's
            ``CheckpointError`` is a ValueError naming the mismatched keys).
    """
    from sam2_plugins import build_sam2
    from sam2_plugins.device import pick_device

    check_spec(spec)
    device = pick_device(spec.device)
    key = (spec.name, spec.checkpoint, str(device))
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            if spec.checkpoint == "download":
                # Workers started together would otherwise download the same official file
                # into the same cache path at once; one downloads, the others then find it.
                from sam2_plugins.default_model import fetch_default

                from ._lock import db_lock

                with db_lock(f"checkpoint:{spec.name}", timeout_s=3600.0):
                    # offline: a message that says so and offers the demo weights
                    path = fetch_default(spec.name, progress=False, how_to_use_demo=(
                        "Choose it with checkpoint='demo' (the operator form's weights choice)."))
                    model = build_sam2(spec.name, checkpoint=str(path), device=device,
                                       progress=False)
            else:
                try:
                    model = build_sam2(spec.name, checkpoint=spec.checkpoint, device=device,
                                       progress=False)
                except (ValueError, TypeError):
                    raise  # the core's own messages (CheckpointError names file and keys)
                except Exception as exc:
                    # e.g. torch's weights-only unpickler raises IndexError on a file that is
                    # not a checkpoint at all: say which file and what was expected.
                    raise ValueError(
                        f"could not load checkpoint {spec.checkpoint!r} as weights of "
                        f"{spec.name}: {type(exc).__name__}: {exc}; expected an official SAM 2 "
                        "checkpoint file or a state dict saved by this project") from exc
            _CACHE[key] = model
    return model


def clear_cache() -> None:
    """Forget cached models (frees their memory once nothing else holds them)."""
    with _LOCK:
        _CACHE.clear()
