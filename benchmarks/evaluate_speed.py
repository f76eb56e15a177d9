"""Speed of ``python -m benchmarks evaluate`` against the official DAVIS evaluator.

Times the whole ``evaluate`` process (interpreter start-up and imports included, as the
reference timing in ``../shared/golden/jf`` was taken), checks that every number equals the
reference (|diff| <= 1e-9) and prints the ratio. Sets:

- ``synthetic`` and ``davis-public``: the golden folders; reference = the official evaluator's
  median time recorded in the golden JSON (``metadata.reference_seconds``, 2 cores);
- ``davis2016-shifted`` (``--large``): all DAVIS-2016 val sequences of ``../shared/data`` against
  predictions made here from the GT (shifted, eroded, dropped; frame 0 kept), ~1.4k frames:
  the steady-state ratio, where start-up costs weigh little.

With ``--official DIR`` (a checkout of davisvideochallenge/davis2017-evaluation, whose imports
OpenCV, scikit-image, scipy and tqdm must be installed) the official evaluator is also run
here, side by side and interleaved with ours, on the same folders: its times on this machine
give the ratios, and its numbers are the reference for the large set. Without it the large
set's reference time is estimated from the golden README (0.5 s + 20 ms per object-frame).
Run it on an otherwise idle machine::

    python -m benchmarks evaluate-speed [--runs 3] [--workers 1 auto] [--large] [--official DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO.parent / "shared" / "golden" / "jf"
DATA = REPO.parent / "shared" / "data" / "davis2016-val"
KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")

# the official evaluator, called as the golden README did, globals as its evaluation_method.py
_OFFICIAL = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from davis2017.evaluation import DAVISEvaluation
m = DAVISEvaluation(davis_root=sys.argv[2], task="semi-supervised", gt_set="val", codalab=True).evaluate(sys.argv[3])
J, F = m["J"], m["F"]
out = {"J&F-Mean": (np.mean(J["M"]) + np.mean(F["M"])) / 2.0}
for name, d in (("J", J), ("F", F)):
    for s, k in (("Mean", "M"), ("Recall", "R"), ("Decay", "D")):
        out[f"{name}-{s}"] = float(np.mean(d[k]))
out = {k: float(v) for k, v in out.items()}
out["per_object"] = {k: {"J-Mean": float(J["M_per_object"][k]), "F-Mean": float(F["M_per_object"][k])}
                     for k in J["M_per_object"]}
open(sys.argv[4], "w").write(json.dumps(out))
"""


def _davis_root(tmp: Path, name: str, ann: Path, sequences: List[str]) -> Path:
    """A scratch DAVIS root (``ImageSets/2017/val.txt`` + links to the GT folders), the layout
    the official evaluator wants."""
    root = tmp / f"root-{name}"
    (root / "Annotations" / "480p").mkdir(parents=True)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    for s in sequences:
        (root / "Annotations" / "480p" / s).symlink_to(ann / s, target_is_directory=True)
    return root


