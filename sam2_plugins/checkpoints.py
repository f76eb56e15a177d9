"""Checkpoint registry, verified downloads and safe loading.

* Registry: each official model name maps to Meta's public URL and the Hugging Face mirror.
* Cache: ``$SAM2_PLUGINS_CACHE`` if set, else ``$XDG_CACHE_HOME/sam2-plugins`` (``~/.cache/...``).
* Downloads are atomic (``<name>.part`` then rename), resumable (HTTP ``Range``) where the server
  allows, show progress, check the size announced by the server and the registry's size and
  SHA-256 (known for all eight official files, see :data:`_OFFICIAL_FILES`), and retry once from
  scratch when a partial file is corrupt.
* A cached official file is verified on first use (size every time; SHA-256 once, remembered in
  ``<name>.verified`` next to it until the file changes). A mismatch is moved aside to
  ``<name>.mismatch-<time>`` (never deleted: it may be a file the user put there) with a warning,
  and the official file is downloaded again.
* Loading never unpickles code: ``torch.load(..., weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import sys
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "REGISTRY",
    "cache_dir",
    "download",
    "resolve_checkpoint",
    "load_state_dict_file",
    "demo_checkpoint_path",
]

PathLike = Union[str, os.PathLike]
ProgressFn = Callable[[int, Optional[int]], None]


class CheckpointError(ValueError):
    """A checkpoint could not be fetched, verified or loaded; the message says why."""


@dataclass(frozen=True)
class CheckpointInfo:
    """Where an official checkpoint lives and what it should look like."""

    name: str
    urls: Tuple[str, ...]
    filename: str
    size: Optional[int] = None
    """Bytes, where known (checked after download)."""
    sha256: Optional[str] = None
    """Hex digest, where known (checked after download)."""


_META = "https://dl.fbaipublicfiles.com/segment_anything_2"
_HF = "https://huggingface.co/facebook"


# Byte size and SHA-256 of each official file. Sources (public, read 2026): the Git LFS pointers
# ("oid sha256:..., size ...") and "Git LFS Details" of the files in Meta's Hugging Face repos
# facebook/sam2.1-hiera-{tiny,small} and facebook/sam2-hiera-{tiny,small,base-plus}, and of copies
# of the other files uploaded by Hugging Face staff (merve/sam2-hiera-{base-plus,large}) and others
# (camenduru/sam2-1-hiera, "thanks to facebook"); the same digests are the pooch ``known_hash`` of
# micro-sam's SAM 2 loader for the dl.fbaipublicfiles.com URLs below, so Meta's CDN and the HF
# mirror serve the same bytes. sam2_hiera_small's size (184,309,650) comes from a third-party
# registry of the dl.fbaipublicfiles.com file; its digest from facebook/sam2-hiera-small.
_OFFICIAL_FILES: Dict[str, Tuple[int, str]] = {
    "sam2.1_hiera_tiny": (156_008_466, "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    "sam2.1_hiera_small": (184_416_285, "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    "sam2.1_hiera_base_plus": (323_606_802, "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
    "sam2.1_hiera_large": (898_083_611, "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    "sam2_hiera_tiny": (155_906_050, "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125"),
    "sam2_hiera_small": (184_309_650, "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3"),
    "sam2_hiera_base_plus": (323_493_298, "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071"),
    "sam2_hiera_large": (897_952_466, "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b"),
}


def _official(name: str) -> CheckpointInfo:
    v21 = name.startswith("sam2.1")
    size = name.split("_hiera_")[1]
    hf_repo = f"{'sam2.1' if v21 else 'sam2'}-hiera-{size.replace('_', '-')}"
    nbytes, digest = _OFFICIAL_FILES[name]
    return CheckpointInfo(
        name=name,
        urls=(f"{_META}/{'092824' if v21 else '072824'}/{name}.pt",
              f"{_HF}/{hf_repo}/resolve/main/{name}.pt"),
        filename=f"{name}.pt",
        size=nbytes,
        sha256=digest,
    )


REGISTRY: Dict[str, CheckpointInfo] = {
    n: _official(n)
    for v in ("sam2.1", "sam2")
    for n in (f"{v}_hiera_{s}" for s in ("tiny", "small", "base_plus", "large"))
}

_DEMO_FILE = "sam2.1_hiera_nano_demo.pt"


def demo_checkpoint_path() -> Path:
    """Path of the demo checkpoint shipped inside the package (may not exist in a dev tree)."""
    return Path(__file__).resolve().parent / "weights" / _DEMO_FILE


def cache_dir() -> Path:
    """Folder where downloaded checkpoints are kept (created on demand)."""
    env = os.environ.get("SAM2_PLUGINS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "sam2-plugins"


def _print_progress(done: int, total: Optional[int], _state: Dict[str, float] = {}) -> None:  # noqa: B006 (state kept across calls)
    # A dependency-free progress bar on stderr, redrawn at most ~10 times a second.
    now = time.monotonic()
    if done != total and now - _state.get("t", 0.0) < 0.1:
        return
    _state["t"] = now
    mb = done / 2 ** 20
    if total:
        frac = min(done / total, 1.0)
        bar = "#" * int(30 * frac)
        msg = f"\r[{bar:<30}] {100 * frac:5.1f}% {mb:8.1f}/{total / 2 ** 20:.1f} MiB"
    else:
        msg = f"\r{mb:8.1f} MiB"
    sys.stderr.write(msg + ("\n" if total and done >= total else ""))
    sys.stderr.flush()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, progress: Optional[ProgressFn], timeout: float) -> Optional[int]:
    """Download ``url`` into ``part``, resuming from its current size; returns the full size."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "sam2-plugins"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already complete on disk
            return have
        raise
    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        if have and status == 206:
            mode, done = "ab", have
            total = have + int(length) if length is not None else None
        else:  # the server ignored Range: start over
            mode, done = "wb", 0
            total = int(length) if length is not None else None
        with open(part, mode) as f:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    if total is not None and done != total:
        raise CheckpointError(f"download of {url} was truncated: got {done} of {total} bytes")
    return total


