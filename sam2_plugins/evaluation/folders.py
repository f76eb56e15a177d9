"""Score prediction folders against DAVIS-layout ground truth (the ``evaluate`` protocol).

GT: ``<gt_root>/Annotations/480p/<seq>/*.png`` (or ``<gt_root>/Annotations/<seq>`` or
``<gt_root>/<seq>``); predictions: ``<pred_root>/<seq>/<same names>.png``, palette or greyscale
index PNGs.

Work is shared by ``workers`` processes (default: one per CPU). Under the DAVIS rule the frames
of a sequence are independent once its first GT frame is known, so the frames of all sequences
are cut into one contiguous share per worker, of equal pixel count, whatever the number and
length of the sequences; under the first-appearance rule whole sequences are shared out. On
Linux the workers are forked (no re-import, nothing pickled but the results) and the calling
process takes the first share itself. The numbers do not depend on the number of workers:
each frame is scored the same way and the results are joined in sequence and frame order.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .readers import LazyMasks, find_annotation_root, list_sequences, mask_files, read_index_png
from .sequence import SequenceScores, check_sequence, evaluate_sequence, merge_parts, score_part, summarize

__all__ = ["evaluate_folders", "evaluate_sav_folders", "score_prediction_sequence"]

PathLike = Union[str, Path]
# a piece of work: (sequence index, first frame, stop frame)
Piece = Tuple[int, int, int]


def _binary_gt(a: np.ndarray) -> np.ndarray:
    # DAVIS-2016 GT is 'L' 0/255 (some copies are already 0/1)
    return (a > 127).astype(np.uint8) if a.size and a.max() > 1 else (a > 0).astype(np.uint8)


def _binary_pred(a: np.ndarray) -> np.ndarray:
    return (a > 0).astype(np.uint8)  # any object id counts as the one object


def _pair_files(gt_dir: Path, pred_dir: Path, name: str) -> Tuple[List[Path], List[Path]]:
    """GT mask files of a sequence and the prediction files of the same names (checked)."""
    gt_files = mask_files(gt_dir)
    if not pred_dir.is_dir():
        raise ValueError(f"prediction folder {pred_dir} for sequence {name} does not exist")
    present = set(os.listdir(pred_dir))
    missing = [f.name for f in gt_files if f.name not in present]
    if missing:
        n_pred = len([p for p in present if p.lower().endswith(".png")])
        raise ValueError(
            f"sequence {name}: {len(missing)} of {len(gt_files)} GT frames have no prediction in "
            f"{pred_dir} (it holds {n_pred} PNGs), e.g. {missing[:3]}"
        )
    return gt_files, [pred_dir / f.name for f in gt_files]


def check_text_order(files: Sequence[Path], where: str) -> None:
    """Refuse frame names whose text order differs from their numeric / natural order.

    The official evaluators (davis2017-evaluation, SA-V's ``sav_evaluator.py``) sort frame files
    as text: for ``4.png, 12.png`` that is ``12, 4``, not the frames' order, which changes which
    frames are skipped as first / last and where an object first appears. Rather than follow
    that order (wrong) or differ from the official numbers (silently), such names are refused.
    """
    names = [f.name for f in files]
    text = sorted(names)
    if names != text:
        i = next(k for k, (a, b) in enumerate(zip(names, text)) if a != b)
        raise ValueError(
            f"{where}: frame names sort differently as text ({', '.join(text[max(i - 1, 0):i + 2])}, ...) and "
            f"as numbers ({', '.join(names[max(i - 1, 0):i + 2])}, ...); the official evaluators sort them as text. "
            "Rename the frames with zero-padded numbers (e.g. 00004.png) so both orders agree")


class _SavMasks(LazyMasks):
    """SA-V per-object masks: binary (at most two distinct values, as the official evaluator
    asserts), read as ``value > 0``; a third value is an error naming the file."""

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return _SavMasks(self.paths[i], None, self._what)
        a = read_index_png(self.paths[i], self._what)
        vals = np.flatnonzero(np.bincount(a.ravel())) if a.dtype in (np.uint8, np.uint16) else np.unique(a)
        if len(vals) > 2:
            raise ValueError(f"{self._what} {self.paths[i]} holds {len(vals)} values {vals[:5].tolist()}: the SA-V "
                             "layout has one binary mask per object and frame (0 and one other value)")
        return (a > 0).astype(np.uint8)


def _loaders(gt_files: List[Path], pred_files: List[Path], name: str, binary_gt: bool) -> Tuple[LazyMasks, LazyMasks]:
    gt = LazyMasks(gt_files, _binary_gt if binary_gt else None, what=f"GT mask of {name}")
    pred = LazyMasks(pred_files, _binary_pred if binary_gt else None, what=f"predicted mask of {name}")
    return gt, pred


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
    gt_files, pred_files = _pair_files(Path(gt_dir), Path(pred_dir), name)
    gt, pred = _loaders(gt_files, pred_files, name, binary_gt)
    return evaluate_sequence(gt, pred, name=name, frame_names=gt.names, **options)


# ------------------------------------------------------------------ sharing work between processes
def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _default_workers(n_jobs: int) -> int:
    return max(1, min(_cpu_count(), n_jobs))


def _png_pixels(path: Path) -> int:
    """Width x height from a PNG header (the cost of one frame), 1 if it can't be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
        if len(head) == 24 and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return max(int(w) * int(h), 1)
    except OSError:
        pass
    return 1


def _split_frames(lengths: Sequence[int], costs: Sequence[int], n: int) -> List[List[Piece]]:
    """Cut the frames of all sequences, in order, into ``n`` contiguous shares of about equal
    cost (``costs[i]`` per frame of sequence ``i``); a share may hold parts of several
    sequences, and a sequence may be split between shares."""
    total = sum(L * c for L, c in zip(lengths, costs))
    shares: List[List[Piece]] = [[] for _ in range(n)]
    done = 0.0  # cost handed out so far
    w = 0
    for i, (length, cost) in enumerate(zip(lengths, costs)):
        t = 0
        while t < length:
            if w < n - 1:
                room = total * (w + 1) / n - done  # what share w still takes
                k = min(length - t, max(int(round(room / cost)), 0))
            else:
                k = length - t
            if k > 0:
                shares[w].append((i, t, t + k))
                t += k
                done += k * cost
            if t < length:
                w += 1
    return [s for s in shares if s]


def _split_sequences(lengths: Sequence[int], costs: Sequence[int], n: int) -> List[List[Piece]]:
    """Whole sequences to ``n`` shares, longest first to the least loaded (each share then in
    sequence order)."""
    load = [0] * n
    shares: List[List[Piece]] = [[] for _ in range(n)]
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i] * costs[i]):
        w = load.index(min(load))
        shares[w].append((i, 0, lengths[i]))
        load[w] += lengths[i] * costs[i]
    return [sorted(s) for s in shares if s]


