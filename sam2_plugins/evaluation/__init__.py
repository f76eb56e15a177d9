"""Evaluation: DAVIS-exact J&F, mIoU, RITM/SAM click simulation, dataset readers, protocols.

numpy (+ scipy for the click simulator) only; torch is imported only by the protocols that run
a model and by the SA-V RLE reader. Names are resolved lazily so ``import
sam2_plugins.evaluation`` stays cheap (the ``evaluate`` CLI starts in a fraction of a second).

Main entry points::

    from sam2_plugins.evaluation import evaluate_folders, evaluate_sequence, summarize
    from sam2_plugins.evaluation import score_frame, db_statistics, mask_iou, next_click, noc
    from sam2_plugins.evaluation import make_video, make_image   # synthetic data
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # jf.py
    "boundary_map": "jf", "f_radius": "jf", "disk_dilate": "jf", "jaccard": "jf",
    "f_measure": "jf", "score_frame": "jf", "score_labels": "jf", "db_statistics": "jf",
    # sequence.py / folders.py
    "SequenceScores": "sequence", "evaluate_sequence": "sequence", "summarize": "sequence",
    "STAT_KEYS": "sequence",
    "evaluate_folders": "folders", "evaluate_sav_folders": "folders", "score_prediction_sequence": "folders",
    # iou.py / clicks.py
    "mask_iou": "iou", "batch_iou": "iou", "mean_iou": "iou",
    "Click": "clicks", "Clicker": "clicks", "next_click": "clicks", "noc": "clicks",
    "simulate_interaction": "clicks",
    # readers
    "read_davis": "readers", "read_vos_folder": "readers", "read_sav_json": "readers",
    "read_sav_png_folders": "readers", "read_index_png": "readers", "write_index_png": "readers",
    "VOSSequence": "readers", "Masklets": "readers",
    "read_instance_folder": "image_readers", "read_coco": "image_readers",
    "read_tiff_instances": "image_readers", "read_npz_instances": "image_readers",
    "ImageSample": "image_readers",
    # protocols (import torch only when a predictor is used)
    "run_vos": "protocols", "predict_vos": "protocols", "VOSRun": "protocols", "PROMPTS": "protocols",
    "mask_to_box": "protocols", "synthetic_sequences": "protocols",
    "run_interactive_image": "protocols", "run_interactive_video": "protocols",
    "InteractiveImageResult": "protocols", "image_predict_fn": "protocols",
    "run_vos_layout": "protocols", "vos_predictor": "protocols", "interactive_video_predictor": "protocols",
    # synthetic data
    "make_video": "synthetic", "make_image": "synthetic",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'sam2_plugins.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
