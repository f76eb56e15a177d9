"""Every input kind through the video predictor and the session (nano model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import numpy as np
import pytest
import torch

from sam2_plugins.configs import get_config
from sam2_plugins.modeling.sam2 import SAM2Model
from sam2_plugins.predictors.video import SAM2VideoPredictor
from sam2_plugins.predictors.video.frames import normalize_frame
from sam2_plugins.predictors.video.session import VideoSession

H, W, T = 32, 48, 4


@pytest.fixture(scope="module")
def model() -> SAM2Model:
    torch.manual_seed(0)
    return SAM2Model(get_config("sam2.1_hiera_nano")).eval()


def frames_u8() -> np.ndarray:
    rng = np.random.default_rng(1)
    v = rng.integers(0, 80, (T, H, W, 3), dtype=np.uint8)
    v[:, 8:20, 10:30] = 220
    return v


def _folder(tmp: Path) -> str:
    from PIL import Image

    d = tmp / "jpgs"
    d.mkdir()
    for i, f in enumerate(frames_u8()):
        Image.fromarray(f).save(d / f"{i}.jpg")  # int names, unpadded: sorted numerically
    return str(d)


def _mp4(tmp: Path) -> str:
    av = pytest.importorskip("av")
    path = tmp / "clip.mp4"
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        for f in frames_u8():
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return str(path)


def _dask(tmp: Path) -> Any:
    da = pytest.importorskip("dask.array")
    return da.from_array(frames_u8(), chunks=(1, H, W, 3))


def _volume(tmp: Path) -> np.ndarray:
    rng = np.random.default_rng(2)
    vol = rng.integers(0, 500, (T, H, W), dtype=np.uint16)  # Z as time, 16-bit grey
    vol[:, 10:20, 10:25] = 4000
    return vol


def _tiff(tmp: Path) -> str:
    tifffile = pytest.importorskip("tifffile")
    path = tmp / "stack.tif"
    tifffile.imwrite(path, _volume(tmp))
    return str(path)


SOURCES: Dict[str, Callable[[Path], Any]] = {
    "array": lambda tmp: frames_u8(),
    "torch": lambda tmp: torch.from_numpy(frames_u8()),
    "list": lambda tmp: list(frames_u8()),
    "folder": _folder,
    "mp4": _mp4,
    "mp4_bytes": lambda tmp: Path(_mp4(tmp)).read_bytes(),
    "dask": _dask,
    "volume": _volume,
    "tiff": _tiff,
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_predictor_reads_every_kind(kind: str, model: SAM2Model, tmp_path: Path) -> None:
    src = SOURCES[kind](tmp_path)
    p = SAM2VideoPredictor(model)
    s = p.init_state(src)
    assert (s["num_frames"], s["video_height"], s["video_width"]) == (T, H, W)
    p.add_new_points_or_box(s, 0, 1, points=[[20, 14]], labels=[1])
    out = [(f, m.shape) for f, _, m in p.propagate_in_video(s)]
    assert out == [(i, (1, 1, H, W)) for i in range(T)]
    assert s.frames.cache_size < T  # frames are lazy: not all features are kept


def test_generator_input_for_predictor_and_session(model: SAM2Model) -> None:
    def gen() -> Iterator[np.ndarray]:
        yield from frames_u8()

    p = SAM2VideoPredictor(model)
    s = p.init_state(gen())
    assert s["num_frames"] == T
    sess = VideoSession(model)
    res = list(sess.run(gen(), {1: [dict(obj_id=5, box=[5, 5, 30, 25])]}))
    assert [r.frame_idx for r in res] == list(range(T))
    assert res[0].obj_ids == [] and res[1].obj_ids == [5] and res[-1].mask_logits.shape == (1, 1, H, W)


@pytest.mark.parametrize("kind", ["mp4", "volume", "dask"])
def test_session_reads_kind(kind: str, model: SAM2Model, tmp_path: Path) -> None:
    sess = VideoSession(model)
    res = list(sess.run(SOURCES[kind](tmp_path), {0: [dict(obj_id=1, points=[[20, 14]], labels=[1])]}))
    assert len(res) == T and sess.num_frames == T


def test_folder_matches_array_numerics(tmp_path: Path) -> None:
    """The JPEG folder path reads exactly what upstream's loader reads."""
    from PIL import Image

    from sam2_plugins.io import open_frames

    folder = _folder(tmp_path)
    src = open_frames(folder)
    x = normalize_frame(src.get(2), 64)
    img = np.array(Image.open(Path(folder) / "2.jpg").convert("RGB").resize((64, 64))) / 255.0
    ref = (torch.from_numpy(img).permute(2, 0, 1).float()
           - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert torch.equal(x, ref)


def test_normalize_frame_dtypes() -> None:
    g = np.random.default_rng(0).integers(0, 255, (H, W), dtype=np.uint8)
    rgb = np.repeat(g[..., None], 3, -1)
    assert torch.equal(normalize_frame(g, 32), normalize_frame(rgb, 32))
    rgba = np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], -1)
    assert torch.equal(normalize_frame(rgba, 32), normalize_frame(rgb, 32))
    f = normalize_frame(g.astype(np.uint16) * 200, 32)
    assert f.shape == (3, 32, 32) and f.dtype == torch.float32 and torch.isfinite(f).all()
    with pytest.raises(ValueError, match="frame must be"):
        normalize_frame(np.zeros((H, W, 5), np.uint8), 32)
