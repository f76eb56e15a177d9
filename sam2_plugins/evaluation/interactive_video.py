"""The SAM 2 paper's interactive video protocols (offline and online), appendix E.1.2.

Every object of every sequence is run **on its own** (the predictor is reset between objects)
with its own budget of ``max_frames`` (8) interacted frames and ``clicks_per_frame`` (3)
clicks per interacted frame. An object's video starts at the first annotated frame where it
appears (the paper makes a late object its own video, E.1.3); ``L`` below is that video's
length in frames.

- **First interacted frame** (the object's first frame, no prediction yet): one click at the
  object's centre (the GT pixel farthest from the mask boundary), then two clicks at the
  centres of the error region between the GT and the prediction those clicks gave.
- **Later interacted frames**: three error-centre clicks, starting from the prediction the
  tracker had on that frame. Clicks come from :mod:`.clicks` (RITM / SAM 2 rule).
- **Offline**: after each round the whole video is re-segmented from all prompts given so far
  (a forward pass from the object's first frame); the next frame to interact with is the
  annotated frame of lowest IoU with the GT among those not interacted with yet (ties: the
  earliest). The J&F after round N is the curve's point N.
- **Online**: one forward pass that pauses on the first annotated frame with IoU < ``pause_iou``
  (0.75), corrects it with three clicks and resumes from it, while fewer than N frames were
  interacted with. The curve's point N is the J&F of the finished pass with a budget of N
  frames. Runs with budgets 1..8 share their beginning: at each pause the pass is first
  finished without pausing (the result for the current budget), then the correction is added
  and tracking resumes from the paused frame, re-tracking the frames after it. Forward
  tracking reads only earlier frames and the conditioning frames, so this equals eight
  separate runs (``separate_online_runs=True`` does them one by one, for checking).

Corrections must be kept as conditioning frames, else the next propagation re-tracks the
corrected frame and overwrites it: the predictor must be built with
``add_all_frames_to_correct_as_cond=True`` (:func:`interactive_video_predictor` does it).

Scores: J and F (DAVIS definitions) of the object on every annotated frame of its video (no
frame skipped: the paper states no skipping for this protocol); the object's J&F is
``(mean J + mean F) / 2``. Curves are means over objects (a dataset); the headline
``J&F-Mean`` is the mean of the curve over N = 1..``max_frames``, as the paper reports. If an
object runs out of frames to correct (all perfect, or all interacted) its curve keeps its last
value.

Annotation time (paper, after EVA-VOS): 1 s to locate the object on a frame, 1.5 s per click,
and 30 s per 300 frames to examine the video (proportional to ``L``): offline
``(30 L / 300 + 1 + 1.5 c) N``, online ``30 L / 300 + (1 + 1.5 c) N``, with ``c`` clicks per
frame and ``N`` the frames actually interacted with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .clicks import Clicker
from .jf import f_radius, score_frame
from .readers import VOSSequence

__all__ = [
    "ObjectVideo",
    "object_videos",
    "run_interactive_video",
    "interactive_video_predictor",
    "annotation_seconds",
    "T_LOCATE",
    "T_CLICK",
    "T_EXAMINE_300",
]

T_LOCATE = 1.0  # s to visually locate the object on a frame
T_CLICK = 1.5  # s per click
T_EXAMINE_300 = 30.0  # s to examine (offline: per round) or follow (online: once) 300 frames
MODES = ("offline", "online")


def interactive_video_predictor(model: Any, **options: Any) -> Any:
    """A :class:`~sam2_plugins.SAM2VideoPredictor` set up for this protocol: corrections become
    conditioning frames; otherwise upstream's video-builder defaults (``apply_postprocessing=True``:
    masks from clicks are binarised before memory encoding, holes up to 8 px filled), unless
    overridden in ``options``."""
    from sam2_plugins import SAM2VideoPredictor

    opts: Dict[str, Any] = dict(add_all_frames_to_correct_as_cond=True, apply_postprocessing=True)
    opts.update(options)
    if not opts["add_all_frames_to_correct_as_cond"]:
        raise ValueError("the interactive protocol needs add_all_frames_to_correct_as_cond=True")
    return SAM2VideoPredictor(model, **opts)


def annotation_seconds(mode: str, n_frames: int, video_length: int, clicks_per_frame: int = 3) -> float:
    """Simulated annotation time of one object after ``n_frames`` interacted frames (paper E.1.2)."""
    exam = T_EXAMINE_300 * video_length / 300.0
    per_frame = T_LOCATE + T_CLICK * clicks_per_frame
    if mode == "offline":
        return (exam + per_frame) * n_frames
    if mode == "online":
        return exam + per_frame * n_frames
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


@dataclass
class ObjectVideo:
    """One object of one sequence, as its own video.

    Attributes:
        sequence: sequence name.
        obj_id: the object's id in the GT label maps.
        frames: video frame indices of the annotated frames from its first appearance on.
        masks: its GT mask on each of ``frames`` (``(H, W)`` bool).
        length: frames of its video (from its first appearance to the end of the sequence).
    """

    sequence: str
    obj_id: int
    frames: List[int]
    masks: List[np.ndarray]
    length: int

    @property
    def start(self) -> int:
        return self.frames[0]

    @property
    def key(self) -> str:
        return f"{self.sequence}_{self.obj_id}"


def object_videos(seq: VOSSequence, void_label: Optional[int] = 255) -> List[ObjectVideo]:
    """The objects of a sequence (ids seen in its annotations, void excluded), each from the
    first annotated frame where its mask is non-empty."""
    labels = []
    for i in range(len(seq.masks)):
        lab = np.asarray(seq.masks[i])
        if void_label is not None:
            lab = np.where(lab == void_label, 0, lab)
        labels.append(lab)
    ids = sorted({int(k) for lab in labels for k in np.unique(lab) if k != 0})
    n_video = seq.num_frames
    out = []
    for k in ids:
        first = next(i for i, lab in enumerate(labels) if (lab == k).any())
        idx = list(range(first, len(labels)))
        frames = [int(seq.annotated[i]) for i in idx]
        out.append(ObjectVideo(seq.name, k, frames, [labels[i] == k for i in idx], n_video - frames[0]))
    return out


def _to_mask(logits: Any, ids: Sequence[Any], obj_id: Any) -> np.ndarray:
    row = logits[list(ids).index(obj_id), 0]
    if hasattr(row, "detach"):
        row = row.detach().float().cpu().numpy()
    return np.asarray(row) > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u


class _ObjectSession:
    """One object's interaction with the predictor (clicks on frames, forward passes)."""

    def __init__(self, predictor: Any, state: Any, ov: ObjectVideo, clicks_per_frame: int) -> None:
        self.predictor, self.state, self.ov = predictor, state, ov
        self.clicks_per_frame = clicks_per_frame
        self.gt = dict(zip(ov.frames, ov.masks))
        self.clicks: Dict[int, int] = {}  # frame -> clicks made there

    def reset(self) -> None:
        self.predictor.reset_state(self.state)
        self.clicks = {}

    def click_frame(self, t: int, pred: Optional[np.ndarray]) -> np.ndarray:
        """Up to ``clicks_per_frame`` clicks on frame t, each on the error left by the previous
        answer (the first on the object's centre when ``pred`` is None); returns the last mask."""
        gt = self.gt[t]
        clicker = Clicker(gt)
        mask = np.zeros_like(gt) if pred is None else np.asarray(pred, bool)  # empty: the 1st click is the centre
        made = 0
        for _ in range(self.clicks_per_frame):
            if not (mask ^ gt).any():
                break  # nothing left to correct on this frame
            clicker.make_next_click(mask)
            _, ids, logits = self.predictor.add_new_points_or_box(
                self.state, frame_idx=t, obj_id=self.ov.obj_id, points=clicker.points(),
                labels=clicker.labels(), clear_old_points=True)
            mask = _to_mask(logits, ids, self.ov.obj_id)
            made += 1
        self.clicks[t] = made
        return mask

    def propagate(self, start: int) -> Iterator[Tuple[int, np.ndarray]]:
        for t, ids, logits in self.predictor.propagate_in_video(self.state, start_frame_idx=start):
            yield int(t), _to_mask(logits, ids, self.ov.obj_id)

    def score(self, preds: Dict[int, np.ndarray]) -> Tuple[float, float]:
        """(J, F) means of the object over its annotated frames (a missing frame is empty)."""
        h, w = self.ov.masks[0].shape
        radius = f_radius(h, w)
        js, fs = [], []
        for t, g in zip(self.ov.frames, self.ov.masks):
            p = preds.get(t)
            j, f = score_frame(np.zeros_like(g) if p is None else p, g, radius)
            js.append(j)
            fs.append(f)
        return float(np.mean(js)), float(np.mean(fs))


