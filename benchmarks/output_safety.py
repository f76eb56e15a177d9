"""Argument checks and output-path rules for ``python -m benchmarks`` (kept out of ``cli.py``).

* :func:`at_least` builds argparse ``type=`` callables that range-check numbers, so
  ``--workers 0`` or ``--max-frames -1`` is an argparse error (exit 2, before any work).
* :func:`add_overwrite` adds ``--overwrite`` to a command writing a report folder.
* :func:`check_outputs` runs before a command: every output (``--output``, ``--output-dir``,
  ``--report-dir``) is checked against every input (``--gt-root``, ``--pred-root``,
  ``--dataset``, ``--masks``, ``--images`` and the shared data folder) with the rules of
  :mod:`sam2_plugins.output_paths`; report folders that exist are refused unless
  ``--overwrite`` (which deletes the earlier run's content first); a ``--pred-root`` inside
  the folder of a run that did not finish is refused (its predictions may be partial).
* :func:`finish_outputs` marks the report folders complete once the command returned.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional

__all__ = ["at_least", "add_overwrite", "check_outputs", "finish_outputs", "INPUT_ARGS", "DIR_OUTPUT_ARGS"]

#: argparse destinations that name inputs (paths; other values such as "synthetic" are skipped)
INPUT_ARGS = ("gt_root", "pred_root", "dataset", "masks", "images")
#: destinations that name output folders (the file output is ``output``)
DIR_OUTPUT_ARGS = ("output_dir", "report_dir")
#: commands whose ``--output`` is a file (``report`` writes HTML, ``evaluate`` JSON)
FILE_OUTPUT_COMMANDS = ("evaluate", "report")


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse ``type=``: an integer >= ``minimum`` (else an argparse error naming both)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing report folder written by an earlier run (its content is deleted "
                        "first, so it holds only this run's files); without it an existing non-empty folder is refused")


def _shared_data() -> Path:
    env = os.environ.get("SAM2_PLUGINS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _inputs(args: argparse.Namespace) -> Dict[str, Optional[Path]]:
    found: Dict[str, Optional[Path]] = {}
    for dest in INPUT_ARGS:
        v = getattr(args, dest, None)
        if v is not None and str(v) and Path(str(v)).exists():
            found["--" + dest.replace("_", "-") + " folder"] = Path(str(v))
    shared = _shared_data()
    if shared.is_dir():
        found["shared data folder"] = shared
    # runs listed for ``report`` are inputs too
    for r in getattr(args, "runs", None) or []:
        if Path(str(r)).exists():
            found[f"run {r}"] = Path(str(r))
    return found


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unsafe outputs before the command runs (raises ``ValueError`` subclasses).

    Report folders are created (with the project's marker file) or cleared here, so the
    command itself writes into a folder that holds nothing of an earlier run.
    """
    from sam2_plugins.output_paths import OutputPathError, check_output_file, prepare_output_dir, unfinished_run

    inputs = _inputs(args)
    pred = getattr(args, "pred_root", None)
    if pred is not None and unfinished_run(pred) is not None:
        raise OutputPathError(f"--pred-root {pred} was written by a run that did not finish (see "
                              f"{unfinished_run(pred)}/.sam2-plugins-output): its predictions may be partial")
    command = str(getattr(args, "command", "") or "")
    out = getattr(args, "output", None)
    if out is not None and command in FILE_OUTPUT_COMMANDS:
        check_output_file(out, inputs, "--output")
    overwrite = bool(getattr(args, "overwrite", False))
    for dest in DIR_OUTPUT_ARGS:
        d: Any = getattr(args, dest, None)
        if d is not None and str(d):
            prepare_output_dir(d, inputs, overwrite=overwrite, what="--" + dest.replace("_", "-"),
                               command=f"python -m benchmarks {command}")


def finish_outputs(args: argparse.Namespace) -> None:
    """Mark the report folders of a command that returned normally as complete."""
    from sam2_plugins.output_paths import mark_complete

    for dest in DIR_OUTPUT_ARGS:
        d: Any = getattr(args, dest, None)
        if d is not None and str(d) and Path(str(d)).is_dir():
            mark_complete(d)
