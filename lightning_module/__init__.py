"""Lightning fine-tuning of SAM 2 (images and video clips through the memory path).

Main entry points::

    from lightning_module import SAM2FineTuner, SAM2DataModule, SAM2Loss, export_checkpoint
    python -m lightning_module.cli fit --config lightning_module/configs/finetune_davis.yaml
    python -m lightning_module.cli fit --config lightning_module/configs/finetune_nuclei.yaml
    python -m lightning_module.train_demo --out PATH --max-steps N --accelerator auto

Names are imported lazily so that ``import lightning_module`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SAM2FineTuner": ".module",
    "build_trainable_model": ".module",
    "SAM2DataModule": ".datamodules",
    "ImageFolderSource": ".microscopy",
    "StackSource": ".microscopy",
    "Geometry": ".geometry",
    "SAM2Loss": ".losses",
    "LossWeights": ".losses",
    "PromptConfig": ".prompts",
    "AugmentConfig": ".augment",
    "ImageEncoderFreeze": ".callbacks",
    "ExportOnFitEnd": ".callbacks",
    "JandF": ".metrics",
    "MaskIoU": ".metrics",
    "add_lora": ".lora",
    "merge_lora": ".lora",
    "export_checkpoint": ".export",
    "convert_lightning_checkpoint": ".export",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # relative: the package is lightning_module in a checkout, sam2_plugins_lightning installed
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
