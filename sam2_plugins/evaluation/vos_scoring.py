"""Scoring objects that enter a video late "as their own video" (the SAM 2 paper, E.1.3).

The paper preprocesses every dataset so that each video's objects all appear in its first
frame; an object first seen later gets a separate video that starts on its first appearance.
Each such video is then scored with the DAVIS semi-supervised rules: J and F per object on
every frame but the video's first (the prompted one) and last, means over objects.

:func:`score_own_videos` does that from one run per group of objects sharing a first frame
(:func:`.vos_protocol.object_groups`): for the group's video, the GT keeps only the group's
objects (others are background, as they are absent from that video) and the prediction is the
group's own label map. Ids are renumbered 1..n for the DAVIS scorer and mapped back, so the
per-object keys stay ``"<sequence>_<original id>"``.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .readers import VOSSequence
from .sequence import SequenceScores, evaluate_sequence

__all__ = ["score_own_videos"]


def _relabel(lab: np.ndarray, objs: Sequence[int], void: bool) -> np.ndarray:
    """Object ``objs[r]`` becomes ``r + 1``, other ids 0; 255 stays (void) if ``void``."""
    a = np.asarray(lab)
    out = np.zeros(a.shape, np.uint8)
    for rank, k in enumerate(objs):
        out[a == k] = rank + 1
    if void:
        out[a == 255] = 255
    return out


def score_own_videos(
    seq: VOSSequence,
    groups: Sequence[Tuple[int, List[int]]],
    group_preds: Dict[int, Dict[int, np.ndarray]],
    names: Sequence[str],
) -> Tuple[SequenceScores, List[str]]:
    """Score each object group of ``seq`` as its own video.

    Args:
        seq: the sequence (GT label maps on ``seq.annotated`` frames; 255 = void).
        groups: ``[(start frame, [obj ids])]`` in group order.
        group_preds: ``{group index: {frame index: label map of that group's objects}}``.
        names: frame names of the annotated frames.

    Returns:
        ``(scores, unscored)``: one :class:`SequenceScores` with every scored object (frame
        indices into ``names``), and the keys of objects whose video has no scorable frame
        (fewer than three annotated frames).
    """
    out = SequenceScores(name=seq.name, object_ids=[], frame_names=list(names))
    unscored: List[str] = []
    annotated = [int(t) for t in seq.annotated]
    empty = np.zeros(np.asarray(seq.masks[0]).shape, np.uint8)
    for gi, (start, objs) in enumerate(groups):
        idx = [i for i, t in enumerate(annotated) if t >= start]
        if len(idx) < 3:
            unscored += [f"{seq.name}_{k}" for k in objs]
            continue
        preds = group_preds.get(gi, {})
        # void stays void in the GT (background for the semi-supervised scorer)
        gt_sub = [_relabel(seq.masks[i], objs, True) for i in idx]
        pred_sub = [_relabel(preds.get(annotated[i], empty), objs, False) for i in idx]
        sc = evaluate_sequence(gt_sub, pred_sub, name=seq.name, frame_names=[names[i] for i in idx],
                               skip_first_last=True, lifetime="davis")
        for rank, k in enumerate(objs):
            r = rank + 1
            out.object_ids.append(k)
            out.J[k], out.F[k] = sc.J[r], sc.F[r]
            out.frames[k] = [idx[j] for j in sc.frames[r]]
            out.radius = sc.radius
    order = sorted(range(len(out.object_ids)), key=lambda i: out.object_ids[i])
    out.object_ids = [out.object_ids[i] for i in order]
    return out, unscored
