"""Video tracking: bidirectional merge, videos and image sequences, accuracy, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import requires_demo_tracking
from tests.fiftyone import _data
from tests.fiftyone._quality import TRACK_MARGIN, demo_floor
from tests.fiftyone.test_segment import _error, _run, _snapshot

TRACK = "@sam2-plugins/sam2/sam2_track"
EVAL = "@sam2-plugins/sam2/sam2_evaluate"


class _Quality:
    def __init__(self, table):
        self.table = table

    def get(self, oid, t):
        return self.table.get((oid, t))


class _Q:
    def __init__(self, score, iou):
        self.score, self.iou = score, iou


class FakePredictor:
    """Yields, for each frame, a mask whose width encodes the pass (forward 2 px, backward
    4 px), so the test can see which pass each merged result came from."""

    def __init__(self, n=10, h=8, w=12):
        self.n, self.h, self.w = n, h, w
        self.prompts = []
        self.q = {}

    def init_state(self, source):
        return {"num_frames": self.n, "objs": []}

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, box=None):
        self.prompts.append((frame_idx, obj_id, "box" if box is not None else "points"))
        if obj_id not in state["objs"]:
            state["objs"].append(obj_id)

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        self.prompts.append((frame_idx, obj_id, "mask"))
        if obj_id not in state["objs"]:
            state["objs"].append(obj_id)

    def propagate_in_video(self, state, start_frame_idx=None, reverse=False):
        import torch

        order = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, self.n)
        for t in order:
            m = torch.full((len(state["objs"]), 1, self.h, self.w), -5.0)
            m[:, :, :, : (4 if reverse else 2)] = 5.0
            for oid in state["objs"]:
                self.q[(oid, t)] = _Q(3.0 if reverse else 2.0, 0.9)
            yield t, list(state["objs"]), m

    def quality(self, state):
        return _Quality(self.q)


def test_bidirectional_merge_uses_the_nearest_prompt(fo_env):
    import fiftyone as fo

    from fiftyone_sam2._track import collect_prompts, run_tracking, to_frame_detections

    box = fo.Detection(bounding_box=[0.1, 0.1, 0.3, 0.3], label="a", index=1)
    late = fo.Detection(bounding_box=[0.5, 0.5, 0.2, 0.2], label="b", index=2)
    labels = [(0, fo.Detections(detections=[box])), (8, fo.Detections(detections=[box.copy()])),
              (5, fo.Detections(detections=[late]))]
    prompts, meta = collect_prompts(labels, 12, 8)
    assert sorted(prompts) == [0, 5, 8] and meta[2]["label"] == "b"
    pred = FakePredictor()
    n, res, oids = run_tracking(pred, None, prompts, "both")
    assert n == 10 and oids == [1, 2]
    src = {t: {o: r.direction for o, r in res[t].items()} for t in res}
    # object 1 (prompts 0 and 8): forward up to 4, backward 5..7 (nearer to 8), forward after 8
    assert [src[t][1] for t in range(10)] == ["forward"] * 5 + ["backward"] * 3 + ["forward"] * 2
    # object 2 (prompt 5 only): backward before it (FiftyOne's own merge drops these)
    assert [src[t][2] for t in range(10)] == ["backward"] * 5 + ["forward"] * 5
    dets = to_frame_detections(res[3], meta, oids)
    assert [d.index for d in dets.detections] == [1, 2] and dets.lost == []
    assert dets.detections[1]["object_score"] == 3.0 and dets.detections[1]["direction"] == "backward"
    # forward only: object 2 is not reached before its prompt, and is reported lost there
    n, res, _ = run_tracking(FakePredictor(), None, prompts, "forward")
    assert 2 not in res.get(3, {})
    assert to_frame_detections(res.get(3, {}), meta, oids).lost == [2]


def test_unindexed_prompts_get_new_ids_and_masks_become_mask_prompts(fo_env):
    import fiftyone as fo

    from fiftyone_sam2._track import _add_prompts, collect_prompts

    m = np.zeros((8, 12), bool)
    m[2:5, 3:7] = True
    with_mask = fo.Detection.from_mask(m, label="m", index=4)
    plain = fo.Detection(bounding_box=[0.1, 0.1, 0.2, 0.2])
    pts = fo.Keypoints(keypoints=[fo.Keypoint(points=[[0.5, 0.5]], index=4)])
    prompts, _ = collect_prompts([(0, fo.Detections(detections=[with_mask, plain])), (2, pts)], 12, 8)
    assert sorted(prompts[0]) == [4, 5]  # the unindexed box gets the next free id
    np.testing.assert_array_equal(prompts[0][4].mask, m)
    pred = FakePredictor()
    _add_prompts(pred, pred.init_state(None), prompts)
    assert sorted(pred.prompts) == [(0, 4, "mask"), (0, 5, "box"), (2, 4, "points")]


@pytest.fixture
def video(media_dir):
    return _data.video_dataset(media_dir, num_frames=8, objects=2, prompt_frames=(1,))


def test_track_video_writes_every_frame_and_resumes(video, checkpoint):
    ds, _ = video
    res = _run(TRACK, ds.view(), prompt_field="frames.prompts", label_field="frames.sam2",
               direction="both", checkpoint=checkpoint or "none", device="cpu", lost_threshold=-1e9)
    assert res.error is None, res.error
    assert res.result["processed"] == 1
    s = ds.first()
    assert s.sam2_status == "done"
    assert len(s.frames) == 8 and all(f.sam2 is not None for f in s.frames.values())
    for f in s.frames.values():
        for d in f.sam2.detections:
            assert d.index in (1, 2) and d.label == "shape"
            assert np.isfinite(d["object_score"]) and np.isfinite(d["predicted_iou"])
        assert set(f.sam2.lost) | {d.index for d in f.sam2.detections} == {1, 2}
    again = _run(TRACK, ds.view(), prompt_field="frames.prompts", label_field="frames.sam2",
                 direction="both", checkpoint=checkpoint or "none", device="cpu", lost_threshold=-1e9)
    assert again.result["skipped"] == 1 and again.result["processed"] == 0


def test_track_operator_runs_a_tracking_mode(video, checkpoint):
    """The operator form's "Tracking mode" reaches the predictor: the run is recorded with it
    and every frame is labeled (SAM2Long's pathways, both directions)."""
    import fiftyone_sam2 as fs2

    ds, _ = video
    res = _run(TRACK, ds.view(), prompt_field="frames.prompts", label_field="frames.long",
               direction="both", memory_mode="long", checkpoint=checkpoint or "none", device="cpu",
               lost_threshold=-1e9)
    assert res.error is None, res.error
    assert res.result["processed"] == 1
    assert fs2.runs(ds)["frames.long"]["settings"]["memory_mode"] == "long"
    assert all(f.long is not None for f in ds.first().frames.values())
    before = _snapshot(ds)
    with pytest.raises(ValueError, match="valid modes: sam2, samurai, distractor, long"):
        fs2.track(ds.view(), prompt_field="frames.prompts", label_field="frames.bad", memory_mode="kalman",
                  checkpoint="none", device="cpu")
    assert _snapshot(ds) == before


@requires_demo_tracking
def test_track_accuracy_with_demo_model(media_dir, demo_checkpoint):
    """Tracked masks on the synthetic video reach the demo model's J&F minus a margin, and the
    evaluate operator's stored J&F equals the core's evaluate_sequence on the same masks."""
    from fiftyone_sam2._evaluate import _LabelMaps
    from sam2_plugins.evaluation import evaluate_sequence, summarize

    ds, gts = _data.video_dataset(media_dir, num_frames=12, objects=2, prompt_frames=(6,), seed=3)
    res = _run(TRACK, ds.view(), prompt_field="frames.prompts", label_field="frames.sam2",
               direction="both", checkpoint=demo_checkpoint, device="cpu")
    assert res.error is None, res.error
    ev = _run(EVAL, ds.view(), pred_field="frames.sam2", gt_field="frames.gt", eval_key="ev")
    assert ev.error is None, ev.error
    jf = ev.result["JF"]
    floor = demo_floor("J&F", TRACK_MARGIN)  # the card's held-out J&F minus a stated margin
    assert jf > floor, (floor, ev.result)
    s = ds.first()
    frames = {fn: f.sam2 for fn, f in s.frames.items()}
    pred = _LabelMaps(frames, 1, 12, {1: 1, 2: 2}, _data.W, _data.H)
    core = summarize([evaluate_sequence(gts[0], [pred[t] for t in range(12)], void_label=None)])
    assert s.ev_JF == pytest.approx(core["J&F-Mean"], abs=1e-12)
    assert jf == pytest.approx(core["J&F-Mean"], abs=1e-12)


def test_image_sequence_is_tracked_as_a_video(media_dir, checkpoint):
    ds = _data.image_dataset(media_dir, n=4, objects=2)
    # prompts only on the third image: the first two are reached by the backward pass
    from fiftyone import ViewField as F

    ds.clone_sample_field("boxes", "seed_boxes")
    ds.match(F("order") != 2).set_field("seed_boxes", None).save("seed_boxes")
    res = _run(TRACK, ds.view(), prompt_field="seed_boxes", label_field="seq", order_by="order",
               checkpoint=checkpoint or "none", device="cpu", lost_threshold=-1e9)
    assert res.error is None, res.error
    assert res.result["processed"] == 4
    dirs = {s.order: {d["direction"] for d in s.seq.detections} for s in ds.iter_samples()}
    assert all(dirs[o] <= {"backward"} for o in (0, 1)) and all(dirs[o] <= {"forward"} for o in (3,))


@pytest.mark.parametrize("params, message", [
    ({"prompt_field": "frames.nothing"}, "does not exist"),
    ({"prompt_field": "frames.prompts", "direction": "sideways"}, "direction must be one of"),
    ({"prompt_field": "frames.prompts", "memory_mode": "kalman"}, "memory_mode"),
    ({"prompt_field": "frames.prompts", "label_field": "sam2"}, "must be frame fields"),
    ({"prompt_field": "frames.prompts", "model": "sam2.1_hiera_nano", "checkpoint": "path",
      "checkpoint_path": "/nope.pt"}, "unknown checkpoint"),
])
def test_track_bad_input(video, params, message):
    ds, _ = video
    before = _snapshot(ds)
    assert message in _error(TRACK, ds.view(), **{"label_field": "frames.out", "device": "cpu",
                                                  "checkpoint": "none", **params})
    assert _snapshot(ds) == before


def test_image_operators_refuse_videos(video):
    ds, _ = video
    before = _snapshot(ds)
    for uri in ("@sam2-plugins/sam2/sam2_segment", "@sam2-plugins/sam2/sam2_auto_label"):
        text = _error(uri, ds.view(), prompt_field="frames.prompts", label_field="out",
                      checkpoint="none", device="cpu")
        assert "holds 'video'" in text or "frame field" in text, text
    assert _snapshot(ds) == before


def test_video_without_frames_is_refused(media_dir, video):
    import fiftyone as fo

    ds, _ = video
    broken = media_dir / "empty.mp4"
    broken.write_bytes(b"")
    ds.add_sample(fo.Sample(filepath=str(broken)))
    before = _snapshot(ds)
    text = _error(TRACK, ds.view(), prompt_field="frames.prompts", label_field="frames.out",
                  checkpoint="none", device="cpu")
    assert "empty.mp4" in text and ("no frames" in text or "cannot read video" in text)
    assert _snapshot(ds) == before


def test_video_with_only_prompt_frames_gets_every_frame_labeled(media_dir, checkpoint):
    """Frames without a frame document yet are created (FiftyOne stores frames sparsely)."""
    import fiftyone as fo

    import fiftyone_sam2 as fs2

    ds, _ = _data.video_dataset(media_dir, num_frames=6, objects=1, prompt_frames=(3,))
    ds.delete_frame_field("gt")
    s = ds.first()
    for fn in (1, 2, 4, 5, 6):
        s.frames.delete_frame(fn) if hasattr(s.frames, "delete_frame") else s.frames.pop(fn)
    s.save()
    assert sorted(ds.first().frames.keys()) == [3]
    out = fs2.track(ds, "frames.prompts", "frames.trk", checkpoint=checkpoint, device="cpu",
                    lost_threshold=-1e9)
    assert out["processed"] == 1
    frames = ds.first().frames
    assert sorted(frames.keys()) == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(f.trk, fo.Detections) for f in frames.values())
    assert frames[3].prompts is not None  # the existing frame kept its other fields


