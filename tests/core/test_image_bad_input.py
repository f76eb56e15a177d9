"""Bad input to the image predictor: each case raises a clear error naming what was expected.

Decisions tested here: points / boxes outside the image only warn (SAM still uses them);
a call with no prompt at all is an error (upstream would return a mask for "nothing").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

IMG = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
P1 = dict(point_coords=np.array([[10.0, 12.0]]), point_labels=np.array([1]))


@pytest.fixture(scope="module")
def model():
    build = pytest.importorskip("sam2_plugins.build")
    torch.manual_seed(0)
    return build.build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")


@pytest.fixture()
def fresh(model):
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    return SAM2ImagePredictor(model)


@pytest.fixture(scope="module")
def ready(model):
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    p = SAM2ImagePredictor(model)
    p.set_image(IMG)
    return p


def test_misuse_before_set_image(fresh):
    with pytest.raises(RuntimeError, match=r"set_image"):
        fresh.predict(**P1)
    with pytest.raises(RuntimeError, match=r"set_image"):
        fresh.get_image_embedding()
    with pytest.raises(RuntimeError, match=r"set_image_batch"):
        fresh.predict_batch([P1["point_coords"]], [P1["point_labels"]])


def test_predict_batch_after_single_image(ready):
    with pytest.raises(RuntimeError, match="set_image_batch"):
        ready.predict_batch([P1["point_coords"]], [P1["point_labels"]])


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(point_coords=np.zeros((2, 3)), point_labels=np.ones(2)), ValueError, r"\(N, 2\)"),
    (dict(point_coords=np.zeros((2,)), point_labels=np.ones(1)), ValueError, r"\(N, 2\)"),
    (dict(point_coords=np.zeros((3, 2)), point_labels=np.ones(2)), ValueError, r"point_labels must have shape \(3,\)"),
    (dict(point_coords=np.zeros((1, 2))), ValueError, "point_labels must be supplied"),
    (dict(point_labels=np.ones(1)), ValueError, "without point_coords"),
    (dict(point_coords=np.array([[np.nan, 1.0]]), point_labels=np.ones(1)), ValueError, "NaN"),
    (dict(point_coords=np.array([[1.0, 1.0]]), point_labels=np.array([5])), ValueError, "integers in"),
    (dict(point_coords=np.array([[1.0, 1.0]]), point_labels=np.array([0.5])), ValueError, "integers in"),
    (dict(point_coords=[["a", "b"]], point_labels=[1]), TypeError, "numbers"),
    (dict(box=np.array([1.0, 2.0, 3.0])), ValueError, r"\(4,\) or \(B, 4\)"),
    (dict(box=np.array([1.0, np.inf, 3.0, 4.0])), ValueError, "NaN or infinite"),
    (dict(mask_input=np.zeros((1, 100, 100))), ValueError, r"mask_input must have shape \(1, 64, 64\)"),
    (dict(mask_input=np.zeros((2, 64, 64))), ValueError, "mask_input must have shape"),
    (dict(), ValueError, "no prompt"),
    (dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)), ValueError, "no prompt"),
    (dict(P1, multimask_output="yes"), TypeError, "multimask_output"),
    (dict(point_coords=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1)), box=np.zeros((2, 4))), ValueError,
     "counts must match"),
    (dict(P1, mask_input=np.zeros((2, 1, 64, 64))), ValueError, "prompt sets"),
])
def test_bad_prompts(ready, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ready.predict(**kwargs)


def test_outside_points_warn_but_work(ready):
    with pytest.warns(UserWarning, match="outside"):
        masks, _, _ = ready.predict(point_coords=np.array([[60.0, 12.0]]), point_labels=np.array([1]))
    assert masks.shape == (3, 40, 50)
    with pytest.warns(UserWarning, match="normalize_coords=False"):
        ready.predict(point_coords=np.array([[1.5, 0.2]]), point_labels=np.array([1]), normalize_coords=False)
    with pytest.warns(UserWarning, match="box"):
        ready.predict(box=np.array([-5.0, 0.0, 20.0, 20.0]))


@pytest.mark.parametrize("image,exc,match", [
    (np.full((10, 10, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.zeros((3, 30, 40), np.uint8), ValueError, "channels-first"),
    (np.zeros((5,), np.uint8), ValueError, "HxW"),
    ([[1, 2], [3, 4]], TypeError, "numpy array"),
    (np.zeros((10, 10, 3), dtype=np.complex64), TypeError, "dtype"),
])
def test_bad_images(fresh, image, exc, match):
    with pytest.raises(exc, match=match):
        fresh.set_image(image)
    assert not fresh._is_image_set


def test_bad_batches_and_constructor(fresh, model):
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    with pytest.raises(ValueError, match="non-empty list"):
        fresh.set_image_batch([])
    with pytest.raises(ValueError, match="non-empty list"):
        fresh.set_image_batch(IMG)
    fresh.set_image_batch([IMG, IMG[:20]])
    with pytest.raises(ValueError, match=r"one entry per image \(2\)"):
        fresh.predict_batch([P1["point_coords"]], [P1["point_labels"]])
    with pytest.raises(TypeError, match="nn.Module"):
        SAM2ImagePredictor("sam2.1_hiera_tiny")
    with pytest.raises(ValueError, match="unknown model name"):
        SAM2ImagePredictor.from_pretrained("sam3_giant", checkpoint=None, device="cpu")
    with pytest.raises(ValueError, match="normalize"):
        SAM2ImagePredictor(model, normalize="zscore").set_image(IMG)
