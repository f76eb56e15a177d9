"""Long-running actions of the dock widget, in napari thread workers: model loading (with
download progress), frame encoding, propagation (progress, cancel, results as they arrive),
automatic mode; plus the confidence view. A mixin of :class:`~napari_sam2._widget.SAM2Widget`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np
from qtpy.QtCore import QObject, Signal

from ._axes import level0
from ._confidence import QualityLog, seq_id
from ._embedding_cache import EmbeddingCache, default_cache_dir
from ._guard import notify
from ._history import Step
from ._models import ModelLoadError, load_model, resolve_choice
from ._propagation import PropagationEvent, run_propagation

__all__ = ["RunMixin"]


class _Relay(QObject):
    """Carries download progress from the loader thread to the UI thread (queued signal)."""

    progress = Signal(int, int)


def _runs(idx: list) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    out, start = [], None
    for k, i in enumerate(idx):
        if start is None:
            start = i
        if k + 1 == len(idx) or idx[k + 1] != i + 1:
            out.append(f"{start}" if start == i else f"{start}-{i}")
            start = None
    return ", ".join(out)


def _summarise(flags: list) -> str:
    """(index, obj, kind) flags as "obj 1 lost 0-3, 7; obj 2 low 4"."""
    parts = []
    for oid in sorted({o for _, o, _ in flags}):
        for kind in ("lost", "low"):
            idx = sorted(i for i, o, k in flags if o == oid and k == kind)
            if idx:
                parts.append(f"obj {oid} {kind} {_runs(idx)}")
    return "; ".join(parts)


class RunMixin:
    """Mixed into ``SAM2Widget``; relies on its ``ui``, ``viewer``, ``_guard``-style error
    handling (``_error``), ``_ensure_session``, ``read_frame``, ``_write`` and history."""

    def _init_run(self) -> None:
        self.quality = QualityLog()
        self.auto_layer = None
        self.worker = None
        self._prop_step: Optional[Step] = None
        self._prop_progress = None
        self._prop_axis: Optional[str] = None
        self.last_propagation: dict = {}
        self._relay = _Relay()
        self._relay.progress.connect(self._on_download_progress)

    def _connect_run(self) -> None:
        u = self.ui
        u.propagate_button.clicked.connect(lambda: self.propagate())
        u.from_here_button.clicked.connect(lambda: self.propagate(from_current=True))
        u.cancel_button.clicked.connect(self.cancel)
        u.auto_button.clicked.connect(lambda: self.segment_everything())
        u.next_flagged.clicked.connect(lambda: self.next_flagged())
        self.viewer.dims.events.current_step.connect(lambda _e: self._update_confidence())

    # ------------------------------------------------------------------ workers
    def _run(self, fn: Callable, *, generator: bool = False, on_yield: Optional[Callable] = None,
             on_return: Optional[Callable] = None, on_done: Optional[Callable] = None) -> Any:
        """Run ``fn`` in a thread worker (or inline when not threaded); errors -> notification."""
        def done() -> None:
            self.worker = None
            self._set_busy(False)
            if on_done is not None:
                on_done()
            if self._pending and self.worker is None:  # clicks that arrived while busy
                self._pending = False
                self.update_predictions()

        self._set_busy(True)
        if not self.threaded:
            try:
                if generator:
                    for item in fn():
                        on_yield(item)
                    result = None
                else:
                    result = fn()
                if on_return is not None:
                    on_return(result)
            except Exception as exc:  # noqa: BLE001 - shown as a notification
                self._error(exc)
            finally:
                done()
            return None
        # superqt's workers (napari's are these plus a relay of every error to napari's
        # notification manager *with its traceback*, and superqt re-raises errors in the UI
        # thread unless told not to): an error in a worker must become our one notification
        # with the reason, never a traceback
        from superqt.utils import create_worker

        if generator:
            def gen_fn():  # create_worker needs a generator *function* to make a GeneratorWorker
                yield from fn()
            worker = create_worker(gen_fn, _start_thread=False, _ignore_errors=True)
        else:
            worker = create_worker(fn, _start_thread=False, _ignore_errors=True)
        if on_yield is not None:
            worker.yielded.connect(on_yield)
        if on_return is not None:
            worker.returned.connect(on_return)
        worker.errored.connect(self._error)
        worker.warned.connect(lambda w: notify(f"SAM 2: {w[0]}", "warning"))
        worker.finished.connect(done)
        self.worker = worker
        worker.start()
        return worker

    def _set_busy(self, busy: bool) -> None:
        u = self.ui
        for b in (u.propagate_button, u.from_here_button, u.auto_button, u.load_button,
                  u.undo_button, u.redo_button):
            b.setEnabled(not busy)
        u.cancel_button.setEnabled(busy)

    def cancel(self) -> None:
        """Stop the running worker after its current frame; results so far are kept."""
        if self.worker is not None and hasattr(self.worker, "quit"):
            self.worker.quit()

    # ------------------------------------------------------------------ model
    def load_model(self, choice: Optional[str] = None, checkpoint: Optional[str] = None,
                   device: Optional[str] = None) -> None:
        """Build the chosen model in a worker (download with progress if needed)."""
        try:
            mc = resolve_choice(choice or self.ui.model_combo.currentText(),
                                self.ui.checkpoint_edit.text() if checkpoint is None else checkpoint)
        except ModelLoadError as exc:
            self._error(exc)
            return
        dev = device or self.ui.device_combo.currentText()
        previous = self.ui.model_status.text() if self.engine is not None else ""
        self.ui.model_status.setText(f"loading {mc.name} ...")
        relay = self._relay

        ok = []

        def job():
            return load_model(mc, dev, progress=lambda d, t: relay.progress.emit(int(d), int(t or 0)))

        def loaded(model: Any) -> None:
            from ._engine import SAM2Engine

            ok.append(True)
            if self.ui.disk_cache.isChecked():
                self.cache = EmbeddingCache(self.cache.max_bytes, default_cache_dir())
            self.engine = SAM2Engine(model, mc.key, self.cache)
            dev_name = next(model.parameters()).device
            self.ui.model_status.setText(f"{mc.name} on {dev_name} ({mc.checkpoint or 'random init'})")
            self.last_message = f"loaded {mc.name}"

        def failed_status() -> None:
            if not ok:
                self.ui.model_status.setText(f"{previous} (kept: loading {mc.name} failed)" if previous
                                             else "no model loaded (see the notification)")
        self._run(job, on_return=loaded, on_done=failed_status)

    def _on_download_progress(self, done: int, total: int) -> None:
        self.ui.progress.setMaximum(max(total, 1) if total else 0)
        self.ui.progress.setValue(min(done, total) if total else 0)
        self.ui.progress.setFormat(f"download {done / 2**20:.0f} / {total / 2**20:.0f} MB" if total
                                   else f"download {done / 2**20:.0f} MB")

    def _encode_then(self, key: tuple) -> None:
        """Encode a frame in a worker; its end re-runs ``update_predictions`` (``_pending``)."""
        rgb, token = self.read_frame(key), self.frame_token(key)
        status = self.ui.model_status.text()
        self.ui.model_status.setText("encoding frame ...")

        def after(_):
            self.ui.model_status.setText(status)
        # done() re-runs update_predictions for the pending clicks (now decoder-only)
        self._run(lambda: self.engine.set_frame(rgb, token), on_return=after)

    # ------------------------------------------------------------------ propagation
    def propagate(self, from_current: bool = False, axis: Optional[str] = None,
                  direction: Optional[str] = None, start_key: Optional[tuple] = None) -> None:
        """Propagate all objects' prompts (see ``_propagation.run_propagation``).

        ``from_current``: only the sequence through the viewer's frame (or ``start_key``),
        from that frame on, in ``direction``; earlier results elsewhere stay as they are.
        """
        try:
            if self.engine is None:
                raise ValueError("load a model first")
            if self.worker is not None:
                raise RuntimeError("a job is running: wait for it or cancel it")
            ly, spec, lshape = self._ensure_session()
            lshape_full = level0(ly).shape
            if spec.mode == "2D":
                raise ValueError("mode '2D' has no axis to propagate along: choose Z, T or TZ")
            ax = axis or self.ui.axis_combo.currentText()
            if ax not in spec.stack_names and not (ax == "ZT" and spec.mode == "TZ"):
                raise ValueError(f"axis {ax!r} does not exist in mode {spec.mode!r}")
            dirn = direction or self.ui.direction_combo.currentText()
            if hasattr(self.engine, "set_memory_mode"):  # test stubs have no video predictor
                self.engine.set_memory_mode(self.ui.memory_combo.currentText())
            prompts = self.collect()
            start = (tuple(start_key) if start_key is not None else self.current_key()) if from_current else None
            # dry-run the plan on the UI thread so that bad input is reported at once
            from ._propagation import plan_jobs
            plan_jobs(spec, lshape_full, prompts, "Z" if ax == "ZT" else ax, dirn, start)
        except Exception as exc:  # noqa: BLE001
            self._error(exc)
            return
        self._prop_step = Step("propagate" + (" from here" if from_current else ""), state_before=self._state)
        self._prop_axis = ax
        self.last_propagation = {"frames": 0, "seconds": 0.0, "cancelled": False, "t0": time.perf_counter()}
        self._prop_progress = None
        if self.ui.activity_progress.isChecked():
            from napari.utils import progress

            self._prop_progress = progress(total=0, desc="SAM 2 propagation")
        self._prop_shown_at = 0.0
        reader = self.frame_reader()
        gen = lambda: run_propagation(self.engine, reader, spec, lshape_full, prompts,  # noqa: E731
                                      ax, dirn, start)
        self._run(gen, generator=True, on_yield=self._on_prop_event, on_done=self._on_prop_done)

    def _on_prop_event(self, ev: PropagationEvent) -> None:
        shown = self._shown_key()
        self._flush([self._write(ev.key, oid, m, self._prop_step, shown, refresh=False)
                     for oid, m in ev.masks.items()])
        self.quality.record(ev.axis_name, ev.fixed, ev.index, ev.quality)
        self.last_propagation["frames"] = ev.done
        self.last_propagation["total"] = ev.total
        now = time.perf_counter()
        if ev.done >= ev.total or ev.done == 1 or now - self._prop_shown_at > 0.5:
            # every repaint of the dock recomposes the window (costly with software OpenGL)
            # and holds the interpreter the worker needs: at most 2 progress updates a second
            self._prop_shown_at = now
            self.ui.progress.setMaximum(ev.total)
            self.ui.progress.setValue(ev.done)
            self.ui.progress.setFormat("%v / %m frames")
        if self._prop_progress is not None:
            self._prop_progress.total = ev.total
            self._prop_progress.update(1)

    def _on_prop_done(self) -> None:
        lp = self.last_propagation
        lp["seconds"] = time.perf_counter() - lp.pop("t0", time.perf_counter())
        lp["cancelled"] = lp["frames"] < lp.get("total", float("inf"))  # stopped early (or failed)
        if "total" in lp:  # the final count (throttled updates may have skipped it)
            self.ui.progress.setMaximum(lp["total"])
            self.ui.progress.setValue(lp["frames"])
        if self._prop_progress is not None:
            self._prop_progress.close()
            self._prop_progress = None
        step, self._prop_step = self._prop_step, None
        if step is not None and step.edits:
            if lp["cancelled"]:
                step.label += " (cancelled)"
            step.state_after = self._state = self._snapshot()
            self.history.push(step)
        self._update_confidence()

    def _maybe_repropagate(self, key: tuple, prompts: dict) -> None:
        """After a click on an already propagated sequence (a correction), re-propagate from
        that frame only, away from the other prompts (forward if they lie before it)."""
        if not self.ui.auto_repropagate.isChecked() or self.worker is not None or self.engine is None:
            return
        ax = self.ui.axis_combo.currentText()
        spec, lshape = self._session[1], self._session[2]
        axes = spec.stack_axes(level0(self.image_layer).shape)
        if ax not in axes:  # "ZT" runs whole stacks: use the Propagate button
            return
        pos = axes[ax]
        same_seq = lambda k: all(k[i] == key[i] for i in range(len(key)) if i != pos)  # noqa: E731
        if not self.quality.has(seq_id(ax, {i: key[i] for i in range(len(key)) if i != pos})):
            return
        others = [k[pos] for k in prompts if same_seq(k) and k != key]
        if not others:
            direction = "both"
        elif min(others) < key[pos] < max(others):
            direction = "forward"  # between prompts: the frames after the click are the doubtful ones
        else:
            direction = "forward" if min(others) < key[pos] else "backward"
        self.propagate(from_current=True, axis=ax, direction=direction, start_key=key)

    # ------------------------------------------------------------------ confidence
    def _update_confidence(self) -> None:
        def empty() -> None:
            self.ui.plot.set_series(np.zeros(0), np.zeros(0))
            self.ui.flagged_label.setText("no flagged frames")

        if self._session is None or not len(self.quality) or self.quality.last_seq is None:
            return empty()
        try:
            key = self.current_key()
        except Exception:  # noqa: BLE001 - the view follows the viewer silently
            return None
        if self.quality.last_seq is None:  # current_key started a new session (another image)
            return empty()
        axis_name, fixed = self.quality.last_seq
        spec = self._session[1]
        axes = spec.stack_axes(level0(self.image_layer).shape)
        pos = axes.get(axis_name)
        if pos is None:
            return
        sid = seq_id(axis_name, {k: key[k] for k in range(len(key)) if k != pos})
        n = self._session[2][pos]
        oid = self.objects.current_id
        score, iou = self.quality.series(sid, oid, n)
        flags = [(i, kind) for i, o, kind in self.quality.flagged(sid, oid)]
        name = self.objects[oid].name if oid in self.objects else "-"
        self.ui.plot.set_series(iou, score, flags, key[pos], f"{name}: confidence along {axis_name}")
        all_flags = self.quality.flagged(sid)
        self.ui.flagged_label.setText(
            f"flagged along {axis_name}: {_summarise(all_flags)}" if all_flags else "no flagged frames")

    def next_flagged(self) -> Optional[int]:
        """Move the viewer to the next frame worth a correction click; returns its index."""
        try:
            key = self.current_key()
            if self.quality.last_seq is None:
                raise ValueError("nothing propagated yet")
            axis_name, _ = self.quality.last_seq
            ly, spec, _ = self._ensure_session()
            pos = spec.stack_axes(level0(ly).shape)[axis_name]
            sid = seq_id(axis_name, {k: key[k] for k in range(len(key)) if k != pos})
            nxt = self.quality.next_flagged(sid, key[pos])
            if nxt is None:
                self._info("SAM 2: no flagged frames on this sequence")
                return None
            # the world axis of this key position: skip a channel axis before it
            data_axis = pos + (1 if spec.channel_axis is not None and spec.channel_axis <= pos else 0)
            world_axis = self.viewer.dims.ndim - ly.ndim + data_axis
            self.viewer.dims.set_current_step(world_axis, nxt)
            return nxt
        except Exception as exc:  # noqa: BLE001
            self._error(exc)
            return None

    # ------------------------------------------------------------------ automatic
    def segment_everything(self, **params: Any) -> None:
        """Automatic mask generation on the current frame, into ``SAM2 automatic``."""
        try:
            if self.engine is None:
                raise ValueError("load a model first")
            ly, spec, lshape = self._ensure_session()
            key = self.current_key()
            rgb = self.read_frame(key)
        except Exception as exc:  # noqa: BLE001
            self._error(exc)
            return
        kw = dict(points_per_side=self.ui.points_per_side.value(), pred_iou_thresh=self.ui.pred_iou.value(),
                  stability_score_thresh=self.ui.stability.value(),
                  min_mask_region_area=self.ui.min_area.value())
        kw.update(params)

        def put(labels: np.ndarray) -> None:
            from ._history import write_plane

            layer = self.auto_layer
            if layer is None or layer not in self.viewer.layers:
                layer = self.viewer.add_labels(np.zeros(lshape, np.int32), name="SAM2 automatic",
                                               **self._layer_geometry(ly, spec))
                self.auto_layer = layer
            step = Step("segment everything", state_before=self._state, state_after=self._state)
            e = write_plane(layer.data, key, labels, target="automatic")
            if e is not None:
                step.edits.append(e)
                self.history.push(step)
            layer.refresh()
            self.last_message = f"automatic: {int(labels.max())} masks"
        self._run(lambda: self.engine.automatic(rgb, **kw), on_return=put)
