"""Score prediction folders against DAVIS-layout ground truth (the ``evaluate`` protocol).

GT: ``<gt_root>/Annotations/480p/<seq>/*.png`` (or ``<gt_root>/Annotations/<seq>`` or
``<gt_root>/<seq>``); predictions: ``<pred_root>/<seq>/<same names>.png``, palette or greyscale
index PNGs. Sequences are scored in parallel processes; the numbers do not depend on how many.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .readers import LazyMasks, find_annotation_root, list_sequences, _mask_files
from .sequence import SequenceScores, evaluate_sequence, summarize

__all__ = ["evaluate_folders", "evaluate_sav_folders", "score_prediction_sequence"]

PathLike = Union[str, Path]


def _binary_gt(a: np.ndarray) -> np.ndarray:
    # DAVIS-2016 GT is 'L' 0/255 (some copies are already 0/1)
    return (a > 127).astype(np.uint8) if a.size and a.max() > 1 else (a > 0).astype(np.uint8)


def _binary_pred(a: np.ndarray) -> np.ndarray:
    return (a > 0).astype(np.uint8)  # any object id counts as the one object


def score_prediction_sequence(
    gt_dir: PathLike,
    pred_dir: PathLike,
    name: str,
    binary_gt: bool = False,
    **options: Any,
) -> SequenceScores:
    """Score the PNGs of one predicted sequence folder against one GT folder.

    ``binary_gt`` converts DAVIS-2016 'L' 0/255 masks to 0/1 (and any non-zero prediction to 1).
    Other keyword options go to :func:`evaluate_sequence`.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    gt_files = _mask_files(gt_dir)
    if not pred_dir.is_dir():
        raise ValueError(f"prediction folder {pred_dir} for sequence {name} does not exist")
    pred_files = [pred_dir / f.name for f in gt_files]
    missing = [p.name for p in pred_files if not p.is_file()]
    if missing:
        n_pred = len([p for p in pred_dir.iterdir() if p.suffix.lower() == ".png"])
        raise ValueError(
            f"sequence {name}: {len(missing)} of {len(gt_files)} GT frames have no prediction in "
            f"{pred_dir} (it holds {n_pred} PNGs), e.g. {missing[:3]}"
        )
    gt = LazyMasks(gt_files, _binary_gt if binary_gt else None, what=f"GT mask of {name}")
    pred = LazyMasks(pred_files, _binary_pred if binary_gt else None, what=f"predicted mask of {name}")
    return evaluate_sequence(gt, pred, name=name, frame_names=gt.names, **options)


def _job(args: tuple) -> SequenceScores:
    gt_dir, pred_dir, name, binary_gt, options = args
    return score_prediction_sequence(gt_dir, pred_dir, name, binary_gt, **options)


def _default_workers(n_jobs: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n_jobs))


def evaluate_folders(
    gt_root: PathLike,
    pred_root: PathLike,
    sequences: Optional[Sequence[str]] = None,
    *,
    workers: Optional[int] = None,
    binary_gt: bool = False,
    skip_first_last: bool = True,
    lifetime: str = "davis",
    void_label: Optional[int] = 255,
    void_mode: str = "background",
    uint8_bins: bool = True,
    per_frame: bool = False,
    progress: bool = False,
) -> Dict[str, Any]:
    """J&F of a folder of predictions against DAVIS-layout GT.

    Args:
        gt_root: dataset root (``Annotations/480p/<seq>``) or a folder of sequence folders.
        pred_root: ``<pred_root>/<seq>/*.png``.
        sequences: sequence names (default: ``ImageSets/2017/val.txt`` or ``2016/val.txt`` if
            present, else every GT sequence folder; scored in sorted order).
        workers: processes (default: one per CPU, at most one per sequence; 1 = in-process).
        binary_gt: DAVIS-2016 masks ('L' 0/255): treat them as one object.
        skip_first_last, lifetime, void_label, void_mode: see :func:`evaluate_sequence`.
        uint8_bins: reproduce the reference's uint8 Decay bins (see :func:`db_statistics`).
        per_frame: also return per-frame J and F.
        progress: show a progress bar (tqdm, if installed) on stderr.

    Returns:
        The :func:`summarize` dict (``J&F-Mean``, ``J-Mean``, ..., ``per_object``,
        ``per_sequence``) plus ``"sequences"`` and ``"seconds"``.

    Raises:
        ValueError: missing folders or frames, size or count mismatches, non-index PNGs, more
            predicted objects than GT. The message names the sequence and frame.
    """
    t0 = time.perf_counter()
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    ann_root = find_annotation_root(gt_root)
    if not pred_root.is_dir():
        raise ValueError(f"prediction root {pred_root} does not exist or is not a directory")
    if sequences is None:
        lists = [gt_root / "ImageSets" / y / "val.txt" for y in ("2017", "2016")]
        sequences = list_sequences(ann_root, next((p for p in lists if p.is_file()), None))
        sequences = sorted(sequences)
    sequences = list(sequences)
    if not sequences:
        raise ValueError(f"no sequences to evaluate under {ann_root}")
    missing_gt = [s for s in sequences if not (ann_root / s).is_dir()]
    if missing_gt:
        raise ValueError(f"sequences not found in the GT ({ann_root}): {missing_gt}")
    missing_pred = [s for s in sequences if not (pred_root / s).is_dir()]
    if missing_pred:
        raise ValueError(f"no prediction folder in {pred_root} for sequences: {missing_pred}")
    options = dict(
        skip_first_last=skip_first_last, lifetime=lifetime, void_label=void_label, void_mode=void_mode
    )
    jobs = [(ann_root / s, pred_root / s, s, binary_gt, options) for s in sequences]
    n_workers = _default_workers(len(jobs)) if workers is None else max(1, int(workers))
    bar = _progress(len(jobs)) if progress else None
    results: List[SequenceScores] = []
    if n_workers == 1 or len(jobs) == 1:
        for job in jobs:
            results.append(_job(job))
            if bar is not None:
                bar.update(1)
    else:
        from concurrent.futures import ProcessPoolExecutor  # only when running in parallel

        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for res in pool.map(_job, jobs):  # map keeps the sequence order
                results.append(res)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    out = summarize(results, uint8_bins=uint8_bins, per_frame=per_frame)
    out["sequences"] = sequences
    out["seconds"] = time.perf_counter() - t0
    return out


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="evaluate", unit="seq", leave=False)


