"""The controller's long jobs and read-outs: model loading, encoding, propagation (whole frames
or, in tiled mode, a tile-sized window per group of objects), automatic mode, re-propagation
after a correction click, and the confidence read-out.

Functions of a :class:`~napari_sam2.controller.SAM2Controller` (its public methods call them);
each builds a job body (run by the controller's runner, possibly in a worker thread) and the
callbacks that apply its results (run where the runner delivers them: the UI thread in napari).
No Qt, no napari.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._automatic import AutoParams, AutoResult, automatic_frame
from ._confidence import seq_id
from ._events import Progress, PropagationStatus
from ._history import Step
from ._jobs import Job
from ._models import DefaultModelUnavailable, resolve_choice
from ._models import load_model as build
from ._prompts import FramePrompt, PromptSet
from ._propagation import PropagationEvent, plan_jobs, run_propagation
from ._region import RegionMask
from ._tiles import Box, crop_prompt, prompt_extent

if TYPE_CHECKING:  # pragma: no cover
    from ._session import Key, Session
    from .controller import SAM2Controller

__all__ = ["ConfidenceSeries", "load_model", "encode", "propagate", "automatic", "maybe_repropagate",
           "confidence", "next_flagged"]


def _progress(ctl: "SAM2Controller", kind: str, done: int, total: Optional[int], text: str = "") -> None:
    ctl.events.progress.emit(Progress(kind, int(done), None if total is None else int(total), text))


def _fail(ctl: "SAM2Controller", job: Job, what: str) -> None:
    if job.error is not None:
        ctl.events.message.emit("error", f"SAM 2: {what}: {job.error}", what)


# ---------------------------------------------------------------------------- model
def load_model(ctl: "SAM2Controller", choice: str, checkpoint: str, device: str) -> Job:
    mc = resolve_choice(choice, checkpoint)
    before = ctl.model_label
    ctl.events.status.emit(f"loading {mc.label} ...")

    last = [0.0]

    def report(done: int, total: Optional[int]) -> None:  # (in the loading thread) a few per second
        now = time.perf_counter()
        if now - last[0] >= 0.2 or (total is not None and done >= total):
            last[0] = now
            _progress(ctl, "download", done, total, f"downloading {mc.name}")

    def body(job: Job) -> Any:
        return build(mc, device, progress=report)

    def done(job: Job) -> None:
        _progress(ctl, "download", 0, 0, "finished")
        if job.error is None:
            ctl.set_model(job.result, mc.key, mc.label)
            if mc.is_demo:
                ctl.events.message.emit("info", f"SAM 2: loaded the {mc.label}: it segments simple synthetic "
                                                "shapes, not real images", "model")
            return
        if isinstance(job.error, DefaultModelUnavailable):
            ctl.events.status.emit(f"{before} (kept: {mc.name} could not be downloaded)" if before
                                   else "no model loaded: the default weights could not be downloaded")
            ctl.events.offer_demo.emit(str(job.error))
            ctl.events.message.emit("error", f"SAM 2: {job.error}", "model")
            return
        ctl.events.status.emit(f"{before} (kept: loading {mc.name} failed)" if before
                               else "no model loaded (see the notification)")
        ctl.events.message.emit("error", f"SAM 2: {job.error}", "model")
    return ctl._start("load model", body, on_done=done)


def encode(ctl: "SAM2Controller", todo: List[Tuple[Any, Callable[[], np.ndarray]]]) -> Job:
    """Encode frames / tiles in a job; its end re-runs the pending prompt diff."""
    ctl.pending = True
    eng = ctl.engine
    seen = set()
    uniq = [(t, r) for t, r in todo if not (t in seen or seen.add(t))]

    def body(job: Job) -> Iterator[Tuple[int, int]]:
        for i, (token, reader) in enumerate(uniq):
            eng.set_frame(reader, token)
            yield i + 1, len(uniq)

    def done(job: Job) -> None:
        if job.error is not None:
            ctl.pending = False
            _fail(ctl, job, "encoding")
    unit = "frames" if all(t[0][3] is None for t in uniq) else "tiles"  # frame tokens: (uid, spec, key, window, ...)
    return ctl._start("encoding", body, on_item=lambda it: _progress(ctl, "encoding", it[0], it[1], unit),
                      on_done=done)


# ---------------------------------------------------------------------------- propagation
def _along(ctl: "SAM2Controller", s: "Session", along: Optional[str]) -> str:
    mode = s.spec.mode
    if mode == "2D":
        raise ValueError("the axes are '2D': there is no stack axis to propagate along (choose Z, T or TZ)")
    ax = along or {"Z": "Z", "T": "T", "TZ": ctl.tz_along}[mode]
    if ax not in s.spec.stack_names and not (ax == "ZT" and mode == "TZ"):
        raise ValueError(f"cannot propagate along {ax!r} with axes {mode!r} "
                         f"(stack axes: {', '.join(s.spec.stack_names)})")
    return ax


def _windows(ctl: "SAM2Controller", s: "Session", prompts: PromptSet) -> List[Tuple[Optional[Box], PromptSet]]:
    """Tiled mode: one tile-sized window per group of objects (the window around all of an
    object's prompts), with the prompts moved into it; else the whole frame."""
    grid = ctl._grid(s)
    if grid is None:
        return [(None, prompts)]
    by_obj: Dict[int, List[Tuple["Key", FramePrompt]]] = {}
    for k, objs in prompts.items():
        for o, fp in objs.items():
            if not fp.empty:
                by_obj.setdefault(o, []).append((k, fp))
    groups: Dict[Optional[Box], PromptSet] = {}
    for o, items in by_obj.items():
        exts = [prompt_extent(fp, s.hw) for _, fp in items]
        ext = (min(e[0] for e in exts), max(e[1] for e in exts), min(e[2] for e in exts), max(e[3] for e in exts))
        win = grid.window_for(ext)
        if win is None:
            raise ValueError(f"object {o}'s prompts span more than one tile ({ext[1] - ext[0]} x {ext[3] - ext[2]} px "
                             f"for tiles of {grid.size}): propagate it with tiled mode off, or use larger tiles")
        for k, fp in items:
            groups.setdefault(win, {}).setdefault(k, {})[o] = crop_prompt(fp, win)
    return list(groups.items())


def propagate(ctl: "SAM2Controller", along: Optional[str], direction: Optional[str],
              from_key: Optional[Sequence[int]]) -> Job:
    if ctl.engine is None:
        raise ValueError("load a model first")
    s = ctl._active()
    ctl._check_size(s)
    ax = _along(ctl, s, along)
    dirn = direction or ctl.direction
    if hasattr(ctl.engine, "set_memory_mode"):  # test stubs have no video predictor
        ctl.engine.set_memory_mode(ctl.memory_mode)
    prompts = s.collect()
    start = ctl.key(from_key) if from_key is not None else None
    plan_jobs(s.spec, s.source.shape, prompts, "Z" if ax == "ZT" else ax, dirn, start)  # bad input: now
    windows = _windows(ctl, s, prompts)
    step = Step("propagate" + (" from here" if start is not None else ""), state_before=s.state)
    status = ctl.last_propagation = PropagationStatus("running", 0, 0, 0.0, ax)
    t0 = time.perf_counter()
    eng, spec, shape = ctl.engine, s.spec, s.source.shape

    def body(job: Job) -> Iterator[Tuple[Optional[Box], PropagationEvent]]:
        for win, pr in windows:
            read = s.read_frame if win is None else (lambda k, w=win: s.read_window(k, w))
            for ev in run_propagation(eng, read, spec, shape, pr, ax, dirn, start):
                yield win, ev

    offset = {"done": 0, "base": 0, "run_total": 0, "win": object()}

    def on_item(item: Tuple[Optional[Box], PropagationEvent]) -> None:
        win, ev = item
        if win != offset["win"]:  # a new window: its counts start at 0
            offset["base"] += offset["run_total"]
            offset["win"] = win
        offset["run_total"] = ev.total
        written = set()
        for oid, m in ev.masks.items():
            region = RegionMask.from_full(m)
            if win is not None and region.crop.size:
                region = RegionMask(region.crop, (region.offset[0] + win[0], region.offset[1] + win[2]), s.hw)
            elif win is not None:
                region = RegionMask(region.crop, (0, 0), s.hw)
            written |= ctl._write(s, ev.key, oid, region, step)
        s.quality.record(ev.axis_name, ev.fixed, ev.index, ev.quality)
        status.frames = offset["base"] + ev.done
        status.total = offset["base"] + ev.total
        if written:
            ctl.events.labels.emit(s, written, False)
        _progress(ctl, "propagation", status.frames, max(status.total, status.frames))

    def done(job: Job) -> None:
        status.seconds = time.perf_counter() - t0
        status.state = {"done": "done", "cancelled": "cancelled"}.get(job.state, "failed")
        if status.state == "done" and status.frames < status.total:
            status.state = "cancelled"
        if step.edits:
            if status.state != "done":
                step.label += f" ({status.state})"
            s.applied = s.collect()
            ctl._finish(s, step, targets=set())
        _progress(ctl, "propagation", status.frames, status.total, status.state)
        ctl.events.quality.emit(s)
        _fail(ctl, job, "propagation")
    return ctl._start("propagation", body, on_item=on_item, on_done=done)


def maybe_repropagate(ctl: "SAM2Controller", s: "Session", key: "Key", prompts: PromptSet) -> None:
    """After a click on an already propagated sequence (a correction), re-propagate from that
    frame only, away from the other prompts (forward if they lie before it)."""
    if not ctl.auto_repropagate or ctl.busy or ctl.engine is None or s.spec.mode == "2D":
        return
    try:
        ax = _along(ctl, s, None)
    except ValueError:
        return
    axes = s.stack_axes()
    if ax not in axes:  # "ZT" runs whole stacks: use Propagate
        return
    pos = axes[ax]
    if not s.quality.has(seq_id(ax, {i: key[i] for i in range(len(key)) if i != pos})):
        return
    others = [k[pos] for k in prompts if all(k[i] == key[i] for i in range(len(key)) if i != pos) and k != key]
    if not others:
        direction = "both"
    elif min(others) < key[pos] < max(others):
        direction = "forward"  # between prompts: the frames after the click are the doubtful ones
    else:
        direction = "forward" if min(others) < key[pos] else "backward"
    ctl.propagate(ax, direction, key)


# ---------------------------------------------------------------------------- automatic
def automatic(ctl: "SAM2Controller", key: Optional[Sequence[int]], params: AutoParams) -> Job:
    if ctl.engine is None:
        raise ValueError("load a model first")
    s = ctl._active()
    k = ctl.key(key)
    grid = ctl._grid(s)
    if grid is None:
        ctl._check_size(s)
    eng = ctl.engine
    step = Step("segment everything", state_before=s.state)

    def records_of(rgb: np.ndarray, p: AutoParams) -> list:
        return eng.automatic_records(rgb, **p.kwargs())

    def read(win: Optional[Box]) -> np.ndarray:
        return s.read_frame(k) if win is None else s.read_window(k, win)

    def on_item(item: Any) -> None:
        if isinstance(item, tuple):
            _progress(ctl, "automatic", item[0], item[1], "tiles" if grid is not None else "frame")
            return
        res: AutoResult = item
        ctl.write_automatic(s, k, res.masks, step)
        if step.edits:  # an empty result over an empty plane changes nothing: no undo step
            ctl._finish(s, step)
        ctl.last_automatic = res
        ctl.events.automatic.emit(s, res)
        if res.n_masks:
            ctl.events.clear_topic.emit("automatic")
        ctl.events.message.emit("info" if res.n_masks else "warning", f"SAM 2 {res.message}", "automatic")

    def done(job: Job) -> None:
        if job.state == "cancelled":
            ctl.events.message.emit("info", "SAM 2: automatic mode cancelled (nothing written)", "automatic")
        _progress(ctl, "automatic", 0, 0, job.state)
        _fail(ctl, job, "automatic")
    return ctl._start("automatic", lambda job: automatic_frame(records_of, read, s.hw, params, grid), on_item, done)


# ---------------------------------------------------------------------------- confidence
@dataclass
class ConfidenceSeries:
    """One object's confidence along a propagated axis: ``iou`` and ``score`` (N,) with NaN
    where not propagated, flagged frames as (index, "lost" | "low"), the current ``index``."""

    axis: str
    index: int
    iou: np.ndarray
    score: np.ndarray
    flags: List[Tuple[int, str]] = field(default_factory=list)
    title: str = ""
    summary: str = ""


def _runs(idx: List[int]) -> str:
    out, start = [], None
    for n, i in enumerate(idx):
        start = i if start is None else start
        if n + 1 == len(idx) or idx[n + 1] != i + 1:
            out.append(f"{start}" if start == i else f"{start}-{i}")
            start = None
    return ", ".join(out)


def _summary(flags: List[Tuple[int, int, str]]) -> str:
    parts = []
    for oid in sorted({o for _, o, _ in flags}):
        for kind in ("lost", "low"):
            idx = sorted(i for i, o, k in flags if o == oid and k == kind)
            if idx:
                parts.append(f"obj {oid} {kind} {_runs(idx)}")
    return "; ".join(parts)


def _sequence(ctl: "SAM2Controller", key: Optional[Sequence[int]]):
    s = ctl.session
    if s is None or not len(s.quality) or s.quality.last_seq is None:
        return None
    k = ctl.key(key)
    axis_name, _ = s.quality.last_seq
    pos = s.stack_axes().get(axis_name)
    if pos is None:
        return None
    return s, k, axis_name, pos, seq_id(axis_name, {i: k[i] for i in range(len(k)) if i != pos})


def confidence(ctl: "SAM2Controller", key: Optional[Sequence[int]],
               obj_id: Optional[int]) -> Optional[ConfidenceSeries]:
    seq = _sequence(ctl, key)
    if seq is None:
        return None
    s, k, axis_name, pos, sid = seq
    oid = obj_id or s.objects.current_id
    score, iou = s.quality.series(sid, oid, s.key_shape[pos])
    flags = [(i, kind) for i, o, kind in s.quality.flagged(sid, oid)]
    name = s.objects[oid].name if oid in s.objects else "-"
    all_flags = s.quality.flagged(sid)
    summary = f"flagged along {axis_name}: {_summary(all_flags)}" if all_flags else "no flagged frames"
    return ConfidenceSeries(axis_name, int(k[pos]), iou, score, flags, f"{name}: confidence along {axis_name}",
                            summary)


def next_flagged(ctl: "SAM2Controller", key: Optional[Sequence[int]]) -> Optional["Key"]:
    seq = _sequence(ctl, key)
    if seq is None:
        raise ValueError("nothing propagated yet")
    s, k, _, pos, sid = seq
    nxt = s.quality.next_flagged(sid, k[pos])
    if nxt is None:
        return None
    out = list(k)
    out[pos] = int(nxt)
    return tuple(out)
