"""Video tracking: prompts on any frames, propagated forward, backward or both.

Inputs
------
* A video collection with a frame-level prompt field (``"frames.detections"``), or an image
  collection treated as a video: the whole view (ordered by ``order_by``) or one sequence per
  value of ``sequence_by``, with a sample-level prompt field.
* Prompts: ``Detection`` -> its instance mask if it has one (``add_new_mask``), else its box;
  ``Keypoint`` -> positive points. Object identity is ``index``: prompts with the same index
  on several frames are one object; a prompt without an index is a new object.

Outputs (``label_field``, per frame)
------------------------------------
``Detections`` with one ``Detection`` per visible object: box-cropped ``mask``, ``index`` =
object id, ``label`` from its prompt, ``object_score`` (logit, > 0 = visible),
``predicted_iou`` and ``direction`` (``"forward"``/``"backward"``). Objects judged absent
are listed in the container's ``lost`` attribute (so ``F("frames.sam2.lost").length() > 0``
finds frames where an object was lost).

Bidirectional merge: for object ``o`` at frame ``t``, the forward result is used if the
nearest prompt of ``o`` at or before ``t`` is at least as close as the nearest one at or after
``t``; otherwise the backward result. An object prompted only late in the video is therefore
tracked backward to the start (upstream FiftyOne's merge drops such objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from . import _resume
from ._convert import box_to_xyxy, detection_to_mask, keypoint_to_points, mask_to_box_and_crop
from ._distributed import run_sharded, wants_workers
from ._fields import require_label_field, require_media, split_field
from ._media import video_frame_count
from ._models import DEFAULT_MODEL, ModelSpec, load_model
from ._summary import count_track

DIRECTIONS = ("forward", "backward", "both")


@dataclass
class _ObjPrompt:
    box: np.ndarray | None = None
    mask: np.ndarray | None = None
    points: list[np.ndarray] = field(default_factory=list)


@dataclass
class _Result:
    bbox: list[float]
    crop: np.ndarray
    score: float
    iou: float
    direction: str
    dist: int


def collect_prompts(frame_labels: Iterable[tuple[int, Any]], width: int, height: int
                    ) -> tuple[dict[int, dict[int, _ObjPrompt]], dict[int, dict[str, Any]]]:
    """``[(frame_idx, label), ...]`` -> ``{frame_idx: {obj_id: prompt}}`` and per-object
    metadata (``label``) in pixel coordinates. Objects without ``index`` get new ids above the
    largest index used."""
    import fiftyone as fo

    items = [(t, lab) for t, lab in frame_labels if lab is not None]
    objs: list[tuple[int, Any]] = []
    for t, lab in items:
        if isinstance(lab, fo.Detections):
            objs += [(t, d) for d in lab.detections]
        elif isinstance(lab, fo.Keypoints):
            objs += [(t, k) for k in lab.keypoints]
        else:
            raise TypeError(f"prompts must be Detections or Keypoints, found {type(lab).__name__}")
    used = [int(o.index) for _, o in objs if getattr(o, "index", None) is not None]
    next_id = max(used, default=0) + 1
    prompts: dict[int, dict[int, _ObjPrompt]] = {}
    meta: dict[int, dict[str, Any]] = {}
    for t, o in objs:
        if getattr(o, "index", None) is not None:
            oid = int(o.index)
        else:
            oid, next_id = next_id, next_id + 1
        p = prompts.setdefault(t, {}).setdefault(oid, _ObjPrompt())
        meta.setdefault(oid, {"label": getattr(o, "label", None)})
        if isinstance(o, fo.Detection):
            if o.has_mask:
                p.mask = detection_to_mask(o, width, height)
            else:
                p.box = box_to_xyxy(o.bounding_box, width, height)
        else:
            pts = keypoint_to_points(o.points, width, height)
            if len(pts):
                p.points.append(pts)
    return prompts, meta


def _add_prompts(predictor: Any, state: Any, prompts: dict[int, dict[int, _ObjPrompt]]) -> None:
    for t in sorted(prompts):
        for oid, p in prompts[t].items():
            if p.mask is not None:
                predictor.add_new_mask(state, frame_idx=t, obj_id=oid, mask=p.mask)
                continue
            pts = np.concatenate(p.points).astype(np.float32) if p.points else None
            labels = np.ones(len(pts), np.int32) if pts is not None else None
            if pts is None and p.box is None:
                continue
            predictor.add_new_points_or_box(state, frame_idx=t, obj_id=oid, points=pts,
                                            labels=labels, box=p.box)


def _quality(predictor: Any, state: Any, t: int, oid: int) -> tuple[float, float]:
    """(object-score logit, predicted IoU) of object ``oid`` on frame ``t`` just computed,
    from the core's quality tracker; NaN when the predictor does not record them."""
    try:
        q = predictor.quality(state).get(oid, t)
        if q is not None:
            return float(q.score), float(q.iou)
    except Exception:  # an upstream-style predictor without quality signals
        pass
    return float("nan"), float("nan")


