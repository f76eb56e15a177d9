"""``python -m benchmarks suite --config CONFIG``: run a list of datasets, one report.

A config (JSON; ``benchmarks/configs/``) names a protocol and its datasets::

    {"name": "...", "protocol": "vos" | "interactive-video" | "interactive-image",
     "defaults": {option: value, ...},
     "datasets": [{"name": "VOST", "path": "{data_root}/VOST", "layout": "vos",
                   "metric": "J", "group": "...", "note": "...", option: value, ...}, ...]}

``path`` may use ``{data_root}`` (``--data-root``, else ``$SAM2_BENCH_DATA``, else ``./data``)
and ``{shared_data}`` (the repository's ``../shared/data``); ``"synthetic"`` generates data.
A dataset whose path does not exist is **skipped with a note**; one that fails is reported
with its error (the report is written, then the command exits with status 2). Options per dataset override ``defaults``:

- vos: ``prompt`` (``"click1,click3,click5,box,mask"``), ``layout`` (davis, vos, sav, youtube,
  mose, lvos), ``lifetime`` (own_video), ``metric`` (``"J&F"``, or ``"J"`` where the dataset's
  toolkit reports J only: VOST), ``sequences``, ``max_sequences``, ``max_frames``;
- interactive-video: ``mode`` (``"offline,online"``), ``max_interacted`` (8),
  ``clicks_per_frame`` (3), ``pause_iou`` (0.75), ``layout``, ``max_sequences``, ``max_frames``;
- interactive-image: ``masks`` / ``images`` (as the command's options), ``max_clicks`` (20),
  ``max_instances``, ``max_instances_per_image``, ``oracle``, ``no_mask_input``.

The report (``report.json``, ``report.md``) has one row per dataset and the **means over the
datasets that ran** (every dataset weighs the same; the paper's averages), per prompt or mode,
and per ``group`` where datasets have one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .datasets import SHARED_DATA
from .report import run_metadata, write_json

__all__ = ["run_suite", "load_config", "PROTOCOLS"]

PROTOCOLS = ("vos", "interactive-video", "interactive-image")
_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "vos": dict(prompt="mask", layout="auto", lifetime="own_video", metric="J&F", sequences=None,
                max_sequences=None, max_frames=None, save_predictions=False, warmup=0),
    "interactive-video": dict(mode="offline,online", max_interacted=8, clicks_per_frame=3, pause_iou=0.75,
                              layout="auto", sequences=None, max_sequences=None, max_frames=None, metric="J&F"),
    "interactive-image": dict(masks=None, images=None, max_clicks=20, max_instances=None,
                              max_instances_per_image=None, oracle=False, no_mask_input=False, metric="mIoU@1"),
}
_META = ("name", "path", "protocol", "note", "group", "annotation", "split", "source", "layout_note")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_config(path: Path) -> Dict[str, Any]:
    """Read and check a suite config (JSON, or YAML when PyYAML is installed)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"could not read suite config {path}: {e}") from e
    try:
        if path.suffix.lower() in (".yml", ".yaml"):
            import yaml  # optional

            cfg = yaml.safe_load(text)
        else:
            cfg = json.loads(text)
    except ImportError as e:
        raise ValueError(f"{path}: YAML configs need PyYAML (or write the config as JSON)") from e
    except Exception as e:  # noqa: BLE001 - a parse error of either format
        raise ValueError(f"could not parse suite config {path}: {e}") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("datasets"), list) or not cfg["datasets"]:
        raise ValueError(f"{path}: a suite config is an object with a non-empty 'datasets' list")
    default_protocol = cfg.get("protocol")
    for i, d in enumerate(cfg["datasets"]):
        if not isinstance(d, dict) or "name" not in d or "path" not in d:
            raise ValueError(f"{path}: dataset #{i + 1} needs a 'name' and a 'path', got {d!r}")
        proto = d.get("protocol", default_protocol)
        if proto not in PROTOCOLS:
            raise ValueError(f"{path}: dataset {d['name']!r} has protocol {proto!r}; expected one of {PROTOCOLS}")
        unknown = set(d) - set(_META) - set(_DEFAULTS[proto])
        if proto == default_protocol:
            unknown |= set(cfg.get("defaults", {})) - set(_DEFAULTS[proto])
        if unknown:
            raise ValueError(f"{path}: dataset {d['name']!r}: unknown option(s) {sorted(unknown)} for {proto} "
                             f"(known: {sorted(_DEFAULTS[proto])})")
    return cfg


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "dataset"


