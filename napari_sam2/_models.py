"""Model choice for the plugin, under the project's default rule
(:mod:`sam2_plugins.default_model`): official ``sam2.1_hiera_tiny`` weights by default,
downloaded once (progress reported) and cached; offline, a message that says so and offers
the shipped demo model, labelled :data:`DEMO_LABEL` wherever it can be chosen.

:func:`load_model` is plain Python with a progress callback; the controller runs it as a job.
Failures raise :class:`ModelLoadError` (or ``DefaultModelUnavailable`` when offline) with a
message meant for a notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from sam2_plugins.default_model import DEFAULT_MODEL, DEMO_LABEL, DefaultModelUnavailable

__all__ = ["MODEL_CHOICES", "DEMO_CHOICE", "DEFAULT_CHOICE", "ModelChoice", "ModelLoadError", "resolve_choice",
           "load_model", "DEVICE_CHOICES", "DefaultModelUnavailable"]

DEFAULT_CHOICE = DEFAULT_MODEL
DEMO_CHOICE = DEMO_LABEL
MODEL_CHOICES: Tuple[str, ...] = (
    DEFAULT_MODEL,
    "sam2.1_hiera_small",
    "sam2.1_hiera_base_plus",
    "sam2.1_hiera_large",
    "sam2_hiera_tiny",
    "sam2_hiera_small",
    "sam2_hiera_base_plus",
    "sam2_hiera_large",
    DEMO_LABEL,
)
DEVICE_CHOICES: Tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

ProgressFn = Callable[[int, Optional[int]], None]


class ModelLoadError(RuntimeError):
    """The model could not be built or its checkpoint could not be loaded; says why."""


@dataclass(frozen=True)
class ModelChoice:
    """A resolved choice: the config name, what to pass as ``checkpoint`` and the label.

    ``key`` identifies the weights in embedding-cache keys (name plus checkpoint file and
    its size and modification time, so a replaced file never reuses stale embeddings).
    """

    name: str
    checkpoint: Optional[str]
    key: str
    label: str = ""

    @property
    def is_demo(self) -> bool:
        return self.checkpoint == "demo"


def resolve_choice(choice: str = "", checkpoint_path: str = "") -> ModelChoice:
    """Turn the model choice + checkpoint field into a :class:`ModelChoice`.

    Args:
        choice: an entry of :data:`MODEL_CHOICES` (empty: the default), ``"demo"``, or any
            model name ``build_sam2`` knows.
        checkpoint_path: empty (official download, or the demo weights for the demo model),
            ``"random"`` (random init: tests and timing only), or a local file.

    Raises:
        ModelLoadError: for a local file that does not exist.
    """
    from sam2_plugins.default_model import resolve_choice as rule

    path = (checkpoint_path or "").strip()
    if path == "random":
        c = rule(choice or None, "none")
        name = "sam2.1_hiera_nano" if c.is_demo else c.name
        return ModelChoice(name, None, f"{name}|random", f"{name} (random weights)")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelLoadError(f"checkpoint file not found: {str(p)!r}")
        c = rule(choice or None, str(p))
        st = p.stat()
        return ModelChoice(c.name, str(p), f"{c.name}|{p.resolve()}|{st.st_size}|{int(st.st_mtime)}",
                           f"{c.name} ({p.name})")
    c = rule(choice or None, "auto")
    return ModelChoice(c.name, c.checkpoint, f"{c.name}|{c.checkpoint}", c.label)


def load_model(choice: ModelChoice, device: str = "auto", progress: Optional[ProgressFn] = None):
    """Build the model (downloading official weights once, then from the cache).

    Args:
        choice: from :func:`resolve_choice`.
        device: "auto" (cuda > mps > cpu) or a torch device string.
        progress: ``fn(done_bytes, total_bytes_or_None)`` during a download.

    Raises:
        DefaultModelUnavailable: official weights could not be downloaded (the message offers
            the demo model).
        ModelLoadError: with the reason (missing file, keys that do not match, unknown device).
    """
    from sam2_plugins.default_model import ModelChoice as CoreChoice
    from sam2_plugins.default_model import build_model

    dev = None if device in ("", "auto", None) else device
    try:
        return build_model(CoreChoice(choice.name, choice.checkpoint, choice.label), device=dev,
                           progress=progress if progress is not None else False,
                           how_to_use_demo="Choose it in the model list (or press 'Use the demo model').")
    except DefaultModelUnavailable:
        raise
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"could not load {choice.name} ({choice.checkpoint or 'random init'}): {exc}") from exc
