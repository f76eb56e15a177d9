"""The benchmark protocols in one place (each also a ``python -m benchmarks`` subcommand).

- :func:`evaluate_folders`: score existing prediction folders against DAVIS-layout GT.
- :func:`run_vos`: semi-supervised VOS with GT mask / box / 1, 3, 5 click prompts (objects
  entering late are their own video, as in the SAM 2 paper).
- :func:`run_vos_layout`: the same on SA-V / YouTube-VOS / MOSE / LVOS folders, writing
  per-object PNGs (SA-V) or a challenge submission.
- :func:`run_interactive_image`: 1..k click mIoU curves, NoC@85/90, NoF (RITM), per dataset.
- :func:`run_interactive_video`: SAM 2's offline and online interactive video protocols.

The model-free parts (J&F, clicks) live in their own modules; the protocols that run a model
take any predictor with upstream's API (``SAM2ImagePredictor``, ``SAM2VideoPredictor``).
"""

from __future__ import annotations

from .folders import evaluate_folders
from .interactive import InteractiveImageResult, image_predict_fn, run_interactive_image
from .interactive_video import interactive_video_predictor, run_interactive_video
from .layouts import run_vos_layout
from .vos_protocol import PROMPTS, VOSRun, mask_to_box, predict_vos, run_vos, synthetic_sequences, vos_predictor

__all__ = [
    "evaluate_folders",
    "run_vos",
    "run_vos_layout",
    "predict_vos",
    "VOSRun",
    "PROMPTS",
    "mask_to_box",
    "synthetic_sequences",
    "vos_predictor",
    "run_interactive_image",
    "run_interactive_video",
    "interactive_video_predictor",
    "InteractiveImageResult",
    "image_predict_fn",
]
