"""Crash safety: failing samples, a killed delegated worker, parallel workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fiftyone import _data
from tests.fiftyone.test_segment import _run, _snapshot

SEG = "@sam2-plugins/sam2/sam2_segment"
WORKER = Path(__file__).with_name("_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _queue(view, **params):
    import fiftyone.operators as foo

    res = foo.execute_operator(SEG, ctx={"view": view, "params": params, "request_delegation": True})
    assert res.delegated and res.error is None, res.error
    return res.result["id"]


def _done(ds, field):
    ds.reload()  # the worker changes the schema and the samples behind our back
    return ds.count_values(field).get("done", 0) if ds.has_field(field) else 0


def _op(op_id):
    from fiftyone.operators.delegated import DelegatedOperationService

    return DelegatedOperationService().get(op_id)


def _others(ds):
    """Every field but the run's own, to prove they are not touched."""
    ds.reload()
    keep = ("ground_truth", "boxes", "points", "negatives", "filepath", "metadata", "tags")
    return [{k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in zip(keep, vals)}
            for vals in zip(*[ds.values(k) for k in keep])]


def test_failing_sample_is_recorded_and_the_run_goes_on(media_dir, checkpoint):
    ds = _data.image_dataset(media_dir, n=3, objects=2)
    bad = ds.skip(1).first()
    good_bytes = Path(bad.filepath).read_bytes()
    Path(bad.filepath).write_bytes(b"not an image")
    res = _run(SEG, ds.view(), prompt_field="boxes", label_field="sam2",
               checkpoint=checkpoint or "none", device="cpu", batch_size=2)
    assert res.error is None, res.error
    assert res.result["processed"] == 2 and res.result["failed"] == 1
    statuses = ds.values("sam2_status")
    assert statuses[0] == statuses[2] == "done"
    assert statuses[1].startswith("failed: ValueError") and "cannot read" in statuses[1]
    assert ds.values("sam2")[1] is None
    # fixed input: the rerun retries only the failed sample
    Path(bad.filepath).write_bytes(good_bytes)
    res = _run(SEG, ds.view(), prompt_field="boxes", label_field="sam2",
               checkpoint=checkpoint or "none", device="cpu")
    assert res.result["processed"] == 1 and res.result["skipped"] == 2
    assert ds.values("sam2_status") == ["done"] * 3


