"""VOS inference on the SA-V, YouTube-VOS, MOSE and LVOS layouts, with output as their tools take it.

**SA-V** (val / test): ``<root>/JPEGImages_24fps/<video>/<frame>.jpg`` and
``<root>/Annotations_6fps/<video>/<obj:03d>/<frame>.png`` (one binary PNG per object, on every
4th frame). Each object is prompted on its first annotated frame where its mask is non-empty,
tracking runs on **every 24 fps frame**, and one binary PNG per object and frame is written to
``<out>/<video>/<obj:03d>/<frame>.png`` (objects may overlap, as upstream's
``vos_inference.py --per_obj_png_file``; frames before an object's prompted frame are empty).
The written folder is then scored exactly like ``python -m benchmarks evaluate --layout sav``
(:func:`~.folders.evaluate_sav_folders`, the rules of SA-V's ``sav_evaluator.py``).

**YouTube-VOS / MOSE / LVOS**: ``<root>/JPEGImages/<video>/<frame>.jpg`` with sparse
``<root>/Annotations/<video>/<frame>.png`` label maps (objects may first appear on any
annotated frame). Objects are prompted where they first appear, each group of objects sharing
a first frame being its own video (:mod:`.vos_protocol`, ``lifetime="own_video"``, like
upstream's ``--track_object_appearing_later_in_video``); a palette PNG per frame of
``JPEGImages`` is written into a submission folder and zipped:

- ``youtube``: ``Annotations/<video>/<frame>.png`` inside the zip (the YouTube-VOS server);
- ``mose`` and ``lvos``: ``<video>/<frame>.png`` at the zip's root.

(The folder structures follow the challenges' published instructions; they could not be
checked against the servers here.) Where the annotations hold more than the prompts (e.g.
LVOS val), the objects are also scored locally as their own videos; splits whose GT is kept by
the server leave nothing to score, and the summary says so.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Union

import numpy as np

from .readers import LazyMasks, VOSSequence, mask_files, write_index_png
from .sequence import summarize
from .vos_protocol import Prompts, _Collector, first_appearances, object_groups, track_objects
from .vos_scoring import score_own_videos

__all__ = ["LAYOUTS", "SUBMISSION_LAYOUTS", "SavVideo", "read_sav_layout", "run_vos_sav", "run_vos_submission",
           "run_vos_layout"]

PathLike = Union[str, Path]
LAYOUTS = ("sav", "youtube", "mose", "lvos")
SUBMISSION_LAYOUTS = {"youtube": "Annotations/{video}/{frame}.png", "mose": "{video}/{frame}.png",
                      "lvos": "{video}/{frame}.png"}
SAV_IMAGES, SAV_ANNOTATIONS = "JPEGImages_24fps", "Annotations_6fps"


@dataclass
class SavVideo:
    """One SA-V video: its 24 fps frames and per-object GT masks on the annotated frames."""

    name: str
    frames: Any  # FrameSource
    objects: Dict[int, LazyMasks]

    def prompts(self) -> Prompts:
        """``{obj_id: (frame index, mask)}`` at each object's first non-empty annotation."""
        index = {n: i for i, n in enumerate(self.frames.frame_names or [])}
        out: Prompts = {}
        for obj, lm in self.objects.items():
            for name, i in zip(lm.names, range(len(lm))):
                m = np.asarray(lm[i]) > 0
                if m.any():
                    if name not in index:
                        raise ValueError(f"SA-V video {self.name}: annotated frame {name} of object {obj:03d} "
                                         f"has no frame {name}.jpg in {SAV_IMAGES}/{self.name}")
                    out[obj] = (index[name], m)
                    break
        return out


