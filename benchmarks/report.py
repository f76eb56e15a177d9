"""Benchmark reports: a schema-versioned JSON per run, a Markdown summary, PNG plots, and one HTML
page comparing several runs side by side.

Run JSON (``SCHEMA``)::

    {"schema": "sam2-plugins-benchmark/1", "kind": "vos" | "evaluate" | ..., "created": ISO time,
     "model": name | null, "checkpoint": path | null, "checkpoint_sha256": hex | null,
     "device": str | null, "dtype": str | null, "versions": {...}, "git_commit": str | null,
     "settings": {...}, "results": {...}}

``results`` holds the protocol's numbers (fractions in [0, 1]) including per-sequence values.
NaN is written as ``null``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

__all__ = ["SCHEMA", "run_metadata", "write_json", "write_markdown", "write_plots", "write_report", "render_html"]

SCHEMA = "sam2-plugins-benchmark/1"
REPO = Path(__file__).resolve().parents[1]
PathLike = Union[str, Path]


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _git_commit() -> Optional[str]:
    """The checked-out commit, read from ``.git`` directly (no git process: ``evaluate``
    should start fast); None outside a git checkout or for layouts it does not know."""
    git = REPO / ".git"
    try:
        if git.is_file():  # a worktree / submodule: "gitdir: <path>"
            git = (REPO / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip() or None
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return None


def _sha256(path: PathLike) -> Optional[str]:
    import hashlib

    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> Dict[str, Optional[str]]:
    import platform

    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for mod in ("numpy", "torch", "PIL", "scipy", "av", "sam2_plugins"):
        m = sys.modules.get(mod)  # only report what the run imported: no import cost here
        out[mod] = getattr(m, "__version__", None) if m is not None else None
    return out


def run_metadata(
    kind: str,
    model: Optional[str] = None,
    checkpoint: Optional[PathLike] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    settings: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The common header of every run JSON (see the module docstring)."""
    import platform

    ck = str(checkpoint) if checkpoint is not None else None
    return {
        "schema": SCHEMA,
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "checkpoint": ck,
        "checkpoint_sha256": _sha256(ck) if ck else None,
        "device": device,
        "dtype": dtype,
        "versions": _versions(),
        "git_commit": _git_commit(),
        "machine": platform.machine(),
        "settings": settings or {},
    }


def write_json(path: PathLike, data: Dict[str, Any]) -> Path:
    from sam2_plugins.output_paths import atomic_write_text  # temp file + rename: never half a report

    return atomic_write_text(path, json.dumps(_clean(data), indent=1, allow_nan=False) + "\n")


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_markdown(path: PathLike, run: Dict[str, Any]) -> Path:
    """A human summary: header, global numbers, per-sequence table."""
    res = run.get("results", {})
    lines = [f"# {run.get('kind', 'benchmark')} run", ""]
    for key in ("model", "checkpoint", "device", "dtype", "git_commit", "created"):
        if run.get(key) is not None:
            lines.append(f"- **{key}**: {run[key]}")
    if run.get("settings"):
        lines.append(f"- **settings**: `{json.dumps(_clean(run['settings']))}`")
    lines += ["", "## Results", "", "| metric | value |", "|---|---|"]
    for k, v in res.items():
        if not isinstance(v, (dict, list)):
            lines.append(f"| {k} | {_fmt(v)} |")
    per_seq = res.get("per_sequence")
    if isinstance(per_seq, dict) and per_seq:
        cols = sorted({c for v in per_seq.values() if isinstance(v, dict)
                       for c in v if not isinstance(v[c], (list, dict))})
        lines += ["", "## Per sequence", "", "| sequence | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for s, v in per_seq.items():
            lines.append(f"| {s} | " + " | ".join(_fmt(v.get(c)) for c in cols) + " |")
    lines += _execution_lines(run.get("execution"))
    lines.append("")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines))
    return p


def _execution_lines(ex: Any) -> List[str]:
    """Workers and their throughput of a run on several workers (``--executor ray``)."""
    if not isinstance(ex, dict) or ex.get("executor") in (None, "inprocess"):
        return []
    unit = ex.get("unit", "items")
    lines = ["", "## Execution", "", f"{ex.get('executor')}: {ex.get('workers')} worker(s), start-up "
             f"{_fmt(ex.get('startup_seconds'))} s, wall {_fmt(ex.get('wall_seconds'))} s", "",
             f"| worker | items | failed | {unit} | busy s | {unit}/s |", "|---|---|---|---|---|---|"]
    for w, v in (ex.get("per_worker") or {}).items():
        lines.append(f"| {w} | {v.get('items')} | {v.get('failed')} | {_fmt(v.get('units'))} | "
                     f"{_fmt(v.get('busy_seconds'))} | {_fmt(v.get('units_per_second'))} |")
    if ex.get("retried_items"):
        lines.append(f"\nretried after a worker died: {', '.join(ex['retried_items'])}")
    if ex.get("failed_items"):
        lines.append(f"\nfailed items: {json.dumps(ex['failed_items'])}")
    return lines


