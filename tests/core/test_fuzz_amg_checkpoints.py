"""Fuzz: the automatic mask generator's parameters and inputs, and checkpoint files / names,
each with its asserted outcome category (see ``tests/core/_fuzz.py``)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

from tests.core._fuzz import Err, Ok, Warn, run_case

IMG = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model() -> Any:
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    torch.manual_seed(0)
    return SAM2Model(get_config("sam2.1_hiera_nano")).eval()


AMG_PARAM_CASES: List[Tuple[str, Dict[str, Any], Any]] = [
    ("points_per_side_0", dict(points_per_side=0), Err(ValueError, "points_per_side must be positive")),
    ("points_per_side_negative", dict(points_per_side=-3), Err(ValueError, "points_per_side must be positive")),
    ("no_grid", dict(points_per_side=None), Err(ValueError, "exactly one of points_per_side or point_grids")),
    ("two_grids", dict(points_per_side=4, point_grids=[np.zeros((2, 2))]), Err(ValueError, "exactly one of")),
    ("grid_bad_shape", dict(points_per_side=None, point_grids=[np.zeros((3, 3))]), Err(ValueError, r"shape \(N, 2\)")),
    ("output_mode", dict(output_mode="png"), Err(ValueError, "output_mode must be one of")),
    ("crop_layers_negative", dict(crop_n_layers=-1), Err(ValueError, "crop_n_layers must be >= 0")),
    ("points_per_batch_0", dict(points_per_batch=0), Err(ValueError, "points_per_batch must be positive")),
    ("stability_above_1", dict(stability_score_thresh=1.5), Err(ValueError, "stability_score_thresh must be <= 1")),
    ("iou_nan", dict(pred_iou_thresh=float("nan")), Err(ValueError, "pred_iou_thresh must be a number")),
    ("iou_string", dict(pred_iou_thresh="high"), Err(ValueError, "pred_iou_thresh must be a number")),
    ("nms_none", dict(box_nms_thresh=None), Err(ValueError, "box_nms_thresh must be a number")),
    ("iou_2_warns", dict(pred_iou_thresh=2.0), Warn(r"pred_iou_thresh=2.0 is >= 1")),
]


@pytest.mark.parametrize("kwargs,outcome", [c[1:] for c in AMG_PARAM_CASES], ids=[c[0] for c in AMG_PARAM_CASES])
def test_amg_parameters(model: Any, kwargs: Dict[str, Any], outcome: Any) -> None:
    from sam2_plugins.predictors.image import SAM2AutomaticMaskGenerator

    kw = dict(points_per_side=4, **kwargs) if "points_per_side" not in kwargs else kwargs
    run_case(lambda: SAM2AutomaticMaskGenerator(model, **kw), outcome)


def _all_below_iou(records: Any) -> None:
    assert records == []


AMG_GENERATE_CASES: List[Tuple[str, Dict[str, Any], Any, Any]] = [
    (
        "iou_2_explains_empty",
        dict(pred_iou_thresh=2.0),
        IMG,
        Warn(r"0 masks: all 48 candidates fell below pred_iou_thresh.*highest predicted IoU", _all_below_iou),
    ),
    (
        "stability_1_explains_empty",
        dict(pred_iou_thresh=0.0, stability_score_thresh=1.0),
        IMG,
        Warn(
            r"0 masks: all 48 candidates fell below stability_score_thresh|0 of 48 candidate masks kept", _all_below_iou
        ),
    ),
    ("nan_image", {}, np.full((16, 16, 3), np.nan, np.float32), Err(ValueError, "NaN")),
    ("list_image", {}, [[1, 2], [3, 4]], Err(TypeError, "numpy array")),
    ("empty_image", {}, np.zeros((0, 4, 3), np.uint8), Err(ValueError, "empty|HxW|zero")),
    (
        "loose_thresholds",
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),
        IMG,
        Ok(
            lambda recs: (
                None
                if len(recs) > 0 and all(r["segmentation"].shape == (32, 32) for r in recs)
                else pytest.fail(f"{len(recs)} records")
            )
        ),
    ),
]


@pytest.mark.parametrize(
    "kwargs,image,outcome", [c[1:] for c in AMG_GENERATE_CASES], ids=[c[0] for c in AMG_GENERATE_CASES]
)
def test_amg_generate(model: Any, kwargs: Dict[str, Any], image: Any, outcome: Any) -> None:
    import warnings

    from sam2_plugins.predictors.image import SAM2AutomaticMaskGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constructor's own warning is tested above
        gen = SAM2AutomaticMaskGenerator(model, points_per_side=4, **kwargs)
    run_case(lambda: gen.generate(image), outcome)
    st = gen.last_stats
    if not isinstance(outcome, Err):  # every candidate is accounted for
        assert st.candidates == 48
        assert st.candidates == st.pred_iou + st.stability + st.crop_edge + st.box_nms + st.crop_nms + st.kept


# ---- checkpoints ---------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("true",))


def _zip_cut(p: Path) -> Path:
    torch.save({"model": {"w": torch.randn(64, 64)}}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


FILE_CASES: List[Tuple[str, Callable[[Path], Path], Any]] = [
    (
        "text_file",
        lambda d: _write(d / "a.pt", b"not a checkpoint at all"),
        Err(ValueError, "is not a checkpoint: it is a text file"),
    ),
    ("json_file", lambda d: _write(d / "a.pt", b'{"model": 1}'), Err(ValueError, "it is a text file")),
    ("binary_junk", lambda d: _write(d / "a.pt", bytes(range(1, 60))), Err(ValueError, "unknown binary format")),
    ("empty", lambda d: _write(d / "a.pt", b""), Err(ValueError, r"is empty \(0 bytes\)")),
    ("truncated_zip", lambda d: _zip_cut(d / "a.pt"), Err(ValueError, "truncated or corrupt")),
    ("missing", lambda d: d / "nope.pt", Err(ValueError, "checkpoint file not found")),
    ("folder", lambda d: d, Err(ValueError, "is a folder")),
    (
        "pickled_code",
        lambda d: _torch_save(d / "a.pt", {"model": {"w": torch.zeros(1)}, "x": _Evil()}),
        Err(ValueError, "refusing to load .* pickled Python objects or code"),
    ),
    (
        "plain_pickle_code",
        lambda d: _write(d / "a.pkl", pickle.dumps(_Evil())),
        Err(ValueError, "refusing to load|not a checkpoint"),
    ),
    (
        "not_tensors",
        lambda d: _torch_save(d / "a.pt", {"model": {"w": [1, 2]}}),
        Err(ValueError, "entries are not tensors"),
    ),
    (
        "optimizer_only",
        lambda d: _torch_save(d / "a.pt", {"optimizer": {"lr": 1.0}}),
        Err(ValueError, "not a SAM 2 checkpoint"),
    ),
    (
        "safetensors_junk",
        lambda d: _write(d / "a.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{junk"),
        Err(ValueError, "not a valid safetensors file"),
    ),
    (
        "legacy_pickle_ok",
        lambda d: _torch_save(d / "a.pt", {"model": {"w": torch.ones(2)}}, legacy=True),
        Ok(lambda sd: None if torch.equal(sd["w"], torch.ones(2)) else pytest.fail("w")),
    ),
    (
        "lightning_ckpt_ok",
        lambda d: _torch_save(d / "a.ckpt", {"state_dict": {"model.w": torch.ones(2)}}),
        Ok(lambda sd: None if set(sd) == {"w"} else pytest.fail(str(sd))),
    ),
]


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _torch_save(p: Path, obj: Any, legacy: bool = False) -> Path:
    torch.save(obj, p, _use_new_zipfile_serialization=not legacy)
    return p


@pytest.mark.parametrize("make,outcome", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_checkpoint_files(tmp_path: Path, make: Callable[[Path], Path], outcome: Any) -> None:
    from sam2_plugins.checkpoints import load_state_dict_file

    path = make(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    run_case(lambda: load_state_dict_file(path), outcome)
    if before is not None:
        assert path.read_bytes() == before  # a checkpoint is never modified by loading it


BUILD_CASES: List[Tuple[str, Dict[str, Any], Any]] = [
    ("unknown_name", dict(name="sam3_giant"), Err(ValueError, "unknown model name")),
    (
        "download_no_official_file",
        dict(name="sam2.1_hiera_nano", checkpoint="download"),
        Err(ValueError, "no official download"),
    ),
    (
        "checkpoint_int",
        dict(name="sam2.1_hiera_nano", checkpoint=123),
        Err(ValueError, "checkpoint must be None, 'download', 'demo' or a file path"),
    ),
    (
        "checkpoint_typo",
        dict(name="sam2.1_hiera_nano", checkpoint="Download"),
        Err(ValueError, "did you mean 'download'"),
    ),
    ("bad_mode", dict(name="sam2.1_hiera_nano", mode="infer"), Err(ValueError, "mode must be 'eval' or 'train'")),
    ("bad_device", dict(name="sam2.1_hiera_nano", device="tpu7"), Err((ValueError, RuntimeError), "device|tpu7")),
]


@pytest.mark.parametrize("kwargs,outcome", [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES])
def test_build(kwargs: Dict[str, Any], outcome: Any) -> None:
    from sam2_plugins import build_sam2

    run_case(lambda: build_sam2(**kwargs), outcome)


def test_checkpoint_of_another_size_names_the_model(tmp_path: Path, model: Any) -> None:
    from sam2_plugins import build_sam2

    torch.save({"model": model.state_dict()}, tmp_path / "nano.pt")
    run_case(
        lambda: build_sam2("sam2.1_hiera_tiny", checkpoint=str(tmp_path / "nano.pt"), device="cpu"),
        Err(ValueError, "sam2.1_hiera_nano"),
    )