def run_tracking(predictor: Any, source: Any, prompts: dict[int, dict[int, _ObjPrompt]],
                 direction: str) -> tuple[int, dict[int, dict[int, _Result]], list[int]]:
    """Track all prompted objects through ``source``; returns (num_frames, results, obj ids).

    The forward pass starts at the earliest prompted frame, the backward pass at the latest,
    so every object is tracked away from each of its prompts. ``results[t][oid]``: the merged
    result of object ``oid`` on frame ``t`` (see the module docstring; absent = not reached).
    """
    state = predictor.init_state(source)
    _add_prompts(predictor, state, prompts)
    obj_frames: dict[int, list[int]] = {}
    for t, objs in prompts.items():
        for oid in objs:
            obj_frames.setdefault(oid, []).append(t)
    results: dict[int, dict[int, _Result]] = {}
    passes = []
    if direction in ("forward", "both"):
        passes.append(("forward", False, min(prompts)))
    if direction in ("backward", "both"):
        passes.append(("backward", True, max(prompts)))
    for name, reverse, start in passes:
        for t, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=start,
                                                               reverse=reverse):
            t = int(t)
            masks = (logits > 0).reshape(len(obj_ids), *logits.shape[-2:]).cpu().numpy()
            for k, oid in enumerate(obj_ids):
                oid = int(oid)
                near = [p for p in obj_frames.get(oid, []) if (p >= t if reverse else p <= t)]
                if not near:
                    continue  # the object has no prompt on this side of frame t
                dist = min(abs(t - p) for p in near)
                prev = results.get(t, {}).get(oid)
                if prev is not None and prev.dist <= dist:
                    continue  # the forward result is at least as close to a prompt
                score, iou = _quality(predictor, state, t, oid)
                bbox, crop = mask_to_box_and_crop(masks[k])
                results.setdefault(t, {})[oid] = _Result(bbox, crop, score, iou, name, dist)
    n = int(state.num_frames) if hasattr(state, "num_frames") else int(state["num_frames"])
    if hasattr(predictor, "reset_state"):
        predictor.reset_state(state)
    return n, results, sorted(obj_frames)


def to_frame_detections(results: dict[int, _Result], meta: dict[int, dict[str, Any]],
                        obj_ids: Sequence[int], lost_threshold: float = 0.0) -> Any:
    """One frame's merged results -> ``Detections`` (visible objects) with ``lost`` ids."""
    import fiftyone as fo

    dets, lost = [], []
    for oid in obj_ids:
        r = results.get(oid)
        visible = r is not None and r.crop.size > 0 and r.crop.any() and not (r.score <= lost_threshold)
        if not visible:
            lost.append(int(oid))
            continue
        dets.append(fo.Detection(label=meta.get(oid, {}).get("label"), bounding_box=r.bbox,
                                 mask=r.crop, index=int(oid), object_score=r.score,
                                 predicted_iou=r.iou, direction=r.direction))
    return fo.Detections(detections=dets, lost=lost)


