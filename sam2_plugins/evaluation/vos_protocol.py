"""Semi-supervised VOS protocol (the SAM 2 paper's five first-frame prompt settings, E.1.3).

Each object is prompted on the first annotated frame in which it appears with its GT mask, its
GT box, or 1 / 3 / 5 simulated clicks; the video predictor propagates the prompts forward and
the predicted masks of the annotated frames are scored.

Objects and their videos (``lifetime``):

- ``"own_video"`` (the paper; default): objects that first appear on the same frame form one
  video that starts there. An object entering after the first frame is therefore tracked from
  its first appearance **as its own video** (the predictor is reset: nothing before it is
  seen), and scored on that video under DAVIS rules: its first frame (the prompted one) and
  the video's last frame are not scored. Where every object is in the first frame (DAVIS)
  this is exactly the DAVIS protocol.
- ``"davis"``: the objects of the first annotated frame only (later ids are not objects),
  DAVIS scoring (davis2017-evaluation).
- ``"first_appearance"``: one run, every object prompted where it first appears and scored
  from there (vos-benchmark / SA-V evaluator rule; the prompted frame counts).

Clicks are made interactively on the prompted frame, like a user would: the first at the
object's centre, each next one on the largest error of the mask the predictor returned for
the clicks so far (:mod:`.clicks`). Boxes are the GT mask's tight XYXY box in pixels
(``[x_min, y_min, x_max, y_max]``, inclusive, no noise).

Label maps are made as upstream's ``tools/vos_inference.py`` does for DAVIS-format output
(``non_overlap_masks``): a pixel goes to the object with the highest logit if that logit is
> 0 (ties: the smallest id). Objects are empty before their prompted frame.

The predictor is anything with upstream's ``SAM2VideoPredictor`` API: ``init_state``,
``add_new_mask``, ``add_new_points_or_box``, ``propagate_in_video``, ``reset_state``. VOS
results in the paper and upstream's ``vos_inference.py`` use ``apply_postprocessing=False``
(no hole filling, masks from clicks not binarised for memory): see
:func:`vos_predictor`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .clicks import Clicker
from .readers import VOSSequence, write_index_png
from .sequence import SequenceScores, evaluate_sequence, summarize
from .vos_scoring import score_own_videos

__all__ = ["PROMPTS", "LIFETIMES", "mask_to_box", "first_appearances", "object_groups", "track_objects",
           "predict_vos", "run_vos", "VOSRun", "synthetic_sequences", "vos_predictor"]

PROMPTS = ("mask", "box", "click1", "click3", "click5")
LIFETIMES = ("own_video", "davis", "first_appearance")
Prompts = Dict[int, Tuple[int, np.ndarray]]


def vos_predictor(model: Any, **options: Any) -> Any:
    """A :class:`~sam2_plugins.SAM2VideoPredictor` as upstream's ``vos_inference.py`` builds it
    for benchmarks: ``apply_postprocessing=False``, no hole filling (``options`` override)."""
    from sam2_plugins import SAM2VideoPredictor

    opts: Dict[str, Any] = dict(apply_postprocessing=False, fill_hole_area=0)
    opts.update(options)
    return SAM2VideoPredictor(model, **opts)


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
    elif prompt.startswith("click") and prompt[5:].isdigit():
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


def first_appearances(seq: VOSSequence, lifetime: str = "own_video") -> Prompts:
    """``{obj_id: (video frame index, GT mask there)}``. ``"davis"``: the ids of the first
    annotated frame; otherwise every id at its first annotated frame with a non-empty mask.
    Void (255) is never an object."""
    if lifetime not in LIFETIMES:
        raise ValueError(f"lifetime must be one of {LIFETIMES}, got {lifetime!r}")
    out: Prompts = {}
    if lifetime == "davis":
        first = np.asarray(seq.masks[0])
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




def object_groups(prompts: Prompts, separate: bool) -> List[Tuple[int, List[int]]]:
    """``[(start frame, [obj ids])]``: one group per first frame (``separate``), else one group."""
    if not prompts:
        return []
    if not separate:
        return [(min(t for t, _ in prompts.values()), sorted(prompts))]
    starts = sorted({t for t, _ in prompts.values()})
    return [(s, sorted(k for k, (t, _) in prompts.items() if t == s)) for s in starts]


def track_objects(
    predictor: Any, video: Any, prompts: Prompts, prompt: str = "mask", separate: bool = True,
    state: Any = None,
) -> Iterator[Tuple[int, int, List[int], np.ndarray]]:
    """Prompt and propagate each object group (see :func:`object_groups`), resetting the
    predictor between groups.

    Yields:
        ``(group index, frame index, obj_ids, logits)`` with ``logits`` ``(n, H, W)`` float32
        (``-inf`` for an object before its prompted frame), every frame from the group's start.
    """
    if not prompts:
        raise ValueError("no objects to prompt")
    if state is None:
        state = predictor.init_state(video)
    for gi, (start, objs) in enumerate(object_groups(prompts, separate)):
        if gi > 0:
            predictor.reset_state(state)
        for k in objs:
            t, m = prompts[k]
            _prompt_object(predictor, state, t, k, m, prompt)
        first = {k: prompts[k][0] for k in objs}
        for frame_idx, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=start):
            arr = _to_numpy(logits[:, 0]).astype(np.float32, copy=True)
            ids = [int(i) for i in obj_ids]
            for i, k in enumerate(ids):
                if frame_idx < first.get(k, 0):
                    arr[i] = -np.inf
            yield gi, int(frame_idx), ids, arr


def label_map(ids: Sequence[int], logits: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(labels uint8, best logit)`` of one frame: the top object per pixel where its logit > 0."""
    order = np.argsort(ids, kind="stable")  # ties go to the smallest id
    lg = logits[order]
    best = lg.max(axis=0)
    lab = np.asarray(ids, np.int64)[order][lg.argmax(axis=0)]
    lab = np.where(best > 0, lab, 0).astype(np.uint8)
    return lab, best


