"""FiftyOne plugin ``@sam2-plugins/sam2`` and its Python API.

This folder is both a FiftyOne plugin (``fiftyone.yml`` + :func:`register`) and an importable
package: ``import fiftyone_sam2 as fs2; fs2.segment(view, prompt_field="ground_truth")``.
Operators are thin; the work is in plain functions (:mod:`fiftyone_sam2.api`).

Make FiftyOne find the plugin after ``pip install 'sam2-plugins[fiftyone]'``::

    sam2-plugins fiftyone install        # links this folder into fo.config.plugins_dir
"""

from __future__ import annotations

from .api import (
    AMG_OPTIONS,
    FieldExistsError,
    ModelSpec,
    auto_label,
    clear_cache,
    evaluate,
    runs,
    segment,
    shard,
    status_field_for,
    track,
    worst_samples,
)

__all__ = ["segment", "auto_label", "track", "evaluate", "worst_samples", "shard", "runs",
           "status_field_for", "ModelSpec", "FieldExistsError", "AMG_OPTIONS", "clear_cache",
           "register", "PLUGIN_NAME"]

PLUGIN_NAME = "@sam2-plugins/sam2"


def register(p: "object") -> None:
    """Called by FiftyOne's plugin loader: registers the four operators."""
    from ._operators import OPERATORS

    for op in OPERATORS:
        p.register(op)
