"""Interactive protocols: click-based image segmentation (mIoU@k, NoC) and the SAM 2 paper's
offline / online interactive video protocols.

**Image** (RITM / SAM style). Per instance, clicks come from :mod:`.clicks`. The first click is
predicted with ``multimask_output=True`` and the mask with the highest predicted IoU is kept
(SAM's ambiguity rule); later clicks use ``multimask_output=False`` with the previous low-res
logits as ``mask_input``. mIoU@k is the mean over instances of the IoU after k clicks (every
instance weighs the same); NoC@t as RITM (capped at ``max_clicks``); NoF@t counts instances
that never reach t. Both-empty IoU = 1 cannot happen here (GT instances are non-empty).

**Video** (SAM 2 paper, §6.1 / appendix). Up to ``clicks_per_frame`` (3) clicks per interacted
frame and object, at most ``max_frames`` (8) interacted frames, starting on the first frame.

- offline: each pass propagates all prompts through the whole video; the next frame to
  interact with is the non-interacted frame with the lowest mean J over objects; J&F is
  recorded after every pass (curve versus number of interacted frames).
- online: a single forward pass that pauses on the first frame whose J (of some object) falls
  below ``pause_iou`` (0.75), adds clicks there and resumes from it, until ``max_frames``
  frames were interacted with. One J&F for the finished pass.

Video scores use every frame (``skip_first_last=False``) and the DAVIS object rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .clicks import Clicker, noc, simulate_interaction
from .image_readers import ImageSample
from .readers import VOSSequence
from .sequence import evaluate_sequence, summarize
from .vos_protocol import _to_numpy

__all__ = ["image_predict_fn", "run_interactive_image", "run_interactive_video", "InteractiveImageResult"]


def image_predict_fn(predictor: Any) -> Any:
    """The predict callback for :func:`.clicks.simulate_interaction` with an image predictor
    whose image is already set (SAM's multimask-first rule, then previous logits as input)."""

    def predict(points: np.ndarray, labels: np.ndarray, state: Optional[np.ndarray]):
        if state is None:
            masks, ious, low = predictor.predict(point_coords=points, point_labels=labels, multimask_output=True)
            best = int(np.argmax(ious))
        else:
            masks, ious, low = predictor.predict(
                point_coords=points, point_labels=labels, mask_input=state, multimask_output=False
            )
            best = 0
        return np.asarray(masks[best]) > 0, np.asarray(low[best])[None]

    return predict


@dataclass
class InteractiveImageResult:
    """Per-instance IoU curves and their summary."""

    ious: Dict[str, List[float]] = field(default_factory=dict)  # "<image>_<id>" -> IoU after k clicks
    max_clicks: int = 20

    def summary(self, thresholds: Sequence[float] = (0.85, 0.9)) -> Dict[str, Any]:
        if not self.ious:
            raise ValueError("no instance was evaluated")
        curves = np.array(list(self.ious.values()), dtype=np.float64)  # (N, k)
        out: Dict[str, Any] = {
            "n_instances": int(curves.shape[0]),
            "mIoU_curve": [float(v) for v in curves.mean(axis=0)],
        }
        for k in (1, 3, 5):
            if curves.shape[1] >= k:
                out[f"mIoU@{k}"] = float(curves[:, k - 1].mean())
        for t in thresholds:
            nocs = [noc(c, t, self.max_clicks) for c in curves]
            tag = f"{int(round(t * 100))}"
            out[f"NoC@{tag}"] = float(np.mean(nocs))
            out[f"NoF@{tag}"] = int(sum(1 for c in curves if not (np.asarray(c) >= t).any()))
        return out


def run_interactive_image(
    predictor: Any,
    samples: Sequence[ImageSample],
    max_clicks: int = 20,
    max_instances: Optional[int] = None,
    progress: Optional[Any] = None,
) -> InteractiveImageResult:
    """Click-simulate every instance of every image (``set_image`` once per image)."""
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    res = InteractiveImageResult(max_clicks=max_clicks)
    done = 0
    for sample in samples:
        if progress is not None:
            progress(sample.name)
        predictor.set_image(sample.image)
        fn = image_predict_fn(predictor)
        for obj_id, gt in zip(sample.ids, sample.masks):
            if max_instances is not None and done >= max_instances:
                return res
            ious, _ = simulate_interaction(fn, gt, max_clicks=max_clicks)
            res.ious[f"{sample.name}_{obj_id}"] = ious
            done += 1
    return res


def _objects(seq: VOSSequence) -> Dict[int, int]:
    lab = np.asarray(seq.masks[0])
    lab = np.where(lab == 255, 0, lab)
    return {k: k for k in range(1, int(lab.max()) + 1)}


def _frame_gt(seq: VOSSequence, i: int) -> np.ndarray:
    lab = np.asarray(seq.masks[i])
    return np.where(lab == 255, 0, lab)


def _click_frame(predictor: Any, state: Any, seq: VOSSequence, i: int, objs: Sequence[int],
                 current: Optional[np.ndarray], clickers: Dict, clicks_per_frame: int) -> None:
    """Add up to ``clicks_per_frame`` corrective clicks for each object on annotated frame i."""
    t = seq.annotated[i]
    gt = _frame_gt(seq, i)
    for k in objs:
        g = gt == k
        key = (t, k)
        clicker = clickers.setdefault(key, Clicker(g))
        pred = None if current is None else current == k
        for _ in range(clicks_per_frame):
            if not g.any() and (pred is None or not pred.any()):
                break  # nothing to fix: the object is absent and not predicted
            clicker.make_next_click(pred)
            _, ids, logits = predictor.add_new_points_or_box(
                state, frame_idx=t, obj_id=k, points=clicker.points(), labels=clicker.labels(),
                clear_old_points=True,
            )
            pred = _to_numpy(logits[list(ids).index(k), 0]) > 0


def _propagate(predictor: Any, state: Any, h: int, w: int, start: Optional[int] = None):
    kwargs = {} if start is None else {"start_frame_idx": start}
    for frame_idx, obj_ids, logits in predictor.propagate_in_video(state, **kwargs):
        masks = _to_numpy(logits[:, 0]) > 0
        lab = np.zeros((h, w), np.uint8)
        for i in sorted(range(len(obj_ids)), key=lambda j: obj_ids[j], reverse=True):
            lab[masks[i]] = obj_ids[i]
        yield int(frame_idx), lab


def _score(seq: VOSSequence, preds: Dict[int, np.ndarray]) -> Any:
    h, w = np.asarray(seq.masks[0]).shape
    pl = [preds.get(t, np.zeros((h, w), np.uint8)) for t in seq.annotated]
    return evaluate_sequence(seq.masks, pl, name=seq.name, skip_first_last=False)


def run_interactive_video(
    predictor: Any,
    sequences: Sequence[VOSSequence],
    mode: str = "offline",
    max_frames: int = 8,
    clicks_per_frame: int = 3,
    pause_iou: float = 0.75,
) -> Dict[str, Any]:
    """The SAM 2 interactive video protocols (see the module docstring).

    Returns:
        ``{"mode", "curve": [J&F after 1..n interacted frames] (offline; online: one value),
        "J&F-Mean", "per_sequence": {seq: {"interacted_frames": [...], "J&F": [...]}}}``
        where the curve averages over sequences (a sequence that stops early keeps its last
        value).
    """
    if mode not in ("offline", "online"):
        raise ValueError(f"mode must be 'offline' or 'online', got {mode!r}")
    if max_frames < 1 or clicks_per_frame < 1:
        raise ValueError("max_frames and clicks_per_frame must be >= 1")
    per_seq: Dict[str, Any] = {}
    for seq in sequences:
        if seq.frames is None:
            raise ValueError(f"sequence {seq.name} has no frames")
        objs = list(_objects(seq))
        h, w = np.asarray(seq.masks[0]).shape
        state = predictor.init_state(seq.frames)
        clickers: Dict = {}
        pos = {t: i for i, t in enumerate(seq.annotated)}
        interacted: List[int] = []
        curve: List[float] = []
        if mode == "offline":
            i = 0
            preds: Optional[Dict[int, np.ndarray]] = None
            while True:
                current = None if preds is None else preds.get(seq.annotated[i])
                _click_frame(predictor, state, seq, i, objs, current, clickers, clicks_per_frame)
                interacted.append(seq.annotated[i])
                preds = dict(_propagate(predictor, state, h, w, start=0))
                sc = _score(seq, preds)
                curve.append(summarize([sc])["J&F-Mean"])
                if len(interacted) >= max_frames:
                    break
                j_mean = np.mean([sc.J[k] for k in sc.object_ids], axis=0)  # per annotated frame
                cand = [n for n in range(len(seq.annotated)) if seq.annotated[n] not in interacted]
                if not cand:
                    break
                i = min(cand, key=lambda n: (j_mean[n], n))
        else:
            preds = {}
            _click_frame(predictor, state, seq, 0, objs, None, clickers, clicks_per_frame)
            interacted.append(seq.annotated[0])
            start = seq.annotated[0]
            while True:
                paused = None
                for t, lab in _propagate(predictor, state, h, w, start=start):
                    preds[t] = lab
                    if t in pos and t not in interacted and len(interacted) < max_frames:
                        gt = _frame_gt(seq, pos[t])
                        bad = [k for k in objs if _iou(lab == k, gt == k) < pause_iou]
                        if bad:
                            paused = t
                            break
                if paused is None:
                    break
                _click_frame(predictor, state, seq, pos[paused], objs, preds[paused], clickers, clicks_per_frame)
                interacted.append(paused)
                start = paused
            curve.append(summarize([_score(seq, preds)])["J&F-Mean"])
        per_seq[seq.name] = {"interacted_frames": interacted, "J&F": curve}
    n = max(len(v["J&F"]) for v in per_seq.values())
    padded = np.array([v["J&F"] + [v["J&F"][-1]] * (n - len(v["J&F"])) for v in per_seq.values()])
    mean_curve = [float(x) for x in padded.mean(axis=0)]
    return {"mode": mode, "curve": mean_curve, "J&F-Mean": mean_curve[-1], "per_sequence": per_seq,
            "max_frames": max_frames, "clicks_per_frame": clicks_per_frame}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u
