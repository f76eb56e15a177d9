"""Write the demo model's card (Markdown) from the run summary ``train_demo`` saves.

    python -m lightning_module.model_card sam2_plugins/weights/sam2.1_hiera_nano_demo.pt.json \
        > sam2_plugins/weights/MODEL_CARD.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Union

__all__ = ["render_model_card", "main"]


def _fmt(d: Dict[str, Any], k: str) -> str:
    v = d.get(k)
    return "n/a" if v is None else f"{float(v):.3f}"


def _stages(s: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The run and the runs it started from (``--init``), oldest first."""
    chain = [s]
    while isinstance(chain[-1].get("init_summary"), dict):
        chain.append(chain[-1]["init_summary"])
    return chain[::-1]


def _stage_lines(stages: List[Dict[str, Any]]) -> List[str]:
    if len(stages) < 2:
        return []
    out = []
    for i, st in enumerate(stages, 1):
        a, t = st.get("args", {}), st.get("trained", {})
        first = int(a.get("image_first_steps") or 0)
        if first >= int(st.get("steps", 0)) > 0:
            what = "click/box-prompted images only"
        elif not a.get("image_weight"):
            what = f"clips of {a.get('num_frames')} frames only"
        else:
            what = (f"clips of {a.get('num_frames')} frames and images (weight "
                    f"{a.get('image_weight')} vs 3)")
            if first:
                what = f"images only for the first {first} steps, then {what}"
        frozen = a.get("freeze") or ("all but " + a["train_only"] if a.get("train_only") else "")
        extra = (f", frozen: {frozen}" if frozen else "") + (
            f", IoU-loss weight {a['iou_weight']}" if a.get("iou_weight", 1.0) != 1.0 else "")
        if a.get("vision_lr") is not None:
            extra += f", image-encoder lr {a['vision_lr']}"
        if a.get("ema"):
            extra += f", weights averaged (EMA, decay {a['ema']})"
        if st.get("threads") and st.get("device", "cpu") == "cpu":
            n = int(st["threads"])
            extra += f", {n} CPU thread{'s' if n > 1 else ''}"
        out.append(f"  - stage {i}: {st.get('steps')} steps, {float(st.get('train_seconds', 0)) / 60:.1f} "
                   f"min: {what}, batch {a.get('batch_size')}, lr {a.get('lr')}{extra}; "
                   f"after it: J&F {_fmt(t, 'J&F')}, 1-click mIoU {_fmt(t, 'mIoU_1click')}")
    return out


def render_model_card(summary: Union[Dict[str, Any], str, Path]) -> str:
    """Markdown for the shipped demo checkpoint, from ``train_demo``'s JSON summary."""
    if not isinstance(summary, dict):
        summary = json.loads(Path(summary).read_text())
    s = summary
    a = s.get("args", {})
    stages = _stages(s)
    # the untrained model's scores come from the first stage (later stages start from a
    # trained checkpoint, so their own "baseline" is that checkpoint)
    base, trained = stages[0].get("baseline", {}), s.get("trained", {})
    minutes = sum(float(st.get("train_seconds", 0.0)) for st in stages) / 60.0
    steps = sum(int(st.get("steps", 0)) for st in stages)
    lines = [
        "# Model card: `sam2.1_hiera_nano_demo.pt`",
        "",
        "The small SAM 2.1 model that ships with sam2-plugins as the offline default (README main "
        "command, napari and FiftyOne plugins when no other checkpoint is chosen). It is the "
        "`sam2.1_hiera_nano` configuration (same blocks as SAM 2.1, narrower, 256² input, "
        "2.8 M parameters) **trained from scratch on procedurally generated synthetic videos and "
        "images only**. It is a demonstration and test model: it segments and tracks simple "
        "textured shapes; it is not a substitute for Meta's checkpoints on real images.",
        "",
        "## File",
        f"- format: official `{{\"model\": state_dict}}`, float32, {s.get('size_mb', '?')} MB; "
        "loads with `build_sam2(\"sam2.1_hiera_nano\", checkpoint=\"demo\")` (strict).",
        "",
        "## Training data",
        "- `sam2_plugins.evaluation.synthetic.make_video`: 1-3 (videos) / 1-4 (images) textured "
        "moving shapes with 0-2 look-alike distractors, frame sizes 96-320 px, squashed to 256²; "
        f"clips of {a.get('num_frames', 8)} frames, plus 1-frame images (sampling weight "
        f"{a.get('image_weight', 1.0)} vs 3 for clips). Seeds 0 .. 10⁷ (clips) and 4·10⁸ .. "
        "(images); nothing else.",
        "- augmentation: horizontal flip, affine (±25° rotation, ±20° shear), colour jitter, 5 % "
        "grey, the same draw for every frame of a clip.",
        "",
        "## Recipe (lightning_module)",
        "- SAM 2's training loss (20 × focal + dice + IoU L1 + object-score BCE; lowest-loss "
        "mask supervised; summed over frames and correction steps) and its prompt simulation: "
        "mask prompt (p 0.5) or click / noisy box on 1-2 conditioning frames, "
        f"{a.get('corrections', '?')} corrective clicks on 1-2 frames with the previous "
        "logits as mask prompt, clips through the memory path.",
        f"- AdamW lr {a.get('lr')}, weight decay {a.get('weight_decay')}, warm-up "
        f"{a.get('warmup_steps')} steps then cosine to 1/10 over the run, gradient clip 1.0, "
        f"batch {a.get('batch_size')} clips (≤ 3 objects each), precision {s.get('precision')}"
        + (f"; the file holds the exponential moving average of the weights (decay {a['ema']})"
           if a.get("ema") else "") + ".",
        f"- {steps} steps in {minutes:.1f} min on {s.get('device')} "
        f"(torch {s.get('torch')})" + (f", in {len(stages)} stages (below)." if len(stages) > 1
                                        else "."),
        *_stage_lines(stages),
        "",
        "## Evaluation (held-out synthetic videos, seeds ≥ 9·10⁸, never trained on)",
        f"{a.get('val_clips', '?')} clips of 8 frames at 192×256 (1-3 objects, 1 distractor), "
        "scored at 256²:",
        "",
        "| metric | untrained nano | this model |",
        "|---|---|---|",
        f"| J&F, first-frame mask prompt (DAVIS protocol: first and last frames not scored) | "
        f"{_fmt(base, 'J&F')} | {_fmt(trained, 'J&F')} |",
        f"| J | {_fmt(base, 'J')} | {_fmt(trained, 'J')} |",
        f"| F | {_fmt(base, 'F')} | {_fmt(trained, 'F')} |",
        f"| 1-click mIoU on frame 0 (centre click) | {_fmt(base, 'mIoU_1click')} | "
        f"{_fmt(trained, 'mIoU_1click')} |",
        "",
        "## Reproduce",
        "```",
        *[st.get("command", "python -m lightning_module.train_demo") for st in stages],
        "```",
        "With `--max-minutes` the run is time-boxed, so the number of steps (and the scores) "
        "depend on the machine's speed and load; precision and data-loader timing change "
        "results slightly as well.",
        "",
        "## Limitations",
        "- Synthetic shapes only: expect poor masks on natural or microscopy images.",
        "- 256² input: fine structures of large frames are lost.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m lightning_module.model_card SUMMARY.json")
    sys.stdout.write(render_model_card(argv[0]))


if __name__ == "__main__":
    main()
