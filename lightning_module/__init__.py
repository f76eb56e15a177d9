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
    "SAM2FineTuner": "lightning_module.module",
    "build_model": "lightning_module.module",
    "SAM2DataModule": "lightning_module.datamodules",
    "ImageFolderSource": "lightning_module.microscopy",
    "StackSource": "lightning_module.microscopy",
    "Geometry": "lightning_module.geometry",
    "SAM2Loss": "lightning_module.losses",
    "LossWeights": "lightning_module.losses",
    "PromptConfig": "lightning_module.prompts",
    "AugmentConfig": "lightning_module.augment",
    "ImageEncoderFreeze": "lightning_module.callbacks",
    "ExportOnFitEnd": "lightning_module.callbacks",
    "JandF": "lightning_module.metrics",
    "MaskIoU": "lightning_module.metrics",
    "add_lora": "lightning_module.lora",
    "merge_lora": "lightning_module.lora",
    "export_checkpoint": "lightning_module.export",
    "convert_lightning_checkpoint": "lightning_module.export",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lightning_module' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