def _run_share(work: Callable[[Piece], Any], share: List[Piece]) -> List[Tuple[str, Any]]:
    """Run the pieces of a share in order: ``("ok", result)``, or ``("error", exception)`` for
    the first piece that failed (the later ones are not needed: that error comes first)."""
    out: List[Tuple[str, Any]] = []
    for piece in share:
        try:
            out.append(("ok", work(piece)))
        except Exception as e:  # noqa: BLE001 - handed to the caller, which re-raises it
            out.append(("error", e))
            break
    return out


def _can_fork() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _run_shares(work: Callable[[Piece], Any], shares: List[List[Piece]]) -> Dict[Piece, Tuple[str, Any]]:
    """Run every share, one process each; the calling process takes the first share.

    Returns ``{piece: ("ok", result) or ("error", exception)}`` (pieces after a failed one in
    the same share are absent)."""
    if len(shares) <= 1:
        results = [_run_share(work, s) for s in shares]
    elif _can_fork():
        results = _fork_map(work, shares)
    else:  # spawn platforms (macOS, Windows): the work object and pieces are pickled to a pool
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=len(shares)) as pool:
            results = list(pool.map(_run_share, [work] * len(shares), shares))
    out: Dict[Piece, Tuple[str, Any]] = {}
    for share, res in zip(shares, results):
        out.update(zip(share, res))
    return out


