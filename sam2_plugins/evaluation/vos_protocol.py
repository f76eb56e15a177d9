"""Semi-supervised VOS protocol (the SAM 2 paper's five first-frame prompt settings).

Each object is prompted on the first annotated frame in which it appears (frame 0 for DAVIS)
with its GT mask, its GT box, or 1 / 3 / 5 simulated clicks; the video predictor propagates the
prompts through the video and the predicted label maps of the annotated frames are scored with
DAVIS J&F.

Clicks are made interactively on the prompted frame, like a user would: the first at the
object's centre, each next one on the largest error of the mask the predictor returned for
the clicks so far (:mod:`.clicks`). Boxes are the GT mask's tight XYXY box in pixels
(``[x_min, y_min, x_max, y_max]``, inclusive, no noise). Output label maps paint objects in
descending id order so that, where predicted masks overlap, the smallest id wins (as
upstream's ``tools/vos_inference.py``).

The predictor is anything with upstream's ``SAM2VideoPredictor`` API: ``init_state``,
``add_new_mask``, ``add_new_points_or_box``, ``propagate_in_video``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .clicks import Clicker
from .readers import VOSSequence, write_index_png
from .sequence import SequenceScores, evaluate_sequence, summarize

__all__ = ["PROMPTS", "mask_to_box", "predict_vos", "run_vos", "VOSRun", "synthetic_sequences"]

PROMPTS = ("mask", "box", "click1", "click3", "click5")


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box ``[x_min, y_min, x_max, y_max]`` (float32 pixels, inclusive) of a mask.

    Raises:
        ValueError: the mask is empty.
    """
    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("cannot make a box from an empty mask")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _prompt_object(predictor: Any, state: Any, frame_idx: int, obj_id: int, gt: np.ndarray, prompt: str) -> None:
    if prompt == "mask":
        predictor.add_new_mask(state, frame_idx=frame_idx, obj_id=obj_id, mask=gt)
    elif prompt == "box":
        predictor.add_new_points_or_box(state, frame_idx=frame_idx, obj_id=obj_id, box=mask_to_box(gt))
    elif prompt.startswith("click"):
        clicker = Clicker(gt)
        pred = None
        for _ in range(int(prompt[5:])):
            clicker.make_next_click(pred)
            _, ids, logits = predictor.add_new_points_or_box(
                state, frame_idx=frame_idx, obj_id=obj_id, points=clicker.points(),
                labels=clicker.labels(), clear_old_points=True,
            )
            pred = _to_numpy(logits[list(ids).index(obj_id), 0]) > 0
    else:
        raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")


def _first_appearances(seq: VOSSequence, davis_objects: bool) -> Dict[int, Tuple[int, np.ndarray]]:
    """{obj_id: (video frame index, GT mask there)}: DAVIS objects are the ids of the first
    annotated frame; otherwise every id gets its first annotated appearance."""
    out: Dict[int, Tuple[int, np.ndarray]] = {}
    first = np.asarray(seq.masks[0])
    if davis_objects:
        lab = np.where(first == 255, 0, first)
        for k in range(1, int(lab.max()) + 1):
            if (lab == k).any():  # an id missing from frame 0 cannot be prompted there
                out[k] = (seq.annotated[0], lab == k)
        return out
    for i in range(len(seq.masks)):
        lab = np.asarray(seq.masks[i])
        for k in np.unique(lab).tolist():
            if k not in (0, 255) and k not in out:
                out[int(k)] = (seq.annotated[i], lab == k)
    return out