def download(
    url: Union[str, Sequence[str]],
    dest: PathLike,
    *,
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    progress: Union[bool, ProgressFn] = True,
    retries: int = 2,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` (or the first working of several mirrors) to ``dest`` atomically.

    The data goes to ``dest.part`` and is renamed only once complete and verified, so ``dest``
    never holds a partial file. An interrupted ``.part`` is resumed with an HTTP Range request; if
    the result fails verification it is deleted and fetched again from scratch. Processes that
    ask for the same ``dest`` at once take turns (a lock file next to it); a ``dest`` that is
    already there is kept when it matches ``sha256`` (or appeared while waiting), else fetched again.

    Raises:
        CheckpointError: when every mirror fails or the file never verifies.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    existed = dest.is_file()
    # Several processes may ask for the same file at once (parallel workers): they take turns,
    # and whoever waited finds the finished file instead of writing into the same ``.part``.
    with _file_lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file() and (not existed or (sha256 is not None
                                               and _sha256(dest).lower() == sha256.lower())):
            return dest  # finished while we waited, or already there and verified
        return _download_locked(url, dest, sha256, size, progress, retries, timeout)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` between processes (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: downloads are not serialised there
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _download_locked(url: Union[str, Sequence[str]], dest: Path, sha256: Optional[str],
                     size: Optional[int], progress: Union[bool, "ProgressFn", None],
                     retries: int, timeout: float) -> Path:
    part = dest.with_name(dest.name + ".part")
    urls = [url] if isinstance(url, str) else list(url)
    report: Optional[ProgressFn] = _print_progress if progress is True else (progress or None)
    errors = []
    for u in urls:
        for attempt in range(retries + 1):
            try:
                total = _fetch(u, part, report, timeout)
                got = part.stat().st_size
                if total is not None and got != total:
                    raise CheckpointError(f"size mismatch: server announced {total} bytes, got {got}")
                if size is not None and got != size:
                    raise CheckpointError(f"size mismatch: expected {size} bytes, got {got}")
                if sha256 is not None:
                    digest = _sha256(part)
                    if digest.lower() != sha256.lower():
                        raise CheckpointError(f"sha256 mismatch: expected {sha256}, got {digest}")
                os.replace(part, dest)
                return dest
            except CheckpointError as exc:
                errors.append(f"{u} (attempt {attempt + 1}): {exc}")
                # A verified-bad file cannot be fixed by resuming: drop it and start over.
                if "mismatch" in str(exc):
                    part.unlink(missing_ok=True)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{u} (attempt {attempt + 1}): {exc}")
                if isinstance(exc, urllib.error.HTTPError) and exc.code in (403, 404):
                    break  # no point retrying a missing file
    raise CheckpointError(
        f"could not download {dest.name}:\n  " + "\n  ".join(errors)
        + "\nIf this machine is offline, download the file elsewhere and pass its path as checkpoint=...")


def resolve_checkpoint(name: str, checkpoint: Optional[PathLike], *,
                       progress: Union[bool, ProgressFn] = True) -> Optional[Path]:
    """Turn ``checkpoint`` (None, a path, ``"download"`` or ``"demo"``) into a local file path.

    Args:
        name: canonical model name (``sam2.1_hiera_tiny``).
        checkpoint: None (random init: returns None), a file path, ``"download"`` (official weights
            via the cache) or ``"demo"`` (the shipped demo model; only for the demo config).
    """
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and checkpoint == "demo":
        path = demo_checkpoint_path()
        if not path.exists():
            raise CheckpointError(f"the demo checkpoint {path} is missing from this installation")
        return path
    if isinstance(checkpoint, str) and checkpoint == "download":
        if name not in REGISTRY:
            raise CheckpointError(
                f"no official download for {name!r}; official names: {', '.join(REGISTRY)}")
        info = REGISTRY[name]
        dest = cache_dir() / info.filename
        if dest.exists() and _cached_file_ok(info, dest):
            return dest
        return download(info.urls, dest, sha256=info.sha256, size=info.size, progress=progress)
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise CheckpointError(f"checkpoint must be None, 'download', 'demo' or a file path, got "
                              f"{type(checkpoint).__name__} {checkpoint!r}")
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder; give the path of a checkpoint file inside it")
    if not path.is_file():
        hint = " (did you mean 'download' or 'demo'?)" if str(checkpoint).lower() in ("download", "demo") else ""
        raise CheckpointError(f"checkpoint file not found: {str(path)!r}{hint}")
    return path


def _cached_file_ok(info: CheckpointInfo, dest: Path) -> bool:
    """Verify a cached official file (size always; SHA-256 once per file version, remembered in
    ``<name>.verified``). A mismatch is moved aside with a warning and False is returned, so the
    caller downloads the file again."""
    st = dest.stat()
    stamp = dest.with_name(dest.name + ".verified")
    problem = None
    if info.size is not None and st.st_size != info.size:
        problem = f"its size is {st.st_size} bytes, the official file has {info.size}"
    elif info.sha256 is not None:
        key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": info.sha256.lower()}
        try:
            if json.loads(stamp.read_text()) == key:
                return True
        except (OSError, ValueError):
            pass
        digest = _sha256(dest)
        if digest.lower() != info.sha256.lower():
            problem = f"its SHA-256 is {digest}, the official file's is {info.sha256}"
        else:
            try:
                stamp.write_text(json.dumps(key))
            except OSError:  # a read-only cache still works; it is just hashed again next time
                pass
    if problem is None:
        return True
    aside = dest.with_name(f"{dest.name}.mismatch-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(dest, aside)
    stamp.unlink(missing_ok=True)
    warnings.warn(f"cached checkpoint {dest} is not the official {info.name} file ({problem}); it was moved to "
                  f"{aside} and the official file is downloaded again", UserWarning, stacklevel=3)
    return False


def _sniff(path: Path, nbytes: int) -> None:
    """Refuse files that are neither a torch archive / pickle nor safetensors, saying what they look like."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return  # a torch zip archive, or a (legacy) pickle: torch.load decides
    text = head.decode("utf-8", errors="replace")
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        what = f"a text file (it starts with {text[:40]!r})"
    else:
        what = f"an unknown binary format (it starts with bytes {head[:8].hex(' ')})"
    raise CheckpointError(
        f"{path} is not a checkpoint: it is {what}, {nbytes} bytes. Expected an official SAM 2 '.pt' file "
        "(a torch zip archive holding {'model': state_dict}), a state dict or a safetensors file")


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header length then a JSON object.
    return len(head) == 9 and head[8:9] == b"{"


def load_state_dict_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict, never executing pickled code.

    Accepts official ``{"model": state_dict}`` files, bare state dicts, safetensors files and
    Lightning checkpoints (``{"state_dict": {"model.<key>": ...}}``; LoRA adapters in them are
    merged, see :func:`_lightning_state_dict`).

    Raises:
        CheckpointError: truncated / corrupt files, pickles that carry code, unknown layouts.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder; give the path of a checkpoint file (.pt, "
                              ".safetensors, .ckpt) inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {str(path)!r}")
    nbytes = path.stat().st_size
    if nbytes == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): delete it and download again")
    if _is_safetensors(path):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise CheckpointError(f"{path} is a safetensors file: pip install safetensors") from exc
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a valid safetensors file ({nbytes} bytes): {exc}") from exc
    _sniff(path, nbytes)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc) and "global" not in str(exc):  # not code: a damaged or foreign pickle
            raise CheckpointError(
                f"{path} is not a checkpoint torch can read: a corrupt file or another format ({nbytes} bytes; "
                f"{str(exc).splitlines()[-1] if str(exc) else 'unpickling failed'}). Expected an official "
                "SAM 2 '.pt' file ({'model': state_dict}), a state dict or a safetensors file.") from exc
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects or code, not only tensors "
            f"(weights-only loading failed: {str(exc).splitlines()[0]}). Official SAM 2 checkpoints "
            "hold only tensors; only load files from sources you trust.") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({nbytes} bytes; could not read it: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). Delete it and download it "
                "again.") from exc
    except Exception as exc:  # the weights-only unpickler raises e.g. IndexError on junk bytes
        raise CheckpointError(
            f"{path} is not a checkpoint torch can read: corrupt or another format ({nbytes} bytes; "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Expected an "
            "official SAM 2 '.pt' file ({'model': state_dict}), a state dict or a safetensors file.") from exc
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> Dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        sd = obj["model"]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        sd = _lightning_state_dict(obj, path)
    elif isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        keys = list(obj.keys())[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint: expected {{'model': state_dict}} or a state dict, found {keys}")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries are not tensors: {bad[:5]}")
    return dict(sd)


_ADAPTED = re.compile(r"^(.*)\.parametrizations\.weight\.(original|0\.lora_A|0\.lora_B)$")


def _lightning_state_dict(obj: Mapping, path: Path) -> Dict[str, torch.Tensor]:
    """The SAM 2 weights of a Lightning ``.ckpt`` (``lightning_module.SAM2FineTuner``).

    The module keeps the model under ``model.``; other entries (metrics, loss buffers) are
    dropped. LoRA adapters, stored as a weight parametrization (``<layer>.parametrizations.
    weight.original`` + ``...weight.0.lora_A`` / ``lora_B``), are merged into ``<layer>.weight``
    = original + (alpha / rank) * B @ A, with alpha and rank from the checkpoint's
    hyper-parameters: the result is key for key an official state dict.
    """
    raw = obj["state_dict"]
    sd = {k[len("model."):]: v for k, v in raw.items() if k.startswith("model.")}
    if not sd:  # not a SAM2FineTuner: take the keys as they are
        sd = dict(raw)
    parts: Dict[str, Dict[str, torch.Tensor]] = {}
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _ADAPTED.match(k)
        if m:
            parts.setdefault(m.group(1), {})[m.group(2)] = v
        elif ".parametrizations." in k:
            raise CheckpointError(f"{path}: {k!r} is a weight parametrization other than LoRA; "
                                  "remove it (torch.nn.utils.parametrize) before saving")
        else:
            out[k] = v
    if parts:
        hp = obj.get("hyper_parameters") or {}
        rank, alpha = hp.get("lora_rank"), hp.get("lora_alpha")
        if not isinstance(rank, int) or rank < 1 or not isinstance(alpha, (int, float)):
            raise CheckpointError(
                f"{path} holds LoRA adapters but its hyper_parameters give no lora_rank / "
                f"lora_alpha (got {rank!r}, {alpha!r}), so they cannot be merged")
        scale = float(alpha) / rank
        for base, p in parts.items():
            if "original" not in p or ("0.lora_A" in p) != ("0.lora_B" in p):
                raise CheckpointError(f"{path}: incomplete LoRA entries for {base!r}: {sorted(p)}")
            w = p["original"]
            if "0.lora_A" in p:
                delta = p["0.lora_B"].float() @ p["0.lora_A"].float() * scale
                w = (w.float() + delta).to(w.dtype)
            out[base + ".weight"] = w
    return out
