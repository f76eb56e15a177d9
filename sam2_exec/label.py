"""``sam2-plugins label``: automatic masks for a folder of images, one COCO-RLE JSON per image.

Output layout (``OUT``)::

    OUT/<relative image path>.json     one per labeled image (``a/b.png`` -> ``a/b.png.json``)
    OUT/sam2_label.json                the run's settings (model, checkpoint, generator options)
    OUT/sam2_label_summary.json        the last run: counts, failed images with their errors,
                                       workers and their throughput

Each image file is ``{"image", "height", "width", "annotations": [...]}``; an annotation is one
record of :class:`~sam2_plugins.SAM2AutomaticMaskGenerator` with ``output_mode="coco_rle"``
(``segmentation`` = ``{"size": [h, w], "counts": str}``, ``area``, ``bbox`` XYWH pixels,
``predicted_iou``, ``stability_score``, ``point_coords``, ``crop_box``) plus ``id`` (1, 2, ...).

Resuming: a JSON is written to a temporary name and renamed, so it exists only when complete;
a rerun skips images whose JSON exists (same settings required: another configuration into
the same ``OUT`` is refused unless ``overwrite``). Images that fail (corrupt, unreadable) are
listed in the summary with their error, get no JSON, and are retried by the next run. Ctrl-C
stops the workers; what was written stays.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from .base import WorkerSpec, make_executor, worker_stats
from .images import AMG_DEFAULTS, IMAGE_SUFFIXES, AutoLabeler, list_images

__all__ = ["label_folder", "MANIFEST", "SUMMARY", "output_path"]

MANIFEST = "sam2_label.json"
SUMMARY = "sam2_label_summary.json"
ProgressFn = Callable[[float, str], None]


def output_path(out_dir: Path, rel: str) -> Path:
    """Where the JSON of image ``rel`` (relative to the images folder) goes."""
    return Path(out_dir) / (rel + ".json")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
    os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one


def _check_model(model: str, checkpoint: Optional[str]) -> None:
    from sam2_plugins.configs import get_config

    get_config(model)  # ValueError naming the known models
    if checkpoint not in (None, "demo", "download") and not Path(checkpoint).expanduser().is_file():
        raise ValueError(f"checkpoint {checkpoint!r} is not 'demo', 'download' or an existing file")


def _settings(model: str, checkpoint: Optional[str], amg: Mapping[str, Any]) -> Dict[str, Any]:
    return {"model": model, "checkpoint": checkpoint, **{k: amg[k] for k in sorted(amg)}}


def label_folder(
    images_dir: Any,
    out_dir: Any,
    executor: Any = None,
    workers: Optional[int] = None,
    model: str = "sam2.1_hiera_nano",
    checkpoint: Optional[str] = "demo",
    device: Optional[str] = None,
    batch_size: int = 1,
    images_per_task: Optional[int] = None,
    overwrite: bool = False,
    progress: Optional[ProgressFn] = None,
    readers: int = 2,
    dtype: Optional[str] = None,
    ray_options: Optional[Mapping[str, Any]] = None,
    **amg: Any,
) -> Dict[str, Any]:
    """Label every image under ``images_dir`` into ``out_dir`` (see the module docstring).

    Args:
        images_dir: folder searched recursively for ``.jpg .jpeg .png .bmp .tif .tiff .webp``.
        out_dir: output folder (created).
        executor: ``"inprocess"`` (default), ``"ray"`` or an executor object.
        workers: Ray workers (default: one per CPU / GPU of the cluster).
        model, checkpoint, device, dtype: the model each worker builds.
        batch_size: images per image-encoder pass.
        images_per_task: images sent to a worker at once (default ``4 * batch_size``).
        overwrite: relabel everything (also into an ``out_dir`` made with other settings).
        progress: ``fn(fraction, text)`` after each task.
        readers: decoding threads per worker.
        ray_options: more :class:`~sam2_exec.RayExecutor` options (``address``,
            ``num_gpus_per_worker``, ...).
        **amg: generator options (:data:`~sam2_exec.images.AMG_DEFAULTS`).

    Returns:
        The summary also written to ``out_dir/sam2_label_summary.json``.
    """
    root, out = Path(images_dir), Path(out_dir)
    if not root.is_dir():
        raise ValueError(f"images folder {root} does not exist or is not a folder")
    unknown = sorted(set(amg) - set(AMG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown generator option(s) {unknown}; expected some of {sorted(AMG_DEFAULTS)}")
    opts = {**AMG_DEFAULTS, **{k: v for k, v in amg.items() if v is not None}}
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, received {batch_size!r}")
    per_task = int(images_per_task or 4 * int(batch_size))
    if per_task < 1:
        raise ValueError(f"images_per_task must be >= 1, received {images_per_task!r}")
    _check_model(model, checkpoint)
    images = list_images(root)
    if not images:
        raise ValueError(f"no image files ({' '.join(IMAGE_SUFFIXES)}) under {root}")
    settings = _settings(model, checkpoint, opts)
    manifest = out / MANIFEST
    if manifest.is_file() and not overwrite:
        old = json.loads(manifest.read_text()).get("settings")
        if old != settings:
            raise ValueError(f"{out} holds labels made with other settings ({old}); choose another --out "
                             "or pass --overwrite to relabel")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(manifest, {"settings": settings, "images_dir": str(root.resolve())})

    rels = [p.relative_to(root).as_posix() for p in images]
    todo = [r for r in rels if overwrite or not output_path(out, r).is_file()]
    chunks = [todo[i:i + per_task] for i in range(0, len(todo), per_task)]
    spec = WorkerSpec(AutoLabeler, kwargs=dict(model=model, checkpoint=checkpoint, device=device,
                                               batch_size=int(batch_size), amg=opts, readers=readers, dtype=dtype))
    summary: Dict[str, Any] = {"images": len(rels), "labeled": 0, "skipped": len(rels) - len(todo), "failed": {},
                               "interrupted": False, "settings": settings}
    results = []
    t0 = time.perf_counter()
    ex = make_executor(executor, workers, **dict(ray_options or {}))
    try:
        items = [[str(root / r) for r in c] for c in chunks]
        for res in ex.map(spec, items, keys=[c[0] for c in chunks]):
            results.append(res)
            chunk = chunks[res.index]
            if not res.ok:  # the whole task failed (its workers kept dying, or the worker could not run it)
                summary["failed"].update({r: res.error for r in chunk})
            else:
                for rel, rec in zip(chunk, res.value["images"]):
                    if "error" in rec:
                        summary["failed"][rel] = rec["error"]
                        continue
                    anns = [{"id": k + 1, **a} for k, a in enumerate(rec["annotations"])]
                    _write_json(output_path(out, rel), {"image": rel, "height": rec["height"],
                                                        "width": rec["width"], "annotations": anns})
                    summary["labeled"] += 1
            if progress is not None:
                done = summary["labeled"] + len(summary["failed"])
                progress(done / max(1, len(todo)), f"{done}/{len(todo)} images ({len(summary['failed'])} failed)")
    except KeyboardInterrupt:
        summary["interrupted"] = True
        raise
    finally:
        ex.close()
        seconds = time.perf_counter() - t0
        summary["seconds"] = seconds
        summary["images_per_second"] = summary["labeled"] / seconds if seconds > 0 and summary["labeled"] else None
        summary["execution"] = ex.describe()
        summary["per_worker"] = worker_stats(results, seconds)
        _write_json(out / SUMMARY, summary)
    return summary


def print_summary(summary: Mapping[str, Any], out_dir: Any, stream: Any = sys.stderr) -> None:
    """The failed images (one line each), then one line of counts."""
    for rel, err in sorted(summary["failed"].items()):
        print(f"failed: {rel}: {err}", file=stream)
    ips = summary.get("images_per_second")
    rate = f", {ips:.2f} images/s" if ips else ""
    n_workers = summary.get("execution", {}).get("workers", 1)
    print(f"labeled {summary['labeled']}, skipped {summary['skipped']} (done before), failed "
          f"{len(summary['failed'])} of {summary['images']} images{rate}, {n_workers} worker(s) -> {out_dir}",
          file=stream)
