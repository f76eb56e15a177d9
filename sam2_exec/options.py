"""The command-line options every command that can run on Ray shares.

``--executor inprocess|ray``, ``--workers N``, ``--ray-address auto|ray://HOST:10001|HOST:6379``,
``--num-gpus-per-worker G``, ``--num-cpus-per-worker C``.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

__all__ = ["add_executor_args", "executor_from_args", "executor_options"]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}") from exc
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {v}")
    return v


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}") from exc
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {v}")
    return v


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """Add the executor options to ``p`` (a group titled "execution")."""
    g = p.add_argument_group("execution (see docs/ray.md)")
    g.add_argument("--executor", default="inprocess", choices=["inprocess", "ray"],
                   help="inprocess (default) or ray: one worker per GPU / CPU of a Ray cluster")
    g.add_argument("--workers", type=_positive_int, default=None,
                   help="Ray workers (default: one per GPU with --num-gpus-per-worker, else per CPU)")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join: auto, ray://HEAD:10001 or HEAD:6379 (default: a local "
                        "cluster on this machine, loopback only)")
    g.add_argument("--num-gpus-per-worker", type=_non_negative, default=0.0,
                   help="GPUs per Ray worker (1: one worker per GPU; 0.5: two share one)")
    g.add_argument("--num-cpus-per-worker", type=_non_negative, default=1.0,
                   help="CPUs per Ray worker (also its torch threads on CPU)")


def executor_options(args: Any) -> Dict[str, Any]:
    """The executor keyword arguments of parsed ``args`` (missing options: defaults)."""
    name = getattr(args, "executor", None) or "inprocess"
    if name != "ray":
        extra = [flag for flag, val in (("--ray-address", getattr(args, "ray_address", None)),
                                        ("--num-gpus-per-worker", getattr(args, "num_gpus_per_worker", 0.0)))
                 if val]
        workers = getattr(args, "workers", None)
        if workers not in (None, 1):
            extra.append("--workers")
        if extra:
            raise ValueError(f"{', '.join(extra)} need(s) --executor ray")
        return {"executor": "inprocess"}
    return {"executor": "ray", "workers": getattr(args, "workers", None),
            "address": getattr(args, "ray_address", None),
            "num_gpus_per_worker": float(getattr(args, "num_gpus_per_worker", 0.0) or 0.0),
            "num_cpus_per_worker": float(getattr(args, "num_cpus_per_worker", 1.0) or 1.0)}


def executor_from_args(args: Any, env: Optional[Dict[str, str]] = None) -> Any:
    """The executor the parsed ``args`` ask for (see :func:`sam2_exec.make_executor`)."""
    from .base import make_executor

    opts = executor_options(args)
    name = opts.pop("executor")
    if name == "ray" and env:
        opts["env"] = env
    return make_executor(name, **opts)
