"""Per-sequence J&F scoring (DAVIS semi-supervised rules, or the SA-V / YouTube-VOS lifetime rule)
and the global summary (means over objects) in the benchmark JSON layout.

Object rules, selected by ``lifetime``:

- ``"davis"`` (davis2017-evaluation, semi-supervised): objects are ids ``1..N`` with ``N`` the
  largest id of the first GT frame (void removed); every object is scored on every scored frame,
  present or not (both empty counts J = F = 1); an id above ``N`` in a prediction is an error,
  in a later GT frame it is not an object.
- ``"first_appearance"`` (vos-benchmark and SA-V's ``sav_evaluator``): the objects are the ids
  seen in the scored GT frames; each is scored from the first scored frame in which it appears
  in the GT *or* the prediction; ids seen only in predictions are ignored. Use it for datasets
  whose objects enter late (YouTube-VOS, MOSE, LVOS, SA-V). Both tools treat a GT value of 255
  as an ordinary id: pass ``void_label=None`` to replicate them exactly.

Frames: with ``skip_first_last`` (the semi-supervised default) the first and last GT frames are
not scored. Void: GT pixels equal to ``void_label`` are background for ``void_mode="background"``
(the semi-supervised convention: a prediction there is a false positive) or excluded from both
masks for ``void_mode="ignore"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .jf import db_statistics, f_radius, score_labels

__all__ = ["SequenceScores", "evaluate_sequence", "summarize", "STAT_KEYS"]

STAT_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
LIFETIMES = ("davis", "first_appearance")


@dataclass
class SequenceScores:
    """Per-frame J and F of every scored object of one sequence.

    Attributes:
        name: sequence name (per-object keys are ``f"{name}_{obj_id}"``).
        object_ids: scored objects, in id order.
        frame_names: names of all GT frames of the sequence (scored or not).
        frames: ``{obj_id: [index into frame_names, ...]}`` scored frames per object.
        J, F: ``{obj_id: float64 array}`` aligned with ``frames``.
        radius: F tolerance in pixels.
    """

    name: str
    object_ids: List[int]
    frame_names: List[str]
    frames: Dict[int, List[int]] = field(default_factory=dict)
    J: Dict[int, np.ndarray] = field(default_factory=dict)
    F: Dict[int, np.ndarray] = field(default_factory=dict)
    radius: int = 0
    dropped: List[int] = field(default_factory=list)
    """Objects that exist (a folder, an id) but have no scored GT frame: not in the means."""

    def key(self, obj_id: int) -> str:
        return f"{self.name}_{obj_id}"


def _label_map(frame: Any, what: str) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        raise ValueError(
            f"{what} is a colour image of shape {a.shape}; expected an (H, W) label map "
            "(save masks as palette 'P' or greyscale 'L' PNGs holding object ids)"
        )
    if a.ndim != 2:
        raise ValueError(f"{what} should be an (H, W) label map, got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.mod(a, 1) == 0):
            raise ValueError(f"{what} holds non-integer values (dtype {a.dtype}); expected object ids")
        a = a.astype(np.int64)
    return a


def _ids(a: np.ndarray) -> List[int]:
    if a.dtype in (np.uint8, np.uint16) and a.size:
        counts = np.bincount(a.ravel())
        return [int(i) for i in np.flatnonzero(counts) if i != 0]
    u = np.unique(a)
    return [int(i) for i in u if i != 0]


def evaluate_sequence(
    gt: Sequence[Any],
    pred: Sequence[Any],
    name: str = "sequence",
    frame_names: Optional[Sequence[str]] = None,
    *,
    skip_first_last: bool = True,
    lifetime: str = "davis",
    void_label: Optional[int] = 255,
    void_mode: str = "background",
    bound_th: float = 0.008,
) -> SequenceScores:
    """Score one sequence.

    Args:
        gt: the GT label maps, one ``(H, W)`` integer array per annotated frame (a list, a
            ``(T, H, W)`` array or any lazy sequence with ``len`` and indexing).
        pred: predicted label maps for the same frames, same sizes.
        name: sequence name.
        frame_names: names of the frames (default ``"00000"``, ...).
        skip_first_last: do not score the first and last frame (semi-supervised DAVIS).
        lifetime: ``"davis"`` or ``"first_appearance"`` (see the module docstring).
        void_label: GT value meaning "void" (DAVIS: 255), or ``None``.
        void_mode: ``"background"`` (semi-supervised) or ``"ignore"``.
        bound_th: F tolerance (fraction of the diagonal, or pixels if >= 1).

    Returns:
        :class:`SequenceScores`.

    Raises:
        ValueError: frame counts differ, sizes differ, colour or non-integer masks, a predicted
            id above the GT object count (``"davis"``), no object in the first GT frame.
    """
    names = check_sequence(gt, pred, name, frame_names, lifetime=lifetime, void_mode=void_mode)
    options: Dict[str, Any] = dict(skip_first_last=skip_first_last, lifetime=lifetime,
                                   void_label=void_label, void_mode=void_mode, bound_th=bound_th)
    part = score_part(gt, pred, name, names, 0, len(names), **options)
    return merge_parts(name, names, [part], lifetime)


def check_sequence(
    gt: Sequence[Any], pred: Sequence[Any], name: str, frame_names: Optional[Sequence[str]],
    lifetime: str = "davis", void_mode: str = "background",
) -> List[str]:
    """Validate the options and frame counts of one sequence; return its frame names."""
    if lifetime not in LIFETIMES:
        raise ValueError(f"lifetime must be one of {LIFETIMES}, got {lifetime!r}")
    if void_mode not in ("background", "ignore"):
        raise ValueError(f"void_mode must be 'background' or 'ignore', got {void_mode!r}")
    n = len(gt)
    if len(pred) != n:
        raise ValueError(f"sequence {name}: {n} GT frames but {len(pred)} predicted frames")
    if n == 0:
        raise ValueError(f"sequence {name} has no GT frames")
    names = [f"{i:05d}" for i in range(n)] if frame_names is None else [str(s) for s in frame_names]
    if len(names) != n:
        raise ValueError(f"sequence {name}: {len(names)} frame names for {n} frames")
    return names


def score_part(
    gt: Sequence[Any],
    pred: Sequence[Any],
    name: str,
    names: Sequence[str],
    start: int,
    stop: int,
    *,
    skip_first_last: bool = True,
    lifetime: str = "davis",
    void_label: Optional[int] = 255,
    void_mode: str = "background",
    bound_th: float = 0.008,
    on_frame: Optional[Callable[[], Any]] = None,
) -> Dict[str, Any]:
    """Score frames ``start .. stop - 1`` of one sequence (all of it, or a slice of it that a
    worker process takes: under the DAVIS rule frames are independent once the first GT frame
    is known; the first-appearance rule needs ``start == 0`` and ``stop == len(gt)``).

    Every frame of the slice is read from ``pred`` (scored or not: the reference rejects a
    predicted id above the object count in any frame), the scored ones also from ``gt``.
    ``on_frame`` (if given) is called as frames are done (a progress bar). Returns a plain dict for
    :func:`merge_parts` (cheap to pickle).
    """
    n = len(names)
    first, last = (1, n - 2) if skip_first_last else (0, n - 1)

    def load_gt(t: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        g = _label_map(gt[t], f"GT frame {names[t]} of {name}")
        void = None
        if void_label is not None and g.size and g.max() >= void_label:  # one pass when no void
            vm = g == void_label
            if vm.any():
                g = np.where(vm, 0, g)
                void = vm if void_mode == "ignore" else None
        return g, void

    g0, void0 = load_gt(0)
    height, width = g0.shape
    radius = f_radius(height, width, bound_th)
    objects: List[int] = []
    if lifetime == "davis":
        n_obj = int(g0.max()) if g0.size else 0
        if n_obj <= 0:
            raise ValueError(
                f"sequence {name}: the first GT frame ({names[0]}) holds no object; DAVIS counts "
                "objects from the first annotated frame (for DAVIS-2016 binary 0/255 masks, "
                "convert 255 to 1 first, e.g. --binary-gt)"
            )
        objects = list(range(1, n_obj + 1))
    frames: Dict[int, List[int]] = {k: [] for k in objects}
    js: Dict[int, List[float]] = {k: [] for k in objects}
    fs: Dict[int, List[float]] = {k: [] for k in objects}
    gt_seen: set = set()
    seen: set = set()
    max_pred = 0
    for t in range(start, stop):
        if on_frame is not None and t > start:
            on_frame()
        p = _label_map(pred[t], f"predicted frame {names[t]} of {name}")
        if p.shape != (height, width):
            raise ValueError(
                f"sequence {name}, frame {names[t]}: prediction has size {p.shape[0]}x{p.shape[1]} "
                f"but the GT has {height}x{width}"
            )
        if p.size and lifetime == "davis":
            max_pred = max(max_pred, int(p.max()))
            if p.dtype.kind == "i" and int(p.min()) < 0:
                raise ValueError(f"sequence {name}, frame {names[t]}: negative ids in the prediction")
        if not first <= t <= last:
            continue
        g, void = (g0, void0) if t == 0 else load_gt(t)
        if g.shape != (height, width):
            raise ValueError(f"sequence {name}: GT frame {names[t]} has size {g.shape}, frame 0 {g0.shape}")
        if lifetime != "davis":
            ids_g = _ids(g)
            gt_seen.update(ids_g)
            seen.update(ids_g)
            seen.update(_ids(p))
            objects = sorted(seen)
        if void is not None:
            p = np.where(void, 0, p)  # void_mode "ignore": out of both masks (g has 0 there)
        for k, (j, f) in zip(objects, score_labels(p, g, objects, radius)):
            js.setdefault(k, []).append(j)
            fs.setdefault(k, []).append(f)
            frames.setdefault(k, []).append(t)
    return {"objects": objects if lifetime == "davis" else sorted(gt_seen), "radius": radius,
            "frames": frames, "J": js, "F": fs, "max_pred": max_pred}


def merge_parts(name: str, names: Sequence[str], parts: Sequence[Dict[str, Any]], lifetime: str) -> SequenceScores:
    """Join the :func:`score_part` results of one sequence (in frame order) and apply the
    sequence-level checks."""
    objects = list(parts[0]["objects"])
    result = SequenceScores(name=name, object_ids=objects, frame_names=list(names), radius=parts[0]["radius"])
    max_pred = max(part["max_pred"] for part in parts)
    if lifetime == "davis" and max_pred > len(objects):
        raise ValueError(
            f"sequence {name}: the prediction holds object id {max_pred} but the first GT frame has "
            f"only {len(objects)} object(s); more predicted objects than GT"
        )
    for k in objects:
        result.frames[k] = [t for part in parts for t in part["frames"].get(k, [])]
        result.J[k] = np.asarray([v for part in parts for v in part["J"].get(k, [])], dtype=np.float64)
        result.F[k] = np.asarray([v for part in parts for v in part["F"].get(k, [])], dtype=np.float64)
    return result


def _clean(x: float) -> Optional[float]:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarize(
    sequences: Sequence[SequenceScores], uint8_bins: bool = True, per_frame: bool = False
) -> Dict[str, Any]:
    """Global and per-object statistics in the benchmark JSON layout (fractions in [0, 1]).

    Globals are means over all objects of all sequences (in the given sequence order, then
    object id, the order the reference sums in); ``J&F-Mean = (J-Mean + F-Mean) / 2``. NaN
    (only possible with the reference's Decay quirk or an object without scored frames)
    becomes ``None``.

    Returns:
        ``{"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay",
        "per_object": {"<seq>_<k>": {"J-Mean", "F-Mean"}}, "per_sequence": {...},
        "n_objects", "n_sequences", "n_scored_object_frames", "dropped_objects"}`` plus
        ``"per_frame"`` when asked. ``dropped_objects``: keys of objects that could not be scored
        (:attr:`SequenceScores.dropped`).
    """
    stats: Dict[str, List[float]] = {k: [] for k in ("JM", "JR", "JD", "FM", "FR", "FD")}
    per_object: Dict[str, Dict[str, Optional[float]]] = {}
    per_seq: Dict[str, Dict[str, Any]] = {}
    frames_out: Dict[str, Any] = {}
    n_frames = 0
    for seq in sequences:
        jm_seq, fm_seq = [], []
        for k in seq.object_ids:
            jm, jr, jd = db_statistics(seq.J[k], uint8_bins)
            fm, fr, fd = db_statistics(seq.F[k], uint8_bins)
            for key, val in zip(("JM", "JR", "JD", "FM", "FR", "FD"), (jm, jr, jd, fm, fr, fd)):
                stats[key].append(val)
            per_object[seq.key(k)] = {"J-Mean": _clean(jm), "F-Mean": _clean(fm)}
            jm_seq.append(jm)
            fm_seq.append(fm)
            n_frames += len(seq.J[k])
            if per_frame:
                frames_out[seq.key(k)] = {
                    "frames": [seq.frame_names[t] for t in seq.frames[k]],
                    "J": [float(x) for x in seq.J[k]],
                    "F": [float(x) for x in seq.F[k]],
                }
        jm_s = float(np.mean(jm_seq)) if jm_seq else float("nan")
        fm_s = float(np.mean(fm_seq)) if fm_seq else float("nan")
        per_seq[seq.name] = {
            "J&F-Mean": _clean((jm_s + fm_s) / 2),
            "J-Mean": _clean(jm_s),
            "F-Mean": _clean(fm_s),
            "n_objects": len(seq.object_ids),
            "n_frames": len(seq.frame_names),
        }

    def mean(key: str) -> float:
        return float(np.mean(stats[key])) if stats[key] else float("nan")

    out: Dict[str, Any] = {
        "J&F-Mean": _clean((mean("JM") + mean("FM")) / 2.0),
        "J-Mean": _clean(mean("JM")),
        "J-Recall": _clean(mean("JR")),
        "J-Decay": _clean(mean("JD")),
        "F-Mean": _clean(mean("FM")),
        "F-Recall": _clean(mean("FR")),
        "F-Decay": _clean(mean("FD")),
        "per_object": per_object,
        "per_sequence": per_seq,
        "n_objects": len(per_object),
        "n_sequences": len(sequences),
        "n_scored_object_frames": n_frames,
        "dropped_objects": [seq.key(k) for seq in sequences for k in seq.dropped],
    }
    if per_frame:
        out["per_frame"] = frames_out
    return out
