"""Run summaries that tell the truth, through the operators as the App runs them.

A model whose mask decoder always answers "nothing" (its hypernetwork outputs zeroed, so every
mask logit is 0) makes every mask empty: the runs still "succeed" sample by sample, and the
summary, the log and the operator output must say what happened.
"""

from __future__ import annotations

import logging

import pytest
import torch

from fiftyone_sam2._summary import TINY_PIXELS, count_masks, warnings_for
from tests.fiftyone import _data
from tests.fiftyone.test_segment import AUTO, SEG, _run

TRACK = "@sam2-plugins/sam2/sam2_track"


@pytest.fixture(scope="module")
def blind_checkpoint(tmp_path_factory) -> str:
    """Nano weights whose decoder gives all-zero mask logits (every mask empty)."""
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    torch.manual_seed(0)
    sd = SAM2Model(get_config("sam2.1_hiera_nano")).state_dict()
    for k in sd:
        if "output_hypernetworks_mlps" in k and ".layers.2." in k:
            sd[k] = torch.zeros_like(sd[k])
    path = tmp_path_factory.mktemp("blind") / "blind_nano.pt"
    torch.save({"model": sd}, path)
    return str(path)


def _warned(caplog, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_segment_counts_empty_masks_and_warns(media_dir, blind_checkpoint, caplog):
    ds = _data.image_dataset(media_dir, n=2, objects=3)
    with caplog.at_level(logging.WARNING):
        res = _run(
            SEG,
            ds.view(),
            prompt_field="boxes",
            label_field="blind",
            checkpoint="path",
            model="sam2.1_hiera_nano",
            checkpoint_path=blind_checkpoint,
            device="cpu",
        )
    assert res.error is None, res.error
    r = res.result
    assert (r["processed"], r["failed"], r["masks"], r["empty_masks"]) == (2, 0, 6, 6)
    assert r["warnings"] and "6 of 6 masks are empty" in r["warnings"][0]
    assert _warned(caplog, "6 of 6 masks are empty")
    assert ds.info["sam2_runs"]["blind"]["last"]["warnings"] == r["warnings"]  # in the run record too


def test_auto_label_counts_images_without_masks(media_dir, blind_checkpoint, caplog):
    ds = _data.image_dataset(media_dir, n=2, objects=2)
    with caplog.at_level(logging.WARNING):
        res = _run(
            AUTO,
            ds.view(),
            label_field="auto",
            checkpoint="path",
            model="sam2.1_hiera_nano",
            checkpoint_path=blind_checkpoint,
            device="cpu",
            points_per_side=4,
        )
    assert res.error is None, res.error
    r = res.result
    assert (r["processed"], r["images"], r["images_without_masks"], r["masks"]) == (2, 2, 2, 0)
    assert "2 of 2 images got no mask" in r["warnings"][0] and "0 masks" in r["filter_example"]
    assert "thresh" in r["filter_example"]  # names the filter that removed the candidates
    assert _warned(caplog, "images got no mask")


def test_track_reports_objects_lost_on_their_prompt_frame(media_dir, blind_checkpoint, caplog):
    ds, _ = _data.video_dataset(media_dir, num_frames=4, objects=2, prompt_frames=(2,))
    with caplog.at_level(logging.WARNING):
        res = _run(
            TRACK,
            ds.view(),
            prompt_field="frames.prompts",
            label_field="frames.blind",
            checkpoint="path",
            model="sam2.1_hiera_nano",
            checkpoint_path=blind_checkpoint,
            device="cpu",
            direction="both",
        )
    assert res.error is None, res.error
    r = res.result
    assert r["processed"] == 1 and r["prompted_object_frames"] == 2 and r["lost_on_prompt"] == 2
    assert r["object_frames"] == 8 and r["lost_object_frames"] == 8
    assert any("2 of 2 prompts gave no object on their own frame" in w for w in r["warnings"])
    assert any("lost on 8 of 8 object-frames" in w for w in r["warnings"])
    assert _warned(caplog, "prompts gave no object")


def test_operator_output_lists_the_counts_and_warnings(fo_env):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    for uri in (SEG, AUTO, TRACK):
        props = foo.get_operator(uri).resolve_output(ExecutionContext()).type.properties
        assert {"warnings", "empty_masks", "images_without_masks", "lost_on_prompt"} <= set(props), uri


def test_warning_thresholds():
    counts: dict = {}
    count_masks(counts, [torch.ones(8, 8).numpy() > 0] * 19 + [torch.zeros(8, 8).numpy() > 0])
    assert counts == {"masks": 20, "empty_masks": 1, "tiny_masks": 0}
    assert warnings_for("segment", counts) == []  # 1 of 20 (5 %): below the warning level
    tiny = torch.zeros(8, 8).numpy() > 0
    tiny[0, : TINY_PIXELS - 1] = True
    count_masks(counts, [tiny] * 2)
    assert (
        counts["tiny_masks"] == 2 and "1 of 22 masks are empty and 2 have fewer" in warnings_for("segment", counts)[0]
    )
    assert warnings_for("track", {"object_frames": 10, "lost_object_frames": 2}) == []
    assert warnings_for("auto_label", {"images": 30, "images_without_masks": 2}) == []
