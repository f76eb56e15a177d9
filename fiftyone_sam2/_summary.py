"""Run summaries that tell the truth: counts of empty results and the warnings they call for.

A run that "processed 6, failed 0" while most masks are empty has not succeeded. Each
operation counts what its results look like (``Run.counts``) and :func:`warnings_for` turns
large counts into plain sentences, which go into the returned summary (``"warnings"``), the
run record in ``dataset.info``, the log, and the App operator's output.

Counts
------
* ``segment``: ``masks``, ``empty_masks`` (no pixel), ``tiny_masks`` (fewer than
  :data:`TINY_PIXELS` pixels).
* ``auto_label``: ``images``, ``masks``, ``images_without_masks`` (the generator kept no mask: every
  candidate was filtered out), ``filter_example`` (the generator's explanation for one of them).
* ``track``: ``object_frames`` (objects x frames written), ``lost_object_frames`` (judged
  absent), ``prompted_object_frames`` and ``lost_on_prompt`` (absent on the very frame the
  object was prompted on, which means the prompt itself gave nothing).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping

import numpy as np

__all__ = ["TINY_PIXELS", "WARN_FRACTION", "count_masks", "count_auto_label", "count_track", "warnings_for"]

TINY_PIXELS = 16
"""A mask with fewer pixels than this (but at least one) counts as tiny."""
WARN_FRACTION = 0.1
"""Warn when at least this fraction of the results is empty / lost / filtered out."""


def _add(counts: Dict[str, Any], key: str, n: int = 1) -> None:
    counts[key] = int(counts.get(key, 0)) + int(n)


def count_masks(counts: Dict[str, Any], masks: Iterable[np.ndarray]) -> None:
    """Count full-image bool masks by size (``segment``)."""
    for m in masks:
        area = int(np.count_nonzero(m))
        _add(counts, "masks")
        _add(counts, "empty_masks", area == 0)
        _add(counts, "tiny_masks", 0 < area < TINY_PIXELS)


def count_auto_label(counts: Dict[str, Any], n_masks: int, explanation: str) -> None:
    """Count one image's automatic masks (``auto_label``); ``explanation`` from the generator's stats."""
    _add(counts, "images")
    _add(counts, "masks", n_masks)
    _add(counts, "images_without_masks", n_masks == 0)
    if n_masks == 0 and "filter_example" not in counts:
        counts["filter_example"] = explanation


def count_track(counts: Dict[str, Any], frames: Mapping[int, Any], prompted: Mapping[int, Iterable[int]]) -> None:
    """Count one video's tracked frames (``track``).

    Args:
        frames: frame index -> ``Detections`` with the ``lost`` attribute (object ids).
        prompted: frame index -> object ids prompted on that frame.
    """
    for t, dets in frames.items():
        lost = set(int(i) for i in (getattr(dets, "lost", None) or []))
        _add(counts, "object_frames", len(dets.detections) + len(lost))
        _add(counts, "lost_object_frames", len(lost))
        for oid in prompted.get(t, ()):
            _add(counts, "prompted_object_frames")
            _add(counts, "lost_on_prompt", int(oid) in lost)


def _frac(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def warnings_for(kind: str, counts: Mapping[str, Any]) -> List[str]:
    """Plain-language warnings for the counts of a ``kind`` run (empty when all looks fine)."""
    out: List[str] = []
    hint = "the model may not suit these images (the shipped demo model is small: try an official checkpoint)"
    if kind == "segment":
        n, empty, tiny = (int(counts.get(k, 0)) for k in ("masks", "empty_masks", "tiny_masks"))
        if empty + tiny and _frac(empty + tiny, n) >= WARN_FRACTION:
            out.append(f"{empty} of {n} masks are empty and {tiny} have fewer than {TINY_PIXELS} pixels: {hint}")
    elif kind == "auto_label":
        n_img = int(counts.get("images", 0))
        none = int(counts.get("images_without_masks", 0))
        if none and _frac(none, n_img) >= WARN_FRACTION:
            out.append(f"{none} of {n_img} images got no mask: the generator filtered out every candidate "
                       f"(e.g. {counts.get('filter_example', '')}); lower pred_iou_thresh / "
                       "stability_score_thresh, or use a better model")
    elif kind == "track":
        n, lost = int(counts.get("object_frames", 0)), int(counts.get("lost_object_frames", 0))
        on_prompt, prompted = int(counts.get("lost_on_prompt", 0)), int(counts.get("prompted_object_frames", 0))
        if on_prompt:
            out.append(f"{on_prompt} of {prompted} prompts gave no object on their own frame (reported lost "
                       f"where the object was prompted): {hint}")
        if lost and _frac(lost, n) >= 0.5:
            out.append(f"objects are lost on {lost} of {n} object-frames ({100 * lost / n:.0f} %)")
    return out
