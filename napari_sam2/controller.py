"""The plugin's controller: everything the SAM 2 dock does, without Qt or a viewer.

:class:`SAM2Controller` holds the model, one :class:`~napari_sam2._session.Session` per image
(prompts, objects, result arrays, undo history, per-frame confidence) and runs the long jobs
(model loading, encoding, propagation, automatic mode) through a runner: inline by default
(scripts, tests, benchmarks), in Qt thread workers when the napari dock drives it. The dock
(``_widget.py``) only builds controls, mirrors sessions in layers and forwards events.

Coordinates: a *frame key* is the tuple of indices of the stack axes (see ``_axes.py``);
positions are (..., y, x) in the image's data pixels (napari's layer coordinates); result
arrays are int32 Labels of the image's shape without its channel axis.

Example::

    ctl = SAM2Controller()
    ctl.load_model("demo")                     # or the default: official sam2.1_hiera_tiny
    ctl.open_image(stack, name="cells", mode="Z")
    ctl.add_click((3, 120, 88))                # a positive click on slice 3
    ctl.propagate()                            # along Z, both ways
    labels = ctl.session.outputs["instances"]
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from . import _ctl_run
from ._automatic import AutoParams, AutoResult
from ._axes import MAX_PIXELS, AxisSpec, Limits, default_mode
from ._embedding_cache import EmbeddingCache, default_cache_dir, install_forward_cache
from ._events import ControllerEvents, Progress, PropagationStatus
from ._history import PlaneEdit, Step, apply_step, clear_object, write_mask, write_region
from ._jobs import Job, Runner, SyncRunner
from ._prompts import FramePrompt, changed_prompts, masks_from_labels
from ._region import RegionMask
from ._session import ImageSource, Key, Session
from ._tiles import TileSettings, predict_tiled, prompt_extent

__all__ = ["SAM2Controller", "ControllerEvents", "Progress", "PropagationStatus", "AutoParams", "AutoResult",
           "TileSettings", "ImageSource", "Session", "FramePrompt", "RegionMask"]

Writer = Callable[[Session, str, PlaneEdit], bool]


class SAM2Controller:
    """See the module docstring.

    Args:
        runner: executes jobs (default: inline).
        cache: the embedding cache (default: memory only, 2 GB).
    """

    def __init__(self, runner: Optional[Runner] = None, cache: Optional[EmbeddingCache] = None) -> None:
        self.events = ControllerEvents()
        self.runner: Runner = runner or SyncRunner()
        self.cache = cache or EmbeddingCache()
        self.engine: Any = None
        self.model_label = ""
        self.sessions: Dict[Tuple[Hashable, Tuple[int, ...]], Session] = {}
        self.session: Optional[Session] = None
        self.tiles = TileSettings()
        self.per_object_outputs = False
        self.overwrite = False
        self.auto_repropagate = True
        self.direction = "both"
        self._memory_mode = "sam2"
        self.tz_along = "ZT"  # propagation in TZ mode: "ZT" (Z, then T from every slice), "Z" or "T"
        self.current_key: Key = ()
        self.job: Optional[Job] = None
        self.pending = False
        self.last_propagation = PropagationStatus()
        self.last_automatic: Optional[AutoResult] = None
        self.writer: Optional[Writer] = None  # the view writes displayed planes through its layers
        self._next_sid = 1

    @property
    def memory_mode(self) -> str:
        """Tracking mode of the next propagation: "sam2" (upstream's memory), "samurai",
        "distractor" or "long" (see ``docs/tracking_modes.md``)."""
        return self._memory_mode

    @memory_mode.setter
    def memory_mode(self, mode: str) -> None:
        from sam2_plugins.predictors.video.modes import make_policy

        make_policy(mode)  # an unknown name raises ValueError listing the valid ones
        self._memory_mode = str(mode)

    # ================================================================== model
    @property
    def busy(self) -> bool:
        return self.job is not None

    def load_model(self, choice: str = "", checkpoint: str = "", device: str = "auto") -> Job:
        """Build a model as a job: ``choice`` empty for the default (official
        ``sam2.1_hiera_tiny``, downloaded once with :class:`Progress` reports and cached),
        ``"demo"``, or any model name; ``checkpoint`` empty, ``"random"`` or a file.
        Offline, ``events.offer_demo`` carries the reason (the view offers the demo model)."""
        return _ctl_run.load_model(self, choice, checkpoint, device)

    def set_model(self, model: Any, key: str = "model", label: str = "") -> None:
        """Use an already built model (its embeddings are cached under ``key``)."""
        from ._engine import SAM2Engine

        self.engine = SAM2Engine(model, key, self.cache)
        dev = next(model.parameters()).device
        self.model_label = label or key
        self.events.status.emit(f"{self.model_label} on {dev}")
        self.events.clear_topic.emit("model")
        s = self.session
        if s is not None and not self.busy and changed_prompts(s.collect(), s.applied):
            try:  # clicks made before any model was loaded become masks now
                self.update_predictions("click")
            except Exception as exc:  # noqa: BLE001 - reported; the model is loaded all the same
                self.events.message.emit("error", f"SAM 2: {exc}", "prompts")

    def use_disk_cache(self, on: bool) -> None:
        """Mirror embeddings on disk (``$NAPARI_SAM2_CACHE_DIR``) or keep them in memory only."""
        self.set_cache(EmbeddingCache(self.cache.max_bytes, default_cache_dir() if on else None))

    def set_cache(self, cache: EmbeddingCache) -> None:
        self.cache = cache
        if self.engine is not None:
            self.engine.cache = cache
            install_forward_cache(self.engine.model, cache, self.engine.model_key)

    # ================================================================== images
    def open_image(self, data: Any, name: str = "image", *, uid: Optional[Hashable] = None,
                   mode: Optional[str] = None, channel_axis: Optional[int] = None, channels: Sequence[int] = (),
                   rgb: bool = False, contrast: Optional[Callable[[], Limits]] = None) -> Session:
        """Make an image the active one; its session (prompts, results, history) is resumed
        if this image was open before with the same labels shape, else created. Sessions of
        other images (or other axes) are kept as they are.

        Args:
            data: the full-resolution array (numpy, dask, zarr).
            uid: identifies the image (default: ``name``).
            mode: "2D", "Z", "T" or "TZ" (default: a guess from the shape).
            channel_axis: index of a channel axis (only the first axis is supported), or None.
            channels: up to 3 channels composited as R, G, B.
            rgb: the last axis holds colour samples.
            contrast: returns the current contrast limits.
        """
        shape = tuple(int(s) for s in data.shape)
        if channel_axis is not None and not rgb and channel_axis % max(len(shape), 1) != 0:
            raise ValueError(f"channel axis {channel_axis}: only a first channel axis is supported (napari aligns "
                             "the output layers to the trailing axes); move it first, or open the file with "
                             "channel_axis so channels become layers")
        spec = AxisSpec(mode or default_mode(shape, rgb), None if rgb else channel_axis, tuple(channels), rgb)
        lshape = spec.labels_shape(shape)  # validates (clear messages for too few axes)
        src = ImageSource(data, name, name if uid is None else uid, rgb, contrast or (lambda: None))
        key = (src.uid, lshape)
        sess = self.sessions.get(key)
        if sess is None:
            sess = Session(src, spec, self._next_sid)
            self._next_sid += 1
            sess.objects.add()
            self.sessions[key] = sess
        else:
            sess.source, sess.spec = src, spec
        self.session = sess
        if len(self.current_key) != len(lshape) - 2:
            self.current_key = (0,) * (len(lshape) - 2)
        self.events.session.emit(sess)
        return sess

    def set_axes(self, mode: str, channel_axis: Optional[int] = None, channels: Sequence[int] = ()) -> Session:
        """New axes for the active image: same labels shape, same session (results and history
        kept); another shape, another session (this one is kept for when you come back)."""
        s = self._active()
        return self.open_image(s.source.data, s.source.name, uid=s.source.uid, mode=mode, channel_axis=channel_axis,
                               channels=channels, rgb=s.source.rgb, contrast=s.source.contrast)

    def activate(self, session: Session) -> None:
        if session not in self.sessions.values():
            raise ValueError("unknown session")
        self.session = session
        self.events.session.emit(session)

    def _active(self) -> Session:
        if self.session is None:
            raise ValueError("no image: open or choose an image first")
        return self.session

    def key(self, key: Optional[Sequence[int]] = None) -> Key:
        """``key`` checked against the active image, or the current frame."""
        s = self._active()
        k = tuple(int(v) for v in (self.current_key if key is None else key))
        if len(k) != len(s.key_shape) or any(not 0 <= v < n for v, n in zip(k, s.key_shape)):
            raise ValueError(f"frame key {k} does not fit the image's stack axes {s.key_shape}")
        return k

    def _grid(self, s: Session):
        if not self.tiles.enabled:
            return None
        grid = self.tiles.grid(s.hw, self.engine.image_size if self.engine is not None else 1024)
        return grid if len(grid) > 1 else None

    def _check_size(self, s: Session) -> None:
        if not self.tiles.enabled and s.hw[0] * s.hw[1] > MAX_PIXELS:
            raise ValueError(f"the image plane is {s.hw[0]}x{s.hw[1]} pixels, more than {MAX_PIXELS // 2**20} MP: "
                             "turn on tiled mode (or crop it / use a lower-resolution level)")

    # ================================================================== objects
    def new_object(self, name: Optional[str] = None) -> int:
        s = self._active()
        oid = s.objects.add(name).obj_id
        self.events.objects.emit(s)
        return oid

    def select_object(self, obj_id: int) -> None:
        s = self._active()
        s.objects.select(obj_id)
        self.events.objects.emit(s)

    def rename_object(self, obj_id: int, name: str) -> None:
        s = self._active()
        s.objects.rename(obj_id, name)
        self.events.objects.emit(s)

    def recolor_object(self, obj_id: int, color: Sequence[float]) -> None:
        s = self._active()
        s.objects.recolor(obj_id, tuple(color))  # type: ignore[arg-type]
        self.events.objects.emit(s)

    def clear_object(self, obj_id: Optional[int] = None, remove: bool = False) -> None:
        """Clear an object's pixels (all frames, all result arrays) and prompts; ``remove``
        also deletes it from the list. Undoable."""
        s = self._active()
        self._idle()
        oid = obj_id or s.objects.current_id
        if not oid or oid not in s.objects:
            raise ValueError("no object selected")
        step = Step("delete object" if remove else "clear object", state_before=s.state)
        for tid, arr in s.outputs.items():
            if tid != "automatic":
                step.edits += clear_object(arr, oid, target=tid)
        s.drop_prompts(oid)
        s.quality.clear(oid)
        if remove:
            s.objects.remove(oid)
            if not len(s.objects):
                s.objects.add()
        self._finish(s, step, full=True)
        self.events.prompts.emit(s)
        self.events.objects.emit(s)

    def delete_object(self, obj_id: Optional[int] = None) -> None:
        self.clear_object(obj_id, remove=True)

    def commit(self) -> None:
        """Freeze the current object: forget its prompts (its pixels stay, protected from
        other objects unless ``overwrite``) and start a new object. Undoable."""
        s = self._active()
        self._idle()
        oid = s.objects.current_id
        if not oid:
            raise ValueError("no object selected")
        step = Step("commit", state_before=s.state)
        s.drop_prompts(oid)
        s.objects.rename(oid, s.objects[oid].name.rstrip(" ✓") + " ✓")
        s.objects.add()
        s.applied = s.collect()
        self._finish(s, step)
        self.events.prompts.emit(s)
        self.events.objects.emit(s)

    # ================================================================== prompts
    def _object_for_prompt(self, s: Session, obj_id: Optional[int]) -> int:
        before = (s.objects.ids, s.objects.current_id)
        if obj_id is not None:
            s.objects.ensure(int(obj_id))
            s.objects.select(int(obj_id))
        if not s.objects.current_id:
            s.objects.add()
        if (s.objects.ids, s.objects.current_id) != before:
            self.events.objects.emit(s)
        return s.objects.current_id

    def add_click(self, position: Sequence[float], positive: bool = True, obj_id: Optional[int] = None) -> None:
        """A click at ``position`` = (..., y, x) (data pixels; a bare (y, x) goes on the
        current frame) for ``obj_id`` (default: the current object)."""
        s = self._active()
        pos = self._position(s, position)
        oid = self._object_for_prompt(s, obj_id)
        s.set_prompts(np.vstack([s.points, pos[None]]), [*s.point_obj, oid], [*s.point_pos, bool(positive)],
                      s.boxes, s.box_obj)
        self.events.prompts.emit(s)
        self.update_predictions("click")

    def add_box(self, corner0: Sequence[float], corner1: Sequence[float], obj_id: Optional[int] = None) -> None:
        """A box between two corners (..., y, x) on one frame; one box per object and frame
        (a new one replaces the old)."""
        s = self._active()
        a, b = self._position(s, corner0), self._position(s, corner1)
        oid = self._object_for_prompt(s, obj_id)
        (y0, y1), (x0, x1) = sorted((a[-2], b[-2])), sorted((a[-1], b[-1]))
        lead = list(a[:-2])
        verts = np.asarray([lead + [y0, x0], lead + [y0, x1], lead + [y1, x1], lead + [y1, x0]], float)
        s.set_prompts(s.points, s.point_obj, s.point_pos, [*s.boxes, verts], [*s.box_obj, oid])
        self.events.prompts.emit(s)
        self.update_predictions("box")

    def add_mask_prompt(self, labels_plane: np.ndarray, label_id: int = 0, key: Optional[Sequence[int]] = None,
                        name: str = "mask") -> List[int]:
        """Use a Labels plane as mask prompt(s) on a frame: one label value for the current
        object, or (``label_id`` 0) every label as a new object named ``"<name> <value>"``.
        Returns the object ids."""
        s = self._active()
        k = self.key(key)
        lab = np.asarray(labels_plane)
        if lab.shape != s.hw:
            raise ValueError(f"the Labels plane is {lab.shape}, the image plane {s.hw}")
        masks = masks_from_labels(lab, None if label_id == 0 else [int(label_id)])
        if not masks:
            raise ValueError(f"no label {label_id or '(any)'} on this frame of {name!r}")
        ids = []
        cur = s.objects.current_id
        unused = bool(cur) and not any(o == cur for k in s.collect().values() for o in k) and not any(
            (a == cur).any() for t, a in s.outputs.items() if t != "automatic")
        for value, m in masks.items():
            if label_id:
                oid = cur or s.objects.add().obj_id
            elif unused and not ids:  # the first label takes the current object while it is still empty
                oid = cur
                s.objects.rename(cur, f"{name} {value}")
            else:
                oid = s.objects.add(f"{name} {value}", select=False).obj_id
            s.mask_prompts[(k, oid)] = m
            ids.append(oid)
        s.objects.select(ids[0])
        self.events.objects.emit(s)
        self.update_predictions("mask prompt")
        return ids

    def set_prompts(self, points: np.ndarray, point_obj: Sequence[int], point_pos: Sequence[bool],
                    boxes: Sequence[np.ndarray], box_obj: Sequence[int]) -> None:
        """Replace the active image's clicks and boxes (the view calls this when the user
        edits the prompt layers) and re-predict what changed."""
        s = self._active()
        new = {*map(int, point_obj), *map(int, box_obj)} - {0} - set(s.objects.ids)
        for o in new:
            s.objects.ensure(o)
        if new:
            self.events.objects.emit(s)
        s.set_prompts(points, point_obj, point_pos, boxes, box_obj)
        self.update_predictions("click")

    def _position(self, s: Session, position: Sequence[float]) -> np.ndarray:
        p = [float(v) for v in position]
        if len(p) == 2 and s.ndim > 2:
            p = [float(v) for v in self.key()] + p
        if len(p) != s.ndim:
            raise ValueError(f"a position needs {s.ndim} coordinates (..., y, x), got {len(p)}: {tuple(position)}")
        return np.asarray(p, float)

    # ================================================================== predictions
    def update_predictions(self, label: str = "click") -> None:
        """Re-predict every (frame, object) whose prompts changed since the last call."""
        s = self._active()
        if self.engine is None:
            self.events.message.emit("info", "SAM 2: load a model to turn clicks into masks (Load model)", "model")
            return
        self._check_size(s)
        new = s.collect()
        changed = changed_prompts(new, s.applied)
        if not changed:
            return
        if self.busy:  # the job's end re-runs this diff, which then includes this change
            self.pending = True
            return
        grid = self._grid(s)
        todo = [w for k, o in changed if not new.get(k, {}).get(o, FramePrompt()).empty
                for w in self._windows(s, k, new[k][o], grid) if not self.engine.is_ready(w[0])]
        if todo and self.runner.is_async:
            _ctl_run.encode(self, todo)
            return
        step = Step(label, state_before=s.state)
        written: set = set()
        for key, oid in changed:
            fp = new.get(key, {}).get(oid)
            if fp is None or fp.empty:  # every prompt gone: so is the mask
                mask = RegionMask(np.zeros((0, 0), bool), (0, 0), s.hw)
            else:
                mask = self._predict(s, key, fp, grid)
            written |= self._write(s, key, oid, mask, step)
        s.applied = new
        self._finish(s, step, targets=written)
        keys = {k for k, _ in changed}
        if label == "click" and len(keys) == 1:
            _ctl_run.maybe_repropagate(self, s, next(iter(keys)), new)

    def _windows(self, s: Session, key: Key, fp: FramePrompt, grid) -> List[Tuple[Any, Callable[[], np.ndarray]]]:
        """(token, reader) of what must be encoded to decode ``fp``: the frame, or its tiles."""
        if grid is None:
            return [(s.frame_token(key), functools.partial(s.read_frame, key))]
        ext = prompt_extent(fp, s.hw)
        wins = [grid.window_for(ext)] if grid.window_for(ext) is not None else grid.overlapping(ext)
        return [(s.frame_token(key, w), functools.partial(s.read_window, key, w)) for w in wins]

    def _predict(self, s: Session, key: Key, fp: FramePrompt, grid) -> RegionMask:
        eng = self.engine
        if grid is None:
            eng.set_frame(functools.partial(s.read_frame, key), s.frame_token(key))
            return eng.predict_region(fp)[0]

        def encode(win):
            eng.set_frame(functools.partial(s.read_window, key, win), s.frame_token(key, win))
        return predict_tiled(fp, grid, encode, eng.predict_region)[0]

    def _write(self, s: Session, key: Key, oid: int, mask: Any, step: Step) -> set:
        """One object's mask on one frame into its result array; returns the targets written."""
        tid = f"obj{oid}" if self.per_object_outputs else "instances"
        new = tid not in s.outputs
        arr = s.output(tid)
        if new:
            self.events.outputs.emit(s, tid)
        s.objects.ensure(oid)
        e = write_mask(arr, key, oid, mask, overwrite=self.overwrite, target=tid, apply=False)
        if e is None:
            return set()
        step.edits.append(e)
        if self.writer is None or not self.writer(s, tid, e):
            y0, y1, x0, x1 = e.bbox
            arr[tuple(key)][y0:y1, x0:x1] = e.after
        return {tid}

    def write_automatic(self, s: Session, key: Key, masks: List[RegionMask], step: Step) -> None:
        """Replace the ``automatic`` array's plane at ``key`` by ``masks`` (1..n, largest
        first), recording box-local edits."""
        new = "automatic" not in s.outputs
        arr = s.output("automatic")
        if new:
            self.events.outputs.emit(s, "automatic")
        plane = arr[tuple(key)]
        old = plane != 0
        if old.any():
            step.edits.append(write_region(arr, key, RegionMask.from_full(old), 0, target="automatic"))
        for i, m in enumerate(sorted(masks, key=lambda m: -int(m.crop.sum())), start=1):
            e = write_region(arr, key, m, i, target="automatic")
            if e is not None:
                step.edits.append(e)

    def _finish(self, s: Session, step: Step, targets: Optional[set] = None, full: bool = False) -> None:
        step.state_after = s.state = s.snapshot()
        s.history.push(step)
        self.events.history.emit(s)
        tg = set(targets) if targets is not None else {e.target for e in step.edits}
        if tg:
            self.events.labels.emit(s, tg, full)

    # ================================================================== history
    def undo(self) -> Optional[str]:
        """Revert the last click, box, mask prompt, propagation, automatic run, clear,
        delete or commit (pixels and prompts together). Returns its label."""
        return self._step(forward=False)

    def redo(self) -> Optional[str]:
        return self._step(forward=True)

    def _step(self, forward: bool) -> Optional[str]:
        s = self._active()
        self._idle()
        h = s.history
        if not (h.can_redo if forward else h.can_undo):
            self.events.message.emit("info", f"SAM 2: nothing to {'redo' if forward else 'undo'}", "history")
            return None
        step = h.redo() if forward else h.undo()
        apply_step(step, s.outputs, forward=forward)
        snap = step.state_after if forward else step.state_before
        if snap is not None:
            s.restore(snap)
        self.events.history.emit(s)
        self.events.prompts.emit(s)
        self.events.objects.emit(s)
        self.events.quality.emit(s)
        self.events.labels.emit(s, set(s.outputs), True)
        return step.label

    # ================================================================== long jobs
    def propagate(self, along: Optional[str] = None, direction: Optional[str] = None,
                  from_key: Optional[Sequence[int]] = None) -> Optional[Job]:
        """Propagate every object's prompts along the image's stack axis (as a job).

        Args:
            along: "Z", "T" or "ZT"; default: the axes mode's own ("Z" for Z, "T" for T,
                :attr:`tz_along` for TZ). Mode "2D" has nothing to propagate along.
            direction: "forward", "backward" or "both" (default :attr:`direction`).
            from_key: re-propagate only the sequence through this frame, from it on.
        """
        return _ctl_run.propagate(self, along, direction, from_key)

    def cancel(self) -> None:
        """Stop the running job after its current frame / tile; results so far are kept."""
        if self.job is not None:
            self.job.cancel()

    def segment_everything(self, key: Optional[Sequence[int]] = None,
                           params: Optional[AutoParams] = None) -> Optional[Job]:
        """Automatic masks on one frame (tiled in tiled mode) into the ``automatic`` array.
        An empty result says which threshold removed the candidates and suggests values."""
        return _ctl_run.automatic(self, key, params or AutoParams())

    def confidence(self, key: Optional[Sequence[int]] = None, obj_id: Optional[int] = None):
        """Per-frame confidence of an object along the last propagated axis through ``key``
        (a :class:`~napari_sam2._ctl_run.ConfidenceSeries`), or None."""
        return _ctl_run.confidence(self, key, obj_id)

    def next_flagged(self, key: Optional[Sequence[int]] = None) -> Optional[Key]:
        """The key of the next frame worth a correction click, or None."""
        return _ctl_run.next_flagged(self, key)

    def _idle(self) -> None:
        if self.busy:
            raise RuntimeError("a job is running: wait for it or cancel it")

    def _start(self, name: str, fn: Callable[[Job], Any], on_item: Optional[Callable[[Any], None]] = None,
               on_done: Optional[Callable[[Job], None]] = None) -> Job:
        self._idle()

        def done(job: Job) -> None:
            self.job = None
            try:
                if on_done is not None:
                    on_done(job)
            finally:
                self.events.busy.emit(self.busy)  # on_done may have started the next job
                if self.pending and self.job is None and self.session is not None:
                    self.pending = False
                    try:
                        self.update_predictions()
                    except Exception as exc:  # noqa: BLE001 - reported, the job is over
                        self.events.message.emit("error", f"SAM 2: {exc}", "prompts")

        def body(job: Job) -> Any:
            self.job = job  # (again) from the worker: cancel() reaches the running job
            return fn(job)
        self.job = Job(name)  # busy from now on
        self.events.busy.emit(True)
        job = self.runner.start(name, body, on_item=on_item, on_done=done)
        if not job.finished:
            self.job = job
        return job
