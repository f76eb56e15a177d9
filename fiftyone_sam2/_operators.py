"""The App operators: thin wrappers that read a form and call the plain functions in
:mod:`fiftyone_sam2.api`.

Every operator can run immediately (small views) or delegated (``fiftyone delegated launch``),
reports progress with ``ctx.set_progress``, and raises ``ValueError`` / ``TypeError`` with a
plain message for bad input before anything is written (the executor puts the message in the
result's ``error_message``).
"""

from __future__ import annotations

from typing import Any

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import api
from ._fields import field_exists
from ._forms import execution_inputs, field_choice, model_inputs, model_spec, output_inputs
from ._resume import runs


def _new_name(ctx: Any, base: str, kind: str, frames: bool = False) -> str:
    """Default output field: an unfinished run of ``kind`` (to resume it), else a fresh name."""
    prefix = "frames." if frames else ""
    for field, rec in sorted(runs(ctx.dataset).items(), key=lambda kv: kv[1].get("updated", "")):
        if rec.get("kind") == kind and not rec.get("completed") and field.startswith(prefix):
            return field
    name, i = prefix + base, 1
    while field_exists(ctx.dataset, name):
        i += 1
        name = f"{prefix}{base}_{i}"
    return name


def _distributed_task(ctx: Any) -> tuple[int, int] | None:
    """``(task index, task count)`` where FiftyOne runs this operation as one of several
    distributed tasks (FiftyOne Enterprise; the open-source build never does), else None."""
    count = getattr(ctx, "num_distributed_tasks", None) or ctx.request_params.get("num_distributed_tasks")
    if not count or int(count) <= 1:
        return None
    index = next((v for v in (getattr(ctx, "distributed_task_index", None),
                              ctx.request_params.get("distributed_task_index"),
                              ctx.request_params.get("task_index")) if v is not None), None)
    if index is None:
        raise ValueError(f"FiftyOne split this operation into {count} tasks but did not say which one this is")
    return int(index), int(count)


def _target(ctx: Any) -> Any:
    view = ctx.target_view()
    count = int(ctx.params.get("shard_count") or 1)
    task = _distributed_task(ctx)
    if task is not None:  # FiftyOne's distributed tasks are the same shards as shard_index / shard_count
        if count > 1:
            raise ValueError("choose either shards (shard_count) or FiftyOne's distributed execution, not both")
        return api.shard(view, task[0], task[1])
    if count > 1:
        view = api.shard(view, int(ctx.params.get("shard_index") or 0), count)
    return view


def _workers(ctx: Any) -> dict[str, Any]:
    """``executor`` / ``workers`` from the form: Ray workers for this run (docs/ray.md)."""
    ex = ctx.params.get("executor") or None
    return {"executor": None if ex == "inprocess" else ex,
            "workers": int(ctx.params["workers"]) if ex == "ray" and ctx.params.get("workers") else None}


def _progress(ctx: Any):
    def report(fraction: float, label: str) -> None:
        try:
            ctx.set_progress(progress=fraction, label=label)
        except Exception:  # progress is best-effort (e.g. a context without a store)
            pass
    return report


def _finish(ctx: Any, result: dict[str, Any]) -> dict[str, Any]:
    if not ctx.delegated:
        ctx.trigger("reload_dataset")
    return result


def _summary_output(ctx: Any) -> Any:
    outputs = types.Object()
    for key in ("processed", "skipped", "failed"):
        outputs.int(key, label=key.capitalize())
    # what the results look like (see fiftyone_sam2._summary); only the keys of the run's kind appear
    for key, label in (("empty_masks", "Empty masks"), ("tiny_masks", "Tiny masks"),
                       ("images_without_masks", "Images without any mask"),
                       ("lost_on_prompt", "Objects lost on their own prompt frame"),
                       ("lost_object_frames", "Lost object-frames")):
        outputs.int(key, label=label)
    outputs.list("warnings", types.String(), label="Warnings")
    outputs.list("errors", types.String(), label="First errors")
    return types.Property(outputs)


#: How FiftyOne may split a delegated operation into parallel tasks (it takes effect where
#: FiftyOne enables distributed execution: Enterprise; the open-source build forces it off).
#: Each task labels one shard (:func:`_distributed_task`).
DISTRIBUTED_TASKS = {"min_distributed_tasks": 2, "max_distributed_tasks": None, "recommended_distributed_tasks": 4}