def write_plots(out_dir: PathLike, run: Dict[str, Any]) -> List[Path]:
    """PNG plots where the results have the data: J&F per sequence, a curve (J&F vs clicks or
    interacted frames, mIoU vs clicks), speed per model. Returns the files written (none if
    matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = run.get("results", {})
    written: List[Path] = []
    per_seq = res.get("per_sequence")
    if isinstance(per_seq, dict) and per_seq and all("J&F-Mean" in v for v in per_seq.values()):
        names = list(per_seq)
        vals = [per_seq[n]["J&F-Mean"] or 0.0 for n in names]
        fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(names) + 2), 3))
        ax.bar(range(len(names)), vals, color="#4c72b0")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("J&F")
        ax.set_title(f"J&F per sequence ({run.get('model') or ''})")
        fig.tight_layout()
        written.append(out_dir / "jf_per_sequence.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    for key, xlabel in (("mIoU_curve", "clicks"), ("curve", "interacted frames")):
        curve = res.get(key)
        if isinstance(curve, list) and curve:
            fig, ax = plt.subplots(figsize=(4, 3))
            ax.plot(range(1, len(curve) + 1), [c or 0.0 for c in curve], marker="o")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("mIoU" if key == "mIoU_curve" else "J&F")
            ax.set_ylim(0, 1)
            fig.tight_layout()
            written.append(out_dir / f"{key}.png")
            fig.savefig(written[-1], dpi=100)
            plt.close(fig)
    per_mode = res.get("per_mode")
    if isinstance(per_mode, dict) and all(isinstance(v, dict) and v.get("seconds_curve") for v in per_mode.values()):
        fig, ax = plt.subplots(figsize=(4, 3))  # the paper's J&F against simulated annotation time
        for mode, r in per_mode.items():
            ax.plot(r["seconds_curve"], [c or 0.0 for c in r["curve"]], marker="o", label=mode)
        ax.set_xlabel("simulated annotation time per object (s)")
        ax.set_ylabel("J&F")
        ax.set_ylim(0, 1)
        ax.legend()
        fig.tight_layout()
        written.append(out_dir / "jf_vs_annotation_time.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    speed = res.get("per_model")
    if isinstance(speed, dict) and speed:
        names = list(speed)
        fps = [speed[n].get("fps") or 0.0 for n in names]
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.bar(names, fps, color="#55a868")
        ax.set_ylabel("frames / s")
        fig.tight_layout()
        written.append(out_dir / "speed.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written


def write_report(out_dir: PathLike, run: Dict[str, Any]) -> Dict[str, Any]:
    """``report.json``, ``report.md`` and plots in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    return {
        "json": write_json(out_dir / "report.json", run),
        "markdown": write_markdown(out_dir / "report.md", run),
        "plots": write_plots(out_dir, run),
    }


def render_html(runs: Sequence[PathLike], output: PathLike) -> Path:
    """One HTML page with the runs' global numbers side by side (one column per run) and each
    run's plots (from the run's folder) below."""
    loaded = []
    for r in runs:
        p = Path(r)
        if p.is_dir():
            p = p / "report.json"
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"could not read run {p}: {e}") from e
        meta = data.get("metadata")
        if data.get("schema") != SCHEMA and isinstance(meta, dict) and meta.get("schema") == SCHEMA:
            # an ``evaluate`` result file: numbers at the top level, the header under metadata
            data = dict(meta, results={k: v for k, v in data.items() if k != "metadata"})
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{p} is not a {SCHEMA} run file (schema {data.get('schema')!r})")
        loaded.append((p, data))
    if not loaded:
        raise ValueError("no runs given")
    keys: List[str] = []
    for _, d in loaded:
        for k, v in d.get("results", {}).items():
            if not isinstance(v, (dict, list)) and k not in keys:
                keys.append(k)
    head = "".join(f"<th>{html.escape(p.parent.name)}<br><small>{html.escape(str(d.get('kind')))} · "
                   f"{html.escape(str(d.get('model')))}</small></th>" for p, d in loaded)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        + "".join(f"<td>{html.escape(_fmt(d.get('results', {}).get(k)))}</td>" for _, d in loaded) + "</tr>"
        for k in keys
    )
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    imgs = ""
    for p, _ in loaded:
        for png in sorted(p.parent.glob("*.png")):
            try:
                src = png.resolve().relative_to(out.parent.resolve())
            except ValueError:
                src = png.resolve()
            caption = f"{html.escape(p.parent.name)}/{html.escape(png.name)}"
            imgs += (f"<figure><img src='{html.escape(str(src))}' width='380'>"
                     f"<figcaption>{caption}</figcaption></figure>")
    page = (
        "<!doctype html><meta charset='utf-8'><title>sam2-plugins benchmarks</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}figure{display:inline-block}</style>"
        f"<h1>sam2-plugins benchmark runs</h1><table><tr><th>metric</th>{head}</tr>{rows}</table>{imgs}"
    )
    from sam2_plugins.output_paths import atomic_write_text

    return atomic_write_text(out, page)
