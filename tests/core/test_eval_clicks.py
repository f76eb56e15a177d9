"""Click simulation (hand-worked cases, determinism), NoC, mIoU conventions, synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from sam2_plugins.evaluation.clicks import Click, Clicker, next_click, noc, simulate_interaction
from sam2_plugins.evaluation.iou import batch_iou, mask_iou, mean_iou
from sam2_plugins.evaluation.synthetic import make_image, make_video


def test_first_click_is_the_object_centre() -> None:
    g = np.zeros((11, 15), bool)
    g[2:9, 4:11] = True  # 7x7 square: its centre (5, 7) is 4 px from the region boundary
    c = next_click(g)
    assert c == Click(5, 7, True)
    assert c.xy == (7, 5) and c.label == 1
    # an L-shape: the deepest point is in the thick part, not the bounding-box centre
    L = np.zeros((20, 20), bool)
    L[2:18, 2:6] = True
    L[12:18, 2:18] = True
    c = next_click(L)
    assert L[c.y, c.x] and 12 <= c.y <= 17


def test_positive_vs_negative_and_ties() -> None:
    g = np.zeros((20, 30), bool)
    g[5:15, 5:15] = True
    p = g.copy()
    p[5:15, 18:28] = True  # big false positive (10x10) beats ...
    p[9:11, 9:11] = False  # ... a small false negative hole (2x2)
    c = next_click(g, p)
    assert not c.positive and 18 <= c.x <= 27
    p2 = g.copy()
    p2[7:13, 7:13] = False  # 6x6 hole (depth 3) beats a 2-px-wide false positive strip (depth 1)
    p2[0:2, 20:30] = True
    assert next_click(g, p2).positive
    # equal depth: the tie is negative (RITM uses a strict >)
    g3 = np.zeros((9, 20), bool)
    g3[3:6, 2:5] = True
    p3 = np.zeros_like(g3)
    p3[3:6, 12:15] = True
    c3 = next_click(g3, p3)
    assert not c3.positive and (c3.y, c3.x) == (4, 13)
    # several maxima: the first in raster order
    g4 = np.zeros((9, 9), bool)
    g4[1, 1] = g4[1, 7] = g4[7, 1] = True
    assert next_click(g4) == Click(1, 1, True)


def test_border_counts_as_boundary_and_clicked_pixels_are_skipped() -> None:
    g = np.ones((5, 9), bool)  # with padding the image border bounds the region:
    # depth min(3, x + 1, 9 - x) on row 2 is 3 for x = 2..6, and the first maximum wins
    assert next_click(g) == Click(2, 2, True)
    assert next_click(g, padding=False).positive
    cl = Clicker(g)
    first = cl.make_next_click(None)
    second = cl.make_next_click(None)  # same prediction: the clicked pixel is not reused
    assert first != second and len(cl) == 2
    assert cl.points().tolist() == [[2.0, 2.0], [second.x, second.y]]
    assert cl.labels().tolist() == [1, 1]
    ign = np.zeros_like(g)
    ign[:, :5] = True
    assert next_click(g, ignore=ign).x >= 5


def test_perfect_prediction_follows_ritm() -> None:
    g = np.zeros((6, 6), bool)
    g[1:4, 1:4] = True
    assert next_click(g, g) == Click(0, 0, False)  # both maxima 0 -> negative at the first pixel


def test_noc() -> None:
    assert noc([0.5, 0.86, 0.95], 0.85) == 2
    assert noc([0.5, 0.86, 0.95], 0.9) == 3
    assert noc([0.5, 0.6], 0.9) == 20
    assert noc([0.5] * 25 + [0.99], 0.9, max_clicks=20) == 20


def test_simulate_interaction_with_an_oracle_is_deterministic() -> None:
    g = np.zeros((24, 24), bool)
    g[4:20, 6:18] = True

    def predict(points, labels, state):  # noqa: ANN001
        # grows a disk around each positive click: needs several clicks to cover the box
        yy, xx = np.mgrid[0:24, 0:24]
        m = np.zeros((24, 24), bool)
        for (x, y), lab in zip(points, labels):
            if lab == 1:
                m |= (yy - y) ** 2 + (xx - x) ** 2 <= 25
        return m & g, (state or 0) + 1

    ious, clicks = simulate_interaction(predict, g, max_clicks=6)
    ious2, clicks2 = simulate_interaction(predict, g, max_clicks=6)
    assert ious == ious2 and clicks == clicks2
    assert len(ious) == 6 and all(b >= a for a, b in zip(ious, ious[1:]))
    assert clicks[0] == next_click(g)
    stop, _ = simulate_interaction(predict, g, max_clicks=6, stop_iou=0.3)
    assert len(stop) == 6 and stop[-1] == stop[1]


def test_iou_conventions() -> None:
    z = np.zeros((4, 4), bool)
    a = z.copy()
    a[:2] = True
    b = z.copy()
    b[1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert mask_iou(z, z) == 1.0 and np.isnan(mask_iou(z, z, empty_value=float("nan")))
    np.testing.assert_allclose(batch_iou(np.stack([a, z]), np.stack([b, z])), [1 / 3, 1.0])
    assert mean_iou([(a, b), (a, a)]) == pytest.approx((1 / 3 + 1) / 2)
    assert mean_iou([(a, b), (z, z)], empty_value=float("nan")) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((3, 3)))


def test_iou_matches_torchmetrics_on_non_empty_masks() -> None:
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.functional.segmentation")
    rng = np.random.default_rng(0)
    p = rng.random((5, 16, 16)) < 0.5
    g = rng.random((5, 16, 16)) < 0.5
    # per-sample foreground IoU: 2 classes given as indices, background left out
    ref = tm.mean_iou(torch.from_numpy(p).long(), torch.from_numpy(g).long(), num_classes=2,
                      include_background=False, input_format="index")
    np.testing.assert_allclose(batch_iou(p, g), ref.reshape(-1).double().numpy(), rtol=1e-6)
    assert mask_iou(p[0], g[0]) == pytest.approx(float(ref.reshape(-1)[0]), rel=1e-6)


def test_synthetic_generator() -> None:
    f, m = make_video(6, 40, 52, 3, seed=3, late_objects=1)
    f2, m2 = make_video(6, 40, 52, 3, seed=3, late_objects=1)
    assert f.shape == (6, 40, 52, 3) and f.dtype == np.uint8
    assert m.shape == (6, 40, 52) and m.dtype == np.int32
    np.testing.assert_array_equal(f, f2)
    np.testing.assert_array_equal(m, m2)
    assert set(np.unique(m[0])) <= {0, 1, 2} and (m[0] == 1).any() and (m[0] == 2).any()
    assert (m == 3).any() and not (m[0] == 3).any()  # the late object enters later
    assert f[0].std() > 10  # textured, not flat
    f3, _ = make_video(6, 40, 52, 3, seed=4)
    assert not np.array_equal(f, f3)
    img, inst = make_image(32, 48, 2, seed=0)
    assert img.shape == (32, 48, 3) and set(np.unique(inst)) == {0, 1, 2}
    with pytest.raises(ValueError):
        make_video(0, 10, 10)
