"""Speed of ``python -m benchmarks evaluate`` against the official DAVIS evaluator.

Times the whole ``evaluate`` process (start-up and imports included, as the reference timing
in ``../shared/golden/jf`` was taken) on the golden folders, checks that every number equals the
golden one (|diff| <= 1e-9), and prints the ratio to the official evaluator's median time
(``metadata.reference_seconds`` of each golden JSON). Run it on an otherwise idle machine::

    python -m benchmarks evaluate-speed [--runs 3] [--workers 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
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


def _sets() -> List[Dict[str, Any]]:
    out = []
    if (GOLDEN / "golden_synthetic.json").is_file():
        out.append({"name": "synthetic", "gt": GOLDEN / "synthetic", "pred": GOLDEN / "synthetic" / "predictions",
                    "golden": GOLDEN / "golden_synthetic.json", "sequences": None})
    if (GOLDEN / "golden_davis_public.json").is_file() and DATA.is_dir():
        out.append({"name": "davis-public", "gt": DATA, "pred": GOLDEN / "predictions",
                    "golden": GOLDEN / "golden_davis_public.json", "sequences": "blackswan,car-shadow,libby"})
    return out


def _time_once(s: Dict[str, Any], workers: int, out: Path) -> Dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks", "evaluate", "--gt-root", str(s["gt"]), "--pred-root", str(s["pred"]),
           "--output", str(out), "--quiet", "--workers", str(workers)]
    if s["sequences"]:
        cmd += ["--sequences", s["sequences"]]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"evaluate failed: {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def _max_diff(res: Dict[str, Any], gold: Dict[str, Any]) -> float:
    d = max(abs(res[k] - v) for k, v in gold["global"].items())
    for k, v in gold["per_object"].items():
        d = max(d, abs(res["per_object"][k]["J-Mean"] - v["J-Mean"]), abs(res["per_object"][k]["F-Mean"] - v["F-Mean"]))
    return d


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks evaluate-speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", default=None, help="write the timings here")
    args = p.parse_args(argv)
    sets = _sets()
    if not sets:
        print("error: the golden folders (../shared/golden/jf) are not present", file=sys.stderr)
        return 2
    report: Dict[str, Any] = {"runs": args.runs, "load_average": os.getloadavg(), "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for s in sets:
            gold = json.loads(Path(s["golden"]).read_text())
            ref = float(gold["metadata"]["reference_seconds"])
            entry: Dict[str, Any] = {"reference_seconds": ref}
            for w in args.workers:
                out = Path(tmp) / f"{s['name']}_{w}.json"
                times = [_time_once(s, w, out) for _ in range(args.runs)]
                diff = _max_diff(json.loads(out.read_text()), gold)
                wall = statistics.median(t["wall"] for t in times)
                cpu = statistics.median(t["cpu"] for t in times)
                entry[f"workers={w}"] = {"wall_s": wall, "cpu_s": cpu, "ratio_wall": ref / wall,
                                         "ratio_cpu": ref / cpu, "max_abs_diff": diff}
                print(f"{s['name']:13s} workers={w}: {wall:.2f} s wall ({cpu:.2f} s CPU); official {ref:.2f} s "
                      f"-> {ref / wall:.1f}x (CPU {ref / cpu:.1f}x); max |diff| vs golden {diff:.1e}")
            report["sets"][s["name"]] = entry
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
