"""Image-embedding cache: memory (LRU, bounded in bytes) plus optional disk (``.npz``).

The cache sits on the model itself: :func:`install_forward_cache` wraps the model's
``forward_image`` so that the image predictor, the video predictor and the automatic mask
generator all reuse embeddings, whatever calls them. The key is a content hash of the
preprocessed input tensor plus a model key (name and checkpoint), so it covers the image,
the chosen channels and the contrast limits (they are baked into the pixels SAM 2 sees) and
the model. Reopening a stack or re-propagating then skips the image encoder.

Positional encodings depend only on the feature-map sizes, so they are stored once per
input shape, not per frame (at 1024² they are 5x larger than the features themselves).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = ["EmbeddingCache", "install_forward_cache", "uninstall_forward_cache", "default_cache_dir"]

_ATTR = "_napari_sam2_cache"


def default_cache_dir() -> Path:
    """``$NAPARI_SAM2_CACHE_DIR`` or ``~/.cache/napari-sam2/embeddings``."""
    env = os.environ.get("NAPARI_SAM2_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "napari-sam2" / "embeddings"


_MULTIPLIERS: Dict[Tuple[int, str], torch.Tensor] = {}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach()
    if t.dtype == torch.bfloat16:  # numpy has no bf16: hash its 16-bit pattern
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()


def _digest(x: torch.Tensor) -> List[int]:
    """Two 64-bit universal hashes of the tensor's bits, computed where the tensor lives.

    ``sum_i word_i * m_i (mod 2**64)`` with fixed pseudo-random multipliers: two different
    inputs collide with probability about 2**-64 per hash, and it costs one fused multiply-
    add pass (no 12 MB copy to the host and no byte-wise hashing: on a GPU that would cost
    more than encoding the frame).
    """
    flat = x.detach().reshape(-1)
    if flat.element_size() == 4:
        words = flat.view(torch.int32).to(torch.int64)
    elif flat.element_size() == 2:
        words = flat.view(torch.int16).to(torch.int64)
    else:
        words = flat.to(torch.float64).view(torch.int64)
    key = (words.numel(), str(words.device))
    mult = _MULTIPLIERS.get(key)
    if mult is None:
        g = torch.Generator().manual_seed(20240729)
        mult = torch.randint(-2**62, 2**62, (2, words.numel()), generator=g, dtype=torch.int64) | 1
        mult = _MULTIPLIERS[key] = mult.to(words.device)
    return [int(v) for v in (words[None] * mult).sum(dim=1).tolist()]


class EmbeddingCache:
    """LRU memory cache of image-encoder outputs, optionally mirrored on disk.

    Args:
        max_bytes: memory budget for cached features, on the device that computed them
            (entries are evicted oldest first).
        disk_dir: a folder for ``<hash>.npz`` files, or None for memory only.

    Counters ``hits``, ``disk_hits`` and ``misses`` say what happened (tests read them).
    """

    def __init__(self, max_bytes: int = 2 * 2**30, disk_dir: Optional[os.PathLike] = None) -> None:
        self.max_bytes = int(max_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir else None
        self._mem: "OrderedDict[str, Tuple[List[torch.Tensor], int]]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the video worker and the UI thread may both ask
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._mem)

    @property
    def nbytes(self) -> int:
        return self._bytes

    @staticmethod
    def make_key(x: torch.Tensor, model_key: str) -> str:
        h = hashlib.blake2b(digest_size=20)
        h.update(model_key.encode())
        h.update(str((tuple(x.shape), str(x.dtype))).encode())
        # on the CPU hashing the bytes is fastest; on an accelerator, hash where the data is
        h.update(_tensor_bytes(x) if x.device.type == "cpu" else str(_digest(x)).encode())
        return h.hexdigest()

    def get(self, key: str, device: torch.device) -> Optional[List[torch.Tensor]]:
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                self.hits += 1
                return [t.to(device) for t in self._mem[key][0]]
        if self.disk_dir is not None:
            path = self.disk_dir / f"{key}.npz"
            if path.exists():
                try:
                    with np.load(path) as z:
                        tensors = [torch.from_numpy(z[f"t{i}"]) for i in range(len(z.files))]
                except (OSError, ValueError, KeyError):
                    return None  # a partial or foreign file: recompute
                self.disk_hits += 1
                self._put_mem(key, tensors)
                return [t.to(device) for t in tensors]
        return None

    def put(self, key: str, tensors: List[torch.Tensor]) -> None:
        # kept where they were computed: a copy to the host per frame would cost a GPU
        # more than the encoder itself saves on a re-visit (the byte budget bounds memory)
        stored = [t.detach().clone() for t in tensors]
        self._put_mem(key, stored)
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.disk_dir / f".{key}.{os.getpid()}.tmp.npz"
            arrays = {f"t{i}": t.float().cpu().numpy() for i, t in enumerate(stored)}
            np.savez(tmp, **arrays)
            os.replace(tmp, self.disk_dir / f"{key}.npz")  # atomic: no half-written entries

    def _put_mem(self, key: str, tensors: List[torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in tensors)
        with self._lock:
            if key in self._mem:
                return
            self._mem[key] = (tensors, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._mem) > 1:
                _, (_, s) = self._mem.popitem(last=False)
                self._bytes -= s

    def clear(self, disk: bool = False) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0
        if disk and self.disk_dir is not None and self.disk_dir.exists():
            for p in self.disk_dir.glob("*.npz"):
                p.unlink()


def install_forward_cache(model: torch.nn.Module, cache: EmbeddingCache, model_key: str) -> None:
    """Wrap ``model.forward_image`` (an instance attribute; the class is untouched).

    Only inference is cached: with autograd on, the original method runs so training
    through the model still works. Installing twice replaces the previous wrapper.
    """
    uninstall_forward_cache(model)
    original: Callable[[torch.Tensor], Dict[str, Any]] = model.forward_image
    pos_by_shape: Dict[Tuple[int, ...], List[torch.Tensor]] = {}

    def pos_key(shape: Tuple[int, ...]) -> str:
        return hashlib.blake2b(f"pos|{model_key}|{shape}".encode(), digest_size=20).hexdigest()

    def forward_image(img: torch.Tensor) -> Dict[str, Any]:
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return original(img)
        key = cache.make_key(img, model_key)
        shape = tuple(img.shape)
        if shape not in pos_by_shape:  # stored with the first embedding of this shape (disk too)
            pos = cache.get(pos_key(shape), img.device)
            if pos is not None:
                pos_by_shape[shape] = pos
        hit = cache.get(key, img.device) if shape in pos_by_shape else None
        if hit is not None:
            n = (len(hit) - 1)
            return {
                "vision_features": hit[0],
                "backbone_fpn": hit[1 : 1 + n],
                "vision_pos_enc": list(pos_by_shape[shape]),
            }
        cache.misses += 1
        out = original(img)
        fpn = list(out["backbone_fpn"])
        if shape not in pos_by_shape:
            pos_by_shape[shape] = [p.detach() for p in out["vision_pos_enc"]]
            cache.put(pos_key(shape), pos_by_shape[shape])
        cache.put(key, [out["vision_features"]] + fpn)
        return out

    forward_image.__wrapped__ = original  # type: ignore[attr-defined]
    model.forward_image = forward_image
    setattr(model, _ATTR, cache)


def uninstall_forward_cache(model: torch.nn.Module) -> None:
    """Restore the class's ``forward_image`` if a cache wrapper was installed."""
    if "forward_image" in vars(model):
        delattr(model, "forward_image")
    if hasattr(model, _ATTR):
        delattr(model, _ATTR)
