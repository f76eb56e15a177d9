"""Frame sources: arrays, lazy arrays, folders, mp4 (PyAV), TIFF stacks, streams, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2_plugins.io import (
    ArraySource,
    FrameSizeError,
    ImageFolderSource,
    StreamSource,
    TiffSource,
    VideoFileSource,
    open_frames,
)


def _frames(t: int = 12, h: int = 32, w: int = 48) -> np.ndarray:
    """Frames whose content encodes their index (a bright block moving right + index level)."""
    out = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, :, :, 0] = 10 + 12 * i
        out[i, 8:24, 2 * i : 2 * i + 12, 1] = 250
    return out


def _write_mp4(path: Path, frames: np.ndarray, gop: int = 4) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "yuv420p"
        s.codec_context.gop_size = gop
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


class CountingArray:
    """A lazy array-like: records which frames were read."""

    def __init__(self, arr: np.ndarray) -> None:
        self._arr = arr
        self.shape = arr.shape
        self.dtype = arr.dtype
        self.reads: list = []

    def __getitem__(self, key):  # noqa: ANN001
        self.reads.append(key)
        return self._arr[key]


def test_numpy_array_source() -> None:
    arr = _frames()
    src = open_frames(arr)
    assert isinstance(src, ArraySource)
    assert (src.num_frames, src.height, src.width) == (12, 32, 48)
    assert len(src) == 12
    np.testing.assert_array_equal(src.get(3), arr[3])
    np.testing.assert_array_equal(src[-1], arr[-1])
    assert len(list(src)) == 12
    with pytest.raises(IndexError):
        src.get(12)
    gray = open_frames(arr[..., 0].astype(np.uint16))
    assert gray.get(0).dtype == np.uint16 and gray.get(0).shape == (32, 48)


def test_lazy_array_reads_one_frame_at_a_time() -> None:
    lazy = CountingArray(_frames())
    src = open_frames(lazy)
    assert lazy.reads == []  # opening reads nothing
    np.testing.assert_array_equal(src.get(5), _frames()[5])
    assert len(lazy.reads) == 1 and lazy.reads[0][0] == 5


def test_dask_array_is_lazy() -> None:
    da = pytest.importorskip("dask.array")
    arr = da.from_array(_frames(), chunks=(1, 32, 48, 3))
    src = open_frames(arr)
    out = src.get(7)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, _frames()[7])


def test_volume_with_time_axis() -> None:
    vol = np.arange(4 * 5 * 6, dtype=np.int32).reshape(4, 5, 6)
    src = open_frames(vol, time_axis=2)
    assert (src.num_frames, src.height, src.width) == (6, 4, 5)
    np.testing.assert_array_equal(src.get(1), vol[:, :, 1])
    with pytest.raises(ValueError, match="channels"):
        ArraySource(np.zeros((2, 3, 4, 3)), time_axis=3)


def test_image_folder_integer_sort(tmp_path: Path) -> None:
    arr = _frames(t=11)
    for i, f in enumerate(arr):  # unpadded names: "10" must come after "9"
        Image.fromarray(f).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    src = open_frames(tmp_path)
    assert isinstance(src, ImageFolderSource)
    assert src.frame_names == [str(i) for i in range(11)]
    np.testing.assert_array_equal(src.get(10), arr[10])


def test_image_folder_natural_sort_and_palette(tmp_path: Path) -> None:
    for i in (1, 2, 10):
        im = Image.fromarray(np.full((6, 7), i % 4, np.uint8), mode="L").convert("P")
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        im.save(tmp_path / f"frame{i}.png")
    src = open_frames(tmp_path)
    assert src.frame_names == ["frame1", "frame2", "frame10"]
    assert src.get(2).dtype == np.uint8 and src.get(2).max() == 2  # raw palette indices


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no images"):
        open_frames(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        open_frames(tmp_path / "missing")
    # checked when the folder is opened (headers only), naming the first odd file
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "1.png")
    with pytest.raises(FrameSizeError, match=r"frame 1 \(1.png\) is 9x8 .* frame 0 \(0.png\) is 8x8"):
        open_frames(tmp_path)
    (tmp_path / "1.png").unlink()
    (tmp_path / "2.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"frame 1 \(.*2.jpg\): corrupted"):
        open_frames(tmp_path)


def test_mp4_random_access(tmp_path: Path) -> None:
    arr = _frames(t=20)
    path = tmp_path / "v.mp4"
    _write_mp4(path, arr, gop=4)
    src = open_frames(path, cache_size=2)
    assert isinstance(src, VideoFileSource)
    assert (src.num_frames, src.height, src.width) == (20, 32, 48)
    assert src.fps == pytest.approx(10.0)

    def ident(frame: np.ndarray) -> int:  # frame index from the red level (lossy codec)
        return int(round((float(frame[:, :, 0][28:, :].mean()) - 10) / 12))

    order = [0, 1, 2, 17, 5, 19, 3, 3, 12, 0, 18]  # forward, far jumps and steps back
    for i in order:
        f = src.get(i)
        assert f.shape == (32, 48, 3) and f.dtype == np.uint8
        assert ident(f) == i, (i, ident(f))
    assert len(src._cache) <= 2  # bounded memory
    assert [ident(f) for f in src] == list(range(20))
    src.close()


def test_corrupted_and_empty_video(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="corrupted|no video stream|no frames"):
        open_frames(bad)
    good = tmp_path / "good.mp4"
    _write_mp4(good, _frames(t=12))
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(good.read_bytes()[:300])  # header cut: the moov atom is gone
    with pytest.raises(ValueError):
        open_frames(trunc)
    with pytest.raises(ValueError, match="does not exist"):
        open_frames(tmp_path / "missing.mp4")
    odd = tmp_path / "thing.xyz"
    odd.write_bytes(b"hello")
    with pytest.raises(ValueError, match="unsupported"):
        open_frames(odd)


def test_tiff_stack(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    vol = (np.arange(5 * 9 * 11).reshape(5, 9, 11) * 7).astype(np.uint16)
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, vol)
    src = open_frames(p)
    assert isinstance(src, TiffSource)
    assert (src.num_frames, src.height, src.width) == (5, 9, 11)
    assert src._mode == "pages"  # page by page, not the whole stack
    np.testing.assert_array_equal(src.get(3), vol[3])
    side = open_frames(p, time_axis=2)
    np.testing.assert_array_equal(side.get(4), vol[:, :, 4])
    p2 = tmp_path / "one.tif"
    tifffile.imwrite(p2, vol[0])
    assert open_frames(p2).num_frames == 1
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="TIFF"):
        open_frames(bad)


def test_generator_stream() -> None:
    arr = _frames(t=6)
    src = open_frames((f for f in arr), keep=3)
    assert isinstance(src, StreamSource)
    assert src.num_frames is None and (src.height, src.width) == (32, 48)
    with pytest.raises(TypeError):
        len(src)
    np.testing.assert_array_equal(src.get(4), arr[4])
    with pytest.raises(RuntimeError, match="no longer available"):
        src.get(0)
    with pytest.raises(IndexError):
        src.get(6)
    assert src.num_frames == 6  # known once exhausted

    def bad_sizes():
        yield np.zeros((4, 4), np.uint8)
        yield np.zeros((5, 4), np.uint8)

    s2 = open_frames(bad_sizes())
    with pytest.raises(FrameSizeError):
        s2.get(1)
    with pytest.raises(ValueError, match="no frames"):
        open_frames(iter([]))


def test_lists_and_bad_types(tmp_path: Path) -> None:
    arr = _frames(t=3)
    src = open_frames([Image.fromarray(f) for f in arr])
    np.testing.assert_array_equal(src.get(2), arr[2])
    paths = []
    for i, f in enumerate(arr):
        paths.append(tmp_path / f"x{i}.png")
        Image.fromarray(f).save(paths[-1])
    assert open_frames(paths[::-1]).get(0)[0, 0, 0] == arr[2][0, 0, 0]  # list order kept
    with pytest.raises(ValueError, match="empty"):
        open_frames([])
    with pytest.raises(TypeError):
        open_frames(3.5)
    with pytest.raises(ValueError):
        open_frames(np.zeros((0, 4, 4)))
    with pytest.raises(ValueError):
        open_frames(np.zeros((2, 3, 4, 5, 6)))
    torch = pytest.importorskip("torch")
    t = open_frames(torch.from_numpy(arr))
    np.testing.assert_array_equal(t.get(1), arr[1])


def test_base_frame_source_names_the_method_a_subclass_forgot():
    """The base class's hooks fail with the missing method's name, not deep inside get()."""
    from sam2_plugins.io.base import FrameSource

    class NoRead(FrameSource):
        num_frames = 2

    with pytest.raises(NotImplementedError, match=r"NoRead must define _read\(idx\)"):
        NoRead().get(0)

    class Stream(FrameSource):
        num_frames = None

        def _read(self, idx: int):
            return np.zeros((4, 4), np.uint8)

    with pytest.raises(NotImplementedError, match="Stream has no length and defines no __iter__"):
        next(iter(Stream()))
