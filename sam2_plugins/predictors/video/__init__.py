"""Video tracking: the upstream-compatible predictor, the streaming session, and their engine.

Modules: ``state`` (typed per-video / per-object state), ``bank`` (the bounded memory bank),
``frames`` (lazy frames and the feature cache), ``step`` (the per-frame tracking step shared by
everything that tracks), ``predictor`` (:class:`SAM2VideoPredictor`), ``session``
(:class:`VideoSession`), ``quality`` (per-frame confidence signals), ``outputs`` (resizing,
binarising, PNG / RLE writers).
"""

from .predictor import SAM2VideoPredictor
from .session import FrameResult, VideoSession

__all__ = ["SAM2VideoPredictor", "VideoSession", "FrameResult"]
