"""Image folders (JPEG/PNG/...) and explicit lists of image files as frame sources."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import FrameSizeError, FrameSource

__all__ = ["ImageFolderSource", "ImageFilesSource", "IMAGE_EXTENSIONS", "sort_frame_files"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

PathLike = Union[str, Path]


def _natural_key(name: str) -> List[Any]:
    # "frame2" < "frame10": compare digit runs as numbers, the rest as lower-case text
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def sort_frame_files(paths: Sequence[Path]) -> List[Path]:
    """Sort frame files the way upstream SAM 2 does: by integer stem when every stem is an
    integer ("00000.jpg", "7.jpg"), else in natural order ("f2" before "f10")."""
    stems = [p.stem for p in paths]
    if all(s.isdigit() for s in stems):
        return [p for _, p in sorted(zip(stems, paths), key=lambda t: (int(t[0]), t[1].name))]
    return sorted(paths, key=lambda p: _natural_key(p.name))


def _what(path: Path, idx: Optional[int]) -> str:
    return f"image {path}" if idx is None else f"frame {idx} ({path})"


def _read_image(path: Path, idx: Optional[int] = None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            # raw values: palette PNGs give indices, 16-bit PNGs give uint16 / int32
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"could not read {_what(path, idx)}: corrupted, truncated or unsupported file ({e})") from e


def _image_size(path: Path, idx: Optional[int] = None) -> "tuple[int, int]":
    try:
        with Image.open(path) as im:  # reads the header only
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"could not read {_what(path, idx)}: corrupted or unsupported file ({e})") from e


class ImageFilesSource(FrameSource):
    """Frames from an explicit, already ordered list of image files (read one at a time)."""

    def __init__(self, paths: Sequence[PathLike], name: str = "image files") -> None:
        self._paths = [Path(p) for p in paths]
        if not self._paths:
            raise ValueError(f"{name}: no image files given")
        missing = [str(p) for p in self._paths if not p.is_file()]
        if missing:
            raise ValueError(f"{name}: missing files: {missing[:5]}")
        self._name = name
        self.num_frames = len(self._paths)
        self.frame_names = [p.stem for p in self._paths]
        # every header now (a few microseconds each, no decoding): a file of another size or
        # one that is not an image is refused before any frame is tracked
        sizes = [_image_size(p, i) for i, p in enumerate(self._paths)]
        self.height, self.width = sizes[0]
        odd = next((i for i, hw in enumerate(sizes) if hw != sizes[0]), None)
        if odd is not None:
            raise FrameSizeError(
                f"{name}: frame {odd} ({self._paths[odd].name}) is {sizes[odd][0]}x{sizes[odd][1]} (HxW) but "
                f"frame 0 ({self._paths[0].name}) is {self.height}x{self.width}; all frames of a video must "
                "have the same size")

    @property
    def paths(self) -> List[Path]:
        """The frame files in frame order."""
        return list(self._paths)

    def describe(self) -> str:
        return self._name

    def _read(self, idx: int) -> np.ndarray:
        return _read_image(self._paths[idx], idx)


class ImageFolderSource(ImageFilesSource):
    """Every image in a folder (extensions :data:`IMAGE_EXTENSIONS`, case-insensitive), sorted
    by :func:`sort_frame_files`; hidden files are ignored.

    Raises:
        ValueError: the folder does not exist or holds no images.
    """

    def __init__(self, folder: PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"frame folder {folder} does not exist or is not a directory")
        exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
        files = [
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
        ]
        if not files:
            raise ValueError(
                f"frame folder {folder} holds no images with extensions {sorted(exts)}: "
                "an empty video cannot be opened"
            )
        super().__init__(sort_frame_files(files), name=str(folder))
