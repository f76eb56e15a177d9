"""Evaluation: DAVIS-exact J&F, mIoU, RITM/SAM click simulation, dataset readers, protocols.

numpy (+ scipy for the click simulator) only; torch is imported only by the protocols that run
a model and by the SA-V RLE reader. Names are resolved lazily so ``import
sam2_plugins.evaluation`` stays cheap (the ``evaluate`` CLI starts in a fraction of a second).

Exported here: what a user calls (metrics, ``evaluate_*``, readers, protocols, synthetic data);
the helpers behind them stay in their modules (``from sam2_plugins.evaluation.jf import
boundary_map``). Main entry points::

    from sam2_plugins.evaluation import evaluate_folders, evaluate_sequence, summarize
    from sam2_plugins.evaluation import score_frame, db_statistics, mask_iou, next_click, noc
    from sam2_plugins.evaluation import make_video, make_image   # synthetic data
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # scores and metrics (DAVIS-exact J&F; IoU; NoC)
    "jaccard": "jf", "f_measure": "jf", "score_frame": "jf", "db_statistics": "jf",
    "SequenceScores": "sequence", "evaluate_sequence": "sequence", "summarize": "sequence",
    "evaluate_folders": "folders", "evaluate_sav_folders": "folders",
    "mask_iou": "iou", "mean_iou": "iou", "noc": "clicks", "next_click": "clicks",
    # readers and writers
    "read_davis": "readers", "read_vos_folder": "readers", "read_sav_json": "readers",
    "read_sav_png_folders": "readers", "read_index_png": "readers", "write_index_png": "readers",
    "VOSSequence": "readers", "Masklets": "readers",
    "read_instance_folder": "image_readers", "read_coco": "image_readers",
    "read_tiff_instances": "image_readers", "read_npz_instances": "image_readers",
    "ImageSample": "image_readers",
    # protocols (import torch only when a predictor is used)
    "run_vos": "protocols", "predict_vos": "protocols", "VOSRun": "protocols", "PROMPTS": "protocols",
    "run_interactive_image": "protocols", "run_interactive_video": "protocols",
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
