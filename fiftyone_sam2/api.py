"""The plugin's Python API, usable without the App.

    import fiftyone_sam2 as fs2
    fs2.segment(view, prompt_field="ground_truth", label_field="sam2")
    fs2.auto_label(view, label_field="sam2_auto", semantic_field="sam2_ids")
    fs2.track(videos, prompt_field="frames.detections", direction="both")
    fs2.evaluate(videos, "frames.sam2", "frames.gt", method="jf")
    fs2.worst_samples(videos, "sam2_eval", k=5)

Every labeling function is resumable (rerun it after a crash: done samples are skipped),
records failures per sample in ``<field>_status`` instead of stopping, and never writes into
an existing field unless ``overwrite=True``. See :mod:`fiftyone_sam2._resume`.
"""

from __future__ import annotations

from ._autolabel import AMG_OPTIONS, auto_label
from ._evaluate import evaluate, worst_samples
from ._models import ModelSpec, clear_cache
from ._resume import FieldExistsError, runs, shard, status_field_for
from ._segment import segment
from ._track import track

__all__ = ["segment", "auto_label", "track", "evaluate", "worst_samples", "shard", "runs",
           "status_field_for", "ModelSpec", "FieldExistsError", "AMG_OPTIONS", "clear_cache"]
