"""Video files (mp4, mov, avi, mkv, webm, ...) decoded lazily with PyAV.

Frames are decoded on demand and never all held in memory: a small LRU cache keeps the most
recent frames, forward access keeps decoding from where the decoder stands, and a jump
backwards (or far forwards) seeks to the nearest earlier keyframe. The frame <-> timestamp map
used for seeking comes from demuxing packets (no decoding) and is built only when first needed.

Not thread-safe: use one source per thread.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union, cast

import numpy as np

from .base import FrameSource

__all__ = ["VideoFileSource", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif", ".ts")


def _import_av() -> Any:
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading video files needs PyAV: pip install 'sam2-plugins[video]' (or pip install av)"
        ) from e
    return av


class VideoFileSource(FrameSource):
    """Frames of a video file as RGB ``uint8`` arrays ``(H, W, 3)``.

    Args:
        path: the video file.
        cache_size: how many decoded frames to keep (LRU).
        forward_window: a request up to this many frames ahead of the decoder is served by
            decoding forward; further ahead (or any step back) seeks to a keyframe instead.

    Raises:
        ValueError: the file is missing, corrupted, has no video stream or no decodable frame.
    """

    def __init__(self, path: Union[str, Path], cache_size: int = 16, forward_window: int = 48) -> None:
        av = _import_av()
        self._av = av
        self._path = Path(path)
        if not self._path.is_file():
            raise ValueError(f"video file {self._path} does not exist")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._cache_size = cache_size
        self._forward_window = max(1, forward_window)
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._container: Any = cast(Any, None)  # cast: mypy must not narrow it to None (_open sets it)
        self._pts: Optional[List[int]] = None  # presentation timestamps in frame order
        self._pts_to_idx: Dict[int, int] = {}
        self._keyframes: List[int] = []
        self._open()
        # read the header fields now: _restart() reopens the container, after which the old
        # stream object must not be touched
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None
        n = int(self._stream.frames or 0)
        # decode frame 0 now: it validates the file and gives the true frame size
        self._frames: Optional[Iterator[Any]] = self._container.decode(self._stream)
        self._next: Optional[int] = 0  # index of the next frame the decoder will give
        first = self._decode_until(0)
        self.height, self.width = first.shape[:2]
        # count the frames in the stream now (demuxing reads packets without decoding them): a
        # truncated file whose header promises more frames is reported before any tracking
        self._build_index()
        found = len(self._pts or [])
        if n > 0 and found and found != n:
            warnings.warn(
                f"video {self._path}: the header says {n} frames but the stream holds {found}"
                + ("; the file is probably truncated (the last frames may not decode)" if found < n else "")
                + f"; using {found} frames", UserWarning, stacklevel=3)
        n = found or n
        self.num_frames = n
        if n == 0:
            raise ValueError(f"video {self._path} has no frames")

    # ---- container handling -------------------------------------------------------------
    def _open(self) -> None:
        av = self._av
        self.close()
        try:
            self._container = av.open(str(self._path))
        except av.error.FFmpegError as e:
            raise ValueError(f"could not open video {self._path}: corrupted or unsupported ({e})") from e
        if not self._container.streams.video:
            self.close()
            raise ValueError(f"{self._path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._frames = None
        self._next = None

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None

    def __del__(self) -> None:  # best effort; sources are also context managers
        try:
            self.close()
        except Exception:
            pass

    def describe(self) -> str:
        return str(self._path)

    def _build_index(self) -> None:
        """Demux (without decoding) to learn every frame's timestamp and the keyframes."""
        av = self._av
        entries = []
        try:
            with av.open(str(self._path)) as c:
                for pkt in c.demux(c.streams.video[0]):
                    if pkt.size == 0 or pkt.pts is None:
                        continue  # flush packets carry no frame
                    entries.append((int(pkt.pts), bool(pkt.is_keyframe)))
        except av.error.FFmpegError as e:
            raise ValueError(f"could not read video {self._path}: corrupted ({e})") from e
        entries.sort()
        self._pts = [p for p, _ in entries]
        self._pts_to_idx = {p: i for i, p in enumerate(self._pts)}
        self._keyframes = [i for i, (_, k) in enumerate(entries) if k] or [0]

    # ---- decoding -----------------------------------------------------------------------
    def _remember(self, idx: int, frame: np.ndarray) -> None:
        self._cache[idx] = frame
        self._cache.move_to_end(idx)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _restart(self) -> None:
        self._open()
        self._frames = self._container.decode(self._stream)
        self._next = 0

    def _seek(self, idx: int) -> None:
        if self._pts is None:
            self._build_index()
        assert self._pts is not None
        if not self._pts or idx >= len(self._pts):
            self._restart()
            return
        key = max((k for k in self._keyframes if k <= idx), default=0)
        if key == 0:
            self._restart()
            return
        self._container.seek(self._pts[key], stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._next = None  # learnt from the first decoded frame's timestamp

    def _decode_until(self, idx: int) -> np.ndarray:
        av = self._av
        if self._frames is None:
            self._restart()
        while True:
            try:
                frame = next(self._frames)  # type: ignore[arg-type]
            except StopIteration:
                self._frames = None
                raise ValueError(
                    f"could not decode frame {idx} of video {self._path}: the stream ended after frame "
                    f"{(self._next or 0) - 1}" + (f" although {self.num_frames} frames were counted"
                                                  if self.num_frames else "") + "; the file may be truncated"
                ) from None
            except av.error.FFmpegError as e:
                self._frames = None
                raise ValueError(f"could not decode frame {idx} of {self._path}: corrupted ({e})") from e
            if self._next is None:  # just after a seek: place the frame by its timestamp
                pos = self._pts_to_idx.get(frame.pts) if frame.pts is not None else None
                if pos is None or pos > idx:
                    self._restart()  # timestamps unusable: decode from the start instead
                    continue
                self._next = pos
            cur = self._next
            self._next = cur + 1
            if cur >= idx - self._cache_size:
                arr = frame.to_ndarray(format="rgb24")
                self._remember(cur, arr)
                if cur == idx:
                    return arr

    def _read(self, idx: int) -> np.ndarray:
        if idx in self._cache:
            self._cache.move_to_end(idx)
            return self._cache[idx]
        nxt = self._next
        if self._frames is None or nxt is None or not nxt <= idx < nxt + self._forward_window:
            self._seek(idx)
        return self._decode_until(idx)