def track(
    view: Any,
    prompt_field: str = "frames.detections",
    label_field: str | None = None,
    direction: str = "both",
    model: str | ModelSpec | None = None,
    checkpoint: str | None = "demo",
    device: str | None = None,
    sequence_by: str | None = None,
    order_by: str = "filepath",
    lost_threshold: float = 0.0,
    overwrite: bool = False,
    progress: _resume.ProgressFn | None = None,
    executor: Any = None,
    workers: int | None = None,
    memory_mode: str = "sam2",
) -> dict[str, Any]:
    """Track the objects prompted in ``prompt_field`` through each video of ``view``.

    Args:
        view: a video collection, or an image collection treated as image sequences.
        prompt_field: ``Detections`` / ``Keypoints`` prompts; a frame field for videos.
        label_field: output ``Detections`` field (default ``"frames.sam2"`` for videos,
            ``"sam2_track"`` for image sequences).
        direction: ``"forward"``, ``"backward"`` or ``"both"``.
        model, checkpoint, device: see :class:`~fiftyone_sam2._models.ModelSpec`.
        sequence_by: image collections: field whose value names the sequence of a sample
            (None: the whole view is one sequence).
        order_by: image collections: field giving frame order within a sequence.
        lost_threshold: an object whose object-score logit is <= this is reported lost.
        overwrite, progress: see :func:`fiftyone_sam2.segment`.
        executor, workers: ``executor="ray", workers=N`` tracks shards of the view on N Ray
            workers (one video, or one whole image sequence, per unit; see
            :mod:`fiftyone_sam2._distributed`); None: here.
        memory_mode: the tracking mode: ``"sam2"`` (upstream's memory), ``"samurai"``
            (motion-aware), ``"distractor"`` (distractor-aware memory) or ``"long"`` (memory
            pathways); see ``docs/tracking_modes.md``.

    Returns:
        The run summary (processed / skipped / failed counts, first errors).
    """
    import fiftyone as fo

    spec = model if isinstance(model, ModelSpec) else ModelSpec(model or DEFAULT_MODEL, checkpoint, device)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, received {direction!r}")
    from sam2_plugins.predictors.video.modes import make_policy

    make_policy(memory_mode)  # an unknown mode fails here, listing the valid ones
    is_video = require_media(view, ("video", "image"), "track") == "video"
    if is_video:
        label_field = label_field or "frames.sam2"
        if not split_field(prompt_field)[0] or not split_field(label_field)[0]:
            raise ValueError(f"for videos the prompt and label fields must be frame fields "
                             f"('frames.<name>'), received {prompt_field!r} and {label_field!r}")
    else:
        label_field = label_field or "sam2_track"
        if split_field(prompt_field)[0] or split_field(label_field)[0]:
            raise ValueError("for image sequences the prompt and label fields must be sample fields")
    require_label_field(view, prompt_field, (fo.Detections, fo.Keypoints), "prompt field")
    if label_field == prompt_field and not overwrite:
        raise _resume.FieldExistsError(f"label field {label_field!r} is the prompt field; "
                                       "choose another name or set overwrite=True")
    if view.count() == 0:
        raise ValueError("the collection is empty")
    if view.count(prompt_field + (".detections" if view.get_field(prompt_field).document_type
                                  is fo.Detections else ".keypoints")) == 0:
        raise ValueError(f"prompt field {prompt_field!r} holds no prompts in this collection")
    units = None
    if is_video:
        empty = [s.filepath for s in view.select_fields() if video_frame_count(s) == 0]
        if empty:
            raise ValueError(f"{len(empty)} video(s) have no frames: {empty[:5]}")
    else:
        if sequence_by is not None and not view.has_field(sequence_by):
            raise ValueError(f"sequence_by field {sequence_by!r} does not exist")
        if order_by and not view.has_field(order_by):
            raise ValueError(f"order_by field {order_by!r} does not exist")
        units = _sequences(view, sequence_by, order_by)
    if wants_workers(executor, workers):
        return run_sharded("track", view, dict(
            prompt_field=prompt_field, label_field=label_field, direction=direction, model=spec,
            sequence_by=sequence_by, order_by=order_by, lost_threshold=lost_threshold, overwrite=overwrite,
            memory_mode=memory_mode),
            executor, workers, progress, units=units)
    sam = load_model(spec)
    from sam2_plugins import SAM2VideoPredictor

    predictor = SAM2VideoPredictor(sam, memory_mode=memory_mode)
    settings = {**spec.settings(), "prompt_field": prompt_field, "direction": direction,
                "memory_mode": memory_mode,
                "sequence_by": sequence_by, "order_by": order_by if not is_video else None,
                "lost_threshold": float(lost_threshold)}
    run = _resume.start_run(view, label_field, "track", settings, fo.Detections, overwrite)
    name = split_field(label_field)[1]
    pname = split_field(prompt_field)[1]

    def compute_video(samples: Sequence[Any]) -> list[Any]:
        (s,) = samples
        from ._media import open_video

        source = open_video(s.filepath)
        try:
            h, w = source.shape[1], source.shape[2]
            labels = [(fn - 1, fr[pname]) for fn, fr in s.frames.items()]
            prompts, meta = collect_prompts(labels, w, h)
            if not prompts:
                return [{}]
            n, res, oids = run_tracking(predictor, source, prompts, direction)
            frames = {t: to_frame_detections(res.get(t, {}), meta, oids, lost_threshold) for t in range(n)}
            count_track(run.counts, frames, prompts)
            return [{t + 1: dets for t, dets in frames.items()}]
        finally:
            source.close()

    def write_video(sample: Any, result: dict[int, Any]) -> None:
        for fn in list(sample.frames.keys()):
            if fn not in result:
                sample.frames[fn][name] = None  # clears a partial earlier attempt
        for fn, dets in result.items():
            sample.frames[fn][name] = dets

    def compute_sequence(samples: Sequence[Any]) -> list[Any]:
        paths = [s.filepath for s in samples]
        from sam2_plugins.io import open_frames

        source = open_frames(paths)
        h, w = source.shape[1], source.shape[2]
        prompts, meta = collect_prompts([(i, s[pname]) for i, s in enumerate(samples)], w, h)
        if not prompts:
            return [fo.Detections(detections=[]) for _ in samples]
        n, res, oids = run_tracking(predictor, source, prompts, direction)
        frames = [to_frame_detections(res.get(t, {}), meta, oids, lost_threshold) for t in range(n)]
        count_track(run.counts, dict(enumerate(frames)), prompts)
        return frames

    def write_image(sample: Any, result: Any) -> None:
        sample[label_field] = result

    if is_video:
        _resume.execute(view, run, compute_video, write_video, batch_size=1, progress=progress)
    else:
        _resume.execute(view, run, compute_sequence, write_image, progress=progress, units=units)
    return run.summary()


def _sequences(view: Any, sequence_by: str | None, order_by: str | None) -> list[list[str]]:
    """Sample ids grouped into sequences, each in frame order."""
    ids = view.values("id")
    keys = view.values(order_by) if order_by else list(range(len(ids)))
    groups = view.values(sequence_by) if sequence_by else [None] * len(ids)
    seqs: dict[Any, list[tuple[Any, str]]] = {}
    for i, k, g in zip(ids, keys, groups):
        seqs.setdefault(g, []).append((k, i))
    return [[i for _, i in sorted(v, key=lambda kv: (kv[0] is None, kv[0]))] for _, v in sorted(
        seqs.items(), key=lambda kv: str(kv[0]))]
