"""sam2-plugins: SAM 2 / 2.1 in pure torch, checkpoint-compatible with Meta's releases.

Public API::

    from sam2_plugins import build_sam2, SAM2ImagePredictor, SAM2VideoPredictor, SAM2AutomaticMaskGenerator

Names are resolved lazily so that ``import sam2_plugins`` does no work (it does not even import
torch); each attribute imports its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "build_sam2": "sam2_plugins.build",
    "build_sam2_video_predictor": "sam2_plugins.build",
    "build_sam2_hf": "sam2_plugins.build",
    "build_sam2_video_predictor_hf": "sam2_plugins.build",
    "load_checkpoint": "sam2_plugins.build",
    "get_config": "sam2_plugins.configs",
    "list_models": "sam2_plugins.configs",
    "SAM2Config": "sam2_plugins.configs",
    "SAM2Model": "sam2_plugins.modeling.sam2",
    "SAM2ImagePredictor": "sam2_plugins.predictors.image",
    "SAM2VideoPredictor": "sam2_plugins.predictors.video",
    "SAM2AutomaticMaskGenerator": "sam2_plugins.predictors.image",
    "VideoSession": "sam2_plugins.predictors.video",
    "open_frames": "sam2_plugins.io",
    "pick_device": "sam2_plugins.device",
    "CheckpointError": "sam2_plugins.checkpoints",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .build import (
        build_sam2,
        build_sam2_hf,
        build_sam2_video_predictor,
        build_sam2_video_predictor_hf,
        load_checkpoint,
    )
    from .checkpoints import CheckpointError
    from .configs import SAM2Config, get_config, list_models
    from .device import pick_device
    from .io import open_frames
    from .modeling.sam2 import SAM2Model
    from .predictors.image import SAM2AutomaticMaskGenerator, SAM2ImagePredictor
    from .predictors.video import SAM2VideoPredictor, VideoSession


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sam2_plugins' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