def predict_vos(
    predictor: Any,
    video: Any,
    prompts: Dict[int, Tuple[int, np.ndarray]],
    prompt: str = "mask",
    keep_frames: Optional[Sequence[int]] = None,
    on_frame: Optional[Callable[[int, np.ndarray], None]] = None,
) -> Dict[int, np.ndarray]:
    """Prompt every object on its frame, propagate forward, return label maps.

    Args:
        predictor: a video predictor (upstream API).
        video: anything ``predictor.init_state`` accepts (a FrameSource, folder, array, ...).
        prompts: ``{obj_id: (frame_idx, gt_mask (H, W) bool)}``.
        prompt: one of :data:`PROMPTS`.
        keep_frames: frame indices whose label maps are returned (default: all).
        on_frame: called as ``on_frame(frame_idx, label_map)`` for every propagated frame.

    Returns:
        ``{frame_idx: (H, W) uint8 label map}``; objects are 0 before their prompted frame.
    """
    if not prompts:
        raise ValueError("no objects to prompt")
    state = predictor.init_state(video)
    for obj_id in sorted(prompts):
        t, m = prompts[obj_id]
        _prompt_object(predictor, state, t, obj_id, m, prompt)
    keep = None if keep_frames is None else set(int(k) for k in keep_frames)
    start = {k: t for k, (t, _) in prompts.items()}
    out: Dict[int, np.ndarray] = {}
    for frame_idx, obj_ids, logits in predictor.propagate_in_video(state):
        masks = _to_numpy(logits[:, 0]) > 0
        lab = np.zeros(masks.shape[1:], np.uint8)
        for i in sorted(range(len(obj_ids)), key=lambda j: obj_ids[j], reverse=True):
            if frame_idx >= start.get(obj_ids[i], 0):
                lab[masks[i]] = obj_ids[i]
        if on_frame is not None:
            on_frame(int(frame_idx), lab)
        if keep is None or frame_idx in keep:
            out[int(frame_idx)] = lab
    return out


@dataclass
class VOSRun:
    """Result of :func:`run_vos`: the J&F summary plus timing."""

    summary: Dict[str, Any]
    sequences: List[SequenceScores] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def run_vos(
    predictor: Any,
    sequences: Sequence[VOSSequence],
    prompt: str = "mask",
    lifetime: str = "davis",
    out_dir: Optional[Path] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> VOSRun:
    """Run the semi-supervised protocol on ``sequences`` and score it.

    Args:
        predictor: video predictor.
        sequences: :class:`VOSSequence` items with frames and GT label maps.
        prompt: one of :data:`PROMPTS`.
        lifetime: ``"davis"`` (objects of the first annotated frame, first/last frames
            skipped) or ``"first_appearance"`` (objects entering later are prompted on their
            first annotated frame and scored from there, SA-V / YouTube-VOS style).
        out_dir: if given, predicted palette PNGs are written to ``out_dir/<seq>/<name>.png``
            for the annotated frames (DAVIS layout, usable with ``evaluate``).
        progress: called with the sequence name as each one starts.
    """
    scores: List[SequenceScores] = []
    n_frames, seconds = 0, 0.0
    for seq in sequences:
        if seq.frames is None:
            raise ValueError(f"sequence {seq.name} has no frames to run a model on")
        if progress is not None:
            progress(seq.name)
        prompts = _first_appearances(seq, davis_objects=lifetime == "davis")
        if not prompts:
            raise ValueError(f"sequence {seq.name}: no object to prompt in its annotations")
        t0 = time.perf_counter()
        preds = predict_vos(predictor, seq.frames, prompts, prompt, keep_frames=seq.annotated)
        seconds += time.perf_counter() - t0
        n_frames += seq.frames.num_frames or 0
        h, w = np.asarray(seq.masks[0]).shape
        pred_list = [preds.get(t, np.zeros((h, w), np.uint8)) for t in seq.annotated]
        if out_dir is not None:
            for name, lab in zip(seq.mask_names or [f"{t:05d}" for t in seq.annotated], pred_list):
                write_index_png(Path(out_dir) / seq.name / f"{name}.png", lab)
        scores.append(
            evaluate_sequence(seq.masks, pred_list, name=seq.name, frame_names=seq.mask_names or None,
                              lifetime=lifetime)
        )
    return VOSRun(summarize(scores), scores, n_frames, seconds)


def synthetic_sequences(
    count: int = 2, num_frames: int = 8, height: int = 64, width: int = 96, num_objects: int = 2,
    seed: int = 0, late_objects: int = 0,
) -> List[VOSSequence]:
    """Synthetic :class:`VOSSequence` items from :func:`.synthetic.make_video` (seeds
    ``seed, seed + 1, ...``), every frame annotated."""
    from ..io import ArraySource
    from .synthetic import make_video

    out = []
    for i in range(count):
        frames, masks = make_video(num_frames, height, width, num_objects, seed + i, late_objects=late_objects)
        names = [f"{t:05d}" for t in range(num_frames)]
        out.append(VOSSequence(f"synthetic-{seed + i:03d}", ArraySource(frames, name=f"synthetic-{seed + i}"),
                               list(masks.astype(np.uint8)), list(range(num_frames)), names))
    return out
