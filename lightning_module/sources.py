"""Where clips come from: synthetic videos, VOS folders, COCO JSON.

Every source is a map-style dataset whose item is a :class:`RawClip`: uint8 frames
(T, H, W, 3) and an int64 id map (T, H, W) (0 = background, 1..K objects). Images are 1-frame
clips. ``source[i]`` is deterministic (validation reads it, and must read the same clip on
every pass); sources with something to draw (a clip's start, its direction) also have
``sample(i, rng)``, which training uses. 2D microscopy images and 3D / time-lapse stacks are
in :mod:`lightning_module.microscopy`. Bad files raise ``ValueError`` naming the file; videos
shorter than the clip length are skipped with a warning when the source is indexed (and an
empty source is an error).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from .readers import labels_to_ids, read_array, to_rgb_uint8

__all__ = [
    "RawClip",
    "SyntheticSource",
    "VideoFolderSource",
    "CocoSource",
    "decode_coco_rle",
]

PathLike = Union[str, Path]
_IMG_EXT = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclass
class RawClip:
    """frames: uint8 (T, H, W, 3); masks: int64 (T, H, W) ids; name: for messages."""

    frames: np.ndarray
    masks: np.ndarray
    name: str = ""


class SyntheticSource:
    """Procedural videos from ``sam2_plugins.evaluation.synthetic`` (seeded, endless).

    Item ``i`` is the video with seed ``seed + i``: distinct textured shapes moving, scaling and
    occluding each other over a textured background. ``height``, ``width``, ``num_objects`` and
    ``num_distractors`` are each an int or an inclusive ``(low, high)`` range drawn per clip.
    """

    def __init__(self, length: int = 10000, num_frames: int = 8,
                 height: Union[int, Tuple[int, int]] = 256,
                 width: Union[int, Tuple[int, int]] = 256,
                 num_objects: Union[int, Tuple[int, int]] = (1, 3),
                 num_distractors: Union[int, Tuple[int, int]] = (0, 2), seed: int = 0) -> None:
        if length < 1:
            raise ValueError(f"a synthetic source needs length >= 1, got {length}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.length, self.num_frames, self.seed = length, num_frames, seed
        self.height = self._range(height, "height")
        self.width = self._range(width, "width")
        self.num_objects = self._range(num_objects, "num_objects")
        self.num_distractors = self._range(num_distractors, "num_distractors")

    @staticmethod
    def _range(v: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
        lo, hi = (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))
        if lo < 0 or hi < lo:
            raise ValueError(f"{name} must be an int or a (low, high) pair, got {v}")
        return lo, hi

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> RawClip:
        from sam2_plugins.evaluation.synthetic import make_video

        seed = self.seed + int(i)
        pick = np.random.default_rng([seed, 12345])
        k = int(pick.integers(self.num_objects[0], self.num_objects[1], endpoint=True))
        d = int(pick.integers(self.num_distractors[0], self.num_distractors[1], endpoint=True))
        h = int(pick.integers(self.height[0], self.height[1], endpoint=True))
        w = int(pick.integers(self.width[0], self.width[1], endpoint=True))
        frames, masks = make_video(num_frames=self.num_frames, height=h, width=w,
                                   num_objects=k, seed=seed, num_distractors=d)
        return RawClip(np.asarray(frames, dtype=np.uint8), np.asarray(masks, dtype=np.int64),
                       f"synthetic_{seed}")


def _list_frames(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMG_EXT)


class VideoFolderSource:
    """DAVIS / YouTube-VOS / SA-V style video folders.

    Layout: ``root/<image_dir>/<video>/<frame>.jpg`` and either
    ``root/<mask_dir>/<video>/<frame>.png`` (one id PNG per frame, DAVIS / YouTube-VOS) or
    ``root/<mask_dir>/<video>/<obj>/<frame>.png`` (one binary PNG per object, SA-V). Only frames
    that have masks are used (YouTube-VOS and SA-V annotate every 5th / 4th frame), and a
    clip is ``num_frames`` consecutive annotated frames, ``stride`` apart. Item ``i`` (what
    validation reads) always starts at the video's first annotated frame, so it is the same
    clip on every pass; :meth:`sample` (training) starts at a random annotated frame.

    Args:
        root: dataset root. image_dir / mask_dir: sub-folders (e.g. "JPEGImages/480p",
            "Annotations/480p" for DAVIS). file_list: optional text file of video names.
        binarize_255: treat mask value 255 as object 1 (DAVIS-2016 style 0/255 masks).
    """

    def __init__(self, root: PathLike, num_frames: int = 8, image_dir: str = "JPEGImages",
                 mask_dir: str = "Annotations", file_list: Optional[PathLike] = None,
                 stride: int = 1, binarize_255: bool = False) -> None:
        root = Path(root)
        self.image_root, self.mask_root = root / image_dir, root / mask_dir
        if not self.image_root.is_dir() or not self.mask_root.is_dir():
            raise ValueError(f"expected {self.image_root} and {self.mask_root} to be folders")
        if file_list is not None:
            names = [n.strip() for n in Path(file_list).read_text().splitlines() if n.strip()]
        else:
            names = sorted(p.name for p in self.mask_root.iterdir() if p.is_dir())
        self.num_frames, self.stride, self.binarize_255 = num_frames, stride, binarize_255
        self.videos: List[Tuple[str, List[str]]] = []
        short = []
        for n in names:
            stems = self._annotated_stems(n)
            if len(stems) < (num_frames - 1) * stride + 1:
                short.append(n)
                continue
            self.videos.append((n, stems))
        if short:
            warnings.warn(f"{len(short)} video(s) shorter than {num_frames} annotated frames "
                          f"(stride {stride}) skipped: {', '.join(short[:5])}", stacklevel=2)
        if not self.videos:
            raise ValueError(f"no video in {root} has {num_frames} annotated frames "
                             f"(looked at {len(names)} video(s))")

    def _annotated_stems(self, video: str) -> List[str]:
        mdir = self.mask_root / video
        frames = {p.stem for p in _list_frames(self.image_root / video)} if (
            self.image_root / video).is_dir() else set()
        objs = [p for p in mdir.iterdir() if p.is_dir()] if mdir.is_dir() else []
        if objs:
            stems = set.intersection(*({p.stem for p in _list_frames(o)} for o in objs))
        else:
            stems = {p.stem for p in _list_frames(mdir)} if mdir.is_dir() else set()
        return sorted(stems & frames)

    def __len__(self) -> int:
        return len(self.videos)

    def _frame_path(self, video: str, stem: str) -> Path:
        for ext in (".jpg", ".jpeg", ".png"):
            p = self.image_root / video / f"{stem}{ext}"
            if p.exists():
                return p
        raise ValueError(f"no image for frame {stem} of {video} in {self.image_root / video}")

    def _mask(self, video: str, stem: str, shape: Tuple[int, int]) -> np.ndarray:
        mdir = self.mask_root / video
        objs = sorted(p for p in mdir.iterdir() if p.is_dir())
        if objs:
            ids = np.zeros(shape, np.int64)
            for k, o in enumerate(objs, start=1):
                m = labels_to_ids(read_array(o / f"{stem}.png"), str(o / f"{stem}.png"))
                self._check(m, shape, o / f"{stem}.png")
                ids[(m > 0) & (ids == 0)] = k
            return ids
        p = mdir / f"{stem}.png"
        ids = labels_to_ids(read_array(p), str(p))
        self._check(ids, shape, p)
        if self.binarize_255:
            ids = (ids > 127).astype(np.int64)
        return ids

    @staticmethod
    def _check(m: np.ndarray, shape: Tuple[int, int], path: Path) -> None:
        if m.shape[:2] != tuple(shape):
            raise ValueError(f"mask {path} is {m.shape[:2]} but its frame is {tuple(shape)}")

    def __getitem__(self, i: int) -> RawClip:
        return self._clip(i, 0)

    def sample(self, i: int, rng: np.random.Generator) -> RawClip:
        """A clip of video ``i`` at a random start (drawn from ``rng``)."""
        span = (self.num_frames - 1) * self.stride + 1
        return self._clip(i, int(rng.integers(0, len(self.videos[i][1]) - span + 1)))

    def _clip(self, i: int, start: int) -> RawClip:
        video, stems = self.videos[i]
        span = (self.num_frames - 1) * self.stride + 1
        chosen = stems[start:start + span:self.stride]
        frames, masks = [], []
        for s in chosen:
            f = to_rgb_uint8(read_array(self._frame_path(video, s)), video)
            frames.append(f)
            masks.append(self._mask(video, s, f.shape[:2]))
        return RawClip(np.stack(frames), np.stack(masks), f"{video}@{chosen[0]}")


def decode_coco_rle(counts: Union[str, Sequence[int]], h: int, w: int) -> np.ndarray:
    """COCO run-length encoding (compressed string or list of counts) -> bool (h, w).

    Runs alternate background / foreground in column-major order; the compressed form packs
    each count (as a delta to the count two back, after the third) in 5-bit groups + 48.
    """
    if isinstance(counts, str):
        vals: List[int] = []
        s, p = counts.encode("ascii"), 0
        while p < len(s):
            x, k, more = 0, 0, True
            while more:
                c = s[p] - 48
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                p, k = p + 1, k + 1
                if not more and (c & 0x10):
                    x |= -1 << (5 * k)
            if len(vals) > 2:
                x += vals[-2]
            vals.append(x)
        counts = vals
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in counts:
        if val:
            flat[pos:pos + c] = True
        pos += int(c)
        val = not val
    return flat.reshape(w, h).T


class CocoSource:
    """COCO instance annotations (polygons or RLE) as 1-frame clips; crowd regions skipped."""

    def __init__(self, annotation_file: PathLike, image_dir: PathLike,
                 min_area: float = 1.0) -> None:
        data = json.loads(Path(annotation_file).read_text())
        self.image_dir = Path(image_dir)
        anns: dict = {}
        for a in data.get("annotations", []):
            if a.get("iscrowd", 0) or a.get("area", min_area) < min_area:
                continue
            anns.setdefault(a["image_id"], []).append(a)
        self.images = [im for im in data.get("images", []) if im["id"] in anns]
        self.anns = anns
        if not self.images:
            raise ValueError(f"{annotation_file}: no image with a non-crowd annotation")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> RawClip:
        info = self.images[i]
        path = self.image_dir / info["file_name"]
        img = to_rgb_uint8(read_array(path), str(path))
        h, w = img.shape[:2]
        if (info.get("height", h), info.get("width", w)) != (h, w):
            raise ValueError(f"{path} is {h}x{w} but the JSON says "
                             f"{info.get('height')}x{info.get('width')}")
        ids = np.zeros((h, w), np.int64)
        for k, a in enumerate(self.anns[info["id"]], start=1):
            seg = a["segmentation"]
            if isinstance(seg, dict):
                m = decode_coco_rle(seg["counts"], *seg["size"])
            else:
                canvas = Image.new("L", (w, h), 0)
                for poly in seg:
                    if len(poly) >= 6:
                        ImageDraw.Draw(canvas).polygon([float(v) for v in poly], fill=1)
                m = np.asarray(canvas) > 0
            ids[m & (ids == 0)] = k
        return RawClip(img[None], ids[None], str(info.get("file_name", i)))



def __getattr__(name: str):
    # ImageFolderSource moved to .microscopy (with the stack source); keep the old import path
    if name == "ImageFolderSource":
        from .microscopy import ImageFolderSource

        return ImageFolderSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