def read_sav_layout(root: PathLike, videos: Optional[Sequence[str]] = None) -> List[SavVideo]:
    """The SA-V val/test layout (see the module docstring); ``videos`` default: every video
    folder under ``Annotations_6fps``."""
    from ..io import ImageFilesSource
    from .readers import image_files

    root = Path(root)
    ann, img = root / SAV_ANNOTATIONS, root / SAV_IMAGES
    for p in (ann, img):
        if not p.is_dir():
            raise ValueError(f"expected folder {p} (SA-V layout: <root>/{SAV_IMAGES}/<video>/*.jpg and "
                             f"<root>/{SAV_ANNOTATIONS}/<video>/<obj:03d>/*.png)")
    if videos is None:
        videos = sorted(d.name for d in ann.iterdir() if d.is_dir())
    out = []
    for v in videos:
        vdir = ann / v
        if not vdir.is_dir():
            raise ValueError(f"SA-V video {v} not found under {ann}")
        obj_dirs = sorted((d for d in vdir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
        if not obj_dirs:
            raise ValueError(f"{vdir} holds no per-object folders (expected <obj:03d>/<frame>.png)")
        objects = {int(d.name): LazyMasks(mask_files(d), what=f"mask of {v}/{d.name}") for d in obj_dirs}
        frames = ImageFilesSource(image_files(img / v), name=str(img / v))
        out.append(SavVideo(v, frames, objects))
    return out


def _write_binary(path: Path, mask: np.ndarray) -> None:
    write_index_png(path, mask.astype(np.uint8))


def run_vos_sav(
    predictor: Any,
    root: PathLike,
    out_dir: PathLike,
    videos: Optional[Sequence[str]] = None,
    prompt: str = "mask",
    progress: Optional[Callable[[str], None]] = None,
    workers: Optional[int] = 1,
) -> Dict[str, Any]:
    """Infer on an SA-V-layout folder, write per-object PNGs to ``out_dir`` and score them.

    Returns:
        :func:`~.folders.evaluate_sav_folders`'s summary plus ``"frames"`` (tracked 24 fps
        frames) and ``"pred_root"``.
    """
    from .folders import evaluate_sav_folders

    out_dir = Path(out_dir)
    items = read_sav_layout(root, videos)
    n_frames = 0
    for v in items:
        if progress is not None:
            progress(v.name)
        prompts = v.prompts()
        if not prompts:
            raise ValueError(f"SA-V video {v.name}: every object's masks are empty; nothing to prompt")
        names = list(v.frames.frame_names or [])
        n = v.frames.num_frames or len(names)
        n_frames += n
        done: Dict[int, Set[int]] = {k: set() for k in v.objects}
        for _, t, ids, logits in track_objects(predictor, v.frames, prompts, prompt, separate=True):
            for i, k in enumerate(ids):
                _write_binary(out_dir / v.name / f"{k:03d}" / f"{names[t]}.png", logits[i] > 0)
                done[k].add(t)
        h, w = v.frames.height, v.frames.width
        empty = np.zeros((h, w), bool)
        for k in v.objects:  # frames before an object's prompt, and objects never present
            for t in range(n):
                if t not in done[k]:
                    _write_binary(out_dir / v.name / f"{k:03d}" / f"{names[t]}.png", empty)
    res = evaluate_sav_folders(Path(root) / SAV_ANNOTATIONS, out_dir, [v.name for v in items], workers=workers)
    res["frames"] = n_frames
    res["pred_root"] = str(out_dir)
    return res


def run_vos_submission(
    predictor: Any,
    sequences: Sequence[VOSSequence],
    layout: str,
    out_dir: PathLike,
    prompt: str = "mask",
    progress: Optional[Callable[[str], None]] = None,
    make_zip: bool = True,
) -> Dict[str, Any]:
    """YouTube-VOS / MOSE / LVOS inference: a label map for every frame, written in the
    challenge's submission structure under ``out_dir/submission`` (and ``submission.zip``);
    objects also scored as their own videos where the annotations allow (see the module
    docstring).

    Returns:
        :func:`~.sequence.summarize`'s dict plus ``"frames"``, ``"submission"`` (folder),
        ``"zip"`` (file or None), ``"unscored_objects"`` and, when nothing could be scored,
        ``"note"``.
    """
    if layout not in SUBMISSION_LAYOUTS:
        raise ValueError(f"layout must be one of {tuple(SUBMISSION_LAYOUTS)}, got {layout!r}")
    pattern = SUBMISSION_LAYOUTS[layout]
    sub = Path(out_dir) / "submission"
    scores, unscored, written = [], [], []
    n_frames = 0
    for seq in sequences:
        if seq.frames is None:
            raise ValueError(f"sequence {seq.name} has no frames")
        if progress is not None:
            progress(seq.name)
        prompts = first_appearances(seq, "own_video")
        if not prompts:
            raise ValueError(f"sequence {seq.name}: no object to prompt in its annotations")
        names = list(seq.frames.frame_names or [f"{t:05d}" for t in range(seq.frames.num_frames or 0)])
        col = _Collector(None)
        for gi, t, ids, logits in track_objects(predictor, seq.frames, prompts, prompt, separate=True):
            col.add(gi, t, ids, logits)
        labels = col.labels()
        empty = np.zeros((seq.frames.height, seq.frames.width), np.uint8)
        for t, name in enumerate(names):
            rel = pattern.format(video=seq.name, frame=name)
            write_index_png(sub / rel, labels.get(t, empty))
            written.append(rel)
        n_frames += len(names)
        keep = set(int(t) for t in seq.annotated)
        col.groups = {g: {t: m for t, m in fr.items() if t in keep} for g, fr in col.groups.items()}
        sc, missing = score_own_videos(seq, object_groups(prompts, True), col.groups,
                                       seq.mask_names or [f"{t:05d}" for t in seq.annotated])
        unscored += missing
        if sc.object_ids:
            scores.append(sc)
    res: Dict[str, Any] = summarize(scores) if scores else {"n_objects": 0}
    if not scores:
        res["note"] = ("no object has annotated frames beyond its prompt: this split's GT is kept by the "
                       "challenge server; submit the zip there")
    zip_path = None
    if make_zip:
        zip_path = Path(out_dir) / "submission.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            for rel in written:
                z.write(sub / rel, rel)
    res.update(frames=n_frames, submission=str(sub), zip=None if zip_path is None else str(zip_path),
               unscored_objects=unscored, layout=layout)
    return res


def run_vos_layout(predictor: Any, layout: str, out_dir: PathLike, *, root: Optional[PathLike] = None,
                   sequences: Optional[Sequence[VOSSequence]] = None, videos: Optional[Sequence[str]] = None,
                   prompt: str = "mask", progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """``layout="sav"`` needs ``root``; the others take loaded ``sequences``."""
    if layout == "sav":
        if root is None:
            raise ValueError("the SA-V layout needs the dataset root")
        return run_vos_sav(predictor, root, out_dir, videos, prompt, progress)
    if sequences is None:
        raise ValueError(f"layout {layout!r} needs the loaded sequences")
    return run_vos_submission(predictor, sequences, layout, out_dir, prompt, progress)