def _fork_map(work: Callable[[Piece], Any], shares: List[List[Piece]]) -> List[List[Tuple[str, Any]]]:
    pending: List[Tuple[int, int]] = []  # (pid, read end of its pipe), not yet collected
    try:
        for share in shares[1:]:
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: run its share, send the pickled results, leave at once
                status = 1
                try:
                    os.close(rfd)
                    try:
                        data = pickle.dumps(_run_share(work, share), protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception as e:  # an exception that does not pickle
                        data = pickle.dumps([("error", RuntimeError(f"{type(e).__name__}: {e}"))])
                    with os.fdopen(wfd, "wb") as f:
                        f.write(data)
                    status = 0
                finally:
                    os._exit(status)  # no atexit handlers, no flushing of the parent's buffers
            os.close(wfd)
            pending.append((pid, rfd))
        results = [_run_share(work, shares[0])]
        while pending:
            pid, rfd = pending[0]
            with os.fdopen(rfd, "rb") as f:  # read before waiting: a full pipe blocks the worker
                data = f.read()
            pending.pop(0)
            _, status = os.waitpid(pid, 0)
            if not data:
                raise RuntimeError(f"an evaluation worker process ended without a result (wait status {status})")
            results.append(pickle.loads(data))
        return results
    finally:
        for pid, rfd in pending:  # only after an exception here (Ctrl-C, ...): stop the others
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(rfd)
            os.waitpid(pid, 0)


# ------------------------------------------------------------------ the protocol
class _FolderWork:
    """Scores one piece (a frame range of one sequence); a class, not a closure, so that it
    pickles where workers are spawned rather than forked."""

    def __init__(self, sequences: List[str], files: List[Tuple[List[Path], List[Path]]], names: List[List[str]],
                 binary_gt: bool, options: Dict[str, Any]) -> None:
        self.sequences, self.files, self.names = sequences, files, names
        self.binary_gt, self.options = binary_gt, options
        self.tick: Optional[Callable[[], Any]] = None  # called after each frame (progress bar)

    def __call__(self, piece: Piece) -> Dict[str, Any]:
        i, start, stop = piece
        gt, pred = _loaders(*self.files[i], self.sequences[i], self.binary_gt)
        return score_part(gt, pred, self.sequences[i], self.names[i], start, stop, on_frame=self.tick, **self.options)

    def __getstate__(self) -> Dict[str, Any]:
        return dict(self.__dict__, tick=None)  # a progress bar stays in the calling process


class _SavWork:
    def __init__(self, gt_root: Path, pred_root: Path, videos: List[str], skip: bool) -> None:
        self.gt_root, self.pred_root, self.videos, self.skip = gt_root, pred_root, videos, skip

    def __call__(self, piece: Piece) -> List[SequenceScores]:
        v = self.videos[piece[0]]
        return _sav_video(self.gt_root / v, self.pred_root / v, v, self.skip)


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
        workers: processes (default: one per CPU; 1 = in this process). The frames are shared
            out (see the module docstring); the numbers do not depend on it.
        binary_gt: DAVIS-2016 masks ('L' 0/255): treat them as one object.
        skip_first_last, lifetime, void_label, void_mode: see :func:`evaluate_sequence`.
        uint8_bins: reproduce the reference's uint8 Decay bins (see :func:`db_statistics`).
        per_frame: also return per-frame J and F.
        progress: show a progress bar (tqdm, if installed) on stderr.

    Returns:
        The :func:`summarize` dict (``J&F-Mean``, ``J-Mean``, ..., ``per_object``,
        ``per_sequence``) plus ``"sequences"``, ``"seconds"`` and ``"workers"`` (processes used).

    Raises:
        ValueError: missing folders or frames, size or count mismatches, non-index PNGs, more
            predicted objects than GT. The message names the sequence and frame; with several
            errors, the first one in sequence and frame order.
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
    options = dict(skip_first_last=skip_first_last, lifetime=lifetime, void_label=void_label, void_mode=void_mode)

    files: List[Tuple[List[Path], List[Path]]] = []
    names: List[List[str]] = []
    for s in sequences:  # listing and checking the folders is cheap: done before any decoding
        gt_files, pred_files = _pair_files(ann_root / s, pred_root / s, s)
        check_text_order(gt_files, f"sequence {s}")
        names.append(check_sequence(gt_files, pred_files, s, [f.stem for f in gt_files], lifetime, void_mode))
        files.append((gt_files, pred_files))

    work = _FolderWork(sequences, files, names, binary_gt, options)
    lengths = [len(n) for n in names]
    n_workers = _cpu_count() if workers is None else max(1, int(workers))
    n_workers = max(1, min(n_workers, sum(lengths) // 4))  # a few frames each at least
    if n_workers > 1:
        costs = [_png_pixels(f[0][0]) for f in files]
        split = _split_frames if lifetime == "davis" else _split_sequences
        shares = split(lengths, costs, n_workers)
    else:
        shares = [[(i, 0, n) for i, n in enumerate(lengths)]]
    bar = _progress(sum(lengths)) if progress else None
    if bar is not None:  # the calling process ticks for its own share, scaled: shares are equal
        me = os.getpid()  # (forked workers inherit the callback: they must stay silent)
        work.tick = lambda: bar.update(min(len(shares), bar.total - bar.n)) if os.getpid() == me else None
    done = _run_shares(work, shares)
    if bar is not None:
        work.tick = None
        bar.update(bar.total - bar.n)
        bar.close()
    results: List[SequenceScores] = []
    for i, s in enumerate(sequences):
        parts = []
        for piece in sorted(p for p in done if p[0] == i):
            status, value = done[piece]
            if status == "error":
                raise value
            parts.append(value)
        results.append(merge_parts(s, names[i], parts, lifetime))
    out = summarize(results, uint8_bins=uint8_bins, per_frame=per_frame)
    out["sequences"] = sequences
    out["seconds"] = time.perf_counter() - t0
    out["workers"] = len(shares)
    return out


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    tqdm.monitor_interval = 0  # no monitor thread: worker processes are forked after this
    return tqdm(total=total, desc="evaluate", unit="frame", leave=False)


def _sav_object_dirs(gt_vid: Path, video: str) -> List[Path]:
    """The per-object folders of an SA-V video (names are object ids), or a clear error."""
    entries = sorted(gt_vid.iterdir())
    obj_dirs = [d for d in entries if d.is_dir() and not d.name.startswith(".")]
    hint = ""
    davis_names = ("Annotations", "JPEGImages", "ImageSets", "480p", "Full-Resolution")
    if video in davis_names or any(d.name in ("480p", "Full-Resolution") for d in obj_dirs):
        hint = (" This looks like a DAVIS tree: use --layout davis, or point --gt-root at the SA-V "
                "annotation folder (e.g. sav_val/Annotations_6fps) whose sub-folders are videos")
    elif any(e.suffix.lower() == ".png" for e in entries):
        hint = " It holds PNG files directly (DAVIS layout, one label map per frame): use --layout davis"
    if not obj_dirs:
        raise ValueError(f"SA-V video folder {gt_vid} holds no per-object folders "
                         f"(<video>/<obj:03d>/<frame>.png).{hint}")
    bad = [d.name for d in obj_dirs if not d.name.isdigit()]
    if bad:
        raise ValueError(f"SA-V video folder {gt_vid}: sub-folders {bad[:3]} are not object ids "
                         f"(expected <video>/<obj:03d>/<frame>.png).{hint}")
    return sorted(obj_dirs, key=lambda d: (len(d.name), d.name))


def _sav_video(gt_vid: Path, pred_vid: Path, video: str, skip: bool) -> List[SequenceScores]:
    out = []
    for d in _sav_object_dirs(gt_vid, video):
        gt_files = mask_files(d)
        check_text_order(gt_files, f"{video}/{d.name}")
        pred_files = [pred_vid / d.name / f.name for f in gt_files]
        missing = [p.name for p in pred_files if not p.is_file()]
        if missing:
            raise ValueError(f"{video}/{d.name}: no prediction for {len(missing)} annotated frames, e.g. {missing[:3]}")
        gt = _SavMasks(gt_files, None, what=f"GT mask of {video}/{d.name}")
        pred = _SavMasks(pred_files, None, what=f"predicted mask of {video}/{d.name}")
        sc = evaluate_sequence(gt, pred, name=f"{video}_{d.name}", frame_names=gt.names, skip_first_last=skip,
                               lifetime="first_appearance", void_label=None)
        # one binary object per folder: report it under the folder's id
        sc.name = video
        if sc.object_ids:
            sc.J = {int(d.name): sc.J[1]}
            sc.F = {int(d.name): sc.F[1]}
            sc.frames = {int(d.name): sc.frames[1]}
            sc.object_ids = [int(d.name)]
        else:  # no GT pixel on any scored frame: nothing to score (the official tool crashes here)
            sc.dropped = [int(d.name)]
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
    and last skipped) from the first frame where it appears in GT or prediction. An object
    with no GT pixel on any scored frame cannot be scored (the official tool stops with an
    assertion there): it is left out of the means, listed under ``"dropped_objects"`` and
    warned about. Frame names must sort the same as text and as numbers (see
    :func:`check_text_order`); a mask with more than two values is an error, as in the
    official tool. Per-object keys are
    ``"<video>_<obj id>"``; Recall/Decay are computed as for DAVIS. Videos are shared out
    between ``workers`` processes (default: one per CPU)."""
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    for p in (gt_root, pred_root):
        if not p.is_dir():
            raise ValueError(f"folder {p} does not exist")
    if videos is None:
        videos = sorted(d.name for d in gt_root.iterdir() if d.is_dir())
    videos = list(videos)
    if not videos:
        raise ValueError(f"no video folders under {gt_root} (expected <video>/<obj:03d>/<frame>.png)")
    missing = [v for v in videos if not (gt_root / v).is_dir()]
    if missing:
        raise ValueError(f"videos not found in the GT ({gt_root}): {missing}")
    for v in videos:  # the layout is checked before any mask is decoded
        _sav_object_dirs(gt_root / v, v)
    missing = [v for v in videos if not (pred_root / v).is_dir()]
    if missing:
        raise ValueError(f"no prediction folder in {pred_root} for videos: {missing}")

    work = _SavWork(gt_root, pred_root, videos, skip_first_last)
    n_workers = _default_workers(len(videos)) if workers is None else max(1, min(int(workers), len(videos)))
    sizes = [sum(1 for _ in (gt_root / v).iterdir()) for v in videos] if n_workers > 1 else [1] * len(videos)
    shares = _split_sequences(sizes, [1] * len(videos), n_workers) if videos else []
    done = _run_shares(work, shares)
    merged: List[SequenceScores] = []
    for i, v in enumerate(videos):
        status, scores = done.get((i, 0, sizes[i]), ("error", RuntimeError(f"video {v} was not scored")))
        if status == "error":
            raise scores
        seq = SequenceScores(name=v, object_ids=[], frame_names=scores[0].frame_names if scores else [])
        for sc in scores:
            for k in sc.object_ids:
                seq.object_ids.append(k)
                seq.J[k], seq.F[k], seq.frames[k] = sc.J[k], sc.F[k], sc.frames[k]
            seq.dropped += sc.dropped
        merged.append(seq)
    out = summarize(merged)
    out["sequences"] = videos
    if out["dropped_objects"]:
        warnings.warn(f"{len(out['dropped_objects'])} SA-V object(s) have no GT pixel on any scored frame and are "
                      f"not scored (listed under 'dropped_objects'): {out['dropped_objects'][:5]}", UserWarning,
                      stacklevel=2)
    return out
