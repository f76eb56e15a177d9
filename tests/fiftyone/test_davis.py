"""DAVIS-2016 car-shadow as a FiftyOne video: track from the first GT mask, evaluate J&F, and
check the stored J&F against the core's evaluate_sequence on the same masks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fiftyone import _data
from tests.fiftyone.test_segment import _run

pytestmark = [pytest.mark.data]  # ~10 s: in CI whenever ../shared/data is there


def _track_and_score_car_shadow(shared_data, media_dir, demo_checkpoint) -> float:
    """Track car-shadow from its first GT mask through the operators, evaluate, check the stored
    J&F against the core's; returns that J&F."""
    import fiftyone as fo
    from PIL import Image

    from fiftyone_sam2._evaluate import _LabelMaps
    from sam2_plugins.evaluation import evaluate_sequence, summarize

    root = shared_data / "davis2016-val"
    jpgs = sorted((root / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg"))
    pngs = sorted((root / "Annotations" / "480p" / "car-shadow").glob("*.png"))
    assert len(jpgs) == len(pngs) == 40
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in jpgs])
    gts = np.stack([(np.asarray(Image.open(p)) > 0).astype(np.int32) for p in pngs])
    path = media_dir / "car-shadow.mp4"
    _data.write_mp4(path, frames, fps=24)
    ds = fo.Dataset(_data.unique("davis"))
    s = fo.Sample(filepath=str(path))
    for t in range(len(jpgs)):
        s.frames[t + 1] = fo.Frame(gt=_data.detections_from_ids(gts[t], label="car"))
    s.frames[1]["prompt"] = _data.detections_from_ids(gts[0], label="car")  # a mask prompt
    ds.add_sample(s)
    ds.compute_metadata()
    res = _run("@sam2-plugins/sam2/sam2_track", ds.view(), prompt_field="frames.prompt",
               label_field="frames.sam2", direction="forward", checkpoint=demo_checkpoint,
               device="cpu")
    assert res.error is None and res.result["processed"] == 1, res.error or res.result
    ev = _run("@sam2-plugins/sam2/sam2_evaluate", ds.view(), pred_field="frames.sam2",
              gt_field="frames.gt", eval_key="davis")
    assert ev.error is None, ev.error
    s = ds.first()
    pred = _LabelMaps({fn: f.sam2 for fn, f in s.frames.items()}, 1, 40, {1: 1}, 854, 480)
    core = summarize([evaluate_sequence(list(gts), [pred[t] for t in range(40)], void_label=None)])
    assert ev.result["JF"] == pytest.approx(core["J&F-Mean"], abs=1e-12)
    assert s.davis_JF == pytest.approx(core["J&F-Mean"], abs=1e-12)
    return float(ev.result["JF"])


#: J&F the shipped demo model reaches here (measured 2026-12 through these operators: 0.307; a
#: static copy of the first mask scores 0.330). Real video is outside the model's synthetic
#: training domain, so this is a regression guard for the whole chain (mp4 -> track -> evaluate),
#: not a quality claim; the demo model's quality targets are checked on synthetic data.
CAR_SHADOW_DEMO_JF = 0.307
REGRESSION_MARGIN = 0.05


def test_car_shadow_tracking_and_jf(shared_data, media_dir, demo_checkpoint):
    jf = _track_and_score_car_shadow(shared_data, media_dir, demo_checkpoint)
    assert jf >= CAR_SHADOW_DEMO_JF - REGRESSION_MARGIN, jf
