"""Prompted segmentation of images from existing labels (boxes and points).

Each prompt object (a ``Detection`` box, or a ``Keypoint`` set of positive points) gives one
mask; the result is a copy of the prompt ``Detection`` (same id, label, index, confidence,
attributes) with ``mask`` and a tight ``bounding_box`` set, plus ``predicted_iou``.
A ``Keypoint`` prompt becomes a new ``Detection`` that keeps its id, label and index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _resume
from ._convert import box_to_xyxy, keypoint_to_points, mask_to_detection
from ._distributed import run_sharded, wants_workers
from ._fields import require_label_field, require_media, split_field
from ._media import load_image
from ._models import DEFAULT_MODEL, ModelSpec, load_model
from ._summary import count_masks


@dataclass
class _Prompt:
    template: Any  # the prompt label (Detection or Keypoint)
    box: np.ndarray | None  # (4,) XYXY pixels
    points: np.ndarray  # (N, 2) XY pixels
    labels: np.ndarray  # (N,) 1 positive / 0 negative


def _matches(neg: Any, obj: Any) -> bool:
    """Whether negative keypoints ``neg`` apply to prompt ``obj``: same ``index`` if both have
    one, else same ``label`` if both have one, else they apply to every object."""
    ni, oi = getattr(neg, "index", None), getattr(obj, "index", None)
    if ni is not None and oi is not None:
        return ni == oi
    nl, ol = getattr(neg, "label", None), getattr(obj, "label", None)
    if nl is not None and ol is not None:
        return nl == ol
    return True


def build_prompts(sample: Any, prompt_field: str, negative_field: str | None,
                  width: int, height: int) -> list[_Prompt]:
    """The prompts of one image sample in SAM 2's pixel coordinates."""
    import fiftyone as fo

    label = sample[prompt_field]
    if label is None:
        return []
    negs = []
    if negative_field:
        nlab = sample[negative_field]
        negs = list(nlab.keypoints) if nlab is not None else []
    prompts = []
    if isinstance(label, fo.Detections):
        objs = [(d, box_to_xyxy(d.bounding_box, width, height), np.zeros((0, 2), np.float32))
                for d in label.detections]
    elif isinstance(label, fo.Keypoints):
        objs = [(k, None, keypoint_to_points(k.points, width, height)) for k in label.keypoints]
    else:
        raise TypeError(f"prompt field {prompt_field!r} holds {type(label).__name__}; "
                        "expected Detections or Keypoints")
    for obj, box, pos in objs:
        neg = [keypoint_to_points(n.points, width, height) for n in negs if _matches(n, obj)]
        negpts = np.concatenate(neg) if neg else np.zeros((0, 2), np.float32)
        if box is None and len(pos) == 0:
            continue  # a keypoint object whose points are all missing: nothing to segment
        pts = np.concatenate([pos, negpts]).astype(np.float32)
        labels = np.concatenate([np.ones(len(pos)), np.zeros(len(negpts))]).astype(np.int32)
        prompts.append(_Prompt(obj, box, pts, labels))
    return prompts


def _best(masks: np.ndarray, ious: np.ndarray) -> tuple[np.ndarray, float]:
    """``(C, H, W)`` masks + ``(C,)`` scores -> the highest-scoring mask (bool) and its score."""
    i = int(np.argmax(ious))
    return np.asarray(masks[i]) > 0, float(ious[i])


def predict_prompts(predictor: Any, prompts: Sequence[_Prompt], multimask: bool) -> list[tuple[np.ndarray, float]]:
    """Run the predictor (image already set) on each prompt; returns (mask, predicted IoU).

    Box-only prompts are sent together as one ``(B, 4)`` batch; prompts with points one by one
    (their point counts differ).
    """
    out: list[tuple[np.ndarray, float] | None] = [None] * len(prompts)
    boxes_only = [i for i, p in enumerate(prompts) if p.box is not None and len(p.points) == 0]
    if boxes_only:
        boxes = np.stack([prompts[i].box for i in boxes_only])
        masks, ious, _ = predictor.predict(box=boxes, multimask_output=multimask)
        masks, ious = np.asarray(masks), np.asarray(ious)
        if masks.ndim == 3:  # one box: (C, H, W)
            masks, ious = masks[None], ious[None]
        for j, i in enumerate(boxes_only):
            out[i] = _best(masks[j], ious[j])
    for i, p in enumerate(prompts):
        if out[i] is not None:
            continue
        masks, ious, _ = predictor.predict(
            point_coords=p.points if len(p.points) else None,
            point_labels=p.labels if len(p.points) else None,
            box=p.box, multimask_output=multimask)
        out[i] = _best(np.asarray(masks), np.asarray(ious))
    return out  # type: ignore[return-value]


def to_detections(prompts: Sequence[_Prompt], results: Sequence[tuple[np.ndarray, float]]) -> Any:
    import fiftyone as fo

    dets = []
    for p, (mask, score) in zip(prompts, results):
        if isinstance(p.template, fo.Detection):
            dets.append(mask_to_detection(mask, template=p.template, predicted_iou=score))
        else:
            dets.append(mask_to_detection(mask, template=p.template, label=p.template.label,
                                          predicted_iou=score))
    return fo.Detections(detections=dets)