@dataclass
class _Curve:
    """J and F after each budget N = 1.., and the frames interacted with."""

    J: List[float] = field(default_factory=list)
    F: List[float] = field(default_factory=list)
    used: List[int] = field(default_factory=list)  # frames actually interacted with at budget N
    frames: List[int] = field(default_factory=list)

    def add(self, jf: Tuple[float, float], used: int) -> None:
        self.J.append(jf[0])
        self.F.append(jf[1])
        self.used.append(used)

    def pad(self, n: int) -> None:
        while len(self.J) < n:
            self.add((self.J[-1], self.F[-1]), self.used[-1])


def _offline(sess: _ObjectSession, max_frames: int) -> _Curve:
    ov = sess.ov
    sess.reset()
    curve = _Curve()
    sess.click_frame(ov.start, None)
    curve.frames.append(ov.start)
    while True:
        preds = dict(sess.propagate(ov.start))
        curve.add(sess.score(preds), len(curve.frames))
        if len(curve.frames) >= max_frames:
            break
        cand = [(_iou(preds.get(t, np.zeros_like(g)), g), t) for t, g in zip(ov.frames, ov.masks)
                if t not in curve.frames]
        if not cand or min(cand)[0] >= 1.0:
            break  # every frame interacted with, or nothing left to correct
        _, t = min(cand)
        sess.click_frame(t, preds.get(t))
        curve.frames.append(t)
    curve.pad(max_frames)
    return curve