def test_sequences_group_and_order_images(media_dir):
    from fiftyone_sam2._track import _sequences

    ds = _data.image_dataset(media_dir, n=5, objects=1)
    for s, (seq, pos) in zip(ds.iter_samples(autosave=True), [("b", 2), ("a", 1), ("b", 0), ("a", 0), ("b", 1)]):
        s["seq"], s["pos"] = seq, pos
    ids = ds.values("id")
    assert _sequences(ds, "seq", "pos") == [[ids[3], ids[1]], [ids[2], ids[4], ids[0]]]
    assert _sequences(ds, None, "order") == [ids]


def test_video_frames_are_streamed_from_disk(media_dir, checkpoint, monkeypatch):
    """Tracking reads the mp4 lazily: every frame is decoded, but never all of them are held at
    once (the source keeps a small LRU; the predictor asks for frames as it goes)."""
    import weakref

    import fiftyone_sam2 as fs2
    from fiftyone_sam2 import _media
    from sam2_plugins.io import FrameSource

    n = 32
    ds, _ = _data.video_dataset(media_dir, num_frames=n, objects=1, prompt_frames=(1,))
    seen: dict[int, weakref.ref] = {}
    peak = [0]
    sources = []
    real_open = _media.open_video

    def counting_open(path):
        src = real_open(path)
        assert isinstance(src, FrameSource) and type(src).__name__ == "VideoFileSource", type(src)
        sources.append(src)
        real_get = src.get

        def get(idx):
            frame = real_get(idx)
            seen[int(idx)] = weakref.ref(frame)
            peak[0] = max(peak[0], sum(r() is not None for r in seen.values()))
            return frame

        src.get = get
        return src

    monkeypatch.setattr(_media, "open_video", counting_open)
    out = fs2.track(ds, "frames.prompts", "frames.stream", direction="forward",
                    checkpoint=checkpoint, device="cpu", lost_threshold=-1e9)
    assert out["processed"] == 1 and len(sources) == 1
    assert sorted(seen) == list(range(n))  # every frame was read from the file ...
    assert peak[0] <= n // 2, peak[0]  # ... but at most half of them were alive at once
    assert all(f.stream is not None for f in ds.first().frames.values())
