"""Automatic labeling of images with SAM 2's automatic mask generator (no prompts).

Each generated mask becomes a ``Detection`` with a box-cropped ``mask``,
``confidence`` = predicted IoU, and the attributes ``predicted_iou``, ``stability_score``
and ``area`` (pixels). Optionally an instance-id ``Segmentation`` is written too
(pixel value k = the k-th detection, 0 = background).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from . import _resume
from ._convert import instance_id_map, mask_to_detection
from ._distributed import run_sharded, wants_workers
from ._fields import require_media
from ._media import load_image
from ._models import DEFAULT_MODEL, ModelSpec, load_model
from ._summary import count_auto_label

#: Generator options the plugin exposes (upstream names); others keep the core's defaults.
AMG_OPTIONS = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
               "box_nms_thresh", "crop_n_layers", "min_mask_region_area", "multimask_output")


def masks_to_labels(records: Sequence[dict], height: int, width: int, label: str | None,
                    with_semantic: bool) -> tuple[Any, Any]:
    """Generator records (upstream dicts) -> (``Detections``, ``Segmentation`` or None).

    Records are sorted by predicted IoU, best first, so detection k and id k+1 agree.
    """
    import fiftyone as fo

    records = sorted(records, key=lambda r: -float(r.get("predicted_iou", 0.0)))
    masks = [np.asarray(r["segmentation"], dtype=bool) for r in records]
    dets = []
    for r, m in zip(records, masks):
        iou = float(r.get("predicted_iou", 0.0))
        dets.append(mask_to_detection(
            m, label=label, confidence=iou, predicted_iou=iou,
            stability_score=float(r.get("stability_score", 0.0)), area=int(m.sum())))
    seg = fo.Segmentation(mask=instance_id_map(masks, height, width)) if with_semantic else None
    return fo.Detections(detections=dets), seg


def auto_label(
    view: Any,
    label_field: str = "sam2_auto",
    semantic_field: str | None = None,
    model: str | ModelSpec | None = None,
    checkpoint: str | None = "demo",
    device: str | None = None,
    label: str | None = "object",
    overwrite: bool = False,
    progress: _resume.ProgressFn | None = None,
    batch_size: int = 1,
    executor: Any = None,
    workers: int | None = None,
    **amg_kwargs: Any,
) -> dict[str, Any]:
    """Label every image of ``view`` with SAM 2's automatic mask generator.

    Args:
        view: a FiftyOne image dataset or view.
        label_field: new ``Detections`` field (instance masks, scores).
        semantic_field: optional new ``Segmentation`` field (instance-id map).
        model, checkpoint, device: see :class:`~fiftyone_sam2._models.ModelSpec`.
        label: class label given to every mask.
        overwrite: allow writing into existing fields not made by an auto-label run.
        progress: ``fn(fraction, text)``.
        batch_size: images per image-encoder pass (decoded in parallel threads).
        executor, workers: ``executor="ray", workers=N`` labels shards of the view on N Ray
            workers sharing this database (:mod:`fiftyone_sam2._distributed`); None: here.
        **amg_kwargs: generator options, among :data:`AMG_OPTIONS` (e.g. ``points_per_side``).

    Returns:
        The run summary (processed / skipped / failed counts, first errors).
    """
    import fiftyone as fo

    spec = model if isinstance(model, ModelSpec) else ModelSpec(model or DEFAULT_MODEL, checkpoint, device)
    require_media(view, ("image",), "auto_label")
    unknown = sorted(set(amg_kwargs) - set(AMG_OPTIONS))
    if unknown:
        raise TypeError(f"unknown generator option(s) {unknown}; expected some of {list(AMG_OPTIONS)}")
    if semantic_field is not None and semantic_field == label_field:
        raise ValueError("semantic_field must differ from label_field")
    opts = {k: v for k, v in amg_kwargs.items() if v is not None}
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, received {batch_size!r}")
    if wants_workers(executor, workers):
        return run_sharded("auto_label", view, dict(
            label_field=label_field, semantic_field=semantic_field, model=spec, label=label, overwrite=overwrite,
            batch_size=batch_size, **opts), executor, workers, progress)
    sam = load_model(spec)
    from sam2_plugins import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(sam, **opts)
    settings = {**spec.settings(), "label": label, "semantic_field": semantic_field,
                **{k: opts[k] for k in sorted(opts)}}
    extra = {semantic_field: fo.Segmentation} if semantic_field else None
    run = _resume.start_run(view, label_field, "auto_label", settings, fo.Detections, overwrite,
                            extra_fields=extra)

    def compute(samples: Sequence[Any]) -> list[Any]:
        if len(samples) > 1:
            return _compute_batch(generator, samples, label, semantic_field is not None)
        out: list[Any] = []
        for s in samples:
            try:
                img = load_image(s.filepath)
                with warnings.catch_warnings():  # an empty result is counted and summarised instead
                    warnings.simplefilter("ignore", UserWarning)
                    records = generator.generate(img)
                out.append(masks_to_labels(records, img.shape[0], img.shape[1], label,
                                           semantic_field is not None))
                count_auto_label(run.counts, len(records), generator.last_stats.explain())
            except Exception as exc:
                out.append(exc)
        return out

    def write(sample: Any, result: Any) -> None:
        dets, seg = result
        sample[label_field] = dets
        if semantic_field:
            sample[semantic_field] = seg

    _resume.execute(view, run, compute, write, batch_size=batch_size, progress=progress)
    return run.summary()


def _compute_batch(generator: Any, samples: Sequence[Any], label: str | None, semantic: bool) -> list[Any]:
    """Several images: decoded in parallel threads, embedded in one encoder pass."""
    from concurrent.futures import ThreadPoolExecutor

    def read(path: str) -> Any:
        try:
            return load_image(path)
        except Exception as exc:  # a corrupt file fails its sample only
            return exc

    with ThreadPoolExecutor(min(4, len(samples))) as pool:
        images = list(pool.map(read, [s.filepath for s in samples]))
    ok = [i for i, im in enumerate(images) if not isinstance(im, Exception)]
    out: list[Any] = list(images)
    if ok:
        try:
            batch = generator.generate_batch([images[i] for i in ok])
        except Exception:  # find the image that fails, the others still get labels
            batch = []
            for i in ok:
                try:
                    batch.append(generator.generate(images[i]))
                except Exception as exc:
                    batch.append(exc)
        for i, records in zip(ok, batch):
            img = images[i]
            out[i] = records if isinstance(records, Exception) else masks_to_labels(
                records, img.shape[0], img.shape[1], label, semantic)
    return out