class _Collector:
    """Label maps of the kept frames: per object group and over all groups."""

    def __init__(self, keep: Optional[set]) -> None:
        self.keep = keep
        self.groups: Dict[int, Dict[int, np.ndarray]] = {}
        self.best: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def add(self, gi: int, t: int, ids: List[int], logits: np.ndarray) -> Optional[np.ndarray]:
        if self.keep is not None and t not in self.keep:
            return None
        lab, best = label_map(ids, logits)
        self.groups.setdefault(gi, {})[t] = lab
        if t in self.best:
            old_lab, old_best = self.best[t]
            take = best > old_best
            lab, best = np.where(take, lab, old_lab), np.where(take, best, old_best)
        self.best[t] = (lab, best)
        return lab

    def labels(self) -> Dict[int, np.ndarray]:
        return {t: v[0] for t, v in sorted(self.best.items())}


def predict_vos(
    predictor: Any,
    video: Any,
    prompts: Prompts,
    prompt: str = "mask",
    keep_frames: Optional[Sequence[int]] = None,
    on_frame: Optional[Callable[[int, np.ndarray], None]] = None,
    separate: bool = False,
) -> Dict[int, np.ndarray]:
    """Prompt every object on its frame, propagate forward, return label maps.

    Args:
        predictor: a video predictor (upstream API).
        video: anything ``predictor.init_state`` accepts (a FrameSource, folder, array, ...).
        prompts: ``{obj_id: (frame_idx, gt_mask (H, W) bool)}``.
        prompt: one of :data:`PROMPTS`.
        keep_frames: frame indices whose label maps are returned (default: all).
        on_frame: called as ``on_frame(frame_idx, label_map)`` for every kept frame of each group.
        separate: objects first seen on different frames are separate videos (own_video).

    Returns:
        ``{frame_idx: (H, W) uint8 label map}`` over all objects; objects are 0 before their
        prompted frame.
    """
    col = _Collector(None if keep_frames is None else {int(k) for k in keep_frames})
    for gi, t, ids, logits in track_objects(predictor, video, prompts, prompt, separate):
        lab = col.add(gi, t, ids, logits)
        if on_frame is not None and lab is not None:
            on_frame(t, lab)
    return col.labels()


@dataclass
class VOSRun:
    """Result of :func:`run_vos`: the J&F summary plus timing.

    ``fps`` is **end to end**: frames of the videos divided by the wall time of opening each
    video, prompting (and simulating clicks) and propagating every object, and painting the
    label maps. Upstream's paper-style FPS (propagation only, one object, after a warm-up) is
    measured by ``python -m benchmarks video-speed``."""

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
    lifetime: str = "own_video",
    out_dir: Optional[Path] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> VOSRun:
    """Run the semi-supervised protocol on ``sequences`` and score it.

    Args:
        predictor: video predictor (see :func:`vos_predictor`).
        sequences: :class:`VOSSequence` items with frames and GT label maps.
        prompt: one of :data:`PROMPTS`.
        lifetime: one of :data:`LIFETIMES` (see the module docstring).
        out_dir: if given, predicted palette PNGs are written to ``out_dir/<seq>/<name>.png``
            for the annotated frames (DAVIS layout, all objects in one label map).
        progress: called with the sequence name as each one starts.

    Returns:
        :class:`VOSRun`; ``summary`` is :func:`~.sequence.summarize`'s dict plus
        ``"lifetime"`` and ``"unscored_objects"`` (objects whose own video has no frame left
        to score once its first and last frames are skipped).
    """
    if lifetime not in LIFETIMES:
        raise ValueError(f"lifetime must be one of {LIFETIMES}, got {lifetime!r}")
    scores: List[SequenceScores] = []
    unscored: List[str] = []
    n_frames, seconds = 0, 0.0
    for seq in sequences:
        if seq.frames is None:
            raise ValueError(f"sequence {seq.name} has no frames to run a model on")
        if progress is not None:
            progress(seq.name)
        prompts = first_appearances(seq, lifetime)
        if not prompts:
            raise ValueError(f"sequence {seq.name}: no object to prompt in its annotations")
        separate = lifetime == "own_video"
        col = _Collector(set(int(t) for t in seq.annotated))
        t0 = time.perf_counter()
        for gi, t, ids, logits in track_objects(predictor, seq.frames, prompts, prompt, separate):
            col.add(gi, t, ids, logits)
        seconds += time.perf_counter() - t0
        n_frames += seq.frames.num_frames or 0
        h, w = np.asarray(seq.masks[0]).shape
        empty = np.zeros((h, w), np.uint8)
        labels = col.labels()
        pred_list = [labels.get(t, empty) for t in seq.annotated]
        names = seq.mask_names or [f"{t:05d}" for t in seq.annotated]
        if out_dir is not None:
            for name, lab in zip(names, pred_list):
                write_index_png(Path(out_dir) / seq.name / f"{name}.png", lab)
        if separate:
            groups = object_groups(prompts, True)
            sc, missing = score_own_videos(seq, groups, col.groups, names)
            unscored += missing
        else:
            sc = evaluate_sequence(seq.masks, pred_list, name=seq.name, frame_names=names, lifetime=lifetime)
        scores.append(sc)
    summary = summarize(scores)
    summary["lifetime"] = lifetime
    summary["unscored_objects"] = unscored
    return VOSRun(summary, scores, n_frames, seconds)


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
