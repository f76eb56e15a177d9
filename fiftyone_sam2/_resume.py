"""Resumable, crash-safe runs over a FiftyOne collection.

How a run keeps the dataset consistent
--------------------------------------
* Results go to one output field (``label_field``) plus a sample-level status field
  ``<name>_status`` (``"done"`` or ``"failed: <error>"``), where ``<name>`` is the output
  field's name without ``frames.``.
* A sample's result and its status are written by one ``sample.save()``; for images that
  is a single MongoDB update, so a killed worker leaves each sample either untouched or
  complete. For videos the frames are written first and the status last, so a sample whose
  status is not ``"done"`` is redone (and its partial frames replaced) by the next run.
* The run is recorded in ``dataset.info["sam2_runs"][label_field]`` (kind and settings).
  Rerunning the same kind into the same field resumes it: samples already ``"done"`` are
  skipped. A field that exists but was not made by a run of this kind is never written
  unless ``overwrite=True``.
* A sample that raises is marked ``failed: ...`` and the run goes on; a rerun retries it.
* Steps that read and rewrite dataset-level state (the schema, ``dataset.info``) run under
  the dataset's cross-process lock (:mod:`fiftyone_sam2._lock`): parallel workers see each
  other's run record and declared fields whole, and never drop each other's updates.
* Samples are fetched by id in small batches (no long-lived database cursor), so a run can
  take hours and be sharded over several workers (:func:`shard`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import traceback
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Callable, Mapping, Sequence

from ._fields import check_output_name, declare_field, field_exists, split_field
from ._lock import dataset_lock_name, db_lock

logger = logging.getLogger(__name__)

RUNS_KEY = "sam2_runs"
DONE = "done"
FAILED = "failed"
ProgressFn = Callable[[float, str], None]


class FieldExistsError(ValueError):
    """The output field exists and overwriting it was not asked for."""


@dataclass
class Run:
    """One run writing ``label_field`` of ``dataset`` (see module docstring)."""

    dataset: Any
    label_field: str
    kind: str
    status_field: str
    resumed: bool
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = dc_field(default_factory=list)
    counts: dict[str, Any] = dc_field(default_factory=dict)
    """What the results look like (empty masks, lost objects, ...; see :mod:`._summary`)."""

    def summary(self) -> dict[str, Any]:
        from ._summary import warnings_for

        return {"label_field": self.label_field, "status_field": self.status_field,
                "kind": self.kind, "resumed": self.resumed, "processed": self.processed,
                "failed": self.failed, "skipped": self.skipped, "errors": self.errors[:20],
                **self.counts, "warnings": warnings_for(self.kind, self.counts), "pid": os.getpid()}


def status_field_for(label_field: str) -> str:
    """``"frames.sam2"`` / ``"sam2"`` -> ``"sam2_status"`` (always sample-level)."""
    return f"{split_field(label_field)[1]}_status"


def runs(dataset: Any) -> dict[str, dict[str, Any]]:
    """The recorded runs of ``dataset``: ``{label_field: record}``."""
    return dict((dataset.info or {}).get(RUNS_KEY, {}))


def start_run(
    collection: Any,
    label_field: str,
    kind: str,
    settings: Mapping[str, Any],
    doc_type: type,
    overwrite: bool = False,
    extra_fields: Mapping[str, type] | None = None,
) -> Run:
    """Validate the output field, declare it and its status field, and record the run.

    Call this only after all inputs were checked and the model loaded: it is the first
    step that writes to the dataset. It runs under the dataset's cross-process lock
    (:mod:`fiftyone_sam2._lock`), so parallel workers (shards of one run) see each other's
    record and fields complete, never half-declared.

    Raises:
        FieldExistsError: ``label_field`` (or its status field) exists, was not made by a
            ``kind`` run, and ``overwrite`` is False; or a ``kind`` run into it used other
            ``settings`` (resuming would mix two configurations).
    """
    check_output_name(label_field)
    extra = dict(extra_fields or {})
    for name in extra:
        check_output_name(name)
    dataset = collection._dataset
    with db_lock(dataset_lock_name(dataset)):
        return _start_run_locked(collection, dataset, label_field, kind, dict(settings), doc_type,
                                 overwrite, extra)


def _start_run_locked(collection: Any, dataset: Any, label_field: str, kind: str,
                      settings: dict[str, Any], doc_type: type, overwrite: bool,
                      extra: dict[str, type]) -> Run:
    dataset.reload()  # another worker may have changed the schema and info since we loaded it
    status = status_field_for(label_field)
    record = runs(dataset).get(label_field)
    exists = field_exists(dataset, label_field) or field_exists(dataset, status)
    extra_taken = [n for n in extra if field_exists(dataset, n)]
    if extra_taken and not overwrite and not (record and record.get("kind") == kind
                                             and set(extra_taken) <= set(record.get("extra_fields", []))):
        raise FieldExistsError(f"field(s) {extra_taken} already exist and were not written by this "
                               f"SAM 2 {kind} run; choose new names or set overwrite=True")
    resumed = False
    if not overwrite and exists:
        if record is None or record.get("kind") != kind:
            raise FieldExistsError(
                f"field {label_field!r} (or {status!r}) already exists and was not written by a "
                f"SAM 2 {kind} run; choose a new field or set overwrite=True")
        if record.get("settings") != settings:
            raise FieldExistsError(
                f"field {label_field!r} holds a SAM 2 {kind} run with other settings "
                f"({record.get('settings')}); choose a new field or set overwrite=True")
        resumed = True
    if overwrite and field_exists(dataset, label_field):
        from ._fields import field_type

        have = field_type(dataset, label_field)
        if not (isinstance(have, type) and issubclass(have, doc_type)):
            raise FieldExistsError(
                f"field {label_field!r} holds {getattr(have, '__name__', have)}, not "
                f"{doc_type.__name__}; overwrite only replaces values of the same type, so "
                "delete the field first or choose a new one")
    # Writes, in an order that a worker killed between any two of them leaves resumable:
    # 1. with overwrite, this view's samples are marked not done (before the new record
    #    exists, so a half-reset view is never taken for a finished run of the new settings);
    if overwrite and field_exists(dataset, status):
        collection.set_values(status, [None] * collection.count())
    # 2. the record (before the fields: a declared output field without a record would be
    #    refused as foreign by the next run);
    info = dict(dataset.info or {})
    all_runs = dict(info.get(RUNS_KEY, {}))
    prev = all_runs.get(label_field, {}) if resumed else {}
    all_runs[label_field] = {
        "kind": kind, "settings": settings, "status_field": status, "extra_fields": sorted(extra),
        "started": prev.get("started") or _now(), "updated": _now(), "completed": False,
    }
    info[RUNS_KEY] = all_runs
    dataset.info = info
    dataset.save()
    # 3. the fields.
    declare_field(dataset, label_field, doc_type=doc_type)
    declare_field(dataset, status)
    for name, t in extra.items():
        declare_field(dataset, name, doc_type=t)
    return Run(dataset, label_field, kind, status, resumed)


def pending_ids(collection: Any, run: Run) -> list[str]:
    """Ids of the samples of ``collection`` not yet done by ``run``, in collection order."""
    from fiftyone import ViewField as F

    return list(collection.match(F(run.status_field) != DONE).values("id"))


def shard(collection: Any, index: int, count: int) -> Any:
    """The ``index``-th of ``count`` disjoint parts of ``collection`` (by sorted sample id).

    Lets ``count`` delegated workers label one view in parallel without coordinating.
    """
    if not (isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count):
        raise ValueError(f"expected 0 <= shard index < shard count, received {index} / {count}")
    if count == 1:
        return collection
    ids = sorted(collection.values("id"))[index::count]
    return collection.select(ids, ordered=True)


def execute(
    collection: Any,
    run: Run,
    compute: Callable[[Sequence[Any]], Sequence[Any]],
    write: Callable[[Any, Any], None],
    batch_size: int = 1,
    progress: ProgressFn | None = None,
    units: Sequence[Sequence[str]] | None = None,
) -> Run:
    """Process the pending samples of ``collection`` unit by unit.

    A unit is a list of sample ids computed together: by default consecutive batches of
    ``batch_size`` pending samples; ``units`` overrides this (e.g. one unit per image
    sequence; a unit is redone whole when any of its samples is not done).

    ``compute(samples) -> results``: one result per sample, or an ``Exception`` instance for
    a sample that failed (raising fails the whole unit: each of its samples is marked failed).
    ``write(sample, result)``: puts the result on the sample (not saved yet).
    """
    pending = pending_ids(collection, run)
    if units is None:
        size = max(1, int(batch_size))
        todo = [pending[i:i + size] for i in range(0, len(pending), size)]
    else:
        waiting = set(pending)
        todo = [list(u) for u in units if any(i in waiting for i in u)]
    n_todo = sum(len(u) for u in todo)
    run.skipped = collection.count() - n_todo
    done = 0
    for chunk in todo:
        samples = list(collection.select(chunk, ordered=True))
        # Another worker running the same samples (two unsharded runs into one field) may
        # have finished some since the pending list was read: skip those, not redo them. A
        # unit (sequence) is still redone whole while any of its samples is not done.
        fresh = [s for s in samples if s[run.status_field] != DONE]
        if units is None:
            samples = fresh
        elif not fresh:
            samples = []
        late = len(chunk) - len(samples)
        run.skipped += late
        done += late
        if not samples:
            continue
        try:
            results = list(compute(samples))
            if len(results) != len(samples):
                raise RuntimeError(f"compute returned {len(results)} results for {len(samples)} samples")
        except Exception as exc:  # a unit-level failure fails each of its samples
            logger.warning("SAM 2 batch failed: %s", exc)
            logger.debug("SAM 2 batch failure", exc_info=exc)
            results = [exc] * len(samples)
        for sample, result in zip(samples, results):
            _finish_sample(sample, run, result, write)
        done += len(samples)
        if progress is not None:
            progress(done / max(1, n_todo), f"{done}/{n_todo} samples ({run.failed} failed)")
    _close_run(collection, run)
    return run


def _finish_sample(sample: Any, run: Run, result: Any, write: Callable[[Any, Any], None]) -> None:
    if not isinstance(result, Exception):
        try:
            write(sample, result)
            sample[run.status_field] = DONE
            sample.save()
            run.processed += 1
            return
        except Exception as exc:  # e.g. a label the database refuses
            result = exc
    msg = f"{FAILED}: {type(result).__name__}: {result}"
    logger.warning("SAM 2 sample %s %s", sample.id, msg)
    if not isinstance(result, (ValueError, TypeError)):
        logger.debug("".join(traceback.format_exception(result)))
    run.failed += 1
    run.errors.append(f"{sample.filepath}: {msg}")
    # Only the status is written: whatever the label field held stays as it was.
    sample.reload(hard=True)
    sample[run.status_field] = msg[:2000]
    sample.save()


def _close_run(collection: Any, run: Run) -> None:
    from fiftyone import ViewField as F

    dataset = run.dataset
    # Under the lock: parallel shards of one run each close it, and each must see the
    # others' finished samples and update the record without dropping their updates.
    with db_lock(dataset_lock_name(dataset)):
        dataset.reload()
        info = dict(dataset.info or {})
        all_runs = dict(info.get(RUNS_KEY, {}))
        rec = dict(all_runs.get(run.label_field, {}))
        rec["updated"] = _now()
        rec["completed"] = dataset.match(F(run.status_field) != DONE).count() == 0
        summary = run.summary()
        rec["last"] = {k: v for k, v in summary.items() if k != "errors"}
        all_runs[run.label_field] = rec
        info[RUNS_KEY] = all_runs
        dataset.info = info
        dataset.save()
    for w in summary["warnings"]:
        logger.warning("SAM 2 %s into %s: %s", run.kind, run.label_field, w)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
