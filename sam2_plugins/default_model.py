"""The default model, one rule for every entry point (napari widget, FiftyOne operators, CLI).

* The default is Meta's official ``sam2.1_hiera_tiny``: downloaded on first use (with a
  progress callback) into the checkpoint cache (:func:`sam2_plugins.checkpoints.cache_dir`),
  then read from there without the network.
* Where it cannot be downloaded (no network, a firewall, a proxy), :func:`fetch_default`
  raises :class:`DefaultModelUnavailable`: its message says so and offers the shipped demo
  model, which every entry point labels :data:`DEMO_LABEL` (it was trained on synthetic
  shapes only; it is there to try the interface, not to segment real images).
* ``$SAM2_PLUGINS_MIRROR`` (a base URL) replaces Meta's and Hugging Face's servers: the file
  is fetched from ``<mirror>/<name>.pt`` (an institute mirror behind a firewall; the tests
  use a server on 127.0.0.1).

Torch only (through :mod:`sam2_plugins.checkpoints`); no framework imports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from .checkpoints import REGISTRY, CheckpointError, ProgressFn, cache_dir, download, resolve_checkpoint
from .configs import DEMO_MODEL

if TYPE_CHECKING:  # pragma: no cover
    from .modeling.sam2 import SAM2Model

__all__ = [
    "DEFAULT_MODEL",
    "DEMO_MODEL",
    "DEMO_LABEL",
    "DEMO_KEYWORD",
    "MIRROR_ENV",
    "ModelChoice",
    "DefaultModelUnavailable",
    "resolve_choice",
    "is_cached",
    "fetch_default",
    "offline_message",
    "build_model",
]

DEFAULT_MODEL = "sam2.1_hiera_tiny"
"""Official weights every entry point defaults to."""

DEMO_LABEL = "demo (synthetic shapes only — for trying the interface)"
"""How the shipped demo model is named wherever a user can choose it."""

DEMO_KEYWORD = "demo"
"""The word that selects the demo model (CLI ``--model demo``, checkpoint ``"demo"``)."""

MIRROR_ENV = "SAM2_PLUGINS_MIRROR"


class DefaultModelUnavailable(CheckpointError):
    """The official weights could not be downloaded; the message offers the demo model."""


@dataclass(frozen=True)
class ModelChoice:
    """A model to build: config ``name`` and the ``checkpoint`` argument of ``build_sam2``.

    ``checkpoint``: ``"download"`` (official weights through the cache), ``"demo"``, a local
    path, or None (random weights: tests and timing only). ``label`` is what to show a user.
    """

    name: str
    checkpoint: Optional[str]
    label: str

    @property
    def is_demo(self) -> bool:
        return self.checkpoint == DEMO_KEYWORD

    @property
    def needs_download(self) -> bool:
        return self.checkpoint == "download"


def resolve_choice(model: Optional[str] = None, checkpoint: Optional[str] = "auto") -> ModelChoice:
    """What a user's (model, checkpoint) choice means under the default rule.

    Args:
        model: None / ``""`` / ``"default"`` (:data:`DEFAULT_MODEL`), ``"demo"`` or
            :data:`DEMO_LABEL` (the demo model), or any name ``build_sam2`` knows.
        checkpoint: ``"auto"`` (official names: ``"download"``; the demo config: the shipped
            demo weights), ``"download"``, ``"demo"``, ``"none"`` / None (random weights), or a
            file path. A checkpoint of ``"demo"`` always means the demo model.
    """
    m = (model or "").strip()
    if m in ("", "default"):
        m = DEFAULT_MODEL
    ck = "auto" if checkpoint == "auto" else (None if checkpoint in (None, "none", "") else str(checkpoint))
    if m in (DEMO_KEYWORD, DEMO_LABEL) or ck == DEMO_KEYWORD:
        return ModelChoice(DEMO_MODEL, DEMO_KEYWORD, DEMO_LABEL)
    if ck == "auto":
        ck = DEMO_KEYWORD if m == DEMO_MODEL else "download"
        if ck == DEMO_KEYWORD:
            return ModelChoice(DEMO_MODEL, DEMO_KEYWORD, DEMO_LABEL)
    label = m if ck in ("download", None) else f"{m} ({ck})"
    if ck is None:
        label = f"{m} (random weights)"
    return ModelChoice(m, ck, label)


def _mirror_urls(name: str) -> Optional[list]:
    base = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    return [f"{base}/{name}.pt"] if base else None


def is_cached(name: str = DEFAULT_MODEL) -> bool:
    """True when the official file of ``name`` is already in the cache (no download needed)."""
    filename = REGISTRY[name].filename if name in REGISTRY else f"{name}.pt"
    return (cache_dir() / filename).is_file()


def offline_message(name: str, reason: str, how_to_use_demo: str = "") -> str:
    """The message shown where the official weights cannot be fetched."""
    return (f"could not download the {name} weights (is this machine offline, or behind a proxy?): "
            f"{reason.strip()}\nThe shipped demo model works offline: {DEMO_LABEL}. "
            + (how_to_use_demo or "Choose it to try the interface.")
            + f" To use {name} offline, download {name}.pt elsewhere and put it in {cache_dir()}"
            f" (or set {MIRROR_ENV} to a server that has it).")


def fetch_default(name: str = DEFAULT_MODEL, progress: Union[bool, ProgressFn] = True,
                  how_to_use_demo: str = "") -> Path:
    """The local file of official weights ``name``: from the cache, else downloaded once.

    Args:
        name: an official model name (or, with ``$SAM2_PLUGINS_MIRROR`` set, any name the
            mirror serves as ``<name>.pt``).
        progress: True (a bar on stderr), False, or ``fn(done_bytes, total_bytes_or_None)``.
        how_to_use_demo: a sentence for the offline message, in the caller's terms
            (``"Run again with --model demo."``).

    Raises:
        DefaultModelUnavailable: the download failed; the message offers the demo model.
    """
    mirror = _mirror_urls(name)
    if mirror is None:
        try:
            return resolve_checkpoint(name, "download", progress=progress)  # type: ignore[return-value]
        except CheckpointError as exc:
            if name not in REGISTRY:
                raise  # not a network problem: an unknown name
            raise DefaultModelUnavailable(offline_message(name, str(exc), how_to_use_demo)) from exc
    filename = REGISTRY[name].filename if name in REGISTRY else f"{name}.pt"
    dest = cache_dir() / filename
    if dest.is_file():
        return dest
    try:
        return download(mirror, dest, progress=progress, retries=0, timeout=30.0)
    except CheckpointError as exc:
        raise DefaultModelUnavailable(offline_message(name, str(exc), how_to_use_demo)) from exc


def build_model(choice: ModelChoice, device: Optional[str] = None, progress: Union[bool, ProgressFn] = True,
                how_to_use_demo: str = "") -> SAM2Model:
    """Build ``choice`` (see :func:`resolve_choice`), fetching official weights by the rule above.

    Raises:
        DefaultModelUnavailable: official weights could not be downloaded (offers the demo).
        CheckpointError: a local file that is missing or does not fit the model.
    """
    from .build import build_sam2

    ck: Optional[str] = choice.checkpoint
    if ck == "download":
        ck = str(fetch_default(choice.name, progress=progress, how_to_use_demo=how_to_use_demo))
    return build_sam2(choice.name, checkpoint=ck, device=device, progress=progress)
