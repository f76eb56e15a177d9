"""Image predictor: preprocessing, CPU post-processing, the predictor API, parity with upstream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sam2_plugins.predictors.image.postprocess import (
    fill_holes_in_mask_scores,
    get_connected_components,
    remove_small_regions,
    remove_small_regions_in_logits,
)
from sam2_plugins.predictors.image.preprocess import IMAGENET_MEAN, IMAGENET_STD, prepare_image_tensor, to_rgb_float

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


# ---------------------------------------------------------------- preprocessing
def test_uint8_is_divided_by_255_exactly():
    out = to_rgb_float(IMG)
    assert out.dtype == np.float32 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, torch.from_numpy(IMG).float().div(255).numpy())


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1)])
def test_grey_becomes_three_equal_channels(shape):
    g = RNG.integers(0, 256, shape, dtype=np.uint8)
    out = to_rgb_float(g)
    assert out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 1], g.reshape(20, 30) / 255.0, atol=1e-7)


def test_rgba_drops_alpha_and_pil_matches_numpy():
    rgba = np.concatenate([IMG, np.zeros((48, 64, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb_float(rgba), to_rgb_float(IMG))
    np.testing.assert_array_equal(to_rgb_float(Image.fromarray(IMG)), to_rgb_float(IMG))
    np.testing.assert_array_equal(to_rgb_float(Image.fromarray(IMG).convert("L")).shape, (48, 64, 3))


def test_uint16_twelve_bit_uses_robust_percentiles_by_default():
    img = RNG.integers(100, 4000, (64, 64), dtype=np.uint16)
    img[0, 0] = 65535  # one hot pixel must not squash the range
    out = to_rgb_float(img)
    lo, hi = np.percentile(img, (0.1, 99.9))
    np.testing.assert_allclose(out[..., 0], np.clip((img - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert out[..., 0].mean() > 0.3  # with /65535 it would be ~0.03
    np.testing.assert_allclose(to_rgb_float(img, normalize="dtype")[..., 0], img / 65535.0, atol=1e-7)
    mm = to_rgb_float(img, normalize="minmax")
    assert mm.min() == 0.0 and mm.max() == 1.0


def test_float_bool_and_constant_images():
    f = RNG.random((10, 12, 3)).astype(np.float32)
    np.testing.assert_array_equal(to_rgb_float(f), f)  # [0, 1] floats kept as they are
    big = f * 1000 - 3
    np.testing.assert_allclose(to_rgb_float(big), (big - big.min()) / (big.max() - big.min()), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb_float(big, normalize="none")
    b = RNG.random((5, 6)) > 0.5
    np.testing.assert_array_equal(to_rgb_float(b)[..., 0], b.astype(np.float32))
    assert not to_rgb_float(np.full((4, 4), 7, np.uint16)).any()


@pytest.mark.parametrize("bad,exc,match", [
    (np.full((4, 4, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.full((4, 4), np.inf), ValueError, "NaN or infinite"),
    (np.zeros((3, 40, 50), np.uint8), ValueError, "channels-first"),
    (np.zeros((4, 4, 2), np.uint8), ValueError, "C in"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
    (np.zeros((4, 4, 3), dtype="U1"), TypeError, "dtype"),
    ("image.png", TypeError, "numpy array"),
])
def test_bad_images(bad, exc, match):
    with pytest.raises(exc, match=match):
        to_rgb_float(bad)
    with pytest.raises(ValueError, match="normalize"):
        to_rgb_float(IMG, normalize="zscore")


def test_prepare_image_tensor_is_antialiased_bilinear_then_imagenet():
    x = prepare_image_tensor(to_rgb_float(IMG), 32, "cpu")
    t = torch.from_numpy(IMG).permute(2, 0, 1)[None].float() / 255
    ref = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    ref = (ref - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x, ref, rtol=0, atol=0)


@pytest.mark.reference
def test_preprocessing_matches_upstream_transform_definition():
    from tests.ref_utils import install_torchvision_shim, require_reference

    require_reference()
    install_torchvision_shim()
    from sam2.utils.transforms import SAM2Transforms

    tr = SAM2Transforms(resolution=64, mask_threshold=0.0)
    torch.testing.assert_close(prepare_image_tensor(to_rgb_float(IMG), 64, "cpu")[0], tr(IMG), rtol=0, atol=0)


# ---------------------------------------------------------------- CPU post-processing
def _blob_logits() -> torch.Tensor:
    m = torch.full((1, 1, 32, 32), -5.0)
    m[..., 4:20, 4:20] = 5.0
    m[..., 8, 8] = -5.0          # 1-pixel hole
    m[..., 10:13, 10:13] = -5.0  # 9-pixel hole
    m[..., 28, 28] = 5.0         # 1-pixel sprinkle
    m[..., 25:28, 2:5] = 5.0     # 9-pixel island
    return m


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_connected_components_8_connectivity(backend):
    m = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    m[0, 0, 0, 0] = m[0, 0, 1, 1] = True  # diagonal neighbours: one component
    m[0, 0, 4:6, 4:6] = True
    labels, areas = get_connected_components(m, backend=backend)
    assert labels.dtype == torch.int32 and labels.shape == m.shape
    assert areas[0, 0, 0, 0] == 2 and areas[0, 0, 1, 1] == 2 and areas[0, 0, 5, 5] == 4
    assert labels[0, 0, 0, 0] == labels[0, 0, 1, 1] != labels[0, 0, 4, 4]
    assert (labels[1] == 0).all() and (areas[~m] == 0).all()


def test_torch_and_scipy_components_agree():
    m = torch.rand(3, 1, 40, 37, generator=torch.Generator().manual_seed(1)) < 0.45
    l1, a1 = get_connected_components(m, backend="scipy")
    l2, a2 = get_connected_components(m, backend="torch")
    assert torch.equal(a1, a2)
    for i in range(3):  # same partition, whatever the ids
        pairs = set(zip(l1[i].flatten().tolist(), l2[i].flatten().tolist()))
        assert len(pairs) == len(set(l1[i].flatten().tolist()))


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_hole_and_sprinkle_removal(backend):
    m = _blob_logits()
    out = remove_small_regions_in_logits(m, 0.0, max_hole_area=4, max_sprinkle_area=4, backend=backend)
    assert out[0, 0, 8, 8] == 10.0 and out[0, 0, 11, 11] == -5.0  # small hole filled, big kept
    assert out[0, 0, 28, 28] == -10.0 and out[0, 0, 26, 3] == 5.0  # small sprinkle gone, island kept
    assert torch.equal(remove_small_regions_in_logits(m), m)
    video = fill_holes_in_mask_scores(m, 9, backend=backend)
    assert video[0, 0, 8, 8] == pytest.approx(0.1) and video[0, 0, 11, 11] == pytest.approx(0.1)
    assert video[0, 0, 0, 0] == -5.0  # the large outer background stays


def test_binary_remove_small_regions():
    mask = _blob_logits()[0, 0].numpy() > 0
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed and filled[8, 8] and not filled[11, 11]
    cleaned, changed = remove_small_regions(mask, 5, "islands")
    assert changed and not cleaned[28, 28] and cleaned[26, 3]


# ---------------------------------------------------------------- predictor API (nano model)
@pytest.fixture(scope="module")
def nano_predictor():
    build = pytest.importorskip("sam2_plugins.build")
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    torch.manual_seed(0)
    model = build.build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")
    pred = SAM2ImagePredictor(model)
    pred.set_image(IMG)
    return pred


def test_set_image_features_and_embedding(nano_predictor):
    p = nano_predictor
    s = p.model.image_size
    assert p._is_image_set and not p._is_batch and p._orig_hw == [(48, 64)]
    emb = p.get_image_embedding()
    assert emb.shape == (1, p.model.hidden_dim, s // 16, s // 16)
    assert [tuple(f.shape[-2:]) for f in p._features["high_res_feats"]] == [(s // 4, s // 4), (s // 8, s // 8)]


def test_predict_shapes_and_types(nano_predictor):
    p = nano_predictor
    low = p.model.image_size // 4
    masks, ious, lr = p.predict(point_coords=np.array([[20, 30]]), point_labels=np.array([1]))
    assert masks.shape == (3, 48, 64) and ious.shape == (3,) and lr.shape == (3, low, low)
    assert masks.dtype == np.float32 and set(np.unique(masks)) <= {0.0, 1.0}
    assert np.abs(lr).max() <= 32.0
    m1, i1, l1 = p.predict(box=np.array([5, 5, 40, 30]), multimask_output=False)
    assert m1.shape == (1, 48, 64) and i1.shape == (1,)
    # low-res logits of a previous call are a valid mask prompt
    m2, _, _ = p.predict(point_coords=[[20, 30]], point_labels=[1], mask_input=l1, multimask_output=False)
    assert m2.shape == (1, 48, 64)
    logits, _, _ = p.predict(point_coords=[[20, 30]], point_labels=[1], return_logits=True)
    np.testing.assert_array_equal(logits > 0, masks > 0)
    mb, ib, lb = p.predict(box=np.array([[5, 5, 40, 30], [0, 0, 63, 47]]), multimask_output=False)
    assert mb.shape == (2, 1, 48, 64) and ib.shape == (2, 1) and lb.shape == (2, 1, low, low)
    mn, _, _ = p.predict(point_coords=[[20 / 64, 30 / 48]], point_labels=[1], normalize_coords=False)
    np.testing.assert_array_equal(mn, masks)


def test_hole_and_sprinkle_options_are_applied(nano_predictor):
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    base = nano_predictor
    kw = dict(point_coords=[[20, 30]], point_labels=[1], multimask_output=False)
    for opts, expect in ((dict(max_hole_area=1e9), 1.0), (dict(max_sprinkle_area=1e9), 0.0)):
        p = SAM2ImagePredictor(base.model, **opts)
        p._features, p._orig_hw, p._is_image_set = base._features, base._orig_hw, True
        m, _, lr = p.predict(**kw)
        assert (m == expect).all(), opts  # everything is one hole / one sprinkle at this size
        np.testing.assert_array_equal(lr, base.predict(**kw)[2])  # low-res output is the raw one


def test_batch_api_matches_single_images(nano_predictor):
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    p = SAM2ImagePredictor(nano_predictor.model)
    other = RNG.integers(0, 65535, (30, 20), dtype=np.uint16)
    p.set_image_batch([IMG, other])
    assert p._is_batch and p._orig_hw == [(48, 64), (30, 20)]
    masks, ious, lows = p.predict_batch([np.array([[20, 30]]), np.array([[5, 5]])], [np.array([1]), np.array([1])])
    assert masks[0].shape == (3, 48, 64) and masks[1].shape == (3, 30, 20)
    q = SAM2ImagePredictor(nano_predictor.model)
    q.set_image(other)
    m1, i1, l1 = q.predict(point_coords=np.array([[5, 5]]), point_labels=np.array([1]))
    np.testing.assert_allclose(lows[1], l1, atol=1e-4)
    np.testing.assert_allclose(ious[1], i1, atol=1e-5)
    with pytest.raises(RuntimeError, match="predict_batch"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    p.reset_predictor()
    assert not p._is_image_set and p._features is None and p._orig_hw is None


def test_other_inputs_and_bf16(nano_predictor):
    from sam2_plugins.predictors.image.predictor import HF_MODEL_IDS, SAM2ImagePredictor

    p = SAM2ImagePredictor(nano_predictor.model, dtype="bf16")
    p.set_image(Image.fromarray(IMG).convert("L"))
    m, i, lr = p.predict(point_coords=[[10, 10]], point_labels=[1])
    assert m.dtype == np.float32 and i.dtype == np.float32 and m.shape == (3, 48, 64)
    assert HF_MODEL_IDS["facebook/sam2.1-hiera-base-plus"] == "sam2.1_hiera_base_plus"
    assert HF_MODEL_IDS["facebook/sam2-hiera-tiny"] == "sam2_hiera_tiny"
    q = SAM2ImagePredictor.from_pretrained("sam2.1_hiera_nano", checkpoint=None, device="cpu", mask_threshold=0.5)
    assert q.mask_threshold == 0.5 and q.model.image_size == nano_predictor.model.image_size


# ---------------------------------------------------------------- parity with upstream (tiny 2.1, 1024²)
@pytest.fixture(scope="module")
def parity_pair():
    from tests.ref_utils import build_reference, install_torchvision_shim, require_reference

    require_reference()
    install_torchvision_shim()
    from sam2.sam2_image_predictor import SAM2ImagePredictor as UpstreamPredictor

    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    ref = build_reference("sam2.1_hiera_tiny")
    ours = SAM2Model(get_config("sam2.1_hiera_tiny"))
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    up, me = UpstreamPredictor(ref), SAM2ImagePredictor(ours)
    img = np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    up.set_image(img)
    me.set_image(img)
    return up, me


PARITY_CASES = {
    "point": dict(point_coords=np.array([[30.0, 40.0]]), point_labels=np.array([1])),
    "points_single": dict(point_coords=np.array([[30.0, 40.0], [90, 20]]), point_labels=np.array([1, 0]),
                          multimask_output=False),
    "box": dict(box=np.array([10.0, 12, 80, 70])),
    "points_box": dict(point_coords=np.array([[30.0, 40.0]]), point_labels=np.array([1]),
                       box=np.array([10.0, 12, 80, 70]), multimask_output=False),
    "boxes_batched": dict(box=np.array([[10.0, 12, 80, 70], [0, 0, 60, 50]]), multimask_output=False),
    "logits": dict(point_coords=np.array([[64.0, 48.0]]), point_labels=np.array([1]), return_logits=True),
}


@pytest.mark.reference
def test_parity_features(parity_pair):
    up, me = parity_pair
    torch.testing.assert_close(me._features["image_embed"], up._features["image_embed"], rtol=0, atol=1e-4)
    for a, b in zip(me._features["high_res_feats"], up._features["high_res_feats"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def _assert_same_outputs(ours, ref):
    m, i, lr = ours
    rm, ri, rlr = ref
    assert m.shape == rm.shape and i.shape == ri.shape and lr.shape == rlr.shape
    np.testing.assert_allclose(lr, rlr, atol=1e-4, rtol=0)
    np.testing.assert_allclose(i, ri, atol=1e-4, rtol=0)
    if set(np.unique(rm)) <= {0.0, 1.0}:  # binary masks: flips only where a logit is ~0
        assert np.mean(m != rm) <= 1e-4
    else:  # return_logits
        np.testing.assert_allclose(m, rm, atol=1e-4, rtol=0)


@pytest.mark.reference
@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_parity_predict(parity_pair, case):
    up, me = parity_pair
    kw = PARITY_CASES[case]
    _assert_same_outputs(me.predict(**kw), up.predict(**kw))


@pytest.mark.reference
def test_parity_mask_input(parity_pair):
    up, me = parity_pair
    _, _, lr = up.predict(point_coords=np.array([[30.0, 40.0]]), point_labels=np.array([1]), multimask_output=False)
    kw = dict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]), mask_input=lr, multimask_output=False)
    _assert_same_outputs(me.predict(**kw), up.predict(**kw))
    _assert_same_outputs(me.predict(mask_input=lr), up.predict(mask_input=lr))


@pytest.mark.reference
@pytest.mark.slow
def test_parity_batch_api(parity_pair):
    up, me = parity_pair
    imgs = [np.random.default_rng(4).integers(0, 256, (64, 80, 3), dtype=np.uint8),
            np.random.default_rng(5).integers(0, 256, (50, 40, 3), dtype=np.uint8)]
    from sam2.sam2_image_predictor import SAM2ImagePredictor as UpstreamPredictor

    from sam2_plugins.predictors.image import SAM2ImagePredictor

    u, o = UpstreamPredictor(up.model), SAM2ImagePredictor(me.model)
    u.set_image_batch(imgs)
    o.set_image_batch(imgs)
    kw = dict(point_coords_batch=[np.array([[10.0, 20]]), np.array([[30.0, 5]])],
              point_labels_batch=[np.array([1]), np.array([1])],
              box_batch=[None, np.array([2.0, 2, 30, 40])], multimask_output=False)
    for ours, ref in zip(zip(*o.predict_batch(**kw)), zip(*u.predict_batch(**kw))):
        _assert_same_outputs(ours, ref)