def _resolve(path: str, data_root: Path) -> str:
    return path.replace("{data_root}", str(data_root)).replace("{shared_data}", str(SHARED_DATA))


def _exists(entry: Dict[str, Any], path: str) -> Tuple[bool, str]:
    if path == "synthetic" or (path == "shared" and SHARED_DATA.is_dir()):
        return True, ""
    missing = [p for p in [path] + [str(entry[k]) for k in ("masks", "images") if entry.get(k)]
               if not Path(p).exists()]
    return (not missing), (f"not found: {', '.join(missing)}" if missing else "")


class _Models:
    """One model per kind (VOS: apply_postprocessing=False; interactive: True), built on first use."""

    def __init__(self, args: Any) -> None:
        self.args, self.models = args, {}
        self.used: Optional[str] = None

    def get(self, kind: str) -> Any:
        if kind not in self.models:
            from .runs import load_bench_model

            self.models[kind], self.used = load_bench_model(self.args.model, self.args.checkpoint, self.args.device,
                                                       apply_postprocessing=kind != "vos")
        return self.models[kind]


def _run_one(protocol: str, ns: argparse.Namespace, models: _Models, out_dir: Path) -> Dict[str, Any]:
    from . import runs

    if protocol == "vos":
        res = runs.vos_results(models.get("vos"), ns, out_dir)
        res.pop("_sequences", None)
        metric = "J-Mean" if ns.metric == "J" else "J&F-Mean"
        values = {p: v.get(metric) for p, v in res["per_prompt"].items()}
        return {"metric": metric, "values": values, "headline": values[next(iter(values))], "results": res}
    if protocol == "interactive-video":
        res = runs.interactive_video_results(models.get("interactive"), ns)
        res.pop("_sequences", None)
        values = {m: r["J&F-Mean"] for m, r in res["per_mode"].items()}
        curves = {m: r["curve"] for m, r in res["per_mode"].items()}
        return {"metric": "J&F-Mean (mean over N = 1..%d)" % ns.max_interacted, "values": values,
                "headline": values[next(iter(values))], "curves": curves, "results": res}
    res = runs.interactive_image_results(models.get("interactive"), ns)
    values = {k: res.get(k) for k in ("mIoU@1", "mIoU@5", "NoC@85", "NoC@90") if k in res}
    return {"metric": "mIoU@1", "values": values, "headline": res.get("mIoU@1"), "results": res}


