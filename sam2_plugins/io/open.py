"""``open_frames``: one entry point that picks the right frame source for any video input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .arrays import ArraySource, SequenceSource, is_array_like
from .base import FrameSource
from .folder import IMAGE_EXTENSIONS, ImageFilesSource, ImageFolderSource
from .stream import StreamSource
from .tiff import TiffSource
from .video import VIDEO_EXTENSIONS, VideoFileSource

__all__ = ["open_frames"]

_TIFF_EXTENSIONS = (".tif", ".tiff", ".ome.tif", ".ome.tiff")


def open_frames(source: Any, *, time_axis: int = 0, keep: int = 16, cache_size: int = 16) -> FrameSource:
    """Open ``source`` as a :class:`FrameSource` (lazy; nothing but frame 0's header is read).

    Accepted inputs:

    - a :class:`FrameSource` (returned unchanged);
    - a folder of images (JPEG/PNG/BMP/TIFF/WebP), sorted by integer stem like upstream SAM 2,
      else in natural order;
    - a video file (mp4, mov, avi, mkv, webm, gif, ...; decoded lazily by PyAV);
    - a TIFF stack (``.tif``/``.tiff``; pages read lazily by tifffile);
    - a single image file (a 1-frame video);
    - a numpy array ``(T, H, W)`` / ``(T, H, W, C)`` or a lazy array-like with ``shape`` and
      ``__getitem__`` (dask, zarr, h5py, torch tensors), read one frame at a time;
      with ``time_axis`` a 3D volume is read along that axis;
    - a list/tuple of frames (arrays, tensors, PIL images) or of image paths;
    - any other iterable or generator: a forward-only stream (``num_frames`` is ``None``),
      of which the last ``keep`` frames are kept.

    Args:
        source: the video, see above.
        time_axis: axis that indexes frames, for arrays and TIFF stacks.
        keep: frames kept by stream sources.
        cache_size: decoded frames kept by video-file sources.

    Returns:
        A :class:`FrameSource`; ``get(i)`` returns frame ``i`` as ``(H, W)`` or ``(H, W, C)``
        numpy array in its own dtype (video files: RGB uint8).

    Raises:
        ValueError: missing/empty/corrupted input, or an unreadable array shape.
        TypeError: an input type that is not a video.
    """
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (str, Path)):
        return _open_path(Path(source), time_axis=time_axis, cache_size=cache_size)
    if isinstance(source, (bytes, bytearray, dict)) or np.isscalar(source):
        raise TypeError(
            f"cannot read frames from a {type(source).__name__}; expected a path, an array "
            "(T, H, W[, C]), a list of frames or an iterable of frames"
        )
    if is_array_like(source):
        ndim = len(tuple(source.shape))
        if ndim == 2:
            return SequenceSource([source], name="single image")
        if ndim == 3 and time_axis == 0 and int(source.shape[-1]) in (3, 4) and int(source.shape[0]) > 4:
            # an (H, W, 3) image passed alone: a 1-frame video, not 3-pixel-wide frames
            return SequenceSource([source], name="single image")
        return ArraySource(source, time_axis=time_axis)
    if hasattr(source, "size") and hasattr(source, "mode") and hasattr(source, "getbands"):
        return SequenceSource([source], name="single PIL image")  # a PIL image
    if isinstance(source, (list, tuple)):
        if len(source) == 0:
            raise ValueError("an empty list of frames cannot be opened as a video")
        if all(isinstance(s, (str, Path)) for s in source):
            return ImageFilesSource(source, name=f"list of {len(source)} image files")
        return SequenceSource(source)
    if hasattr(source, "__iter__") or hasattr(source, "__next__"):
        return StreamSource(source, keep=keep)
    raise TypeError(
        f"cannot read frames from a {type(source).__name__}; expected a path, an array "
        "(T, H, W[, C]), a list of frames or an iterable of frames"
    )


def _open_path(path: Path, time_axis: int, cache_size: int) -> FrameSource:
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise ValueError(f"video source {path} does not exist")
    name = path.name.lower()
    if name.endswith(_TIFF_EXTENSIONS):
        return TiffSource(path, time_axis=time_axis)
    if name.endswith(VIDEO_EXTENSIONS):
        return VideoFileSource(path, cache_size=cache_size)
    if name.endswith(IMAGE_EXTENSIONS):
        return ImageFilesSource([path], name=str(path))
    # unknown extension: let FFmpeg try, with a clear error if it cannot
    try:
        return VideoFileSource(path, cache_size=cache_size)
    except ValueError as e:
        raise ValueError(
            f"unsupported video source {path}: not a folder, image, TIFF stack or a video "
            f"file FFmpeg can read ({e})"
        ) from e
