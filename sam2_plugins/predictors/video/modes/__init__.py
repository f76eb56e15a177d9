"""Tracking modes: memory policies beyond SAM 2's rules, picked by name.

>>> predictor = SAM2VideoPredictor(model, memory_mode="samurai")
>>> session = VideoSession(model, memory_mode="distractor", mode_params={"drm_size": 6})

=============  =================================================  ==================================
name           what changes                                       source
=============  =================================================  ==================================
``sam2``       nothing: upstream's rules (the default)            SAM 2
``samurai``    Kalman-filtered box re-ranks candidate masks;      SAMURAI (arXiv 2411.11922)
               only good frames are read from memory
``distractor`` recent-appearance memory + anchor frames kept      DAM4SAM / SAM2.1++ (CVPR 2025)
               when a look-alike is in view
``long``       3 memory pathways per object, best path by the     SAM2Long (arXiv 2410.16268),
               running sum of log predicted IoU                   written from the paper
=============  =================================================  ==================================

Every mode also takes ``shot_cuts`` (detect shot cuts on the image features and keep the frames
after a cut out of memory until the object is confidently found again; on by default in the
three new modes, off in ``sam2`` so the default stays exactly upstream) and ``cut_threshold``,
``refind_score``, ``refind_iou``, ``refind_area``. See ``docs/tracking_modes.md`` for each mode's cost.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Mapping, Optional, Tuple, Type

from ..policy import MemoryPolicy
from .base import ModePolicy
from .cuts import DEFAULT_CUT_THRESHOLD, CutDetector
from .distractor import DistractorPolicy
from .kalman import BoxKalman
from .long import LongPolicy
from .samurai import SamuraiPolicy

__all__ = ["MEMORY_MODES", "make_policy", "mode_name", "ModePolicy", "SamuraiPolicy", "DistractorPolicy",
           "LongPolicy", "CutDetector", "BoxKalman", "DEFAULT_CUT_THRESHOLD"]

_MODES: Dict[str, Type[MemoryPolicy]] = {"sam2": ModePolicy, "samurai": SamuraiPolicy,
                                         "distractor": DistractorPolicy, "long": LongPolicy}
MEMORY_MODES: Tuple[str, ...] = tuple(_MODES)
"""Names ``memory_mode`` accepts."""

_CUT_KEYS = ("shot_cuts", "cut_threshold", "refind_score", "refind_iou", "refind_area")


def _accepted(cls: Type[MemoryPolicy]) -> Tuple[str, ...]:
    own = [k for k, p in inspect.signature(cls.__init__).parameters.items()
           if p.kind == p.KEYWORD_ONLY]
    return tuple(dict.fromkeys(own + list(_CUT_KEYS)))


def make_policy(memory_mode: Any = "sam2", mode_params: Optional[Mapping[str, Any]] = None) -> MemoryPolicy:
    """The memory policy of a tracking mode.

    Args:
        memory_mode: a name of :data:`MEMORY_MODES` (case-insensitive) or a
            :class:`~sam2_plugins.predictors.video.policy.MemoryPolicy` instance (used as is).
        mode_params: the mode's parameters (see each mode's class); checked here, before any
            frame is tracked.

    Returns:
        ``MemoryPolicy()`` itself for ``"sam2"`` without parameters (upstream's rules, byte for
        byte), else the mode's policy.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), an unknown parameter
            (the message lists the mode's parameters) or a parameter out of range.
        TypeError: ``memory_mode`` is neither a name nor a policy.
    """
    if isinstance(memory_mode, MemoryPolicy):
        if mode_params:
            raise ValueError("mode_params apply to a mode given by name; configure a MemoryPolicy instance directly")
        return memory_mode
    if not isinstance(memory_mode, str):
        raise TypeError(f"memory_mode must be one of {list(MEMORY_MODES)} or a MemoryPolicy, "
                        f"got {type(memory_mode).__name__}")
    name = memory_mode.strip().lower()
    if name not in _MODES:
        raise ValueError(f"unknown memory_mode {memory_mode!r}; valid modes: {', '.join(MEMORY_MODES)}")
    if mode_params is not None and not isinstance(mode_params, Mapping):
        raise TypeError(f"mode_params must be a dict of parameters, got {type(mode_params).__name__}")
    params = dict(mode_params or {})
    cls = _MODES[name]
    unknown = sorted(set(params) - set(_accepted(cls)))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for memory_mode {name!r}; "
                         f"accepted: {', '.join(_accepted(cls))}")
    if name == "sam2":
        if not params.get("shot_cuts", False):
            extra = sorted(set(params) - {"shot_cuts"})
            if extra:
                raise ValueError(f"parameter(s) {extra} of memory_mode 'sam2' need shot_cuts=True")
            return MemoryPolicy()
        return ModePolicy(**params)
    params.setdefault("shot_cuts", True)
    return cls(**params)


def mode_name(policy: MemoryPolicy) -> str:
    """The mode name of a policy (its ``name`` attribute)."""
    return str(getattr(policy, "name", type(policy).__name__))
