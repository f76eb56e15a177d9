"""Single images: the promptable image predictor and the automatic mask generator."""

from .amg_stats import AMGStats
from .automatic import SAM2AutomaticMaskGenerator
from .predictor import SAM2ImagePredictor

__all__ = ["SAM2ImagePredictor", "SAM2AutomaticMaskGenerator", "AMGStats"]
