"""A mutex shared by every process that uses the same FiftyOne database.

Why: several delegated workers (separate processes, possibly separate machines) label one
dataset at once. Each run reads and rewrites dataset-level state: the field schema and
``dataset.info["sam2_runs"]``. Done without coordination, a worker can see the output field
another worker has just declared but not yet the record of that worker's run, and refuse to
write ("exists and was not written by a SAM 2 run"); or two workers rewrite ``dataset.info``
and the later write drops the earlier one's update. Holding :func:`db_lock` around each such
read-modify-write makes those steps happen one worker at a time. The lock lives in the
database the workers already share, so it needs no extra service or shared filesystem.

How: one document per lock name in the collection :data:`COLLECTION`. Acquiring inserts it
(MongoDB's unique ``_id`` makes exactly one insert succeed); releasing deletes it. A holder
refreshes its lease from a background thread, so a lock whose holder was killed (SIGKILL,
lost machine) expires after ``lease_s`` seconds and the next process takes it over.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import random
import socket
import threading
import time
import uuid
from typing import Any, Iterator

logger = logging.getLogger(__name__)

#: The MongoDB collection holding the locks (in FiftyOne's database). Dropping it (e.g. by a
#: database cleanup) only releases locks; it is recreated on the next acquisition.
COLLECTION = "sam2_plugins_locks"
DEFAULT_LEASE_S = 30.0
DEFAULT_TIMEOUT_S = 600.0


def _collection() -> Any:
    import fiftyone.core.odm as foo

    return foo.get_db_conn()[COLLECTION]


def _now() -> _dt.datetime:
    # pymongo stores naive datetimes as UTC; keep everything naive UTC so comparisons agree.
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def dataset_lock_name(dataset: Any) -> str:
    """The lock guarding dataset-level state (schema, ``info``) of ``dataset``."""
    return f"dataset:{dataset._doc.id}"


def holder(name: str) -> dict[str, Any] | None:
    """The current holder record of lock ``name`` (``owner``, ``expires``), or None."""
    return _collection().find_one({"_id": name})


@contextlib.contextmanager
def db_lock(name: str, lease_s: float = DEFAULT_LEASE_S, timeout_s: float = DEFAULT_TIMEOUT_S,
            poll_s: float = 0.05) -> Iterator[str]:
    """Hold the cross-process lock ``name`` for the duration of the ``with`` block.

    Not re-entrant: a process must not take the same lock again inside the block.

    Args:
        name: lock name, e.g. :func:`dataset_lock_name` of a dataset.
        lease_s: how long the lock outlives a holder that stopped refreshing it (killed).
        timeout_s: give up waiting after this many seconds.
        poll_s: mean pause between attempts while another process holds the lock.

    Yields:
        This holder's token (``host:pid:random``), as stored in the lock document.

    Raises:
        TimeoutError: the lock stayed held by another live process for ``timeout_s``.
    """
    from pymongo.errors import DuplicateKeyError

    if not (isinstance(name, str) and name):
        raise ValueError(f"expected a non-empty lock name, received {name!r}")
    if lease_s <= 0 or timeout_s < 0:
        raise ValueError(f"expected lease_s > 0 and timeout_s >= 0, received {lease_s}, {timeout_s}")
    coll = _collection()
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease = _dt.timedelta(seconds=lease_s)
    deadline = time.monotonic() + timeout_s
    while True:
        now = _now()
        try:
            coll.insert_one({"_id": name, "owner": token, "expires": now + lease, "since": now})
            break
        except DuplicateKeyError:
            pass
        # The holder stopped refreshing its lease (it was killed): take the lock over. The
        # filter on "expires" makes this atomic: of several waiters, one wins.
        stale = coll.find_one_and_update(
            {"_id": name, "expires": {"$lt": now}},
            {"$set": {"owner": token, "expires": now + lease, "since": now}})
        if stale is not None:
            logger.warning("SAM 2 lock %r: took over from %s, whose lease had expired",
                           name, stale.get("owner"))
            break
        if time.monotonic() > deadline:
            cur = coll.find_one({"_id": name}) or {}
            raise TimeoutError(f"waited {timeout_s:.0f} s for lock {name!r}, held by "
                               f"{cur.get('owner', '?')} since {cur.get('since', '?')}")
        # Jitter so waiters do not retry in lockstep.
        time.sleep(poll_s * (0.5 + random.random()))

    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(lease_s / 3.0):
            try:
                coll.update_one({"_id": name, "owner": token}, {"$set": {"expires": _now() + lease}})
            except Exception as exc:  # a transient database error: the next refresh retries
                logger.debug("SAM 2 lock %r: lease refresh failed: %s", name, exc)

    beat = threading.Thread(target=refresh, name=f"sam2-lock-{name}", daemon=True)
    beat.start()
    try:
        yield token
    finally:
        stop.set()
        beat.join()
        # Only our own lock: if it was taken over after an expiry, it is not ours to delete.
        coll.delete_one({"_id": name, "owner": token})
