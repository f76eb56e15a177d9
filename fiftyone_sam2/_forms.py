"""Form pieces shared by the operators, and turning form params into API arguments.

Every dropdown lists what the dataset actually has (its label fields of the right type),
and a notice explains what is missing when nothing fits.
"""

from __future__ import annotations

from typing import Any

from sam2_plugins.default_model import DEFAULT_MODEL as OPERATOR_DEFAULT_MODEL
from sam2_plugins.default_model import DEMO_LABEL, DEMO_MODEL

from ._fields import field_exists, label_fields
from ._models import ModelSpec, model_names

# The operators' defaults follow the rule of ``sam2_plugins.default_model``: official
# sam2.1_hiera_tiny weights (downloaded once, cached); the shipped demo model is a choice,
# labelled as what it is.
CHECKPOINT_CHOICES = (("download", "Official weights (downloaded once, cached)"),
                      ("demo", f"The shipped {DEMO_LABEL}; any model choice is ignored"),
                      ("path", "Local checkpoint file"),
                      ("none", "Random weights (tests only)"))
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Views up to this many samples default to immediate execution in the App.
SMALL_VIEW = 20


def dropdown(inputs: Any, name: str, choices: list[str], label: str, description: str = "",
             required: bool = True, default: str | None = None) -> None:
    import fiftyone.operators.types as types

    view = types.Dropdown(label=label, description=description)
    for c in choices:
        view.add_choice(c, label=c)
    # str + dropdown view rather than an enum: see field_choice
    inputs.str(name, required=required, default=default, view=view)


def field_choice(ctx: Any, inputs: Any, name: str, types_: tuple, label: str, description: str,
                 frames: bool | None = None, required: bool = True) -> str | None:
    """A dropdown of the target view's fields of ``types_``; a warning when there are none.

    Returns the chosen value (or None)."""
    import fiftyone.operators.types as types

    choices = label_fields(ctx.view, types_, frames=frames)
    if not choices:
        if required:
            inputs.view(f"{name}_missing", types.Warning(
                label=f"No {' / '.join(t.__name__ for t in types_)} field",
                description=f"{label}: this dataset has no field of that type"))
        return None
    # A string with a dropdown view, not an enum: the App still offers only these choices,
    # but a bad value sent from Python reaches our own check, whose message names the
    # field's actual type and the fields that would fit.
    dropdown(inputs, name, choices, label, description, required=required,
             default=choices[0] if required else None)
    return ctx.params.get(name)


def output_inputs(ctx: Any, inputs: Any, default: str, name: str = "label_field",
                  label: str = "Output field") -> None:
    """New-field name plus the overwrite switch; warns when the name is taken."""
    import fiftyone.operators.types as types

    value = ctx.params.get(name) or default
    inputs.str(name, default=default, required=True, label=label,
               description="Results go to a new field by default")
    if value and field_exists(ctx.dataset, value):
        inputs.view(f"{name}_exists", types.Warning(
            label=f"Field {value!r} already exists",
            description="A SAM 2 run of the same kind into it is resumed (done samples are "
                        "skipped); any other field is only written with 'Overwrite' checked"))
    inputs.bool("overwrite", default=False, label="Overwrite",
                description="Allow replacing values of an existing field")


def model_inputs(ctx: Any, inputs: Any, batch: bool = True) -> None:
    import fiftyone.operators.types as types

    dropdown(inputs, "model", model_names(), "Model", "SAM 2 model size", required=False,
             default=OPERATOR_DEFAULT_MODEL)
    radio = types.RadioGroup()
    for value, text in CHECKPOINT_CHOICES:
        radio.add_choice(value, label=text)
    inputs.str("checkpoint", default="download", label="Weights", view=radio)
    if ctx.params.get("checkpoint") == "path":
        inputs.str("checkpoint_path", required=True, label="Checkpoint file",
                   description="Path of a .pt / .safetensors file on the machine that runs the job")
    dropdown(inputs, "device", list(DEVICES), "Device", "auto = cuda > mps > cpu", required=False,
             default="auto")
    if batch:
        inputs.int("batch_size", default=1, label="Batch size", description="Images per model call")


def execution_inputs(ctx: Any, inputs: Any) -> None:
    """Which samples (dataset / current view / selection), delegation and sharding."""
    inputs.view_target(ctx)
    n = len(ctx.target_view()) if ctx.view is not None else 0
    inputs.bool("delegate", default=n > SMALL_VIEW, label="Delegate",
                description="Queue the job for a delegated worker (fiftyone delegated launch) "
                            "instead of running it now")
    inputs.int("shard_count", default=1, label="Shards",
               description="Split the view into this many disjoint parts (one job per part)")
    inputs.int("shard_index", default=0, label="Shard index", description="Which part this job labels")
    inputs.str("executor", default="inprocess", label="Run on", view=_executor_choices(),
               description="here (one process) or Ray workers (pip install 'sam2-plugins[ray]'; docs/ray.md)")
    inputs.int("workers", label="Ray workers", description="empty: one per CPU / GPU of the Ray cluster")


def _executor_choices() -> Any:
    import fiftyone.operators.types as types

    radio = types.RadioGroup()
    for name, label in (("inprocess", "this process"), ("ray", "Ray workers")):
        radio.add_choice(name, label=label)
    return radio


def model_spec(params: dict[str, Any]) -> ModelSpec:
    """Form params -> :class:`ModelSpec` (validated later, before anything is written)."""
    ck = params.get("checkpoint", "download")
    if ck == "demo":  # the demo weights exist for one model only
        device = params.get("device") or "auto"
        return ModelSpec(DEMO_MODEL, "demo", None if device == "auto" else device)
    if ck == "path":
        ck = params.get("checkpoint_path") or ""
        if not ck:
            raise ValueError("choose a checkpoint file (checkpoint_path is empty)")
    elif ck == "none":
        ck = None
    elif ck not in ("demo", "download"):
        raise ValueError(f"unknown checkpoint choice {ck!r}: expected one of "
                         f"{[c for c, _ in CHECKPOINT_CHOICES]}")
    device = params.get("device") or "auto"
    return ModelSpec(params.get("model") or OPERATOR_DEFAULT_MODEL, ck, None if device == "auto" else device)
