"""The benchmark protocols in one place (each also a ``python -m benchmarks`` subcommand).

- :func:`evaluate_folders`: score existing prediction folders against DAVIS-layout GT.
- :func:`run_vos`: semi-supervised VOS with GT mask / box / 1, 3, 5 click prompts.
- :func:`run_interactive_image`: 1..k click mIoU curves, NoC@85/90 on image sets.
- :func:`run_interactive_video`: SAM 2's offline and online interactive video protocols.

The model-free parts (J&F, clicks) live in their own modules; the protocols that run a model
take any predictor with upstream's API (``SAM2ImagePredictor``, ``SAM2VideoPredictor``).
"""

from __future__ import annotations

from .folders import evaluate_folders
from .interactive import InteractiveImageResult, image_predict_fn, run_interactive_image, run_interactive_video
from .vos_protocol import PROMPTS, VOSRun, mask_to_box, predict_vos, run_vos, synthetic_sequences

__all__ = [
    "evaluate_folders",
    "run_vos",
    "predict_vos",
    "VOSRun",
    "PROMPTS",
    "mask_to_box",
    "synthetic_sequences",
    "run_interactive_image",
    "run_interactive_video",
    "InteractiveImageResult",
    "image_predict_fn",
]
