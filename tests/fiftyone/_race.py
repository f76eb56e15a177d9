"""Forces the interleaving behind the parallel-workers race (test device, not plugin code).

``python _race.py DATASET ROLE SYNC_DIR SHARD CHECKPOINT`` labels shard SHARD (of 2) of
DATASET with ``fiftyone_sam2.segment(..., label_field="par")``, in its own process, as a
delegated worker would. ROLE:

* ``leader``: once it has declared the output field ``par`` (inside its run set-up), it
  writes ``SYNC_DIR/declared``, waits for ``SYNC_DIR/checking`` and for ``SYNC_DIR/observed``
  (written by the test once it has looked at the lock) and then stays inside its set-up for
  PAUSE seconds more.
* ``follower``: builds its model first (so nothing slow is left before its run set-up),
  waits for ``declared``, writes ``checking`` and starts its run: its set-up thus runs while
  the leader's is half-way, which is the interleaving that made one shard fail.

Prints ``SUMMARY <json>`` on success, ``ERROR <type>: <message>`` and exits 1 on failure.
"""

import json
import sys
import time
from pathlib import Path

PAUSE = 1.0
WAIT = 300.0  # generous: start-up on a loaded 2-core CI machine can take a minute


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {WAIT} s")
        time.sleep(0.02)


def main() -> int:
    name, role, sync, shard, checkpoint = sys.argv[1:6]
    sync = Path(sync)
    ck = None if checkpoint == "none" else checkpoint
    import fiftyone as fo

    import fiftyone_sam2 as fs2

    ds = fo.load_dataset(name)
    if role == "leader":
        original = fo.Dataset.add_sample_field
        state = {"paused": False}

        def add_sample_field(self, field_name, *args, **kwargs):
            out = original(self, field_name, *args, **kwargs)
            if field_name == "par" and not state["paused"]:
                state["paused"] = True
                (sync / "declared").write_text("1")
                _wait_for(sync / "checking")
                _wait_for(sync / "observed")
                time.sleep(PAUSE)
            return out

        fo.Dataset.add_sample_field = add_sample_field
    elif role == "follower":
        from fiftyone_sam2._models import ModelSpec, load_model

        load_model(ModelSpec(checkpoint=ck, device="cpu"))  # cached for the run below
        _wait_for(sync / "declared")
        (sync / "checking").write_text("1")
    else:
        raise SystemExit(f"unknown role {role!r}")
    try:
        out = fs2.segment(fs2.shard(ds, int(shard), 2), "boxes", label_field="par",
                          checkpoint=ck, device="cpu")
    except Exception as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        (sync / f"finished_{role}").write_text("1")
    print("SUMMARY " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