def _sav_job(args: tuple) -> List[SequenceScores]:
    gt_vid, pred_vid, video, skip = args
    out = []
    obj_dirs = sorted((d for d in gt_vid.iterdir() if d.is_dir()), key=lambda d: (len(d.name), d.name))
    if not obj_dirs:
        raise ValueError(f"SA-V video folder {gt_vid} holds no per-object folders")
    for d in obj_dirs:
        gt_files = _mask_files(d)
        pred_files = [pred_vid / d.name / f.name for f in gt_files]
        missing = [p.name for p in pred_files if not p.is_file()]
        if missing:
            raise ValueError(f"{video}/{d.name}: no prediction for {len(missing)} annotated frames, e.g. {missing[:3]}")
        gt = LazyMasks(gt_files, _binary_pred, what=f"GT mask of {video}/{d.name}")
        pred = LazyMasks(pred_files, _binary_pred, what=f"predicted mask of {video}/{d.name}")
        sc = evaluate_sequence(gt, pred, name=f"{video}_{d.name}", frame_names=gt.names, skip_first_last=skip,
                               lifetime="first_appearance", void_label=None)
        # one binary object per folder: report it under the folder's id
        sc.name = video
        if sc.object_ids:
            sc.J = {int(d.name): sc.J[1]}
            sc.F = {int(d.name): sc.F[1]}
            sc.frames = {int(d.name): sc.frames[1]}
            sc.object_ids = [int(d.name)]
        out.append(sc)
    return out


def evaluate_sav_folders(
    gt_root: PathLike,
    pred_root: PathLike,
    videos: Optional[Sequence[str]] = None,
    *,
    workers: Optional[int] = None,
    skip_first_last: bool = True,
) -> Dict[str, Any]:
    """SA-V layout (as ``sav_evaluator.py``): ``<root>/<video>/<obj:03d>/<frame>.png`` binary
    masks, possibly overlapping. Each object is scored on its own annotated frames (its first
    and last skipped) from the first frame where it appears in GT or prediction; an object
    never present in its GT frames is not reported. Per-object keys are
    ``"<video>_<obj id>"``; Recall/Decay are computed as for DAVIS."""
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    for p in (gt_root, pred_root):
        if not p.is_dir():
            raise ValueError(f"folder {p} does not exist")
    if videos is None:
        videos = sorted(d.name for d in gt_root.iterdir() if d.is_dir())
    missing = [v for v in videos if not (pred_root / v).is_dir()]
    if missing:
        raise ValueError(f"no prediction folder in {pred_root} for videos: {missing}")
    jobs = [(gt_root / v, pred_root / v, v, skip_first_last) for v in videos]
    n_workers = _default_workers(len(jobs)) if workers is None else max(1, int(workers))
    if n_workers == 1 or len(jobs) == 1:
        nested = [_sav_job(j) for j in jobs]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            nested = list(pool.map(_sav_job, jobs))
    merged: List[SequenceScores] = []
    for v, scores in zip(videos, nested):
        seq = SequenceScores(name=v, object_ids=[], frame_names=scores[0].frame_names if scores else [])
        for sc in scores:
            for k in sc.object_ids:
                seq.object_ids.append(k)
                seq.J[k], seq.F[k], seq.frames[k] = sc.J[k], sc.F[k], sc.frames[k]
        merged.append(seq)
    out = summarize(merged)
    out["sequences"] = list(videos)
    return out
