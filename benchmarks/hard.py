"""``python -m benchmarks vos --dataset hard [--memory-mode sam2,samurai,distractor,long]``.

Tracking modes compared side by side on the hard-case benchmark
(:mod:`sam2_plugins.evaluation.hard`: look-alike distractors, full occlusion, fast motion, shot
cuts, thin objects, crowds) and on ordinary synthetic clips (the demo model's held-out clips),
in one run and one report. Each video is tracked forward from its first-frame GT masks (the
"mask" prompt of the semi-supervised protocol) and scored with DAVIS J&F (first and last frames
not scored). Per category and mode the report gives J&F, identity switches (object-frames whose
predicted mask covers more of another object-like shape than of the object, over all tracked
frames), shot cuts flagged / missed / falsely flagged, and seconds per frame. Outputs:
``report.json`` (raw, per video), ``report.md`` (tables), ``hard_jf.png`` and
``hard_switches.png`` (per category per mode), and with ``--results-json`` a copy of the raw
JSON (for ``benchmarks/results/``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

__all__ = ["run_hard_command", "ordinary_clips", "track_video"]

HELD_OUT_SEED = 900_000_000  # the demo model's validation clips (lightning_module.train_demo.VAL_SEED)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ordinary_clips(count: int, num_frames: int = 8) -> List[Any]:
    """The demo model's held-out clips, as its training run draws them: seeds 9e8 + i, 1-3
    objects, 1 distractor, 192 x 256 (``num_frames`` 8 as there)."""
    from sam2_plugins.evaluation.hard import HardVideo
    from sam2_plugins.evaluation.synthetic import make_video

    out = []
    for i in range(count):
        seed = HELD_OUT_SEED + i
        pick = np.random.default_rng([seed, 12345])
        k = int(pick.integers(1, 3, endpoint=True))
        frames, masks = make_video(num_frames, 192, 256, k, seed, num_distractors=1)
        out.append(HardVideo(f"ordinary-{i:03d}", "ordinary", frames, masks.astype(np.int32),
                             np.zeros_like(masks, dtype=np.int32)))
    return out


def track_video(predictor: Any, video: Any) -> Dict[str, Any]:
    """Track one video forward from its frame-0 GT masks; returns label maps, per-object
    identity switches, the frames flagged as cuts, and the tracking seconds."""
    from sam2_plugins.evaluation.hard import identity_switches

    t0 = time.perf_counter()
    state = predictor.init_state(video.frames)
    ids = [int(k) for k in np.unique(video.masks[0]) if k > 0]
    for k in ids:
        predictor.add_new_mask(state, 0, k, video.masks[0] == k)
    T = len(video.frames)
    labels = np.zeros(video.masks.shape, np.uint8)
    switches = {k: 0 for k in ids}
    for f, obj_ids, logits in predictor.propagate_in_video(state):
        masks = (logits[:, 0] > 0).cpu().numpy()
        for i in sorted(range(len(obj_ids)), key=lambda j: obj_ids[j], reverse=True):
            labels[f][masks[i]] = obj_ids[i]
        if f > 0:
            for i, k in enumerate(obj_ids):
                others = np.where((video.masks[f] > 0) & (video.masks[f] != k), 1000 + video.masks[f], video.others[f])
                switches[int(k)] += int(identity_switches(masks[i], video.masks[f] == k, others))
    seconds = time.perf_counter() - t0
    flagged = sorted({q.frame_idx for q in predictor.quality(state).all() if q.cut})
    return {"labels": labels, "switches": switches, "flagged": flagged, "seconds": seconds,
            "frames": T, "object_frames": len(ids) * (T - 1)}


def _score(video: Any, labels: np.ndarray) -> Any:
    from sam2_plugins.evaluation.sequence import evaluate_sequence

    return evaluate_sequence(list(video.masks.astype(np.uint8)), list(labels), name=video.name)


def _summary(rows: Sequence[Dict[str, Any]], scores: Sequence[Any]) -> Dict[str, Any]:
    from sam2_plugins.evaluation.sequence import summarize

    s = summarize(list(scores))
    frames = sum(r["frames"] for r in rows)
    cuts = sum(len(r["cuts"]) for r in rows)
    hit = sum(len(set(r["cuts"]) & set(r["flagged"])) for r in rows)
    return {"J&F": s["J&F-Mean"], "J": s["J-Mean"], "F": s["F-Mean"], "videos": len(rows),
            "identity_switches": sum(sum(r["switches"].values()) for r in rows),
            "object_frames": sum(r["object_frames"] for r in rows),
            "cuts": cuts, "cuts_flagged": hit,
            "false_cut_flags": sum(len(set(r["flagged"]) - set(r["cuts"])) for r in rows),
            "frames": frames, "seconds_per_frame": sum(r["seconds"] for r in rows) / max(frames, 1)}


def run_hard_command(args: Any) -> Dict[str, Any]:
    """Run every requested mode on the hard videos and the ordinary clips; write the report."""
    import torch

    from sam2_plugins import SAM2VideoPredictor
    from sam2_plugins.evaluation.hard import CATEGORIES, hard_videos
    from sam2_plugins.predictors.video.modes import make_policy

    from .report import run_metadata, write_json
    from .runs import MODEL_ALIASES, _dtype_arg, load_bench_model

    modes = [m.strip() for m in str(args.memory_mode).split(",") if m.strip()]
    for m in modes:
        make_policy(m)  # unknown names fail here, before any work
    if len(set(modes)) != len(modes):
        raise ValueError(f"--memory-mode lists a mode twice: {modes}")
    per = int(args.videos_per_category)
    cats = list(CATEGORIES) if not args.categories else [c for c in args.categories.split(",") if c]
    t_gen = time.perf_counter()
    videos = hard_videos(per, args.seed, cats, num_frames=args.max_frames or 64)
    videos += ordinary_clips(int(args.ordinary_clips))
    _log(f"hard: {len(videos)} videos generated in {time.perf_counter() - t_gen:.0f} s; modes {modes}")
    model, used = load_bench_model(args.model, args.checkpoint, args.device)
    per_mode: Dict[str, Any] = {}
    for mode in modes:
        predictor = SAM2VideoPredictor(model, dtype=_dtype_arg(args.dtype), memory_mode=mode)
        rows, scores = [], []
        for v in videos:
            r = track_video(predictor, v)
            sc = _score(v, r.pop("labels"))
            scores.append(sc)
            jf = float(np.mean([(sc.J[k].mean() + sc.F[k].mean()) / 2 for k in sc.object_ids]))
            rows.append(dict(r, name=v.name, category=v.category, cuts=list(v.cuts), jf=jf, info=v.info))
        cat_rows = {c: [(r, s) for r, s in zip(rows, scores) if r["category"] == c] for c in cats + ["ordinary"]}
        summary = {c: _summary([r for r, _ in rs], [s for _, s in rs]) for c, rs in cat_rows.items() if rs}
        hard_rs = [(r, s) for r, s in zip(rows, scores) if r["category"] != "ordinary"]
        summary["hard (all)"] = _summary([r for r, _ in hard_rs], [s for _, s in hard_rs])
        policy = predictor.policy
        per_mode[mode] = {"summary": summary, "videos": rows,
                          "params": policy.params() if hasattr(policy, "params") else {}}
        _log(f"  {mode}: " + "  ".join(f"{c} {v['J&F']:.3f}" for c, v in summary.items()))
    out = {"modes": modes, "categories": cats, "per_mode": per_mode}
    meta = run_metadata("vos-hard", MODEL_ALIASES.get(args.model, args.model), used, str(model.device),
                        args.dtype or "fp32", settings={
                            "dataset": "hard", "videos_per_category": per, "seed": args.seed,
                            "frames": args.max_frames or 64, "ordinary_clips": int(args.ordinary_clips),
                            "prompt": "mask (frame 0)", "torch_threads": torch.get_num_threads()})
    meta["results"] = out
    out_dir = Path(args.output_dir)
    write_json(out_dir / "report.json", meta)
    (out_dir / "report.md").write_text(markdown(meta))
    plots(out_dir, meta)
    if getattr(args, "results_json", None):
        write_json(Path(args.results_json), meta)
    return meta


def markdown(meta: Dict[str, Any]) -> str:
    """The side-by-side tables of a hard run."""
    res = meta["results"]
    modes = res["modes"]
    rows = list(res["per_mode"][modes[0]]["summary"])
    base = modes[0]
    lines = [f"# Tracking modes on the hard-case benchmark ({meta.get('model')}, {meta.get('checkpoint')} weights)",
             "", f"settings: {json.dumps(meta.get('settings', {}))}", "",
             "## J&F (difference to the first mode in brackets)", "",
             "| category | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for c in rows:
        vals = []
        for m in modes:
            v = res["per_mode"][m]["summary"][c]["J&F"]
            d = v - res["per_mode"][base]["summary"][c]["J&F"]
            vals.append(f"{v:.3f}" + ("" if m == base else f" ({d:+.3f})"))
        lines.append(f"| {c} | " + " | ".join(vals) + " |")
    lines += ["", "## Identity switches (object-frames; change to the first mode in brackets)", "",
              "| category | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for c in rows:
        vals = []
        for m in modes:
            v = res["per_mode"][m]["summary"][c]["identity_switches"]
            b = res["per_mode"][base]["summary"][c]["identity_switches"]
            rel = "" if m == base or b == 0 else f" ({(v - b) / b:+.0%})"
            vals.append(f"{v}{rel}")
        lines.append(f"| {c} | " + " | ".join(vals) + " |")
    lines += ["", "## Shot cuts flagged (cut category) and false flags (all other frames)", "",
              "| mode | cuts flagged | false flags | frames | seconds / frame |", "|---|---|---|---|---|"]
    for m in modes:
        s = res["per_mode"][m]["summary"]
        false = sum(v["false_cut_flags"] for k, v in s.items() if k != "hard (all)")
        frames = sum(v["frames"] for k, v in s.items() if k != "hard (all)")
        cut = s.get("cut", {"cuts": 0, "cuts_flagged": 0})
        lines.append(f"| {m} | {cut['cuts_flagged']} / {cut['cuts']} | {false} | {frames} | "
                     f"{s['hard (all)']['seconds_per_frame']:.3f} |")
    return "\n".join(lines) + "\n"


def plots(out_dir: Path, meta: Dict[str, Any]) -> List[Path]:
    """Bar charts per category per mode (J&F and identity switches); none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    res = meta["results"]
    modes = res["modes"]
    cats = [c for c in res["per_mode"][modes[0]]["summary"] if c != "hard (all)"]
    paths = []
    for key, fname, label in (("J&F", "hard_jf.png", "J&F"),
                              ("identity_switches", "hard_switches.png", "identity switches (object-frames)")):
        fig, ax = plt.subplots(figsize=(1.4 * len(cats) + 2, 3.6))
        width = 0.8 / len(modes)
        x = np.arange(len(cats))
        for i, m in enumerate(modes):
            vals = [res["per_mode"][m]["summary"][c][key] for c in cats]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=m)
        ax.set_xticks(x)
        ax.set_xticklabels(cats)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.set_title(f"{label} per category and tracking mode")
        fig.tight_layout()
        p = out_dir / fname
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
