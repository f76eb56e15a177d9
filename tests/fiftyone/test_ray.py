"""Dataset labeling on Ray workers sharing the test's FiftyOne database (local loopback cluster)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from tests.fiftyone._data import image_dataset, video_dataset
from tests.ray_local import local_cluster, require_ray

AMG = dict(points_per_side=4, pred_iou_thresh=0.3, stability_score_thresh=0.5)


def _labels(ds, field: str) -> list:
    out = []
    for s in ds.select_fields(field).sort_by("filepath"):
        d = s[field]
        out.append(None if d is None else [(round(x.bounding_box[0], 9), x.confidence, x.mask.tobytes(), x.index)
                                           for x in d.detections])
    return out


@pytest.fixture(scope="module")
def cluster(fo_env):
    require_ray()
    with local_cluster(2) as addr:
        yield addr


@pytest.mark.slow
def test_auto_label_on_ray_equals_in_process_even_when_a_worker_is_killed(media_dir, checkpoint, cluster) -> None:
    import fiftyone as fo
    import ray

    import fiftyone_sam2 as fs2
    from sam2_exec import RayExecutor

    ds = image_dataset(media_dir, n=20, name="ray")
    bad = media_dir / f"{ds.name}_corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds.add_sample(fo.Sample(filepath=str(bad)))
    kw = dict(checkpoint=checkpoint, device="cpu", **AMG)

    ref = fs2.auto_label(ds, label_field="inproc", **kw)
    assert ref["processed"] == 20 and ref["failed"] == 1

    plain = fs2.auto_label(ds, label_field="onray", executor="ray", workers=2, **kw)
    assert plain["executor"] == "ray" and plain["workers"] == 2 and set(plain["per_worker"]) == {"ray-0", "ray-1"}
    assert plain["processed"] == 20 and plain["failed"] == 1 and "_corrupt.png: failed:" in plain["errors"][0]
    assert _labels(ds, "onray") == _labels(ds, "inproc")
    assert sum(d is not None and len(d) > 0 for d in _labels(ds, "inproc")) > 10  # not a comparison of empties

    # Kill one worker in the middle of a shard: the shard is retried elsewhere and resumed
    ex = RayExecutor(workers=2, name="fo-kill")
    steps = []
    timer = []

    def kill() -> None:
        ray.kill(ray.get_actor("fo-kill-worker-0", namespace="sam2_exec"), no_restart=False)

    def progress(fraction: float, text: str) -> None:
        steps.append(text)
        if not timer:  # 0.5 s after a shard ends both workers are inside their next shard
            timer.append(threading.Timer(0.5, kill))
            timer[0].start()

    out = fs2.auto_label(ds, label_field="killed", executor=ex, progress=progress, **kw)
    timer[0].join()
    assert ex.retried, "no shard was running on the killed worker"
    assert out["failed"] == 1 and out["processed"] + out["skipped"] == 20  # skipped: done before the kill
    assert ds.count_values("killed_status")["done"] == 20
    assert _labels(ds, "killed") == _labels(ds, "inproc")  # every image labeled, exactly once each
    assert steps[-1].startswith(f"{out['shards']}/{out['shards']} shards")
    assert fs2.runs(ds)["killed"]["completed"] is False  # the corrupt image is still to do

    # A rerun resumes: nothing left but the corrupt image, which fails again
    again = fs2.auto_label(ds, label_field="killed", executor="ray", workers=2, **kw)
    assert again["processed"] == 0 and again["failed"] == 1 and again["skipped"] == 20


@pytest.mark.slow
def test_segment_and_track_on_ray_equal_in_process(media_dir, checkpoint, cluster) -> None:
    import fiftyone_sam2 as fs2

    ds = image_dataset(media_dir, n=6, name="rayseg")
    kw = dict(checkpoint=checkpoint, device="cpu")
    fs2.segment(ds, "boxes", label_field="s_in", **kw)
    out = fs2.segment(ds, "boxes", label_field="s_ray", executor="ray", workers=2, **kw)
    assert out["processed"] == 6 and _labels(ds, "s_ray") == _labels(ds, "s_in")

    vids, _ = video_dataset(media_dir, num_frames=6, videos=2, name="raytrack")
    fs2.track(vids, "frames.prompts", label_field="frames.t_in", **kw)
    out = fs2.track(vids, "frames.prompts", label_field="frames.t_ray", executor="ray", workers=2, **kw)
    assert out["processed"] == 2 and out["shards"] == 2
    for s in vids:
        for _fn, fr in s.frames.items():
            a, b = fr["t_in"], fr["t_ray"]
            assert [(d.index, d.mask.tobytes()) for d in a.detections] == [(d.index, d.mask.tobytes())
                                                                          for d in b.detections]


def test_workers_need_an_executor_and_field_errors_come_before_any_write(media_dir, checkpoint) -> None:
    import fiftyone_sam2 as fs2

    ds = image_dataset(media_dir, n=2, name="raybad")
    with pytest.raises(ValueError, match="workers=2 needs executor='ray'"):
        fs2.auto_label(ds, label_field="x", workers=2, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="integer >= 1"):
        fs2.segment(ds, "boxes", label_field="x", executor="ray", workers=0, checkpoint=checkpoint)
    assert "x" not in ds.get_field_schema()


def test_operators_declare_distributed_execution_and_map_its_tasks_to_shards(media_dir) -> None:
    import fiftyone_sam2 as fs2
    from fiftyone_sam2._operators import AutoLabel, Evaluate, Segment, Track, _target

    delegated = SimpleNamespace(params={"delegate": True})
    for op in (AutoLabel(), Segment(), Track()):
        opts = op.resolve_execution_options(delegated).to_dict()
        assert opts["min_distributed_tasks"] == 2 and opts["recommended_distributed_tasks"] == 4, op
        assert opts["allow_delegated_execution"] and op.config.kwargs["recommended_distributed_tasks"] == 4
    assert Evaluate().resolve_execution_options(delegated).to_dict()["recommended_distributed_tasks"] is None

    ds = image_dataset(media_dir, n=7, name="raytask")
    seen = []
    for k in range(3):
        ctx = SimpleNamespace(params={}, request_params={"distributed_task_index": k}, num_distributed_tasks=3,
                              target_view=lambda: ds)
        view = _target(ctx)
        assert view.values("id") == fs2.shard(ds, k, 3).values("id")
        seen += view.values("id")
    assert sorted(seen) == sorted(ds.values("id"))  # the tasks cover the view once
    both = SimpleNamespace(params={"shard_count": 2}, request_params={"distributed_task_index": 0},
                           num_distributed_tasks=3, target_view=lambda: ds)
    with pytest.raises(ValueError, match="not both"):
        _target(both)