def _online(sess: _ObjectSession, max_frames: int, pause_iou: float, every_budget: bool) -> _Curve:
    """One online run with a budget of ``max_frames``; with ``every_budget`` the results for
    the budgets 1..max_frames (see the module docstring), else only the last."""
    ov = sess.ov
    sess.reset()
    curve = _Curve()
    sess.click_frame(ov.start, None)
    curve.frames.append(ov.start)
    preds: Dict[int, np.ndarray] = {}
    start = ov.start
    while True:
        paused: Optional[int] = None
        for t, m in sess.propagate(start):
            preds[t] = m
            if (paused is None and len(curve.frames) < max_frames and t in sess.gt
                    and t not in curve.frames and _iou(m, sess.gt[t]) < pause_iou):
                paused = t
                if not every_budget:
                    break
        if paused is None or every_budget:
            curve.add(sess.score(preds), len(curve.frames))  # the run with this budget ends here
        if paused is None:
            break
        preds[paused] = sess.click_frame(paused, preds[paused])
        curve.frames.append(paused)
        start = paused
    if every_budget:
        curve.pad(max_frames)
    return curve


def _check_predictor(predictor: Any) -> None:
    if getattr(predictor, "add_all_frames_to_correct_as_cond", True) is False:
        raise ValueError(
            "the predictor stores corrections as non-conditioning outputs "
            "(add_all_frames_to_correct_as_cond=False): the next propagation would re-track and "
            "overwrite every corrected frame; build it with add_all_frames_to_correct_as_cond=True "
            "(sam2_plugins.evaluation.interactive_video.interactive_video_predictor)")


