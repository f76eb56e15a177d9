"""Readers for video segmentation datasets: DAVIS 2016/2017, YouTube-VOS / MOSE / LVOS-style
folders (sparse annotations, objects entering late), SA-V masklets (RLE JSON and per-object PNG
folders). Image datasets are in :mod:`.image_readers`.

Everything is lazy: a :class:`VOSSequence` holds paths, and masks are decoded when indexed.
Label maps are ``(H, W)`` integer arrays: 0 background, ``k`` object ``k`` (255 is DAVIS void).

Mask PNGs as DAVIS, SA-V and most tools write them (8-bit palette or greyscale, not interlaced,
every row stored unfiltered) are decoded here with ``zlib`` alone: half the cost of going
through Pillow, whose import is also skipped. Any other PNG (filtered rows, 16-bit, RGB, a bad
checksum, a damaged stream) goes through Pillow, which decides; both give the same array.
Pillow and the frame readers of :mod:`sam2_plugins.io` are imported only when needed, so that
``python -m benchmarks evaluate`` starts fast.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..io import FrameSource

__all__ = [
    "read_index_png",
    "LazyMasks",
    "VOSSequence",
    "Masklets",
    "find_annotation_root",
    "list_sequences",
    "read_davis",
    "read_vos_folder",
    "read_sav_json",
    "read_sav_png_folders",
    "write_index_png",
]

PathLike = Union[str, Path]
_INDEX_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L")
_RESOLUTIONS = ("480p", "720p", "1080p", "Full-Resolution")

DAVIS_PALETTE = np.zeros((256, 3), np.uint8)
for _i in range(256):  # the standard PASCAL/DAVIS colour map (bit interleaving of the id)
    _r = _g = _b = 0
    _c = _i
    for _j in range(8):
        _r |= ((_c >> 0) & 1) << (7 - _j)
        _g |= ((_c >> 1) & 1) << (7 - _j)
        _b |= ((_c >> 2) & 1) << (7 - _j)
        _c >>= 3
    DAVIS_PALETTE[_i] = (_r, _g, _b)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_png_fast(data: bytes) -> Optional[np.ndarray]:
    """``(H, W)`` uint8 ids of an 8-bit palette or greyscale PNG, not interlaced, with every row
    unfiltered and every chunk's CRC right; ``None`` for anything else (the caller then asks
    Pillow). Reads the chunk list, inflates the IDAT stream and drops the filter byte of each
    row: no per-pixel Python work."""
    if len(data) < 45 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, method, filt, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if depth != 8 or colour not in (0, 3) or method or filt or interlace or not width or not height:
        return None
    idat = []
    pos, end = 8, len(data)
    while True:
        if pos + 12 > end:
            return None  # truncated
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        stop = pos + 8 + length
        if stop + 4 > end:
            return None
        chunk = data[pos + 4 : stop]  # type and data: what the CRC covers
        if zlib.crc32(chunk) != struct.unpack_from(">I", data, stop)[0]:
            return None
        if kind == b"IDAT":
            idat.append(chunk[4:])
        elif kind == b"IEND":
            break
        pos = stop + 4
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error:
        return None
    row = width + 1  # one filter-type byte, then the row's ids
    if len(raw) != height * row:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, row)
    if rows[:, 0].any():
        return None  # filtered rows (Sub/Up/Average/Paeth): Pillow undoes them
    return np.ascontiguousarray(rows[:, 1:])


def read_index_png(path: PathLike, what: str = "mask") -> np.ndarray:
    """Read a label PNG (palette 'P', greyscale 'L', 16-bit 'I;16', binary '1') as raw ids.

    Returns:
        ``(H, W)`` ids: uint8 for 8-bit and binary PNGs, Pillow's integer dtype for 16-bit.

    Raises:
        ValueError: the file is missing/corrupted, or is an RGB/RGBA image (colours are not
            object ids: save masks as palette PNGs).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise ValueError(f"{what} {path} does not exist") from e
    except OSError as e:
        raise ValueError(f"could not read {what} {path}: {e}") from e
    arr = _decode_png_fast(data)
    if arr is not None:
        return arr
    return _read_with_pillow(path, data, what)