def _means(rows: List[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Means over datasets that ran, per protocol and value key, and per group."""
    acc: Dict[str, List[float]] = {}
    for r in rows:
        if r.get("values") is None:
            continue
        for key, v in r["values"].items():
            if v is None:
                continue
            acc.setdefault(f"{r['protocol']} {key}", []).append(float(v))
            if r.get("group"):
                acc.setdefault(f"{r['protocol']} {key} [{r['group']}]", []).append(float(v))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def run_suite(args: Any) -> Dict[str, Any]:
    """Run a suite config (see the module docstring); returns the report written to
    ``<output_dir>/report.json``."""
    t0 = time.perf_counter()
    cfg = load_config(Path(args.config))
    data_root = Path(args.data_root or os.environ.get("SAM2_BENCH_DATA") or "data")
    only = {s for s in (args.only or "").split(",") if s}
    out_root = Path(args.output_dir)
    models = _Models(args)
    rows: List[Dict[str, Any]] = []
    failed = 0
    for entry in cfg["datasets"]:
        if only and entry["name"] not in only:
            continue
        protocol = entry.get("protocol", cfg.get("protocol"))
        opts = dict(_DEFAULTS[protocol])
        if protocol == cfg.get("protocol"):
            opts.update(cfg.get("defaults", {}))
        opts.update({k: v for k, v in entry.items() if k not in _META})
        for k in ("masks", "images"):
            if opts.get(k):
                opts[k] = _resolve(str(opts[k]), data_root)
        path = _resolve(str(entry["path"]), data_root)
        row: Dict[str, Any] = {"dataset": entry["name"], "protocol": protocol, "path": path,
                               "layout": opts.get("layout"), "group": entry.get("group"),
                               "metric": opts.get("metric", ""), "headline": None, "values": None}
        ok, why = _exists(opts, path)
        if not ok:
            row["note"] = f"skipped: {why}"
            _log(f"suite: {entry['name']}: {row['note']}")
            rows.append(row)
            continue
        ns = argparse.Namespace(dataset=path, dtype=args.dtype, **opts)
        out_dir = out_root / protocol / _slug(entry["name"])
        _log(f"suite: {entry['name']} ({protocol})")
        try:
            got = _run_one(protocol, ns, models, out_dir)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            failed += 1
            row["note"] = f"error: {e}"
            _log(f"suite: {entry['name']}: {row['note']}")
            rows.append(row)
            continue
        write_json(out_dir / "result.json", got["results"])
        row.update(metric=got["metric"], values=got["values"], headline=got["headline"],
                   result=str(out_dir / "result.json"))
        if "curves" in got:
            row["curves"] = got["curves"]
        if entry.get("note"):
            row["note"] = entry["note"]
        rows.append(row)
    means = _means(rows)
    ran = [r for r in rows if r["values"] is not None]
    meta = run_metadata("suite", getattr(args, "model", None), models.used, args.device, args.dtype or "fp32",
                        settings={"config": str(args.config), "name": cfg.get("name"), "data_root": str(data_root),
                                  "only": sorted(only) or None})
    meta["results"] = {"rows": rows, "means": means, "n_datasets": len(rows), "n_ran": len(ran),
                       "n_skipped": sum(1 for r in rows if str(r.get("note", "")).startswith("skipped")),
                       "n_failed": failed, "seconds": time.perf_counter() - t0,
                       "protocol_notes": cfg.get("protocol_notes")}
    write_json(out_root / "report.json", meta)
    (out_root / "report.md").write_text(_markdown(cfg, meta))
    if failed:
        raise _SuiteFailed(f"{failed} dataset(s) failed; see {out_root / 'report.md'}", meta)
    return meta


class _SuiteFailed(ValueError):
    def __init__(self, msg: str, report: Dict[str, Any]) -> None:
        super().__init__(msg)
        self.report = report


def _fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def _markdown(cfg: Dict[str, Any], meta: Dict[str, Any]) -> str:
    res = meta["results"]
    lines = [f"# Suite: {cfg.get('name', meta['settings']['config'])}", "",
             f"- model: {meta.get('model')} ({meta.get('checkpoint')}), device {meta.get('device')}, "
             f"dtype {meta.get('dtype')}",
             f"- {res['n_ran']} of {res['n_datasets']} datasets ran ({res['n_skipped']} skipped, "
             f"{res['n_failed']} failed); means are over the datasets that ran", ""]
    if res.get("protocol_notes"):
        lines += [f"Protocol: {res['protocol_notes']}", ""]
    keys: List[str] = []
    for r in res["rows"]:
        for k in (r.get("values") or {}):
            if k not in keys:
                keys.append(k)
    lines += ["| dataset | protocol | metric | " + " | ".join(keys) + " | note |",
              "|---" * (len(keys) + 4) + "|"]
    for r in res["rows"]:
        vals = r.get("values") or {}
        lines.append(f"| {r['dataset']} | {r['protocol']} | {r.get('metric', '')} | "
                     + " | ".join(_fmt(vals.get(k)) for k in keys) + f" | {r.get('note', '')} |")
    lines += ["", "## Means over datasets", "", "| key | mean |", "|---|---|"]
    for k, v in res["means"].items():
        lines.append(f"| {k} | {_fmt(v)} |")
    return "\n".join(lines) + "\n"
