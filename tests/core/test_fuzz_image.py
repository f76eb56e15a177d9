"""Fuzz: bad and edge inputs to the image predictor, each with its asserted outcome category
(see ``tests/core/_fuzz.py``). Random nano weights at 256², a 40 x 50 image: a few seconds."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

from tests.core._fuzz import Err, Ok, Warn, run_case

IMG = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
P = np.array([[10.0, 12.0]])
L1 = np.array([1])


@pytest.fixture(scope="module")
def model() -> Any:
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    torch.manual_seed(0)
    return SAM2Model(get_config("sam2.1_hiera_nano")).eval()


@pytest.fixture(scope="module")
def ready(model: Any) -> Any:
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    p = SAM2ImagePredictor(model)
    p.set_image(IMG)
    return p


def _shape(c: int = 3) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        masks, ious, low = out
        assert masks.shape == (c, 40, 50) and ious.shape == (c,) and low.shape[0] == c

    return check


def _batch_shape(b: int) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        assert out[0].shape == (b, 1, 40, 50) and out[1].shape == (b, 1)

    return check


def _logits(out: Any) -> None:
    masks = out[0]
    assert masks.shape == (3, 40, 50) and masks.dtype == np.float32
    assert not np.isin(masks, (0.0, 1.0)).all()  # real logits, not 0/1 masks


PREDICT_CASES: List[Tuple[str, Dict[str, Any], Any]] = [
    # labels: integers of the documented set only (nothing truncated, nothing guessed)
    ("label_7", dict(point_coords=P, point_labels=[7]), Err(ValueError, r"integers in \(-1, 0, 1, 2, 3\).*\[7\]")),
    ("label_0.7", dict(point_coords=P, point_labels=[0.7]), Err(ValueError, r"integers in .*0\.7")),
    ("label_pos", dict(point_coords=P, point_labels=["pos"]), Err(TypeError, "point_labels must hold numbers")),
    ("label_nan", dict(point_coords=P, point_labels=[np.nan]), Err(ValueError, "integers in")),
    ("label_minus2", dict(point_coords=P, point_labels=[-2]), Err(ValueError, "integers in")),
    ("label_4", dict(point_coords=P, point_labels=np.array([4])), Err(ValueError, "integers in")),
    ("label_object", dict(point_coords=P, point_labels=np.array([None])), Err(TypeError, "must hold numbers")),
    ("labels_short", dict(point_coords=np.zeros((3, 2)), point_labels=[1, 1]), Err(ValueError, r"shape \(3,\)")),
    ("labels_without_points", dict(point_labels=L1), Err(ValueError, "without point_coords")),
    ("points_without_labels", dict(point_coords=P), Err(ValueError, "point_labels must be supplied")),
    # coordinates: finite numbers of the right shape
    ("point_nan", dict(point_coords=[[np.nan, 1.0]], point_labels=L1), Err(ValueError, "NaN or infinite")),
    ("point_inf", dict(point_coords=[[np.inf, 1.0]], point_labels=L1), Err(ValueError, "NaN or infinite")),
    ("point_strings", dict(point_coords=[["a", "b"]], point_labels=L1), Err(TypeError, "must hold numbers")),
    ("point_ragged", dict(point_coords=[[1.0, 2.0], [3.0]], point_labels=[1, 1]), Err(TypeError, "array-like numbers")),
    ("point_complex", dict(point_coords=np.array([[1 + 1j, 2.0]]), point_labels=L1), Err(TypeError, "real numbers")),
    ("point_dict", dict(point_coords={"x": 1}, point_labels=L1), Err(TypeError, "numbers")),
    ("point_xyz", dict(point_coords=np.zeros((2, 3)), point_labels=[1, 1]), Err(ValueError, r"\(N, 2\)")),
    (
        "point_4d",
        dict(point_coords=np.zeros((1, 1, 1, 2)), point_labels=np.ones((1, 1, 1))),
        Err(ValueError, r"\(N, 2\)"),
    ),
    ("box_3", dict(box=[1.0, 2.0, 3.0]), Err(ValueError, r"\(4,\) or \(B, 4\)")),
    ("box_nan", dict(box=[1.0, np.nan, 3.0, 4.0]), Err(ValueError, "NaN or infinite")),
    ("box_inf", dict(box=[-np.inf, 0, 3.0, 4.0]), Err(ValueError, "NaN or infinite")),
    ("box_strings", dict(box=["a", "b", "c", "d"]), Err(TypeError, "box must hold numbers")),
    ("box_3d", dict(box=np.zeros((2, 2, 4))), Err(ValueError, r"\(4,\) or \(B, 4\)")),
    (
        "mask_wrong_size",
        dict(mask_input=np.zeros((1, 100, 100))),
        Err(ValueError, r"mask_input must have shape \(1, 64, 64\)"),
    ),
    ("mask_nan", dict(mask_input=np.full((1, 64, 64), np.nan)), Err(ValueError, "NaN or infinite")),
    (
        "mask_batch_mismatch",
        dict(point_coords=P, point_labels=L1, mask_input=np.zeros((2, 1, 64, 64))),
        Err(ValueError, "prompt sets"),
    ),
    ("no_prompt", dict(), Err(ValueError, "no prompt given")),
    ("empty_points", dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)), Err(ValueError, "no prompt given")),
    (
        "multimask_str",
        dict(point_coords=P, point_labels=L1, multimask_output="yes"),
        Err(TypeError, "multimask_output"),
    ),
    (
        "batch_count_mismatch",
        dict(point_coords=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1)), box=np.ones((2, 4))),
        Err(ValueError, "counts must match"),
    ),
    # edge inputs that are kept, with a warning
    (
        "box_flipped",
        dict(box=[30.0, 25.0, 5.0, 4.0], multimask_output=False),
        Warn(r"corners were reordered to \(5, 4, 30, 25\)", _shape(1)),
    ),
    ("box_flipped_x_only", dict(box=[30.0, 4.0, 5.0, 25.0], multimask_output=False), Warn("reordered", _shape(1))),
    (
        "box_zero_area",
        dict(box=[10.0, 10.0, 10.0, 30.0], multimask_output=False),
        Warn("zero width or height", _shape(1)),
    ),
    ("box_point_like", dict(box=[10.0, 10.0, 10.0, 10.0]), Warn("zero width or height", _shape(3))),
    ("box_outside", dict(box=[-5.0, 0.0, 20.0, 20.0]), Warn("box lie partly outside the frame of 50x40", _shape(3))),
    (
        "point_outside",
        dict(point_coords=[[60.0, 12.0]], point_labels=L1),
        Warn("outside the frame of 50x40", _shape(3)),
    ),
    ("point_negative", dict(point_coords=[[-1.0, -1.0]], point_labels=L1), Warn("outside", _shape(3))),
    (
        "normalized_outside",
        dict(point_coords=[[1.5, 0.2]], point_labels=L1, normalize_coords=False),
        Warn(r"\[0, 1\] \(normalize_coords=False\)", _shape(3)),
    ),
    (
        "batch_one_box_flipped",
        dict(box=np.array([[1.0, 1, 20, 20], [20, 20, 1, 1]]), multimask_output=False),
        Warn("reordered", _batch_shape(2)),
    ),
    # documented behaviour
    ("labels_integral_floats", dict(point_coords=P, point_labels=np.array([1.0])), Ok(_shape(3))),
    ("labels_torch", dict(point_coords=torch.tensor([[10.0, 12.0]]), point_labels=torch.tensor([1])), Ok(_shape(3))),
    ("negative_click_only", dict(point_coords=P, point_labels=[0]), Ok(_shape(3))),
    ("padding_label_with_box", dict(point_coords=P, point_labels=[-1], box=[2.0, 2, 30, 30]), Ok(_shape(3))),
    ("box_corner_labels_as_points", dict(point_coords=[[2.0, 2.0], [30.0, 30.0]], point_labels=[2, 3]), Ok(_shape(3))),
    (
        "low_res_feedback",
        dict(point_coords=P, point_labels=L1, mask_input=np.zeros((1, 64, 64), np.float32)),
        Ok(_shape(3)),
    ),
    ("return_logits", dict(point_coords=P, point_labels=L1, return_logits=True), Ok(_logits)),
]


@pytest.mark.parametrize("kwargs,outcome", [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES])
def test_predict(ready: Any, kwargs: Dict[str, Any], outcome: Any) -> None:
    run_case(lambda: ready.predict(**kwargs), outcome)


def test_flipped_box_gives_the_reordered_box_result(ready: Any) -> None:
    with pytest.warns(UserWarning, match="reordered"):
        flipped = ready.predict(box=[30.0, 25.0, 5.0, 4.0], multimask_output=False)
    ok = ready.predict(box=[5.0, 4.0, 30.0, 25.0], multimask_output=False)
    for a, b in zip(flipped, ok):
        np.testing.assert_array_equal(a, b)


IMAGE_CASES: List[Tuple[str, Any, Any]] = [
    ("nan_pixels", np.full((10, 10, 3), np.nan, np.float32), Err(ValueError, "NaN")),
    ("inf_pixels", np.full((10, 10), np.inf, np.float32), Err(ValueError, "NaN|inf")),
    ("channels_first", np.zeros((3, 30, 40), np.uint8), Err(ValueError, "channels-first")),
    ("one_d", np.zeros((5,), np.uint8), Err(ValueError, "HxW")),
    ("four_d", np.zeros((2, 8, 8, 3), np.uint8), Err(ValueError, "HxW")),
    ("five_channels", np.zeros((8, 8, 5), np.uint8), Err(ValueError, "HxW|channel")),
    ("empty", np.zeros((0, 0, 3), np.uint8), Err(ValueError, "empty|HxW|zero")),
    ("list", [[1, 2], [3, 4]], Err(TypeError, "numpy array")),
    ("string", "image.png", Err(TypeError, "numpy array|PIL")),
    ("complex", np.zeros((10, 10, 3), np.complex64), Err(TypeError, "dtype")),
    ("bool_mask_image", np.eye(12, dtype=bool), Ok(lambda _: None)),
    ("uint16_grey", (np.arange(144, dtype=np.uint16).reshape(12, 12) * 300), Ok(lambda _: None)),
    ("rgba", np.zeros((12, 12, 4), np.uint8), Ok(lambda _: None)),
    ("constant_float", np.full((12, 12, 3), 0.5, np.float32), Ok(lambda _: None)),
]


@pytest.mark.parametrize("image,outcome", [c[1:] for c in IMAGE_CASES], ids=[c[0] for c in IMAGE_CASES])
def test_set_image(model: Any, image: Any, outcome: Any) -> None:
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    p = SAM2ImagePredictor(model)
    run_case(lambda: p.set_image(image), outcome)
    assert p._is_image_set == (not isinstance(outcome, Err))  # a refused image leaves nothing set


def test_misuse_order(model: Any) -> None:
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    p = SAM2ImagePredictor(model)
    run_case(lambda: p.predict(point_coords=P, point_labels=L1), Err(RuntimeError, r"set_image\(\.\.\.\) before"))
    run_case(lambda: p.set_image_batch([]), Err(ValueError, "non-empty list"))
    p.set_image(IMG)
    run_case(lambda: p.predict_batch([P], [L1]), Err(RuntimeError, "set_image_batch"))
