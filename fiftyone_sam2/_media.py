"""Reading sample media for SAM 2: images as RGB uint8 arrays, videos as lazy frame sources."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._convert import to_uint8_rgb


def load_image(path: str) -> np.ndarray:
    """The image at ``path`` as ``(H, W, 3)`` uint8 RGB (grey repeated, 16-bit rescaled).

    Raises:
        ValueError: the file is missing or not an image PIL (or tifffile, for TIFF) can read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                return np.asarray(im.convert("RGB"))
            arr = np.asarray(im)
    except FileNotFoundError as exc:
        raise ValueError(f"image file not found: {path!r}") from exc
    except UnidentifiedImageError as exc:
        if str(path).lower().endswith((".tif", ".tiff")):
            import tifffile

            arr = tifffile.imread(path)
        else:
            raise ValueError(f"cannot read {path!r} as an image: {exc}") from exc
    return to_uint8_rgb(arr)


def open_video(path: str) -> Any:
    """A lazy :class:`sam2_plugins.io.FrameSource` over the video at ``path`` (frames decoded on
    demand, never the whole video in memory)."""
    from sam2_plugins.io import open_frames

    return open_frames(path)


def video_frame_count(sample: Any) -> int:
    """Number of frames of a video sample: from its metadata, else probed with ffprobe (the
    probe result is not saved: checking inputs writes nothing)."""
    meta = sample.metadata
    n = getattr(meta, "total_frame_count", None) if meta is not None else None
    if n is None:
        import fiftyone as fo

        try:
            n = fo.VideoMetadata.build_for(sample.filepath).total_frame_count
        except Exception as exc:  # unreadable file, or no ffprobe
            raise ValueError(f"cannot read video {sample.filepath!r}: {exc}") from exc
    return int(n or 0)
