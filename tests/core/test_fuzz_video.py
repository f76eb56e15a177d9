"""Fuzz: bad and edge inputs to the video predictor and the streaming session, each with its
asserted outcome category (see ``tests/core/_fuzz.py``). Random nano weights at 256², 4 frames
of 32 x 48: a few seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch

from tests.core._fuzz import Err, Ok, Warn, run_case

H, W, T = 32, 48, 4


def frames(n: int = T, dtype: Any = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(1)
    v = rng.integers(0, 80, (n, H, W, 3)).astype(dtype)
    v[:, 8:20, 10:30] = 220
    return v


@pytest.fixture(scope="module")
def model() -> Any:
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    torch.manual_seed(0)
    m = SAM2Model(get_config("sam2.1_hiera_nano")).eval()
    with torch.no_grad():  # keep objects "present" so masks are not all gated
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 8.0
    return m


@pytest.fixture()
def pred(model: Any) -> Any:
    from sam2_plugins.predictors.video import SAM2VideoPredictor

    return SAM2VideoPredictor(model)


@pytest.fixture()
def state(pred: Any) -> Any:
    return pred.init_state(frames())


def _masks(n_obj: int) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        frame_idx, obj_ids, masks = out
        assert len(obj_ids) == n_obj and tuple(masks.shape) == (n_obj, 1, H, W)

    return check


PT = [[20.0, 14.0]]
PROMPT_CASES: List[Tuple[str, Dict[str, Any], Any]] = [
    ("label_7", dict(points=PT, labels=[7]), Err(ValueError, r"labels must be integers in .*\[7\]")),
    ("label_0.7", dict(points=PT, labels=[0.7]), Err(ValueError, r"integers in .*0\.7")),
    ("label_pos", dict(points=PT, labels=["pos"]), Err(TypeError, "labels must hold numbers")),
    ("label_nan", dict(points=PT, labels=[float("nan")]), Err(ValueError, "integers in")),
    ("labels_count", dict(points=[[1.0, 2.0], [3.0, 4.0]], labels=[1]), Err(ValueError, "labels must be")),
    ("point_nan", dict(points=[[float("nan"), 1.0]], labels=[1]), Err(ValueError, "NaN or infinite")),
    ("point_strings", dict(points=[["x", "y"]], labels=[1]), Err(TypeError, "points must hold numbers")),
    ("point_xyz", dict(points=[[1.0, 2.0, 3.0]], labels=[1]), Err(ValueError, r"\(N, 2\)")),
    ("points_no_labels", dict(points=PT), Err(ValueError, "provided together")),
    ("nothing", dict(), Err(ValueError, "at least one of points or box")),
    ("box_nan", dict(box=[1.0, float("nan"), 20.0, 20.0]), Err(ValueError, "box holds NaN or infinite")),
    ("box_inf", dict(box=[1.0, 2.0, float("inf"), 20.0]), Err(ValueError, "NaN or infinite")),
    ("box_3", dict(box=[1.0, 2.0, 3.0]), Err(ValueError, r"4 numbers \(x0, y0, x1, y1\)")),
    ("box_strings", dict(box="0,0,10,10"), Err(TypeError, "box must hold numbers")),
    ("box_keep_points", dict(box=[1.0, 1.0, 20.0, 20.0], clear_old_points=False), Err(ValueError, "cannot add box")),
    ("box_flipped", dict(box=[40.0, 25.0, 5.0, 4.0]), Warn(r"reordered to \(5, 4, 40, 25\)", _masks(1))),
    ("box_zero_area", dict(box=[5.0, 4.0, 5.0, 25.0]), Warn("zero width or height", _masks(1))),
    ("point_outside", dict(points=[[60.0, 14.0]], labels=[1]), Warn("outside the frame of 48x32", _masks(1))),
    ("box_outside", dict(box=[-4.0, 0.0, 60.0, 20.0]), Warn("box lie partly outside", _masks(1))),
    ("normalized_outside", dict(points=[[1.5, 0.5]], labels=[1], normalize_coords=False), Warn(r"\[0, 1\]", _masks(1))),
    ("normalized_inside", dict(points=[[0.4, 0.4]], labels=[1], normalize_coords=False), Ok(_masks(1))),
    ("negative_click", dict(points=PT, labels=[0]), Ok(_masks(1))),
    ("torch_inputs", dict(points=torch.tensor(PT), labels=torch.tensor([1])), Ok(_masks(1))),
    ("box_and_points", dict(box=[5.0, 4.0, 40.0, 25.0], points=PT, labels=[1]), Ok(_masks(1))),
]


@pytest.mark.parametrize("kwargs,outcome", [c[1:] for c in PROMPT_CASES], ids=[c[0] for c in PROMPT_CASES])
def test_points_and_boxes(pred: Any, state: Any, kwargs: Dict[str, Any], outcome: Any) -> None:
    run_case(lambda: pred.add_new_points_or_box(state, 0, 1, **kwargs), outcome)
    if isinstance(outcome, Err):
        assert state.obj_ids == []  # a refused prompt creates no object


OBJ_CASES: List[Tuple[str, Any, Any]] = [
    ("str_after_int", "1", Err(ValueError, r"obj_id '1' \(str\) clashes with the existing obj_id 1 \(int\)")),
    ("bool", True, Err(TypeError, "obj_id must be an int or str, got bool")),
    ("float", 1.5, Err(TypeError, "obj_id must be an int or str, got float")),
    ("none", None, Err(TypeError, "obj_id must be an int or str")),
    ("tuple", (1, 2), Err(TypeError, "obj_id must be an int or str")),
    ("numpy_int_same_object", np.int64(1), Ok(_masks(1))),
    ("another_int", 2, Ok(_masks(2))),
    ("unrelated_str", "car", Ok(_masks(2))),
]


@pytest.mark.parametrize("obj_id,outcome", [c[1:] for c in OBJ_CASES], ids=[c[0] for c in OBJ_CASES])
def test_object_ids(pred: Any, state: Any, obj_id: Any, outcome: Any) -> None:
    pred.add_new_points_or_box(state, 0, 1, points=PT, labels=[1])
    run_case(lambda: pred.add_new_points_or_box(state, 0, obj_id, points=PT, labels=[1]), outcome)


FRAME_CASES = [
    ("minus_1", -1, Err(IndexError, r"frame_idx -1 is out of range .* 0\.\.3")),
    ("past_end", T, Err(IndexError, "out of range")),
    ("float", 1.0, Err(TypeError, "frame_idx must be an int")),
    ("bool", True, Err(TypeError, "frame_idx must be an int")),
    ("numpy_int", np.int32(2), Ok(lambda out: None if out[0] == 2 else pytest.fail("frame"))),
]


@pytest.mark.parametrize("frame_idx,outcome", [c[1:] for c in FRAME_CASES], ids=[c[0] for c in FRAME_CASES])
def test_frame_index(pred: Any, state: Any, frame_idx: Any, outcome: Any) -> None:
    run_case(lambda: pred.add_new_points_or_box(state, frame_idx, 1, points=PT, labels=[1]), outcome)


MASK_CASES: List[Tuple[str, Any, Any]] = [
    ("three_d", np.zeros((1, H, W)), Err(ValueError, r"mask must be 2D \(H, W\)")),
    ("zero_size", np.zeros((0, W)), Err(ValueError, "mask is empty .zero size")),
    ("nan", np.full((H, W), np.nan), Err(ValueError, "mask holds NaN")),
    ("strings", np.full((H, W), "a"), Err(TypeError, "mask must hold numbers")),
    ("probabilities", np.full((H, W), 0.3), Warn("values other than 0 and 1", _masks(1))),
    ("all_zero", np.zeros((H, W), bool), Warn(r"empty \(no pixel set\)", _masks(1))),
    ("other_size", np.pad(np.ones((8, 8), bool), 20), Ok(_masks(1))),
    ("torch_bool", torch.zeros(H, W, dtype=torch.bool).index_fill_(0, torch.arange(5, 15), True), Ok(_masks(1))),
]


@pytest.mark.parametrize("mask,outcome", [c[1:] for c in MASK_CASES], ids=[c[0] for c in MASK_CASES])
def test_mask_prompts(pred: Any, state: Any, mask: Any, outcome: Any) -> None:
    run_case(lambda: pred.add_new_mask(state, 0, 1, mask), outcome)


def _yields(expected: List[int]) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        assert [f for f, _, _ in out] == expected

    return check


PROPAGATE_CASES: List[Tuple[str, Dict[str, Any], Any]] = [
    ("reverse_from_0_yields_nothing", dict(reverse=True), Ok(_yields([]))),  # documented, as upstream
    ("reverse_from_2", dict(start_frame_idx=2, reverse=True), Ok(_yields([2, 1, 0]))),
    ("both_from_0", dict(direction="both"), Ok(_yields([0, 1, 2, 3]))),
    ("zero_frames_to_track", dict(max_frame_num_to_track=0), Ok(_yields([0]))),
    ("bad_direction", dict(direction="sideways"), Err(ValueError, "direction must be one of")),
    ("negative_max_frames", dict(max_frame_num_to_track=-1), Err(ValueError, "max_frame_num_to_track must be >= 0")),
    ("bool_max_frames", dict(max_frame_num_to_track=True), Err(ValueError, "max_frame_num_to_track must be >= 0")),
    ("start_past_end", dict(start_frame_idx=9), Err(IndexError, "out of range")),
]


@pytest.mark.parametrize("kwargs,outcome", [c[1:] for c in PROPAGATE_CASES], ids=[c[0] for c in PROPAGATE_CASES])
def test_propagate(pred: Any, state: Any, kwargs: Dict[str, Any], outcome: Any) -> None:
    pred.add_new_points_or_box(state, 0, 1, points=PT, labels=[1])
    run_case(lambda: list(pred.propagate_in_video(state, **kwargs)), outcome)


def test_propagate_without_prompts(pred: Any, state: Any) -> None:
    run_case(lambda: list(pred.propagate_in_video(state)), Err(RuntimeError, "No input points or masks"))


# ---- frame sources: checked when opened, or named by index when found later ------------------
def _jpeg_folder(tmp: Path, sizes: List[Tuple[int, int]], corrupt: Optional[Dict[int, bytes]] = None) -> str:
    corrupt = corrupt or {}
    from PIL import Image

    d = tmp / "jpgs"
    d.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(d / f"{i:05d}.jpg", quality=95)
        if i in corrupt:
            data = (d / f"{i:05d}.jpg").read_bytes()
            (d / f"{i:05d}.jpg").write_bytes(corrupt[i] if corrupt[i] else data[: len(data) * 2 // 3])
    return str(d)


def _noise_jpeg_folder(tmp: Path) -> str:
    from PIL import Image

    d = tmp / "noise"
    d.mkdir()
    for i in range(T):
        arr = np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"{i:05d}.jpg", quality=95)
    data = (d / "00002.jpg").read_bytes()
    (d / "00002.jpg").write_bytes(data[: len(data) // 2])  # a truncated body: the header still reads
    return str(d)


def _mixed_gen() -> Any:
    yield np.zeros((H, W, 3), np.uint8)
    yield np.zeros((H + 2, W, 3), np.uint8)


SOURCE_CASES: List[Tuple[str, Callable[[Path], Any], Any]] = [
    ("empty_list", lambda tmp: [], Err(ValueError, "empty list of frames")),
    ("empty_bytes", lambda tmp: b"", Err(ValueError, "empty video")),
    ("missing_path", lambda tmp: str(tmp / "nope.mp4"), Err(ValueError, "does not exist")),
    ("dict", lambda tmp: {"a": 1}, Err(TypeError, "cannot read frames from a dict")),
    ("empty_generator", lambda tmp: iter(()), Err(ValueError, "yielded no frames")),
    (
        "list_mixed_sizes",
        lambda tmp: [np.zeros((H, W, 3), np.uint8)] * 2 + [np.zeros((H, W + 4, 3), np.uint8)],
        Err(ValueError, r"frame 2 of list of frames has size 32x52 .* frame 0 has 32x48"),
    ),
    ("generator_mixed_sizes", lambda tmp: _mixed_gen(), Err(ValueError, "frame 1 of stream has size 34x48")),
    (
        "list_nan_frame",
        lambda tmp: [np.zeros((H, W), np.float32), np.full((H, W), np.nan, np.float32)],
        Err(ValueError, "frame 1 of list of frames holds NaN"),
    ),
    (
        "array_nan_frame",
        lambda tmp: np.concatenate([frames(3, np.float32) / 255, np.full((1, H, W, 3), np.inf, np.float32)]),
        Err(ValueError, "frame 3 of array holds NaN or infinite"),
    ),
    (
        "folder_mixed_sizes",
        lambda tmp: _jpeg_folder(tmp, [(H, W), (H, W), (H + 8, W)]),
        Err(ValueError, r"frame 2 \(00002.jpg\) is 40x48 .* frame 0 \(00000.jpg\) is 32x48"),
    ),
    (
        "folder_not_a_jpeg",
        lambda tmp: _jpeg_folder(tmp, [(H, W)] * 3, {1: b"not a jpeg"}),
        Err(ValueError, r"could not read frame 1 \(.*00001.jpg\)"),
    ),
    ("time_axis_out_of_range", lambda tmp: frames(), Err(ValueError, "time_axis")),
    (
        "single_image_is_one_frame",
        lambda tmp: np.zeros((H, W, 3), np.uint8),
        Ok(lambda s: None if s["num_frames"] == 1 else pytest.fail("frames")),
    ),
    (
        "greyscale_uint16_volume",
        lambda tmp: np.arange(T * H * W, dtype=np.uint16).reshape(T, H, W),
        Ok(lambda s: None if s["num_frames"] == T else pytest.fail("frames")),
    ),
]


@pytest.mark.parametrize("make,outcome", [c[1:] for c in SOURCE_CASES], ids=[c[0] for c in SOURCE_CASES])
def test_frame_sources_checked_up_front(
    pred: Any, tmp_path: Path, make: Callable[[Path], Any], outcome: Any, request: pytest.FixtureRequest
) -> None:
    kw = {"time_axis": 7} if "time_axis" in request.node.name else {}
    run_case(lambda: pred.init_state(make(tmp_path), **kw), outcome)


def test_truncated_jpeg_found_later_is_named_and_stops_cleanly(pred: Any, tmp_path: Path) -> None:
    state = pred.init_state(_noise_jpeg_folder(tmp_path))  # headers are fine: opens
    pred.add_new_points_or_box(state, 0, 1, points=PT, labels=[1])
    seen = []
    with pytest.raises(ValueError, match=r"could not read frame 2 \(.*00002.jpg\): corrupted, truncated"):
        for f, _, m in pred.propagate_in_video(state):
            seen.append(f)
            assert torch.isfinite(m).all()
    assert seen == [0, 1]  # frames before it were tracked, nothing after it
    assert 2 not in state.objects[1].bank.non_cond  # no half-written output for the bad frame


def test_truncated_mp4_is_reported_before_tracking(pred: Any, tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "v.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:  # index first: opens when cut
        st = c.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        for i in range(12):
            f = np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    state = run_case(
        lambda: pred.init_state(str(path)),
        Warn(r"header says 12 frames but the stream holds \d+; the file is probably truncated"),
    )
    assert 1 <= state["num_frames"] < 12
    pred.add_new_points_or_box(state, 0, 1, points=PT, labels=[1])
    try:  # every counted frame decodes, or the one that does not is named
        assert len(list(pred.propagate_in_video(state))) == state["num_frames"]
    except ValueError as e:
        assert "could not decode frame" in str(e) and "truncated" in str(e)


# ---- the streaming session ---------------------------------------------------------------------
@pytest.fixture()
def session(model: Any) -> Any:
    from sam2_plugins.predictors.video.session import VideoSession

    return VideoSession(model)


def test_session_cases(model: Any, session: Any) -> None:
    from sam2_plugins.predictors.video.session import VideoSession

    run_case(lambda: session.add_points(1, points=PT, labels=[1]), Err(RuntimeError, r"no frame yet: call push"))
    run_case(lambda: VideoSession(model, num_frames=0), Err(ValueError, "num_frames must be >= 1"))
    v = frames()
    session.push(v[0])
    run_case(lambda: session.push(np.zeros((H, W, 5), np.uint8)), Err(ValueError, "frame must be HxW"))
    run_case(lambda: session.push(np.full((H, W), np.nan, np.float32)), Err(ValueError, "frame 1 holds NaN"))
    run_case(
        lambda: session.push(np.zeros((H + 1, W, 3), np.uint8)), Err(ValueError, "all frames must have the same size")
    )
    assert session.frame_idx == 0  # refused frames changed nothing
    run_case(lambda: session.add_points(1, points=PT, labels=[7]), Err(ValueError, "integers in"))
    run_case(
        lambda: session.add_points(1, points=PT, labels=[1], frame_idx=3),
        Err(ValueError, "only be given on the current frame"),
    )
    run_case(lambda: session.add_box(1, [40.0, 25.0, 5.0, 4.0]), Warn("reordered"))
    run_case(
        lambda: session.add_points("1", points=PT, labels=[1]), Err(ValueError, "clashes with the existing obj_id 1")
    )
    run_case(lambda: session.add_mask(2, np.zeros((H, W), bool)), Warn("empty"))
    res = run_case(lambda: session.track(), Ok(lambda r: None if r.obj_ids == [1, 2] else pytest.fail("ids")))
    assert res.masks().shape == (2, H, W)