def _make_shifted_predictions(out: Path) -> List[str]:
    """Deterministic predictions for every DAVIS-2016 val sequence: frame 0 = GT; later frames
    shifted by a drift that grows, eroded every 4th frame, emptied every 17th."""
    import numpy as np

    from sam2_plugins.evaluation.readers import mask_files, read_index_png, write_index_png

    ann = DATA / "Annotations" / "480p"
    sequences = sorted(p.name for p in ann.iterdir() if p.is_dir())
    for si, s in enumerate(sequences):
        for t, f in enumerate(mask_files(ann / s)):
            g = (read_index_png(f) > 0).astype(np.uint8)
            p = g
            if t:
                p = np.roll(g, (si % 5 - 2, 1 + (t * (si % 3 + 1)) // 6), axis=(0, 1))
                if t % 4 == 0:
                    p = p & np.roll(p, 3, axis=1) & np.roll(p, -3, axis=0)
                if t % 17 == 0:
                    p = np.zeros_like(p)
            write_index_png(out / s / f.name, p)
    return sequences


def _sets(tmp: Path, large: bool) -> List[Dict[str, Any]]:
    out = []
    if (GOLDEN / "golden_synthetic.json").is_file():
        out.append({"name": "synthetic", "gt": GOLDEN / "synthetic", "pred": GOLDEN / "synthetic" / "predictions",
                    "golden": GOLDEN / "golden_synthetic.json", "sequences": None,
                    "official_root": GOLDEN / "synthetic"})
    if (GOLDEN / "golden_davis_public.json").is_file() and DATA.is_dir():
        seqs = ["blackswan", "car-shadow", "libby"]
        out.append({"name": "davis-public", "gt": DATA, "pred": GOLDEN / "predictions",
                    "golden": GOLDEN / "golden_davis_public.json", "sequences": seqs,
                    "official_root": _davis_root(tmp, "public", DATA / "Annotations" / "480p", seqs)})
    if large and DATA.is_dir():
        pred = tmp / "pred-shifted"
        seqs = _make_shifted_predictions(pred)
        out.append({"name": "davis2016-shifted", "gt": DATA, "pred": pred, "golden": None, "sequences": seqs,
                    "official_root": _davis_root(tmp, "large", DATA / "Annotations" / "480p", seqs)})
    return out


def _timed(cmd: List[str], env_extra: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def _ours(s: Dict[str, Any], workers: str, out: Path) -> Dict[str, float]:
    cmd = [sys.executable, "-m", str(__package__), "evaluate", "--gt-root", str(s["gt"]), "--pred-root", str(s["pred"]),
           "--output", str(out), "--quiet"]
    if workers != "auto":
        cmd += ["--workers", workers]
    if s["sequences"]:
        cmd += ["--sequences", ",".join(s["sequences"])]
    return _timed(cmd, {"OMP_NUM_THREADS": "1"})  # our processes are single-threaded anyway


def _official(s: Dict[str, Any], official: Path, out: Path) -> Dict[str, float]:
    # the caller's environment as it is: OpenCV may use every core, as in the reference timing
    return _timed([sys.executable, "-c", _OFFICIAL, str(official), str(s["official_root"]), str(s["pred"]), str(out)])


def _max_diff(res: Dict[str, Any], ref: Dict[str, Any]) -> float:
    glob = ref.get("global", ref)
    d = max(abs(res[k] - glob[k]) for k in KEYS)
    if set(res["per_object"]) != set(ref["per_object"]):
        return float("inf")
    for k, v in ref["per_object"].items():
        d = max(d, abs(res["per_object"][k]["J-Mean"] - v["J-Mean"]), abs(res["per_object"][k]["F-Mean"] - v["F-Mean"]))
    return d


def _median(runs: List[Dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks evaluate-speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", nargs="+", default=["1", "auto"], help="worker counts to time ('auto': the default)")
    p.add_argument("--large", action="store_true", help="also the ~1.4k-frame DAVIS-2016 set (shifted GT)")
    p.add_argument("--official", type=Path, default=None, help="davis2017-evaluation checkout: run it side by side")
    p.add_argument("--json", default=None, help="write the timings here")
    args = p.parse_args(argv)
    if args.official is not None and not (args.official / "davis2017" / "evaluation.py").is_file():
        print(f"error: {args.official} is not a davis2017-evaluation checkout", file=sys.stderr)
        return 2
    report: Dict[str, Any] = {
        "what": "whole-process wall time of `python -m benchmarks evaluate` vs the official DAVIS evaluator",
        "runs": args.runs, "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version(),
        "load_average_before": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sets": {},
    }
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        sets = _sets(tmp, args.large)
        if not sets:
            print("error: the golden folders (../shared/golden/jf) are not present", file=sys.stderr)
            return 2
        for s in sets:
            entry: Dict[str, Any] = {"sequences": s["sequences"]}
            ref: Optional[Dict[str, Any]] = json.loads(Path(s["golden"]).read_text()) if s["golden"] else None
            ours: Dict[str, List[Dict[str, float]]] = {w: [] for w in args.workers}
            official: List[Dict[str, float]] = []
            for _ in range(args.runs):  # interleaved, so that a change of load hits both alike
                if args.official is not None:
                    official.append(_official(s, args.official, tmp / "official.json"))
                for w in args.workers:
                    ours[w].append(_ours(s, w, tmp / f"ours_{w}.json"))
            res = {w: json.loads((tmp / f"ours_{w}.json").read_text()) for w in args.workers}
            entry["n_objects"] = res[args.workers[0]]["metadata"]["n_objects"]
            if ref is not None:
                entry["reference_seconds"] = float(ref["metadata"]["reference_seconds"])
                entry["reference"] = "official evaluator, golden README (2 cores)"
            if official:
                off = json.loads((tmp / "official.json").read_text())
                entry["official_wall_s"] = _median(official, "wall")
                entry["official_cpu_s"] = _median(official, "cpu")
                entry["official_runs_s"] = [r["wall"] for r in official]
                if ref is not None:
                    entry["official_max_abs_diff_vs_golden"] = _max_diff(off, ref)
                else:
                    ref = off
                entry["reference_seconds"] = entry["official_wall_s"]
                entry["reference"] = "official evaluator run here, interleaved with ours"
            if "reference_seconds" not in entry:  # large set, no official run: the README's rate
                per_seq = res[args.workers[0]]["per_sequence"].values()
                n_obj_frames = sum(v["n_objects"] * max(v["n_frames"] - 2, 0) for v in per_seq)
                entry["reference_seconds"] = 0.5 + 0.020 * n_obj_frames
                entry["reference"] = "ESTIMATE: 0.5 s + 20 ms per object-frame (golden README), not measured"
            refs = entry["reference_seconds"]
            for w in args.workers:
                wall, cpu = _median(ours[w], "wall"), _median(ours[w], "cpu")
                diff = _max_diff(res[w], ref) if ref is not None else None
                entry[f"workers={w}"] = {"wall_s": wall, "cpu_s": cpu, "runs_s": [r["wall"] for r in ours[w]],
                                         "ratio": refs / wall, "max_abs_diff": diff,
                                         "ratio_cpu": entry["official_cpu_s"] / cpu if official else None,
                                         "workers_used": res[w]["metadata"].get("workers")}
                print(f"{s['name']:17s} workers={w:4s}: {wall:.3f} s wall ({cpu:.2f} s CPU) vs {refs:.2f} s "
                      f"-> {refs / wall:.1f}x; max |diff| {diff if diff is None else f'{diff:.1e}'}")
            if official:
                print(f"{s['name']:17s} official here: {entry['official_wall_s']:.2f} s wall "
                      f"({entry['official_cpu_s']:.2f} s CPU)")
            report["sets"][s["name"]] = entry
    report["load_average_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
