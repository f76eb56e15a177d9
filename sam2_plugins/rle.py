"""Run-length encoding of binary masks (COCO conventions), numpy / torch only.

Two formats, both ``{"size": [h, w], "counts": ...}``:

* **uncompressed RLE** (``counts`` a list of ints), as upstream's automatic mask generator
  writes it: the mask is read in column-major (Fortran) order and the runs alternate
  background / foreground, *starting with background* (so a mask whose first pixel is set
  starts with a 0-length run). The counts sum to ``h * w``.
* **COCO compressed RLE** (``counts`` a str), the ASCII form of pycocotools
  (``rleToString``): each count, from the fourth on, is stored as the difference to the count
  two places before it, then written as little-endian 5-bit groups with a continuation bit
  (0x20) and a sign bit (0x10 of the last group), each group offset by 48 ('0').

Masks are ``HxW`` arrays (bool, or anything where non-zero means foreground); decoded
masks are ``np.ndarray`` of dtype bool, C-ordered, shape ``(h, w)``. Only
:func:`masks_to_rle_torch` needs torch (imported when called), so readers of RLE files do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # torch is imported only by the function that needs it
    import torch

__all__ = [
    "mask_to_rle",
    "rle_to_mask",
    "encode_coco_rle",
    "decode_coco_rle",
    "masks_to_rle_torch",
    "rle_area",
    "counts_to_string",
    "string_to_counts",
]

RLE = Dict[str, Any]
MaskLike = Union[np.ndarray, "torch.Tensor"]


def _as_bool_2d(mask: Any, what: str = "mask") -> np.ndarray:
    if hasattr(mask, "detach"):  # a torch tensor (no torch import needed to tell)
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D HxW array, got shape {tuple(arr.shape)}")
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.number)):
            raise TypeError(f"{what} must be boolean or numeric, got dtype {arr.dtype}")
        arr = arr != 0
    return arr


def _check_size(rle: Mapping[str, Any]) -> tuple:
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise TypeError("an RLE must be a dict with keys 'size' ([h, w]) and 'counts', "
                        f"got {type(rle).__name__}"
                        + (f" with keys {sorted(rle)}" if isinstance(rle, Mapping) else ""))
    size = rle["size"]
    if len(size) != 2 or any(int(s) < 0 for s in size):
        raise ValueError(f"RLE 'size' must be [h, w] with h, w >= 0, got {size!r}")
    return int(size[0]), int(size[1])


def mask_to_rle(mask: MaskLike) -> RLE:
    """Encode one ``HxW`` mask as an uncompressed RLE (column-major, background first).

    Same output as upstream's ``mask_to_rle_pytorch`` for a single mask and as pycocotools'
    ``rleEncode`` counts.
    """
    arr = _as_bool_2d(mask)
    h, w = arr.shape
    flat = arr.ravel(order="F")
    if flat.size == 0:
        return {"size": [h, w], "counts": [0]}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    counts = ([0] + runs) if flat[0] else runs
    return {"size": [h, w], "counts": [int(c) for c in counts]}


def masks_to_rle_torch(masks: "torch.Tensor") -> List[RLE]:
    """Encode a batch of masks ``(B, H, W)`` (bool or 0/1, any device) as uncompressed RLEs.

    The run boundaries are found on the masks' device in one pass; only the boundary indices
    are copied to the host. Output matches upstream's ``mask_to_rle_pytorch``.
    """
    import torch

    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor (B, H, W), got {type(masks).__name__}")
    if masks.dim() != 3:
        raise ValueError(f"masks must have shape (B, H, W), got {tuple(masks.shape)}")
    b, h, w = masks.shape
    if h * w == 0:
        return [{"size": [h, w], "counts": [0]} for _ in range(b)]
    flat = (masks != 0).permute(0, 2, 1).reshape(b, h * w)
    changes = (flat[:, 1:] ^ flat[:, :-1]).nonzero().cpu()  # (K, 2): (mask index, position)
    first = flat[:, 0].cpu().tolist()
    # Split the change list per mask without a Python loop over pixels.
    per_mask = torch.bincount(changes[:, 0], minlength=b).tolist()
    positions = torch.split(changes[:, 1] + 1, per_mask)
    out: List[RLE] = []
    for i in range(b):
        bounds = torch.cat([torch.zeros(1, dtype=torch.long), positions[i],
                            torch.full((1,), h * w, dtype=torch.long)])
        runs = torch.diff(bounds).tolist()
        out.append({"size": [h, w], "counts": ([0] + runs) if first[i] else runs})
    return out


def _counts_from_uncompressed(rle: Mapping[str, Any], h: int, w: int) -> np.ndarray:
    counts = np.asarray(list(rle["counts"]), dtype=np.int64)
    if counts.ndim != 1 or (counts.size and counts.min() < 0):
        raise ValueError("uncompressed RLE 'counts' must be a flat list of non-negative ints")
    if int(counts.sum()) != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())} but size {[h, w]} has {h * w} pixels")
    return counts


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode an RLE (uncompressed list counts or COCO string counts) to a bool ``(h, w)`` mask."""
    h, w = _check_size(rle)
    if isinstance(rle["counts"], (str, bytes)):
        counts = string_to_counts(rle["counts"])
        if int(counts.sum()) != h * w:
            raise ValueError(f"COCO RLE counts sum to {int(counts.sum())} but size {[h, w]} "
                             f"has {h * w} pixels (corrupt string or wrong size)")
    else:
        counts = _counts_from_uncompressed(rle, h, w)
    values = np.zeros(counts.size, dtype=bool)
    values[1::2] = True  # runs alternate, starting with background
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()  # column-major -> C order