def _config(name: str, label: str, description: str, distributed: bool = True) -> foo.OperatorConfig:
    return foo.OperatorConfig(
        name=name, label=label, description=description, dynamic=True,
        allow_immediate_execution=True, allow_delegated_execution=True,
        default_choice_to_delegated=False, allow_distributed_execution=distributed,
        **(DISTRIBUTED_TASKS if distributed else {}))


class _Base(foo.Operator):
    def resolve_delegation(self, ctx: Any) -> bool | None:
        d = ctx.params.get("delegate")
        return None if d is None else bool(d)

    def resolve_execution_options(self, ctx: Any) -> Any:
        """FiftyOne's options plus the distributed task counts this operator accepts."""
        opts = super().resolve_execution_options(ctx)
        if not getattr(self.config, "kwargs", {}).get("min_distributed_tasks"):
            return opts
        from fiftyone.operators.executor import ExecutionOptions

        return ExecutionOptions(
            allow_immediate_execution=opts.allow_immediate_execution,
            allow_delegated_execution=opts.allow_delegated_execution,
            default_choice_to_delegated=opts.default_choice_to_delegated,
            allow_distributed_execution=opts.allow_delegated_execution, **DISTRIBUTED_TASKS)

    def resolve_output(self, ctx: Any) -> Any:
        return _summary_output(ctx)