def test_killed_delegated_run_resumes_without_relabeling(media_dir, checkpoint):
    ds = _data.image_dataset(media_dir, n=8, objects=2)
    others = _others(ds)
    params = dict(prompt_field="boxes", label_field="sam2", checkpoint=checkpoint or "none",
                  device="cpu")
    first = _queue(ds.view(), **params)
    worker = subprocess.Popen([sys.executable, str(WORKER), "0.6"], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:
        while _done(ds, "sam2_status") < 3:
            assert worker.poll() is None, worker.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "the worker made no progress"
            time.sleep(0.1)
    finally:
        worker.kill()  # SIGKILL: no cleanup of any kind in the worker
        worker.wait()
    done = {s.id: s.last_modified_at for s in ds.match({"sam2_status": "done"})}
    assert 3 <= len(done) < 8
    killed = _op(first)
    assert killed.run_state == "running"  # the killed operation never finished
    # it reported progress (ctx.set_progress) while it ran
    assert killed.status is not None and 0 < killed.status.progress < 1
    assert "samples" in killed.status.label
    # rerun: a fresh delegated run of the same operation resumes
    second = _queue(ds.view(), **params)
    out = subprocess.run([sys.executable, str(WORKER)], env=_env(), capture_output=True, timeout=300)
    assert out.returncode == 0, out.stdout.decode()[-3000:] + out.stderr.decode()[-3000:]
    op = _op(second)
    assert op.run_state == "completed", op.result
    summary = op.result.result
    assert summary["resumed"] and summary["skipped"] == len(done)
    assert summary["processed"] == 8 - len(done) and summary["failed"] == 0
    assert ds.values("sam2_status") == ["done"] * 8
    after = {s.id: s.last_modified_at for s in ds.select(list(done))}
    assert after == done  # samples done before the kill were not labeled again
    assert all(len(v.detections) == 2 for v in ds.values("sam2"))
    assert _others(ds) == others  # no existing field changed
    assert ds.info["sam2_runs"]["sam2"]["completed"] is True


def _failure(op) -> str:
    res = op.result
    return f"{op.run_state}: {getattr(res, 'error_message', None)} {getattr(res, 'error', None)}"


def test_two_delegated_workers_in_parallel(media_dir, checkpoint):
    """Two shards of one run, queued, then two worker processes started together: each runs
    one shard (``--one``: deterministic whatever their start-up order), both complete, every
    sample is labeled exactly once and the run is recorded as completed."""
    ds = _data.image_dataset(media_dir, n=6, objects=1)
    others = _others(ds)
    ids = [_queue(ds.view(), prompt_field="boxes", label_field="par", checkpoint=checkpoint or "none",
                  device="cpu", shard_count=2, shard_index=i) for i in range(2)]
    workers = [subprocess.Popen([sys.executable, str(WORKER), "0.3", "--one"], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    logs = [w.communicate(timeout=300)[0].decode()[-3000:] for w in workers]
    ops = [_op(i) for i in ids]
    assert [o.run_state for o in ops] == ["completed", "completed"], [_failure(o) for o in ops] + logs
    results = [o.result.result for o in ops]
    assert len({r["pid"] for r in results}) == 2, "both shards ran in the same worker"
    assert sorted(r["processed"] for r in results) == [3, 3], results
    assert [r["failed"] for r in results] == [0, 0], results
    ds.reload()
    assert ds.values("par_status") == ["done"] * 6
    assert all(len(v.detections) == 1 for v in ds.values("par"))
    assert _others(ds) == others
    assert ds.info["sam2_runs"]["par"]["completed"] is True


def test_parallel_run_setup_is_serialized(media_dir, checkpoint, tmp_path):
    """The interleaving that failed a shard, forced: the follower's run set-up starts while the
    leader's is half-way (output field declared, set-up not finished). The follower must wait
    for the dataset lock, then join the run; before the fix it saw a declared field without a
    run record and refused it as foreign ("already exists and was not written by ...")."""
    from fiftyone_sam2._lock import dataset_lock_name, holder

    ds = _data.image_dataset(media_dir, n=6, objects=1)
    race = Path(__file__).with_name("_race.py")

    def start(role, shard):
        return subprocess.Popen([sys.executable, str(race), ds.name, role, str(tmp_path), str(shard),
                                 checkpoint or "none"], env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    leader, follower = start("leader", 0), start("follower", 1)
    try:
        deadline = time.time() + 400
        while not (tmp_path / "checking").exists():
            assert leader.poll() is None and follower.poll() is None, "a racer died early"
            assert time.time() < deadline, "the racers never met"
            time.sleep(0.02)
        # the leader is paused inside its set-up: it holds the dataset's lock
        lock = holder(dataset_lock_name(ds))
        assert lock is not None and f":{leader.pid}:" in lock["owner"], lock
        (tmp_path / "observed").write_text("1")  # the leader may go on
        logs = [p.communicate(timeout=400)[0].decode() for p in (leader, follower)]
    finally:
        for p in (leader, follower):
            if p.poll() is None:
                p.kill()
    assert [leader.returncode, follower.returncode] == [0, 0], [log[-3000:] for log in logs]
    summaries = [json.loads(log.split("SUMMARY ", 1)[1].splitlines()[0]) for log in logs]
    assert [s["processed"] for s in summaries] == [3, 3] and [s["failed"] for s in summaries] == [0, 0]
    assert summaries[1]["resumed"]  # the follower joined the leader's run
    ds.reload()
    assert ds.values("par_status") == ["done"] * 6
    assert ds.info["sam2_runs"]["par"]["completed"] is True
    assert holder(dataset_lock_name(ds)) is None  # released


def test_lock_excludes_refreshes_and_expires(fo_env):
    """The database lock: a live holder keeps it (waiters time out naming it), a holding
    process refreshes its lease, and a dead holder's expired lock is taken over."""
    import datetime as dt
    import uuid

    from fiftyone_sam2 import _lock

    coll = _lock._collection()
    name = f"test:{uuid.uuid4().hex}"
    coll.insert_one({"_id": name, "owner": "host:1:alive", "expires": _lock._now() + dt.timedelta(seconds=60)})
    with pytest.raises(TimeoutError, match="host:1:alive"):
        with _lock.db_lock(name, timeout_s=0.3):
            pass
    assert _lock.holder(name)["owner"] == "host:1:alive"  # a waiter never removes it
    coll.update_one({"_id": name}, {"$set": {"expires": _lock._now() - dt.timedelta(seconds=1)}})
    with _lock.db_lock(name, lease_s=0.3) as token:  # expired: taken over
        first = _lock.holder(name)
        assert first["owner"] == token and str(os.getpid()) in token
        time.sleep(0.6)  # two refresh periods
        assert _lock.holder(name)["expires"] > first["expires"]
    assert _lock.holder(name) is None


def test_overwrite_run_keeps_unprocessed_values_and_records_settings(media_dir, checkpoint):
    import fiftyone_sam2 as fs2

    ds = _data.image_dataset(media_dir, n=2, objects=1)
    fs2.segment(ds, "boxes", label_field="s", checkpoint=checkpoint, device="cpu")
    rec = fs2.runs(ds)["s"]
    assert rec["kind"] == "segment" and rec["settings"]["prompt_field"] == "boxes"
    # same field, other settings: refused (resuming would mix two configurations)
    with pytest.raises(fs2.FieldExistsError, match="other settings"):
        fs2.segment(ds, "points", label_field="s", checkpoint=checkpoint, device="cpu")
    before = _snapshot(ds)
    with pytest.raises(fs2.FieldExistsError):
        fs2.auto_label(ds, label_field="s", checkpoint=checkpoint, device="cpu")
    assert _snapshot(ds) == before
    out = fs2.segment(ds.limit(1), "points", label_field="s", checkpoint=checkpoint, device="cpu",
                      overwrite=True)
    assert out["processed"] == 1 and fs2.runs(ds)["s"]["settings"]["prompt_field"] == "points"