def rle_area(rle: Mapping[str, Any]) -> int:
    """Foreground pixel count of an RLE (either format), without decoding the mask."""
    _check_size(rle)
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = string_to_counts(counts)
    return int(np.asarray(list(counts) if not isinstance(counts, np.ndarray) else counts,
                          dtype=np.int64)[1::2].sum())


# --- COCO string form -----------------------------------------------------------------------

_MAX_GROUPS = 13  # 5 bits each: enough for any signed 64-bit delta


def counts_to_string(counts: Union[Sequence[int], np.ndarray]) -> str:
    """pycocotools ``rleToString``: counts -> compact ASCII string (vectorised)."""
    cnts = np.asarray(list(counts), dtype=np.int64)
    if cnts.size == 0:
        return ""
    x = cnts.copy()
    # From the 4th count on, store the difference to the count two before (same parity run).
    x[3:] = cnts[3:] - cnts[1:-2]
    shifts = 5 * np.arange(_MAX_GROUPS, dtype=np.int64)
    chunks = (x[:, None] >> shifts[None, :]) & 0x1F  # arithmetic shift keeps the sign
    rest = x[:, None] >> (shifts[None, :] + 5)  # what is left after each group
    sign = (chunks & 0x10) != 0
    # A group is the last one once the remainder is pure sign extension of its bit 4.
    done = np.where(sign, rest == -1, rest == 0)
    n_groups = done.argmax(axis=1) + 1
    j = np.arange(_MAX_GROUPS)[None, :]
    used = j < n_groups[:, None]
    chars = chunks | np.where(j < (n_groups[:, None] - 1), 0x20, 0)
    return (chars[used] + 48).astype(np.uint8).tobytes().decode("ascii")


def string_to_counts(s: Union[str, bytes]) -> np.ndarray:
    """pycocotools ``rleFrString``: compact ASCII string -> int64 counts (vectorised)."""
    raw = s.encode("ascii") if isinstance(s, str) else bytes(s)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("COCO RLE string holds characters outside '0'..'o'; not an RLE string")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("COCO RLE string is truncated (its last character continues a number)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    k = np.arange(c.size) - starts[group]
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    lengths = ends - starts + 1
    negative = (c[ends] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * lengths)), x)
    cnts = x.copy()
    # Undo the delta coding: counts at index >= 3 add the count two places before; the
    # chains of odd (from 1) and even (from 2) indices are cumulative sums.
    if cnts.size > 3:
        cnts[1::2] = np.cumsum(x[1::2])
        cnts[2::2] = np.cumsum(x[2::2])
    if cnts.size and cnts.min() < 0:
        raise ValueError("COCO RLE string decodes to a negative run length (corrupt string)")
    return cnts


def encode_coco_rle(mask_or_rle: Union[MaskLike, Mapping[str, Any]]) -> RLE:
    """COCO compressed RLE ``{"size": [h, w], "counts": str}`` of a mask or an uncompressed RLE.

    Equals ``pycocotools.mask.encode(np.asfortranarray(mask))`` (with counts decoded to str),
    which is what upstream's generator returns for ``output_mode="coco_rle"``.
    """
    if isinstance(mask_or_rle, Mapping):
        h, w = _check_size(mask_or_rle)
        if isinstance(mask_or_rle["counts"], (str, bytes)):
            text = mask_or_rle["counts"]
            return {"size": [h, w], "counts": text.decode("ascii") if isinstance(text, bytes) else text}
        counts = _counts_from_uncompressed(mask_or_rle, h, w)
    else:
        rle = mask_to_rle(mask_or_rle)
        h, w = rle["size"]
        counts = rle["counts"]
    return {"size": [h, w], "counts": counts_to_string(counts)}


def decode_coco_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (string counts; list counts are accepted too) to a bool ``(h, w)`` mask."""
    return rle_to_mask(rle)
