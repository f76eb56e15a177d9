"""``--executor ray`` for ``vos``, ``interactive-image`` and ``interactive-video``.

The protocols split into independent work items, one per video (per prompt setting or mode)
or per image, so a video's memory bank never leaves the worker that tracks it. Each worker
(:class:`ProtocolWorker`, one Ray actor each) builds the model once, loads the dataset itself
(the same ``--dataset`` arguments: synthetic data is regenerated identically, folders must be
readable at the same path on every node) and runs the protocol's own code on one item:
:func:`~sam2_plugins.evaluation.vos_protocol.run_vos`,
:func:`~sam2_plugins.evaluation.interactive.run_interactive_image` or
:func:`~sam2_plugins.evaluation.interactive_video.run_interactive_video` on a one-element
dataset. The driver gathers the per-item scores in dataset order and summarises them with the
same functions as the in-process run, so the report holds the same numbers; only timings
differ. Predicted PNGs (``--save-predictions``) come back as bytes and are written by the
driver as each video finishes (Ctrl-C keeps them; the report is written at the end).

Timing in a Ray run: ``seconds`` of a prompt setting / mode is the run's wall time after the
workers started (their model build is left out, as in-process) shared among them in proportion
to the workers' time on each; the report's ``execution`` block has the
workers, their throughput (frames/s or images/s), start-up time and retried items. An item
whose worker raised (an unreadable video) is listed under ``failed_items`` and left out of the
scores; the run goes on.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from sam2_exec.base import ItemResult, WorkerSpec, worker_stats
from sam2_exec.options import executor_from_args, executor_options

__all__ = ["ProtocolWorker", "Distributed", "distributed_for", "in_process_execution", "RAY_LAYOUTS"]

#: Layouts ``--executor ray`` runs (SA-V and the challenge layouts write their own outputs in-process).
RAY_LAYOUTS = ("auto", "davis", "vos")
_DATA_KEYS = ("dataset", "layout", "sequences", "max_sequences", "max_frames", "masks", "images")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def in_process_execution() -> Dict[str, Any]:
    """The ``execution`` block of an in-process run."""
    return {"executor": "inprocess", "workers": 1}


class ProtocolWorker:
    """One worker of a distributed protocol run: a built model, a predictor, the dataset.

    Args:
        kind: ``"vos"``, ``"interactive-image"`` or ``"interactive-video"``.
        model_args: ``model``, ``checkpoint``, ``device``, ``dtype``, ``memory_mode`` (as the CLI's).
        data_args: the dataset arguments (``dataset``, ``layout``, ``sequences``, ...).
        protocol_args: the protocol's options (``lifetime``, ``max_clicks``, ...).
    """

    def __init__(self, kind: str, model_args: Mapping[str, Any], data_args: Mapping[str, Any],
                 protocol_args: Mapping[str, Any]) -> None:
        from .runs import load_bench_model, video_predictor

        self.kind, self.data, self.opts = kind, dict(data_args), dict(protocol_args)
        self.model, self.used = load_bench_model(model_args["model"], model_args.get("checkpoint"),
                                            model_args.get("device"), apply_postprocessing=kind != "vos")
        dtype = model_args.get("dtype")
        if kind == "vos":
            self.predictor = video_predictor(self.model, "vos", dtype, model_args.get("memory_mode") or "sam2")
        elif kind == "interactive-video":
            self.predictor = video_predictor(self.model, "interactive", dtype)
        elif kind == "interactive-image":
            from sam2_plugins import SAM2ImagePredictor

            self.predictor = SAM2ImagePredictor(self.model)
        else:
            raise ValueError(f"unknown protocol {kind!r}")
        self._dataset: Any = None

    def info(self) -> Dict[str, Any]:
        return {"device": str(self.model.device), "checkpoint_used": self.used}

    def units(self, item: Any, value: Mapping[str, Any]) -> float:
        return float(value.get("units", 1))

    def dataset(self) -> Any:
        if self._dataset is None:
            from .datasets import load_image_dataset, load_video_dataset
            from .runs import _split

            d = self.data
            if self.kind == "interactive-image":
                self._dataset = load_image_dataset(d["dataset"], d.get("masks"), d.get("images"))
            else:
                self._dataset = load_video_dataset(d["dataset"], _split(d.get("sequences")), d.get("max_sequences"),
                                                   d.get("max_frames"), d.get("layout") or "auto")
        return self._dataset

    def __call__(self, item: Tuple[Any, ...]) -> Dict[str, Any]:
        from .report import _versions

        out = {"vos": self._vos, "interactive-image": self._image, "interactive-video": self._video}[self.kind](*item)
        out["versions"] = _versions()  # what the protocol imported, for the report's header
        if self.model.device.type == "cuda":
            import torch

            out["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(self.model.device) / 2**20
        return out

    def _vos(self, prompt: str, index: int) -> Dict[str, Any]:
        from sam2_plugins.evaluation.vos_protocol import run_vos

        seq = self.dataset()[index]
        pngs: Dict[str, bytes] = {}
        with tempfile.TemporaryDirectory(prefix="sam2_vos_") as tmp:
            run = run_vos(self.predictor, [seq], prompt=prompt, lifetime=self.opts["lifetime"],
                          out_dir=Path(tmp) if self.opts.get("save_predictions") else None)
            for f in sorted(Path(tmp).rglob("*.png")):
                pngs[f.relative_to(tmp).as_posix()] = f.read_bytes()
        return {"scores": run.sequences[0], "unscored": list(run.summary.get("unscored_objects") or []),
                "frames": run.frames, "units": run.frames, "pngs": pngs}

    def _image(self, ds: str, index: int, allowed: Optional[int]) -> Dict[str, Any]:
        from sam2_plugins.evaluation.interactive import run_interactive_image

        sample = self.dataset()[ds][index]
        o = self.opts
        res = run_interactive_image(self.predictor, {ds: [sample]}, max_clicks=o["max_clicks"], max_instances=allowed,
                                    max_instances_per_image=o.get("max_instances_per_image"),
                                    oracle=bool(o.get("oracle")), feed_logits=bool(o.get("feed_logits", True)))
        keys = res.datasets.get(ds, [])
        return {"ious": [(k, res.ious[k]) for k in keys], "units": 1}

    def _video(self, mode: str, index: int) -> Dict[str, Any]:
        from sam2_plugins.evaluation.interactive_video import run_interactive_video

        seq = self.dataset()[index]
        o = self.opts
        res = run_interactive_video(self.predictor, [seq], mode=mode, max_frames=o["max_interacted"],
                                    clicks_per_frame=o["clicks_per_frame"], pause_iou=o["pause_iou"])
        return {"per_object": res["per_object"], "units": seq.frames.num_frames or 0}


def _allowances(datasets: Mapping[str, Sequence[Any]], max_instances: Optional[int],
                per_image: Optional[int]) -> List[Tuple[str, int, Optional[int]]]:
    """``[(dataset, image index, instances it may run)]`` in the in-process order: with a
    per-dataset cap the driver counts each image's usable instances as the protocol does."""
    import numpy as np

    items: List[Tuple[str, int, Optional[int]]] = []
    for ds, samples in datasets.items():
        if max_instances is None:
            items += [(ds, i, None) for i in range(len(samples))]
            continue
        used = 0
        for i in range(len(samples)):
            if used >= max_instances:
                break
            s = samples[i]
            masks = list(s.masks)[:per_image] if per_image is not None else list(s.masks)
            ignore = getattr(s, "ignore", None)
            usable = sum(1 for m in masks if (np.asarray(m, bool) & (~ignore if ignore is not None else True)).any())
            take = min(usable, max_instances - used)
            if take > 0:
                items.append((ds, i, take))
                used += take
    return items


class Distributed:
    """Runs one protocol's items on the executor of ``args`` and keeps the execution report."""

    def __init__(self, args: Any, kind: str) -> None:
        self.args, self.kind = args, kind
        self.execution: Dict[str, Any] = {}
        self.used: Optional[str] = None
        self.device: Optional[str] = None
        self.peak_gpu_memory_mib: Optional[float] = None
        self.versions: Dict[str, Any] = {}
        self.seconds = 0.0  # wall time of the items once the workers had started

    def _spec(self, protocol: Mapping[str, Any]) -> WorkerSpec:
        a = self.args
        model = {"model": a.model, "checkpoint": a.checkpoint, "device": a.device, "dtype": getattr(a, "dtype", None),
                 "memory_mode": getattr(a, "memory_mode", None) or "sam2"}
        data = {k: getattr(a, k, None) for k in _DATA_KEYS}
        return WorkerSpec(ProtocolWorker, (self.kind, model, data, dict(protocol)))

    def _run(self, protocol: Mapping[str, Any], items: List[Tuple[Any, ...]], keys: List[str], unit: str,
             on_result: Any = None) -> Tuple[Dict[int, ItemResult], float]:
        if not items:
            raise ValueError("nothing to run: the dataset gave no work items")
        ex = executor_from_args(self.args)
        results: Dict[int, ItemResult] = {}
        t0 = time.perf_counter()
        try:
            for res in ex.map(self._spec(protocol), items, keys=keys):
                results[res.index] = res
                if on_result is not None and res.ok:
                    on_result(res)  # written as it arrives: Ctrl-C keeps what is done
                state = f"{res.seconds:.1f} s on {res.worker}" if res.ok else f"FAILED: {res.error}"
                _log(f"  {res.key} ({len(results)}/{len(items)}, {state})")
        finally:
            ex.close()
        info = ex.describe()
        # the workers' start-up (process, imports, model build) is not part of the protocol's time,
        # as building the model is not in the in-process run's
        wall = time.perf_counter() - t0 - float(info.get("startup_seconds") or 0.0)
        first = (info.get("worker_info") or [{}])[0]
        self.used, self.device = first.get("checkpoint_used"), first.get("device")
        self.seconds = wall
        for r in results.values():
            if r.ok:
                self.versions = dict(r.value.get("versions") or {})
        peaks = [r.value.get("peak_gpu_memory_mib") for r in results.values() if r.ok]
        self.peak_gpu_memory_mib = max([p for p in peaks if p is not None], default=None)
        self.execution = {**info, "unit": unit, "wall_seconds": wall,
                          "per_worker": worker_stats(results.values(), wall),
                          "failed_items": {r.key: r.error for r in results.values() if not r.ok}}
        if not any(r.ok for r in results.values()):
            raise RuntimeError(f"every work item failed, e.g. {next(iter(results.values())).error}")
        return results, wall

    @staticmethod
    def _shares(results: Mapping[int, ItemResult], groups: Mapping[Any, List[int]], wall: float) -> Dict[Any, float]:
        """Wall time shared among groups in proportion to their worker seconds."""
        busy = {g: sum(results[i].seconds for i in idx if i in results) for g, idx in groups.items()}
        total = sum(busy.values())
        return {g: wall * (b / total if total > 0 else 1.0 / len(busy)) for g, b in busy.items()}

    # ------------------------------------------------------------------ vos
    def vos(self, prompts: Sequence[str], seqs: Sequence[Any], out_dir: Path
            ) -> Dict[str, Tuple[Dict[str, Any], int, float]]:
        """``{prompt: (summary, frames, seconds)}`` as :func:`run_vos` gives them in-process."""
        from sam2_plugins.evaluation.sequence import summarize

        a = self.args
        items = [(p, i) for p in prompts for i in range(len(seqs))]
        keys = [f"{p}/{seqs[i].name}" for p, i in items]
        lifetime = getattr(a, "lifetime", "own_video")
        protocol = {"lifetime": lifetime, "save_predictions": bool(getattr(a, "save_predictions", False))}

        def write_pngs(res: ItemResult) -> None:
            for rel, data in res.value["pngs"].items():
                dest = Path(out_dir) / "predictions" / items[res.index][0] / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)

        results, wall = self._run(protocol, items, keys, "frames", on_result=write_pngs)
        groups = {p: [k for k, (q, _) in enumerate(items) if q == p] for p in prompts}
        seconds = self._shares(results, groups, wall)
        out = {}
        for p in prompts:
            ok = [results[k] for k in groups[p] if results[k].ok]
            if not ok:
                raise RuntimeError(f"prompt {p}: every video failed")
            summary = summarize([r.value["scores"] for r in ok])
            summary["lifetime"] = lifetime
            summary["unscored_objects"] = [u for r in ok for u in r.value["unscored"]]
            failed = [results[k].key for k in groups[p] if not results[k].ok]
            if failed:
                summary["note"] = f"{len(failed)} video(s) failed and are not scored: {failed}"
            out[p] = (summary, sum(r.value["frames"] for r in ok), seconds[p])
        return out

    # ------------------------------------------------------------------ interactive image
    def interactive_image(self, datasets: Mapping[str, Sequence[Any]]) -> Any:
        """The :class:`InteractiveImageResult` the in-process loop would build."""
        from sam2_plugins.evaluation.interactive import InteractiveImageResult

        a = self.args
        items = _allowances(datasets, a.max_instances, getattr(a, "max_instances_per_image", None))
        keys = [f"{ds}/{i}" for ds, i, _ in items]
        protocol = {"max_clicks": a.max_clicks, "max_instances_per_image": getattr(a, "max_instances_per_image", None),
                    "oracle": bool(getattr(a, "oracle", False)), "feed_logits": not getattr(a, "no_mask_input", False)}
        results, _ = self._run(protocol, items, keys, "images")
        res = InteractiveImageResult(max_clicks=int(a.max_clicks))
        for ds in datasets:
            res.datasets.setdefault(ds, [])
        for k in range(len(items)):
            r = results[k]
            if not r.ok:
                continue
            for key, curve in r.value["ious"]:
                res.ious[key] = curve
                res.datasets[items[k][0]].append(key)
        return res

    # ------------------------------------------------------------------ interactive video
    def interactive_video(self, modes: Sequence[str], seqs: Sequence[Any]) -> Dict[str, Dict[str, Any]]:
        """``{mode: run_interactive_video result}`` (``seconds`` included)."""
        from sam2_plugins.evaluation.interactive_video import summarize_interactive

        a = self.args
        items = [(m, i) for m in modes for i in range(len(seqs))]
        keys = [f"{m}/{seqs[i].name}" for m, i in items]
        protocol = {"max_interacted": a.max_interacted, "clicks_per_frame": a.clicks_per_frame,
                    "pause_iou": a.pause_iou}
        results, wall = self._run(protocol, items, keys, "frames")
        groups = {m: [k for k, (q, _) in enumerate(items) if q == m] for m in modes}
        seconds = self._shares(results, groups, wall)
        out = {}
        for m in modes:
            per_object: Dict[str, Any] = {}
            for k in groups[m]:
                if results[k].ok:
                    per_object.update(results[k].value["per_object"])
            res = summarize_interactive(per_object, m, a.max_interacted, a.clicks_per_frame, a.pause_iou)
            res["seconds"] = seconds[m]
            out[m] = res
        return out


def check_executor_args(args: Any, kind: str) -> bool:
    """Check the executor options of ``args`` (raises ``ValueError``); True for ``--executor ray``.

    Cheap and side-effect free: the CLI calls it before it creates any output folder.
    """
    if executor_options(args)["executor"] != "ray":
        return False
    layout = getattr(args, "layout", "auto") or "auto"
    if kind != "interactive-image" and layout not in RAY_LAYOUTS:
        raise ValueError(f"--executor ray runs the {'/'.join(RAY_LAYOUTS[1:])} layouts and synthetic data; "
                         f"--layout {layout} runs in-process (drop --executor ray)")
    return True


def distributed_for(args: Any, kind: str) -> Optional[Distributed]:
    """A :class:`Distributed` when ``args`` ask for ``--executor ray``, else None (checks the
    executor options either way)."""
    return Distributed(args, kind) if check_executor_args(args, kind) else None