def _read_with_pillow(path: Path, data: bytes, what: str) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in _INDEX_MODES:
                raise ValueError(
                    f"{what} {path} is a {im.mode!r} image; expected a palette ('P') or greyscale "
                    "('L'/'I;16') PNG whose pixel values are object ids"
                )
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"could not read {what} {path}: corrupted or not an image ({e})") from e
    return arr.astype(np.uint8) if arr.dtype == bool else arr


def write_index_png(path: PathLike, labels: np.ndarray) -> None:
    """Write an ``(H, W)`` label map (ids 0..255) as a palette PNG with the DAVIS colours."""
    a = np.asarray(labels)
    if a.ndim != 2 or (a.size and (a.min() < 0 or a.max() > 255)):
        raise ValueError(f"expected an (H, W) label map with ids in 0..255, got shape {a.shape}")
    from PIL import Image

    a = np.ascontiguousarray(a, dtype=np.uint8)
    im = Image.frombytes("P", (a.shape[1], a.shape[0]), a.tobytes())
    im.putpalette(DAVIS_PALETTE.ravel().tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


class LazyMasks(Sequence):
    """A list of mask files decoded on access; ``transform`` is applied to each array."""

    def __init__(
        self, paths: Sequence[Path], transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
        what: str = "mask",
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self._transform = transform
        self._what = what

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return LazyMasks(self.paths[i], self._transform, self._what)
        a = read_index_png(self.paths[i], self._what)
        return self._transform(a) if self._transform is not None else a

    @property
    def names(self) -> List[str]:
        return [p.stem for p in self.paths]


@dataclass
class VOSSequence:
    """One video of a VOS dataset.

    Attributes:
        name: sequence name.
        frames: the video frames (``None`` where the dataset ships no frames).
        masks: GT label maps of the annotated frames (lazy).
        annotated: video frame index of each entry of ``masks``.
        mask_names: name of each annotated frame (file stem).
    """

    name: str
    frames: Optional[FrameSource]
    masks: Sequence[np.ndarray]
    annotated: List[int]
    mask_names: List[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        if self.frames is None:
            return self.annotated[-1] + 1
        n = self.frames.num_frames
        assert n is not None, "dataset frames (image folders) have a known length"
        return n


def find_annotation_root(root: PathLike, resolution: str = "480p") -> Path:
    """The folder holding one sub-folder of mask PNGs per sequence: ``root/Annotations/<res>``,
    ``root/Annotations`` or ``root`` itself, whichever exists first."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset root {root} does not exist or is not a directory")
    # the most specific folder that exists decides: an empty Annotations/480p is an error, not
    # a reason to take "480p" itself for a sequence one level up
    cand = next(c for c in (root / "Annotations" / resolution, root / "Annotations", root) if c.is_dir())
    subs = [p.name for p in cand.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subs:
        raise ValueError(f"no sequence folders in {cand} (expected Annotations/{resolution}/<seq>/*.png)")
    res_like = [n for n in subs if n in _RESOLUTIONS]
    if res_like:
        raise ValueError(f"{cand} holds resolution folders {res_like}, not sequences: pass the matching "
                         f"resolution (got {resolution!r}) or point at Annotations/<resolution>")
    return cand


def list_sequences(ann_root: Path, image_sets: Optional[Path] = None) -> List[str]:
    """Sequence names: from an ImageSets list file if given and present, else every sub-folder."""
    if image_sets is not None and image_sets.is_file():
        return [s.strip() for s in image_sets.read_text().splitlines() if s.strip()]
    return sorted(p.name for p in ann_root.iterdir() if p.is_dir() and not p.name.startswith("."))


def mask_files(folder: Path) -> List[Path]:
    if not folder.is_dir():
        raise ValueError(f"mask folder {folder} does not exist")
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")]
    if not files:
        raise ValueError(f"mask folder {folder} holds no PNG files")
    stems = [p.stem for p in files]
    if all(s.isdigit() for s in stems):  # the usual "00000.png": same order as sort_frame_files
        return [p for _, p in sorted(zip(stems, files), key=lambda t: (int(t[0]), t[1].name))]
    from ..io.folder import sort_frame_files  # natural order for other names

    return sort_frame_files(files)


def _binary_from_255(a: np.ndarray) -> np.ndarray:
    # DAVIS-2016 masks are 'L' 0/255 (255 would be void for DAVIS-2017 tools)
    return (a > 127).astype(np.uint8)


def _is_binary_255(path: Path) -> bool:
    a = read_index_png(path)
    vals = np.unique(a)
    return bool(a.dtype == np.uint8 and vals.max(initial=0) == 255 and set(vals.tolist()) <= {0, 255})


def read_davis(
    root: PathLike,
    year: Union[int, str] = "auto",
    split: str = "val",
    resolution: str = "480p",
    sequences: Optional[Sequence[str]] = None,
) -> List[VOSSequence]:
    """DAVIS 2016/2017: ``JPEGImages/<res>/<seq>/*.jpg`` and ``Annotations/<res>/<seq>/*.png``.

    Args:
        root: dataset root (with ``Annotations``; ``JPEGImages`` optional).
        year: 2016 (binary masks: 'L' 0/255 are converted to 0/1), 2017 (palette ids, 255 =
            void), or ``"auto"``: 2016 rules if the first mask is 0/255 only, else 2017.
        split: ImageSets list to use (``ImageSets/<year>/<split>.txt``) when present.
        resolution: ``"480p"`` or ``"Full-Resolution"``.
        sequences: restrict to these names (in this order).

    Raises:
        ValueError: missing folders, an unknown sequence, frames/masks count mismatch.
    """
    root = Path(root)
    ann_root = find_annotation_root(root, resolution)
    if sequences is None:
        lists = [root / "ImageSets" / str(y) / f"{split}.txt" for y in ((year,) if year != "auto" else (2017, 2016))]
        found = next((p for p in lists if p.is_file()), None)
        sequences = list_sequences(ann_root, found)
    missing = [s for s in sequences if not (ann_root / s).is_dir()]
    if missing:
        raise ValueError(f"sequences not found under {ann_root}: {missing}")
    out = []
    for seq in sequences:
        files = mask_files(ann_root / seq)
        binary = year == 2016 or (year == "auto" and _is_binary_255(files[0]))
        masks = LazyMasks(files, _binary_from_255 if binary else None, what=f"GT mask of {seq}")
        img_dir = root / "JPEGImages" / resolution / seq
        frames = None
        annotated = list(range(len(files)))
        if img_dir.is_dir():
            from ..io import ImageFilesSource

            frames = ImageFilesSource(image_files(img_dir), name=str(img_dir))
            annotated = _match_names(frames.frame_names or [], masks.names, seq)
        out.append(VOSSequence(seq, frames, masks, annotated, masks.names))
    return out


def image_files(folder: Path) -> List[Path]:
    from ..io.folder import IMAGE_EXTENSIONS, sort_frame_files

    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if not files:
        raise ValueError(f"frame folder {folder} holds no images")
    return sort_frame_files(files)


def _match_names(frame_names: List[str], mask_names: List[str], seq: str) -> List[int]:
    index = {n: i for i, n in enumerate(frame_names)}
    missing = [n for n in mask_names if n not in index]
    if missing:
        raise ValueError(f"sequence {seq}: masks {missing[:5]} have no frame with the same name")
    return [index[n] for n in mask_names]


def read_vos_folder(
    root: PathLike,
    annotations: str = "Annotations",
    images: str = "JPEGImages",
    sequences: Optional[Sequence[str]] = None,
) -> List[VOSSequence]:
    """YouTube-VOS / MOSE / LVOS-style folders: ``<images>/<seq>/*.jpg`` with masks for a subset
    of frames in ``<annotations>/<seq>/*.png`` (sparse, objects may appear in later masks).

    Masks are matched to frames by file stem; ``VOSSequence.annotated`` gives their positions.
    """
    root = Path(root)
    ann_root = root / annotations
    img_root = root / images
    for p in (ann_root, img_root):
        if not p.is_dir():
            raise ValueError(f"expected folder {p} (layout <root>/{images}/<seq>, <root>/{annotations}/<seq>)")
    if sequences is None:
        sequences = list_sequences(ann_root)
    from ..io import ImageFilesSource

    out = []
    for seq in sequences:
        files = mask_files(ann_root / seq)
        frames = ImageFilesSource(image_files(img_root / seq), name=str(img_root / seq))
        names = [p.stem for p in files]
        annotated = _match_names(frames.frame_names or [], names, seq)
        out.append(VOSSequence(seq, frames, LazyMasks(files, what=f"GT mask of {seq}"), annotated, names))
    return out


@dataclass
class Masklets:
    """SA-V masklets: possibly overlapping per-object masks on the annotated frames.

    Attributes:
        video_id: SA-V video id.
        height, width: mask size.
        object_ids: masklet ids.
        annotated: video frame index of each annotated frame (SA-V: every 4th frame, 6 fps).
        rles: ``rles[t][i]`` the COCO RLE of object ``object_ids[i]`` on annotated frame ``t``
            (``None`` for an absent object in the PNG layout).
    """

    video_id: str
    height: int
    width: int
    object_ids: List[int]
    annotated: List[int]
    rles: List[List[Any]] = field(default_factory=list)
    loaders: Optional[Dict[int, LazyMasks]] = None

    def object_masks(self, obj_id: int) -> np.ndarray:
        """``(T, H, W)`` bool masks of one object over the annotated frames."""
        if self.loaders is not None:
            lm = self.loaders[obj_id]
            return np.stack([lm[t] > 0 for t in range(len(lm))])
        from ..rle import decode_coco_rle  # imports torch: only when RLE masks are read

        i = self.object_ids.index(obj_id)
        return np.stack([np.asarray(decode_coco_rle(frame[i]), dtype=bool) for frame in self.rles])

    def label_maps(self) -> np.ndarray:
        """``(T, H, W)`` label maps (ids = position + 1); where masklets overlap the smallest
        id wins, as upstream's ``vos_inference.py`` paints them."""
        out = np.zeros((len(self.annotated), self.height, self.width), np.int32)
        for rank, obj in reversed(list(enumerate(self.object_ids))):
            out[self.object_masks(obj)] = rank + 1
        return out


def read_sav_json(path: PathLike, frame_step: int = 4) -> Masklets:
    """An SA-V annotation file (``sav_XXXXXX_manual.json`` / ``_auto.json``): COCO RLE masklets
    on every ``frame_step``-th frame of the 24 fps video."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"could not read SA-V file {path}: {e}") from e
    if "masklet" not in data:
        raise ValueError(f"{path} is not an SA-V masklet file (no 'masklet' key)")
    rles = data["masklet"]
    n_obj = len(rles[0]) if rles else 0
    ids = [int(i) for i in data.get("masklet_id", range(n_obj))]
    if rles:
        h, w = (int(v) for v in rles[0][0]["size"]) if n_obj else (int(data["video_height"]), int(data["video_width"]))
    else:
        raise ValueError(f"{path} holds no annotated frames")
    return Masklets(str(data.get("video_id", path.stem)), h, w, ids, [i * frame_step for i in range(len(rles))], rles)


def read_sav_png_folders(root: PathLike, video: str) -> Masklets:
    """SA-V per-object PNG layout: ``root/<video>/<obj:03d>/<frame>.png`` (binary masks)."""
    vdir = Path(root) / video
    if not vdir.is_dir():
        raise ValueError(f"SA-V video folder {vdir} does not exist")
    obj_dirs = sorted((p for p in vdir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not obj_dirs:
        raise ValueError(f"{vdir} holds no per-object folders (expected <obj:03d>/<frame>.png)")
    loaders = {int(d.name): LazyMasks(mask_files(d), what=f"mask of {video}/{d.name}") for d in obj_dirs}
    first = next(iter(loaders.values()))
    names = first.names
    for obj, lm in loaders.items():
        if lm.names != names:
            raise ValueError(f"{video}: object {obj} has frames {lm.names[:3]}..., object {obj_dirs[0].name} "
                             f"{names[:3]}...")
    h, w = first[0].shape[:2]
    annotated = [int(n) if n.isdigit() else i for i, n in enumerate(names)]
    return Masklets(video, h, w, list(loaders), annotated, [], loaders)
