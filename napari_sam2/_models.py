"""Model choice for the widget: the shipped demo model (offline default), the official sizes
(downloaded on demand, with progress), or a local checkpoint file.

:func:`load_model` is plain Python with a progress callback; the widget runs it in a thread
worker and turns the callback into a napari progress bar. Failures raise
:class:`ModelLoadError` with a message meant for a notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

__all__ = ["MODEL_CHOICES", "DEMO_CHOICE", "ModelChoice", "ModelLoadError", "resolve_choice",
           "load_model", "DEVICE_CHOICES"]

DEMO_CHOICE = "demo: sam2.1 nano (shipped, offline)"
MODEL_CHOICES: Tuple[str, ...] = (
    DEMO_CHOICE,
    "sam2.1_hiera_tiny",
    "sam2.1_hiera_small",
    "sam2.1_hiera_base_plus",
    "sam2.1_hiera_large",
    "sam2_hiera_tiny",
    "sam2_hiera_small",
    "sam2_hiera_base_plus",
    "sam2_hiera_large",
)
DEVICE_CHOICES: Tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

ProgressFn = Callable[[int, Optional[int]], None]


class ModelLoadError(RuntimeError):
    """The model could not be built or its checkpoint could not be loaded; says why."""


@dataclass(frozen=True)
class ModelChoice:
    """A resolved choice: the config name and what to pass as ``checkpoint``.

    ``key`` identifies the weights in embedding-cache keys (name plus checkpoint file and
    its size and modification time, so a replaced file never reuses stale embeddings).
    """

    name: str
    checkpoint: Optional[str]
    key: str


def resolve_choice(choice: str, checkpoint_path: str = "") -> ModelChoice:
    """Turn the widget's model combo + checkpoint field into a :class:`ModelChoice`.

    Args:
        choice: an entry of :data:`MODEL_CHOICES`, or any model name ``build_sam2`` knows.
        checkpoint_path: empty (demo weights / official download), ``"random"`` (random
            init: tests only), or a local file.

    Raises:
        ModelLoadError: for a local file that does not exist.
    """
    name = "sam2.1_hiera_nano" if choice == DEMO_CHOICE else choice
    path = (checkpoint_path or "").strip()
    if path == "random":
        return ModelChoice(name, None, f"{name}|random")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelLoadError(f"checkpoint file not found: {str(p)!r}")
        st = p.stat()
        return ModelChoice(name, str(p), f"{name}|{p.resolve()}|{st.st_size}|{int(st.st_mtime)}")
    ckpt = "demo" if name == "sam2.1_hiera_nano" else "download"
    return ModelChoice(name, ckpt, f"{name}|{ckpt}")


def load_model(choice: ModelChoice, device: str = "auto", progress: Optional[ProgressFn] = None):
    """Build the model (downloading official weights if needed).

    Args:
        choice: from :func:`resolve_choice`.
        device: "auto" (cuda > mps > cpu) or a torch device string.
        progress: ``fn(done_bytes, total_bytes_or_None)`` during a download.

    Raises:
        ModelLoadError: with the reason (missing file, failed download, keys that do not
            match, unknown device) and what to do about it.
    """
    try:
        from sam2_plugins import build_sam2
    except ImportError as exc:  # pragma: no cover - the core ships with the plugin
        raise ModelLoadError(f"the sam2_plugins core could not be imported: {exc}") from exc
    dev = None if device in ("", "auto", None) else device
    try:
        return build_sam2(choice.name, checkpoint=choice.checkpoint, device=dev,
                          progress=progress if progress is not None else False)
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"could not load {choice.name} ({choice.checkpoint or 'random init'}): {exc}") from exc
