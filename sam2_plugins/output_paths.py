"""Output paths that cannot destroy inputs or mix runs: the rules every command line follows.

* An output (file or folder) that **is**, or **lies inside**, an input (a ground-truth root, a
  prediction root, a dataset folder, an image) is refused before any work starts. An output
  folder that *contains* an input is refused too when it would be cleared.
* An output **file** the user named is replaced atomically (written to a temporary file in the
  same folder, then renamed): a crash leaves the old file or the new one, never half of one.
  A path that is an existing folder is refused.
* An output **folder** that exists and is not empty is refused unless ``overwrite=True``. With
  it, the folder must be one this project wrote (it carries :data:`MARKER`); its whole content
  is then deleted before the new run writes, so the folder holds only the new run's files
  (no predictions of an earlier, longer run are left beside the new ones).
* The marker records whether the run finished (:func:`mark_complete`); a run that stopped on
  an error leaves ``"complete": false``, and :func:`unfinished_run` finds such a folder, so
  ``evaluate`` refuses to score its (possibly partial) predictions.

Errors are :class:`OutputPathError` (a ``ValueError``), naming the path and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional, Tuple, Union

__all__ = ["MARKER", "OutputPathError", "check_output_file", "prepare_output_dir", "mark_complete", "unfinished_run",
           "atomic_write_text", "atomic_write_bytes"]

PathLike = Union[str, "os.PathLike[str]"]

MARKER = ".sam2-plugins-output"
"""File written into every output folder this project creates; ``overwrite`` clears only those."""


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class OutputPathError(ValueError):
    """An output path that would overwrite an input, mix runs, or is not usable."""


def _resolve(p: PathLike) -> Path:
    return Path(p).expanduser().resolve()


def _inputs(inputs: Optional[Mapping[str, Optional[PathLike]]]) -> Iterable[Tuple[str, Path]]:
    for name, p in (inputs or {}).items():
        if p is None or str(p) == "":
            continue
        yield name, _resolve(p)


def _check_against_inputs(out: Path, inputs: Optional[Mapping[str, Optional[PathLike]]], what: str,
                          shown: PathLike, refuse_containing: bool) -> None:
    for name, inp in _inputs(inputs):
        if out == inp:
            raise OutputPathError(f"{what} {shown} is the {name} ({inp}): an output must not replace an input; "
                                  "choose another path")
        if inp in out.parents:
            raise OutputPathError(f"{what} {shown} lies inside the {name} ({inp}): writing there would change "
                                  "an input; choose a path outside it")
        if refuse_containing and out in inp.parents:
            raise OutputPathError(f"{what} {shown} contains the {name} ({inp}): clearing it would delete an "
                                  "input; choose a folder that holds no input")


def check_output_file(path: PathLike, inputs: Optional[Mapping[str, Optional[PathLike]]] = None,
                      what: str = "--output") -> Path:
    """Check a file output before any work: not a folder, not an input, not inside one.

    Args:
        path: the file the user named (it may exist: it is then replaced atomically).
        inputs: name -> path of every input of the command (files or folders; None skipped).
        what: the option's name, for messages.

    Returns:
        The resolved path. Raises :class:`OutputPathError`.
    """
    out = _resolve(path)
    if out.is_dir():
        raise OutputPathError(f"{what} {path} is an existing folder; give a file path, "
                              f"e.g. {Path(path) / 'result.json'}")
    _check_against_inputs(out, inputs, what, path, refuse_containing=False)
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{what} {path}: {parent} is a file, not a folder")
            break
    return out


def prepare_output_dir(path: PathLike, inputs: Optional[Mapping[str, Optional[PathLike]]] = None,
                       overwrite: bool = False, what: str = "--output-dir", command: str = "") -> Path:
    """Check (and, with ``overwrite``, clear) an output folder; create it with :data:`MARKER`.

    Args:
        path: the folder the user named.
        inputs: name -> path of every input (an output inside one, equal to one, or, when the
            folder is not empty, containing one, is refused).
        overwrite: replace an earlier run written by this project (its content is deleted).
        what: the option's name, for messages.
        command: recorded in the marker (which command wrote the folder).

    Returns:
        The resolved folder, existing and empty but for the marker.
    """
    out = _resolve(path)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{what} {path} is an existing file, not a folder")
    _check_against_inputs(out, inputs, what, path, refuse_containing=out.is_dir() and overwrite)
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if [e for e in entries if e.name != MARKER]:
        if not overwrite:
            raise OutputPathError(
                f"{what} {path} already exists and is not empty: an earlier run's files would be mixed with "
                "this one's. Pass --overwrite to delete its content first, or choose a new folder")
        if not _written_by_us(out):
            raise OutputPathError(
                f"{what} {path} is not empty and was not written by sam2-plugins (no {MARKER} file): refusing "
                "to delete its content even with --overwrite; choose a new or empty folder")
        for e in entries:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, json.dumps({"command": command, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                "complete": False}) + "\n")
    return out


def mark_complete(path: PathLike) -> None:
    """Record in the folder's marker that the run writing it finished (see :func:`unfinished_run`)."""
    marker = Path(path) / MARKER
    info = json.loads(marker.read_text()) if marker.is_file() else {}
    info["complete"] = True
    info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_text(marker, json.dumps(info) + "\n")


def unfinished_run(path: PathLike) -> Optional[Path]:
    """The output folder holding ``path`` (itself or a parent) whose run did not finish (it
    stopped on an error or was killed: its files may be partial), else None."""
    p = _resolve(path)
    for folder in (p, *p.parents):
        marker = folder / MARKER
        if marker.is_file():
            try:
                return None if json.loads(marker.read_text()).get("complete", True) else folder
            except (OSError, ValueError):
                return folder
    return None


def _written_by_us(folder: Path) -> bool:
    """The folder carries :data:`MARKER`, or (written before the marker existed) a benchmark
    ``report.json`` of this project at its top or one level down."""
    if (folder / MARKER).is_file():
        return True
    for report in [folder / "report.json", *folder.glob("*/report.json")]:
        try:
            head = json.loads(report.read_text())
        except (OSError, ValueError):
            continue
        schema = str(head.get("schema") or (head.get("metadata") or {}).get("schema") or "")
        if schema.startswith("sam2-plugins-benchmark"):
            return True
    return False


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (or the old file's)
        os.chmod(tmp, p.stat().st_mode & 0o7777 if p.exists() else 0o666 & ~_UMASK)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return p


def atomic_write_text(path: PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