def segment(
    view: Any,
    prompt_field: str,
    label_field: str = "sam2",
    negative_field: str | None = None,
    model: str | ModelSpec | None = None,
    checkpoint: str | None = "demo",
    device: str | None = None,
    batch_size: int = 1,
    multimask_output: bool = False,
    overwrite: bool = False,
    progress: _resume.ProgressFn | None = None,
    executor: Any = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Segment the objects of ``prompt_field`` in every image of ``view`` with SAM 2.

    Args:
        view: a FiftyOne image dataset or view.
        prompt_field: ``Detections`` (one box per object) or ``Keypoints`` (one point set per
            object, all positive).
        label_field: new ``Detections`` field for the results.
        negative_field: optional ``Keypoints`` field of negative points; a keypoint set applies
            to the object with the same ``index`` (or same label), or to all objects when it
            has neither.
        model, checkpoint, device: see :class:`~fiftyone_sam2._models.ModelSpec`.
        batch_size: images embedded together.
        multimask_output: ask for 3 masks per prompt and keep the highest-scoring one.
        overwrite: allow writing into an existing field not made by a segment run.
        progress: ``fn(fraction, text)``.
        executor, workers: ``executor="ray", workers=N`` segments shards of the view on N Ray
            workers sharing this database (:mod:`fiftyone_sam2._distributed`); None: here.

    Returns:
        The run summary: processed / skipped / failed counts and the first errors.

    Raises:
        ValueError / TypeError: bad fields, a video collection, an unknown model or
            checkpoint; nothing is written in that case.
    """
    import fiftyone as fo

    spec = model if isinstance(model, ModelSpec) else ModelSpec(model or DEFAULT_MODEL, checkpoint, device)
    require_media(view, ("image",), "segment (use track for videos)")
    if split_field(prompt_field)[0]:
        raise ValueError(f"prompt field {prompt_field!r} is a frame field; segment needs a sample field")
    require_label_field(view, prompt_field, (fo.Detections, fo.Keypoints), "prompt field")
    if negative_field:
        require_label_field(view, negative_field, (fo.Keypoints,), "negative field")
    if label_field in (prompt_field, negative_field) and not overwrite:
        raise _resume.FieldExistsError(f"label field {label_field!r} is an input field; "
                                       "choose another name or set overwrite=True")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, received {batch_size}")
    if wants_workers(executor, workers):
        return run_sharded("segment", view, dict(
            prompt_field=prompt_field, label_field=label_field, negative_field=negative_field, model=spec,
            batch_size=batch_size, multimask_output=multimask_output, overwrite=overwrite), executor, workers, progress)
    sam = load_model(spec)
    from sam2_plugins import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(sam)
    settings = {**spec.settings(), "prompt_field": prompt_field, "negative_field": negative_field,
                "multimask_output": bool(multimask_output)}
    run = _resume.start_run(view, label_field, "segment", settings, fo.Detections, overwrite)

    def compute(samples: Sequence[Any]) -> list[Any]:
        images, prompts, results = [], [], []
        for s in samples:
            try:
                img = load_image(s.filepath)
                images.append(img)
                prompts.append(build_prompts(s, prompt_field, negative_field, img.shape[1], img.shape[0]))
            except Exception as exc:
                images.append(None), prompts.append(exc)
        ok = [i for i, img in enumerate(images) if img is not None and prompts[i]]
        preds: dict[int, Any] = {}
        box_only = all(p.box is not None and len(p.points) == 0 for i in ok for p in prompts[i])
        if len(ok) > 1 and box_only:
            # One image-encoder pass for the whole batch (the costly part), then the decoder
            # per image with all of its boxes at once.
            predictor.set_image_batch([images[i] for i in ok])
            boxes = [np.stack([p.box for p in prompts[i]]) for i in ok]
            ms, ss, _ = predictor.predict_batch(box_batch=boxes, multimask_output=multimask_output)
            for i, m, sc in zip(ok, ms, ss):
                m, sc = np.asarray(m), np.asarray(sc)
                if m.ndim == 3:
                    m, sc = m[None], sc[None]
                preds[i] = [_best(m[j], sc[j]) for j in range(len(m))]
            predictor.reset_predictor()
        for i, img in enumerate(images):
            if img is None:
                results.append(prompts[i])
            elif not prompts[i]:
                results.append(fo.Detections(detections=[]))
            else:
                try:
                    if i not in preds:
                        predictor.set_image(img)
                        preds[i] = predict_prompts(predictor, prompts[i], multimask_output)
                    results.append(to_detections(prompts[i], preds[i]))
                    count_masks(run.counts, [m for m, _ in preds[i]])
                except Exception as exc:
                    results.append(exc)
        return results

    def write(sample: Any, result: Any) -> None:
        sample[label_field] = result

    _resume.execute(view, run, compute, write, batch_size=batch_size, progress=progress)
    return run.summary()
