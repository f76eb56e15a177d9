"""J&F: boundary rule, exact disk dilation, edge cases, statistics, and the official golden numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sam2_plugins.evaluation.folders import evaluate_folders
from sam2_plugins.evaluation.jf import (
    boundary_map,
    db_statistics,
    disk_dilate,
    f_measure,
    f_radius,
    jaccard,
    score_frame,
    score_labels,
)

TOL = 1e-9


# ---------------------------------------------------------------- independent slow oracles
def _boundary_oracle(m: np.ndarray) -> np.ndarray:
    """The DAVIS rule, pixel by pixel: differs from right / lower / lower-right neighbour inside
    the image; last row: right only; last column: lower only; corner: never."""
    h, w = m.shape
    b = np.zeros_like(m, dtype=bool)
    for y in range(h):
        for x in range(w):
            nbrs = []
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                nbrs = [(y, x + 1)]
            elif x == w - 1:
                nbrs = [(y + 1, x)]
            else:
                nbrs = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            b[y, x] = any(m[yy, xx] != m[y, x] for yy, xx in nbrs)
    return b


def _dilate_oracle(b: np.ndarray, r: int) -> np.ndarray:
    out = np.zeros_like(b)
    ys, xs = np.nonzero(b)
    h, w = b.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for y, x in zip(ys, xs):
        out |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return out


def _f_oracle(p: np.ndarray, g: np.ndarray) -> float:
    r = f_radius(*g.shape)
    pb, gb = _boundary_oracle(p), _boundary_oracle(g)
    nf, ng = pb.sum(), gb.sum()
    if nf == 0 and ng > 0:
        prec, rec = 1.0, 0.0
    elif nf > 0 and ng == 0:
        prec, rec = 0.0, 1.0
    elif nf == 0 and ng == 0:
        prec, rec = 1.0, 1.0
    else:
        prec = (pb & _dilate_oracle(gb, r)).sum() / float(nf)
        rec = (gb & _dilate_oracle(pb, r)).sum() / float(ng)
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def _blobs(rng: np.random.Generator, h: int, w: int, n: int = 3) -> np.ndarray:
    m = np.zeros((h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cy, cx = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2)
        ry, rx = rng.uniform(1, h / 2), rng.uniform(1, w / 2)
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return m


# ---------------------------------------------------------------- unit checks
def test_boundary_rule_matches_oracle_and_border_is_never_boundary() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((7, 9)) < 0.5
        np.testing.assert_array_equal(boundary_map(m), _boundary_oracle(m))
    assert not boundary_map(np.ones((5, 6), bool)).any()
    one = np.zeros((5, 5), bool)
    one[3, 3] = True  # a pixel marks itself and the three pixels up/left of it
    assert set(zip(*np.nonzero(boundary_map(one)))) == {(2, 2), (2, 3), (3, 2), (3, 3)}


@pytest.mark.parametrize("r", [1, 2, 4, 5, 8, 9])
def test_disk_dilate_is_exact(r: int) -> None:
    rng = np.random.default_rng(r)
    b = rng.random((23, 31)) < 0.02
    b[0, 0] = b[-1, -1] = b[0, -1] = True  # corners: nothing leaks from outside the image
    np.testing.assert_array_equal(disk_dilate(b, r), _dilate_oracle(b, r))
    thin = np.zeros((3, 40), bool)
    thin[1, 20] = True  # radius taller than the image
    np.testing.assert_array_equal(disk_dilate(thin, 9), _dilate_oracle(thin, 9))


def test_disk_dilate_matches_opencv_where_available() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    b = rng.random((60, 80)) < 0.01
    r = 8
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = ((yy**2 + xx**2) <= r * r).astype(np.uint8)  # skimage.morphology.disk(8), 197 px
    assert disk.sum() == 197
    ref = cv2.dilate(b.astype(np.uint8), disk).astype(bool)
    np.testing.assert_array_equal(disk_dilate(b, r), ref)


def test_radius() -> None:
    assert f_radius(480, 854) == 8
    assert f_radius(480, 910) == 9
    assert f_radius(300, 400) == 4  # 0.008 * 500 = 4.0 exactly
    assert f_radius(517, 333) == 5
    assert f_radius(720, 1280) == 12 and f_radius(1080, 1920) == 18
    assert f_radius(10, 10, bound_th=3) == 3


def test_edge_cases() -> None:
    z = np.zeros((30, 40), bool)
    o = np.ones((30, 40), bool)
    blob = z.copy()
    blob[5:15, 5:20] = True
    assert score_frame(z, z, 1) == (1.0, 1.0)  # both empty
    assert score_frame(o, z, 1) == (0.0, 1.0)  # all-ones prediction has no boundary: F = 1 quirk
    assert score_frame(z, blob, 1) == (0.0, 0.0)
    assert score_frame(blob, z, 1) == (0.0, 0.0)
    smaller = o.copy()
    smaller[0, :] = False
    assert score_frame(smaller, o, 1)[1] == 0.0  # GT covers the image: no GT boundary
    j, f = score_frame(blob, blob, 1)
    assert (j, f) == (1.0, 1.0)
    assert jaccard(blob, blob) == 1.0 and jaccard(z, z) == 1.0
    with pytest.raises(ValueError):
        score_frame(z, np.zeros((3, 3), bool), 1)


def test_score_frame_matches_oracle_on_random_masks() -> None:
    rng = np.random.default_rng(1)
    for i in range(25):
        h, w = int(rng.integers(8, 60)), int(rng.integers(8, 60))
        g = _blobs(rng, h, w)
        p = np.roll(g, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1)) ^ (rng.random((h, w)) < 0.03)
        if i % 5 == 0:
            p[:] = False
        j_ref = 1.0 if not (p | g).any() else (p & g).sum() / (p | g).sum()
        j, f = score_frame(p, g, f_radius(h, w))
        assert abs(j - j_ref) <= TOL
        assert abs(f - _f_oracle(p, g)) <= TOL, i
        assert abs(f_measure(p, g) - f) <= TOL


def test_disk_dilate_large_radius_and_word_borders() -> None:
    """Radii past one 64-pixel word and maps whose rows end right at a word border."""
    rng = np.random.default_rng(7)
    for r, (h, w) in ((13, (30, 64 - 26)), (40, (25, 150)), (70, (12, 190)), (3, (9, 122))):
        b = rng.random((h, w)) < 0.01
        b[0, w - 1] = b[h - 1, 0] = True
        np.testing.assert_array_equal(disk_dilate(b, r), _dilate_oracle(b, r), err_msg=f"r={r}")


def test_score_labels_equals_score_frame_per_object() -> None:
    """The multi-object fast path (one crop per frame, then per object) gives the same bits."""
    rng = np.random.default_rng(4)
    for i in range(40):
        h, w = int(rng.integers(5, 70)), int(rng.integers(5, 90))
        g = np.zeros((h, w), np.uint8)
        for k in range(1, 4):
            g[_blobs(rng, h, w, 1)] = k
        p = np.roll(g, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        p[rng.random((h, w)) < 0.02] = int(rng.integers(0, 5))
        if i % 6 == 0:
            p = g.copy()
        if i % 9 == 0:
            g[:] = 0
        objects = [1, 2, 3, 4]  # 4: only ever in some predictions
        r = f_radius(h, w) + i % 3
        got = score_labels(p, g, objects, r)
        assert got == [score_frame(p == k, g == k, r) for k in objects], i
    assert score_labels(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), [1, 2], 1) == [(1.0, 1.0)] * 2
    with pytest.raises(ValueError):
        score_labels(np.zeros((4, 4)), np.zeros((4, 5)), [1], 1)


def test_void_ignore_mode() -> None:
    g = np.zeros((20, 20), bool)
    g[5:10, 5:10] = True
    p = g.copy()
    p[12:15, 12:15] = True  # false positive inside void
    void = np.zeros_like(g)
    void[11:16, 11:16] = True
    assert score_frame(p, g, 1, void) == (1.0, 1.0)
    assert score_frame(p, g, 1)[0] < 1.0


def test_statistics() -> None:
    v = np.array([1.0, 0.9, 0.8, 0.6, 0.4, 0.3, 0.2])  # 7 frames: the +1e-10 rounds 2.5 up
    m, o, d = db_statistics(v)
    assert m == pytest.approx(v.mean())
    assert o == pytest.approx(4 / 7)
    ids = [0, 2, 3, 5, 6]  # round(linspace(1, 7, 5) + 1e-10) - 1 = [0, 2, 3(.5 up), 5, 6]
    assert d == pytest.approx(v[ids[0] : ids[1] + 1].mean() - v[ids[3] : ids[4] + 1].mean())
    m2, o2, d2 = db_statistics(np.array([0.9, 0.3]))
    assert (m2, o2) == (pytest.approx(0.6), 0.5) and d2 == pytest.approx(0.6)
    assert all(math.isnan(x) for x in db_statistics(np.array([])))
    # 300 frames: the reference casts the bin edges to uint8; the fixed bins give the real decay
    long = np.linspace(1, 0, 300)
    fixed = db_statistics(long, uint8_bins=False)[2]
    assert fixed == pytest.approx(long[:76].mean() - long[224:].mean())
    quirk = db_statistics(long, uint8_bins=True)[2]
    assert quirk != pytest.approx(fixed) or math.isnan(quirk)


# ---------------------------------------------------------------- golden numbers (official evaluator)
def _compare(res: dict, gold: dict) -> float:
    worst = 0.0
    for k, v in gold["global"].items():
        worst = max(worst, abs(res[k] - v))
    assert set(res["per_object"]) == set(gold["per_object"])
    for k, v in gold["per_object"].items():
        for m in ("J-Mean", "F-Mean"):
            worst = max(worst, abs(res["per_object"][k][m] - v[m]))
    for k, v in gold.get("per_frame", {}).items():
        r = res["per_frame"][k]
        assert r["frames"] == v["frames"], k
        for m in ("J", "F"):
            worst = max(worst, float(np.max(np.abs(np.subtract(r[m], v[m])))))
    return worst


def test_golden_synthetic(shared_golden: Path) -> None:
    root = shared_golden / "jf"
    gold = json.loads((root / "golden_synthetic.json").read_text())
    res = evaluate_folders(root / "synthetic", root / "synthetic" / "predictions", workers=1, per_frame=True)
    assert _compare(res, gold) <= TOL


@pytest.mark.data
def test_golden_davis(shared_golden: Path, shared_data: Path) -> None:
    root = shared_golden / "jf"
    gold = json.loads((root / "golden_davis_public.json").read_text())
    res = evaluate_folders(shared_data / "davis2016-val", root / "predictions",
                           ["blackswan", "car-shadow", "libby"], workers=2, per_frame=True)
    assert _compare(res, gold) <= TOL


def test_metric_path_imports_neither_torch_nor_scipy() -> None:
    """The evaluate command must start fast: J&F needs numpy and Pillow only."""
    import subprocess
    import sys

    code = ("import sys, sam2_plugins.evaluation.folders, sam2_plugins.evaluation.jf, benchmarks.cli\n"
            "print(sorted(m for m in ('torch', 'scipy', 'cv2', 'av', 'tifffile') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