class AutoLabel(_Base):
    """Automatic mask generator -> Detections with masks (and an optional id map)."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _config("sam2_auto_label", "SAM 2: auto-label images",
                       "Segment everything with SAM 2's automatic mask generator")

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        if ctx.view.media_type != "image":
            inputs.view("media", types.Warning(label="Images only", description="Auto-labeling needs an image view"))
        output_inputs(ctx, inputs, _new_name(ctx, "sam2_auto", "auto_label"))
        inputs.str("semantic_field", label="Also write an instance-id Segmentation field (optional)")
        inputs.str("label", default="object", label="Class label for the masks")
        inputs.int("points_per_side", default=16, label="Points per side")
        inputs.float("pred_iou_thresh", default=0.8, label="Predicted IoU threshold")
        inputs.float("stability_score_thresh", default=0.95, label="Stability threshold")
        inputs.int("points_per_batch", default=64, label="Points per batch")
        model_inputs(ctx, inputs, batch=False)
        execution_inputs(ctx, inputs)
        return types.Property(inputs, view=types.View(label="SAM 2: auto-label images"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        p = ctx.params
        amg = {k: p.get(k) for k in ("points_per_side", "pred_iou_thresh", "stability_score_thresh",
                                     "points_per_batch") if p.get(k) is not None}
        result = api.auto_label(
            _target(ctx), label_field=p.get("label_field") or "sam2_auto",
            semantic_field=p.get("semantic_field") or None, model=model_spec(p),
            label=p.get("label", "object"), overwrite=bool(p.get("overwrite")),
            progress=_progress(ctx), **_workers(ctx), **amg)
        return _finish(ctx, result)


class Segment(_Base):
    """Boxes / points from existing labels -> instance masks on the same objects."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _config("sam2_segment", "SAM 2: segment from prompts",
                       "Masks for the boxes / keypoints of an existing label field")

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        field_choice(ctx, inputs, "prompt_field", (fo.Detections, fo.Keypoints), "Prompts",
                     "Detections (boxes) or Keypoints (positive points), one object each", frames=False)
        field_choice(ctx, inputs, "negative_field", (fo.Keypoints,), "Negative points (optional)",
                     "Keypoints applied to the object with the same index / label, or to all",
                     frames=False, required=False)
        output_inputs(ctx, inputs, _new_name(ctx, "sam2", "segment"))
        inputs.bool("multimask_output", default=False, label="Best of 3 masks")
        model_inputs(ctx, inputs)
        execution_inputs(ctx, inputs)
        return types.Property(inputs, view=types.View(label="SAM 2: segment from prompts"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        p = ctx.params
        result = api.segment(
            _target(ctx), prompt_field=p.get("prompt_field"), label_field=p.get("label_field") or "sam2",
            negative_field=p.get("negative_field") or None, model=model_spec(p),
            batch_size=int(p.get("batch_size") or 1), multimask_output=bool(p.get("multimask_output")),
            overwrite=bool(p.get("overwrite")), progress=_progress(ctx), **_workers(ctx))
        return _finish(ctx, result)


class Track(_Base):
    """Prompts on any frames -> masks on every frame, forward / backward / both."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _config("sam2_track", "SAM 2: track objects in videos",
                       "Propagate boxes / points / masks through videos or image sequences")

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        video = ctx.view.media_type == "video"
        field_choice(ctx, inputs, "prompt_field", (fo.Detections, fo.Keypoints), "Prompts",
                     "Boxes, masks or points on any frames; objects are matched by 'index'",
                     frames=video)
        if not video:
            inputs.str("sequence_by", label="Sequence field (optional)",
                       description="Images sharing this field's value form one sequence; "
                                   "empty = the whole view is one sequence")
            inputs.str("order_by", default="filepath", label="Frame order field")
        output_inputs(ctx, inputs, _new_name(ctx, "sam2", "track", frames=video))
        radio = types.RadioGroup()
        for d in ("both", "forward", "backward"):
            radio.add_choice(d, label=d)
        inputs.str("direction", default="both", label="Direction", view=radio)
        modes = types.Dropdown()
        for m, what in (("sam2", "SAM 2 (upstream memory)"), ("samurai", "SAMURAI: motion-aware"),
                        ("distractor", "DAM4SAM: distractor-aware memory"), ("long", "SAM2Long: 3 memory pathways")):
            modes.add_choice(m, label=what)
        inputs.enum("memory_mode", modes.values(), default="sam2", label="Tracking mode", view=modes,
                    description="How the memory is kept (docs/tracking_modes.md); 'long' costs about 3x")
        inputs.float("lost_threshold", default=0.0, label="Lost if object score <=")
        model_inputs(ctx, inputs, batch=False)
        execution_inputs(ctx, inputs)
        return types.Property(inputs, view=types.View(label="SAM 2: track objects"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        p = ctx.params
        video = ctx.view.media_type == "video"
        result = api.track(
            _target(ctx), prompt_field=p.get("prompt_field"),
            label_field=p.get("label_field") or ("frames.sam2" if video else "sam2_track"),
            direction=p.get("direction") or "both", model=model_spec(p),
            sequence_by=p.get("sequence_by") or None, order_by=p.get("order_by") or "filepath",
            lost_threshold=float(p.get("lost_threshold") or 0.0),
            overwrite=bool(p.get("overwrite")), progress=_progress(ctx),
            memory_mode=p.get("memory_mode") or "sam2", **_workers(ctx))
        return _finish(ctx, result)


class Evaluate(_Base):
    """J&F (videos) or mIoU (images) of a prediction field against ground truth."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _config("sam2_evaluate", "SAM 2: evaluate masks (J&F / mIoU)",
                       "DAVIS J&F for videos, mIoU for images, per sample and for the dataset",
                       distributed=False)  # one summary over the whole view

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        video = ctx.view.media_type == "video"
        field_choice(ctx, inputs, "pred_field", (fo.Detections,), "Predictions", "", frames=video)
        field_choice(ctx, inputs, "gt_field", (fo.Detections,), "Ground truth", "", frames=video)
        radio = types.RadioGroup()
        for m in ("auto", "jf", "miou"):
            radio.add_choice(m, label=m)
        inputs.str("method", default="auto", label="Metric", view=radio)
        inputs.str("eval_key", default="sam2_eval", label="Evaluation key")
        inputs.bool("overwrite", default=False, label="Overwrite an evaluation with this key")
        inputs.int("worst", default=10, label="Then show this many worst samples (0 = no)")
        execution_inputs(ctx, inputs)
        return types.Property(inputs, view=types.View(label="SAM 2: evaluate"))

    def resolve_output(self, ctx: Any) -> Any:
        outputs = types.Object()
        for key in ("J", "F", "JF", "mIoU"):
            outputs.float(key, label=key)
        outputs.int("objects", label="Objects")
        return types.Property(outputs)

    def execute(self, ctx: Any) -> dict[str, Any]:
        p = ctx.params
        key = p.get("eval_key") or "sam2_eval"
        view = _target(ctx)
        summary = api.evaluate(view, p.get("pred_field"), p.get("gt_field"),
                               method=p.get("method") or "auto", eval_key=key,
                               overwrite=bool(p.get("overwrite")), progress=_progress(ctx))
        k = int(p.get("worst") or 0)
        if k > 0 and not ctx.delegated:
            try:
                ctx.ops.set_view(view=api.worst_samples(view, key, k))
            except Exception:  # no App session (e.g. a script): the summary is what matters
                pass
        return _finish(ctx, summary)


OPERATORS = (AutoLabel, Segment, Track, Evaluate)