def run_interactive_video(
    predictor: Any,
    sequences: Sequence[VOSSequence],
    mode: str = "offline",
    max_frames: int = 8,
    clicks_per_frame: int = 3,
    pause_iou: float = 0.75,
    *,
    separate_online_runs: bool = False,
    progress: Optional[Any] = None,
) -> Dict[str, Any]:
    """Run one interactive protocol (see the module docstring) on a dataset's sequences.

    Args:
        predictor: a video predictor with upstream's API that keeps corrections as
            conditioning frames (:func:`interactive_video_predictor`).
        sequences: :class:`VOSSequence` items with frames and (dense) GT.
        mode: ``"offline"`` or ``"online"``.
        max_frames: the budget of interacted frames (curve over N = 1..max_frames).
        clicks_per_frame: clicks per interacted frame.
        pause_iou: online mode pauses on a frame with IoU below it.
        separate_online_runs: online only: one run per budget instead of shared runs.
        progress: called with ``"<sequence>_<object>"`` as each object starts.

    Returns:
        ``{"mode", "curve": [J&F at N = 1..max_frames], "J-curve", "F-curve",
        "J&F-Mean": mean of the curve (the headline), "J&F@N": last point, "seconds_curve":
        [mean simulated annotation seconds at N], "per_object": {key: {"curve",
        "interacted_frames", "clicks", "seconds"}}, "per_sequence": {seq: {"J&F-Mean",
        "n_objects"}}, "n_objects", settings}``. Means are over objects.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    for name, v in (("max_frames", max_frames), ("clicks_per_frame", clicks_per_frame)):
        if isinstance(v, bool) or int(v) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not 0.0 < float(pause_iou) <= 1.0:
        raise ValueError(f"pause_iou must be in (0, 1], got {pause_iou}")
    _check_predictor(predictor)
    per_object: Dict[str, Dict[str, Any]] = {}
    for seq in sequences:
        if seq.frames is None:
            raise ValueError(f"sequence {seq.name} has no frames to run a model on")
        objs = object_videos(seq)
        if not objs:
            raise ValueError(f"sequence {seq.name}: no object in its annotations")
        state = predictor.init_state(seq.frames)
        for ov in objs:
            if progress is not None:
                progress(ov.key)
            sess = _ObjectSession(predictor, state, ov, clicks_per_frame)
            if mode == "offline":
                curve = _offline(sess, max_frames)
            elif not separate_online_runs:
                curve = _online(sess, max_frames, pause_iou, every_budget=True)
            else:
                curve = _Curve()
                for n in range(1, max_frames + 1):
                    one = _online(sess, n, pause_iou, every_budget=False)
                    curve.add((one.J[-1], one.F[-1]), one.used[-1])
                    curve.frames = one.frames
            jf = [(j + f) / 2 for j, f in zip(curve.J, curve.F)]
            per_object[ov.key] = {
                "sequence": seq.name, "obj_id": ov.obj_id, "curve": jf, "J-curve": curve.J,
                "F-curve": curve.F, "interacted_frames": curve.frames,
                "clicks": [sess.clicks.get(t, 0) for t in curve.frames],
                "seconds": [annotation_seconds(mode, u, ov.length, clicks_per_frame) for u in curve.used],
                "video_length": ov.length,
            }
    return summarize_interactive(per_object, mode, max_frames, clicks_per_frame, pause_iou)


def summarize_interactive(per_object: Dict[str, Dict[str, Any]], mode: str, max_frames: int,
                          clicks_per_frame: int, pause_iou: float) -> Dict[str, Any]:
    """Means over objects of the per-object curves (see :func:`run_interactive_video`)."""
    if not per_object:
        raise ValueError("no object was evaluated")
    objs = list(per_object.values())

    def mean_curve(key: str) -> List[float]:
        return [float(v) for v in np.mean([o[key] for o in objs], axis=0)]

    curve = mean_curve("curve")
    per_seq: Dict[str, Dict[str, Any]] = {}
    for o in objs:
        per_seq.setdefault(o["sequence"], {"values": []})["values"].append(float(np.mean(o["curve"])))
    return {
        "mode": mode,
        "curve": curve,
        "J-curve": mean_curve("J-curve"),
        "F-curve": mean_curve("F-curve"),
        "J&F-Mean": float(np.mean(curve)),
        f"J&F@{max_frames}": curve[-1],
        "J&F@1": curve[0],
        "seconds_curve": mean_curve("seconds"),
        "per_object": per_object,
        "per_sequence": {s: {"J&F-Mean": float(np.mean(v["values"])), "n_objects": len(v["values"])}
                         for s, v in per_seq.items()},
        "n_objects": len(objs),
        "max_frames": max_frames,
        "clicks_per_frame": clicks_per_frame,
        "pause_iou": pause_iou if mode == "online" else None,
        "protocol": f"SAM 2 interactive {mode} (appendix E.1.2): objects run independently, "
                    f"{clicks_per_frame} clicks per frame, up to {max_frames} interacted frames, "
                    "corrections kept as conditioning frames; headline = mean of the J&F curve "
                    f"over N = 1..{max_frames}, mean over objects",
    }
