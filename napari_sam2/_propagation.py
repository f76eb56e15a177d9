"""Propagation planning and the generator the thread worker runs.

A propagation is a list of 1D sequences of frames (along Z or T, the other indices fixed),
each tracked by the video predictor from the prompts on it. For 3D+t data, ``axis="ZT"``
first propagates along Z on every prompted time point, then along T for every Z slice,
seeded with the masks of the first stage (as mask prompts) plus any clicks on that slice.

:func:`run_propagation` is a plain generator of :class:`PropagationEvent`; the widget runs
it in a napari ``thread_worker`` and writes each event's masks into Labels on the UI thread,
so results appear as they arrive and a cancel keeps everything already written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._axes import AxisSpec
from ._engine import DIRECTIONS, Quality, SAM2Engine
from ._prompts import FramePrompt, PromptSet, prompt_frames

__all__ = ["SequenceJob", "PropagationEvent", "LazyFrames", "plan_jobs", "run_propagation", "AXIS_CHOICES"]

Key = Tuple[int, ...]
AXIS_CHOICES = ("Z", "T", "ZT")


@dataclass
class SequenceJob:
    """One 1D sequence: key position ``axis`` runs over ``range(n)``; ``fixed`` holds the
    other key positions."""

    axis_name: str
    axis: int
    fixed: Dict[int, int]
    n: int
    prompts: Dict[int, Dict[int, FramePrompt]]
    direction: str = "both"
    start: Optional[int] = None

    def key(self, idx: int) -> Key:
        k = dict(self.fixed)
        k[self.axis] = int(idx)
        return tuple(k[i] for i in range(len(k)))

    @property
    def frames_out(self) -> int:
        """How many frames this job yields."""
        s = min(self.prompts) if self.start is None else self.start
        return {"forward": self.n - s, "backward": s + 1, "both": self.n}[self.direction]


@dataclass
class PropagationEvent:
    """One frame done: its key, a bool mask per object, quality per object, and progress.

    ``axis_name``/``fixed`` say which sequence it belongs to (the confidence plot's x axis).
    """

    key: Key
    masks: Dict[int, np.ndarray]
    quality: Dict[int, Quality]
    axis_name: str
    fixed: Dict[int, int]
    index: int
    done: int
    total: int


def _jobs_along(axis_name: str, axis: int, key_shape: Sequence[int], prompts: PromptSet,
                direction: str, start_key: Optional[Key]) -> List[SequenceJob]:
    others = [i for i in range(len(key_shape)) if i != axis]
    if start_key is not None:
        fixed_list = [{i: start_key[i] for i in others}]
    else:
        seen = []
        for key in sorted(prompts):
            f = {i: key[i] for i in others}
            if f not in seen and any(not p.empty for p in prompts[key].values()):
                seen.append(f)
        fixed_list = seen
    jobs = []
    for fixed in fixed_list:
        seq = prompt_frames(prompts, fixed, axis)
        if not seq:
            continue
        start = None if start_key is None else int(start_key[axis])
        jobs.append(SequenceJob(axis_name, axis, fixed, int(key_shape[axis]), seq, direction, start))
    return jobs


def plan_jobs(spec: AxisSpec, shape: Sequence[int], prompts: PromptSet, axis_name: str,
              direction: str = "both", start_key: Optional[Key] = None) -> List[SequenceJob]:
    """The sequences of a single-axis propagation ("Z" or "T").

    Args:
        spec, shape: the image's axes and data shape.
        prompts: all prompts (see :func:`collect_prompts`).
        axis_name: "Z" or "T" (must be a stack axis of ``spec.mode``).
        direction: one of "forward", "backward", "both".
        start_key: re-propagate only the sequence through this frame, from this frame.

    Raises:
        ValueError: for an axis the mode does not have, a bad direction, or no prompts.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    axes = spec.stack_axes(shape)
    if axis_name not in axes:
        raise ValueError(f"axis {axis_name!r} does not exist in mode {spec.mode!r} "
                         f"(stack axes: {', '.join(axes) or 'none'})")
    key_shape = spec.labels_shape(shape)[:-2]
    jobs = _jobs_along(axis_name, axes[axis_name], key_shape, prompts, direction, start_key)
    if not jobs:
        where = "on this sequence" if start_key is not None else "anywhere"
        raise ValueError(f"no prompts {where}: add clicks, a box or a mask first")
    return jobs


def run_propagation(
    engine: SAM2Engine,
    read_frame: Callable[[Key], np.ndarray],
    spec: AxisSpec,
    shape: Sequence[int],
    prompts: PromptSet,
    axis_name: str = "Z",
    direction: str = "both",
    start_key: Optional[Key] = None,
) -> Iterator[PropagationEvent]:
    """Propagate and yield one event per frame (see module docstring).

    Args:
        read_frame: frame key -> (H, W, 3) uint8 (called in the worker thread).
        axis_name: "Z", "T", or "ZT" (3D+t: Z first, then T from every slice).
    """
    if axis_name not in AXIS_CHOICES:
        raise ValueError(f"axis must be one of {AXIS_CHOICES}, got {axis_name!r}")
    key_shape = spec.labels_shape(shape)[:-2]
    if axis_name != "ZT":
        jobs = plan_jobs(spec, shape, prompts, axis_name, direction, start_key)
        total = sum(j.frames_out for j in jobs)
        yield from _run_jobs(engine, read_frame, jobs, 0, total)
        return
    if spec.mode != "TZ":
        raise ValueError(f"propagation through Z and T needs mode 'TZ', not {spec.mode!r}")
    axes = spec.stack_axes(shape)
    z_jobs = plan_jobs(spec, shape, prompts, "Z", "both", None)
    n_t, n_z = key_shape[axes["T"]], key_shape[axes["Z"]]
    total = sum(j.frames_out for j in z_jobs) + n_z * n_t
    seeds: Dict[Key, Dict[int, np.ndarray]] = {}
    done = 0
    for ev in _run_jobs(engine, read_frame, z_jobs, 0, total):
        seeds[ev.key] = ev.masks
        done = ev.done
        yield ev
    # Stage 2: every Z slice along T, seeded with the stage-1 masks as mask prompts.
    seeded: PromptSet = {}
    for key, masks in seeds.items():
        for oid, m in masks.items():
            if m.any():
                seeded.setdefault(key, {})[oid] = FramePrompt(mask=m)
    for key, objs in prompts.items():  # user clicks refine the seeds where both exist
        for oid, fp in objs.items():
            slot = seeded.setdefault(key, {}).setdefault(oid, FramePrompt())
            slot.points, slot.labels, slot.box = fp.points, fp.labels, fp.box
            if fp.mask is not None and slot.mask is None:
                slot.mask = fp.mask
    t_jobs = _jobs_along("T", axes["T"], key_shape, seeded, direction, None)
    total = done + sum(j.frames_out for j in t_jobs)
    yield from _run_jobs(engine, read_frame, t_jobs, done, total)


class LazyFrames:
    """A (N, H, W, 3) uint8 array-like over one sequence: frames are read (and windowed to
    RGB) only when the video predictor asks for them, so the first result arrives at once
    and a long stack is never held whole."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, job: SequenceJob, read_frame: Callable[[Key], np.ndarray]) -> None:
        self._job, self._read = job, read_frame
        first = read_frame(job.key(0))
        self._first = first
        self.shape = (job.n,) + tuple(first.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        rest = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, slice):
            out = np.stack([self[i] for i in range(*index.indices(self.shape[0]))])
            return out[(slice(None),) + rest] if rest else out
        i = int(index) % self.shape[0]
        frame = self._first if i == 0 else self._read(self._job.key(i))
        return frame[rest] if rest else frame


def _run_jobs(engine: SAM2Engine, read_frame: Callable[[Key], np.ndarray],
              jobs: List[SequenceJob], done: int, total: int) -> Iterator[PropagationEvent]:
    for job in jobs:
        frames = LazyFrames(job, read_frame)
        for res in engine.propagate_sequence(frames, job.prompts, job.direction, job.start):
            done += 1
            yield PropagationEvent(job.key(res.index), res.masks, res.quality, job.axis_name,
                                   dict(job.fixed), res.index, done, total)
