"""Reading training files: images, instance-label masks and stacks, with messages that name the file.

Intensities are mapped to uint8 with the core predictors' rule
(:func:`sam2_plugins.predictors.image.preprocess.to_rgb_float`, ``normalize="auto"``): uint8 as is,
other integer types (16-bit microscopy) from their 0.1–99.9 percentile range, floats in [0, 1]
as is, other floats min–max. Each 2D plane is normalised on its own, as the image and video
predictors do at inference, so training sees the intensities the model will see.

Shapes are classified by :func:`array_kind`:

==============================  ====================================================
``(H, W)``                       one grey image
``(H, W, C)`` with C in 1, 3, 4  one image (grey, RGB, RGBA; alpha dropped)
``(N, H, W)`` (last axis > 4)    a stack of N planes (Z or T)
``(N, H, W, C)`` with C ≤ 4      a stack of N colour planes
==============================  ====================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "read_array", "array_kind", "to_rgb_uint8", "stack_to_rgb_uint8",
           "labels_to_ids", "pair_files", "describe_unpaired", "peek_shape"]

PathLike = Union[str, Path]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".npy")


def read_array(path: Path) -> np.ndarray:
    """The raw array of an image / mask / stack file (TIFF, npy, or anything PIL opens).

    Palette, grey and 16-bit PNGs keep their raw values (palette indices are labels).
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(str(path)))
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with Image.open(path) as im:
            if im.mode in ("P", "L", "I", "I;16", "I;16B", "1"):
                return np.asarray(im)
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


def array_kind(shape: Tuple[int, ...], name: str = "array") -> str:
    """``"image"`` or ``"stack"`` for an array shape (see the module docstring).

    Raises:
        ValueError: for shapes that are neither (1D, 5D, a 4D array with > 4 channels).
    """
    if len(shape) == 2:
        return "image"
    if len(shape) == 3:
        return "image" if shape[-1] in (1, 3, 4) else "stack"
    if len(shape) == 4 and shape[-1] <= 4:
        return "stack"
    raise ValueError(f"{name} has shape {tuple(shape)}: neither an image (H, W[, C<=4]) nor a "
                     "stack (N, H, W[, C<=4])")


def to_rgb_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """One image (H, W[, C]) of any dtype -> uint8 (H, W, 3) with the predictors' rule."""
    from sam2_plugins.predictors.image.preprocess import to_rgb_float

    try:
        rgb = to_rgb_float(a, "auto")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from exc
    return np.ascontiguousarray(np.round(rgb * 255.0).astype(np.uint8))


def stack_to_rgb_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """A stack (N, H, W[, C]) -> uint8 (N, H, W, 3), each plane normalised on its own."""
    return np.stack([to_rgb_uint8(p, f"{name} plane {i}") for i, p in enumerate(a)])


def labels_to_ids(a: np.ndarray, name: str) -> np.ndarray:
    """An instance-label image (or stack) -> int64 ids (0 = background).

    Integer and bool arrays are taken as labels. Colour-coded masks (H, W, 3 / 4) give one id
    per distinct colour, black being background. Floats must hold whole numbers (a float
    mask with fractions is an intensity image, not labels).
    """
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.array_equal(a, np.round(a)):
            raise ValueError(f"{name}: a mask must hold integer instance labels, got float values "
                             f"such as {a.ravel()[:3]} (is this an intensity image?)")
        a = a.astype(np.int64)
    if a.dtype.kind not in "biu":
        raise ValueError(f"{name}: a mask must hold integer instance labels, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[-1] in (3, 4):  # colour-coded: every distinct colour is one object
        flat = a[..., :3].reshape(-1, 3)
        colours, inv = np.unique(flat, axis=0, return_inverse=True)
        ids = inv.reshape(a.shape[:2]).astype(np.int64)
        black = np.flatnonzero((colours == 0).all(1))
        if black.size:
            b = int(black[0])
            ids = np.where(ids == b, 0, ids + (ids < b))
        else:
            ids = ids + 1
        return ids
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValueError(f"{name}: instance labels must be >= 0, found {int(a.min())}")
    return a.astype(np.int64)


def _key(path: Path, suffix: str) -> str:
    stem = path.stem
    return stem[: len(stem) - len(suffix)] if suffix and stem.endswith(suffix) else stem


def _listing(folder: Path, what: str) -> List[Path]:
    if not folder.exists():
        raise ValueError(f"{what} folder {folder} does not exist")
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def pair_files(images: PathLike, masks: PathLike, mask_suffix: str = "",
               allow_unpaired: bool = False) -> Tuple[List[Tuple[Path, Path]], Dict[str, List[Path]]]:
    """Pair image files with mask files by name: ``images/<x>.*`` with ``masks/<x><mask_suffix>.*``.

    ``images`` and ``masks`` may also be two single files (paired with each other).

    Returns:
        The sorted pairs, and ``{"images": [...], "masks": [...]}``: the files left without a
        partner.

    Raises:
        ValueError: when ``images`` and ``masks`` are the same folder without a ``mask_suffix``
            (every file would be its own mask), when nothing pairs, when two files share a
            name, and (unless ``allow_unpaired``) when any file is left without a partner; the
            message lists those files.
    """
    ip, mp = Path(images).expanduser(), Path(masks).expanduser()
    if ip.is_file() and mp.is_file():
        if ip.resolve() == mp.resolve():
            raise ValueError(f"images and masks are the same file {ip}")
        return [(ip, mp)], {"images": [], "masks": []}
    if ip.exists() and mp.exists() and ip.resolve() == mp.resolve() and not mask_suffix:
        raise ValueError(
            f"images and masks are the same folder {ip}: every file would be paired with itself "
            "and its intensities read as labels. Put the masks in their own folder, or give "
            "mask_suffix (e.g. '_masks' for 'x_masks.tif' next to 'x.tif').")
    img_files = _listing(ip, "images")
    mask_files = _listing(mp, "masks")
    if ip.resolve() == mp.resolve():  # one folder, masks told apart by their suffix
        mask_files = [p for p in mask_files if p.stem.endswith(mask_suffix)]
        img_files = [p for p in img_files if not p.stem.endswith(mask_suffix)]
    by_key: Dict[str, Path] = {}
    for what, files, suffix in (("mask", mask_files, mask_suffix), ("image", img_files, "")):
        seen: Dict[str, Path] = {}
        for p in files:
            k = _key(p, suffix)
            if k in seen:
                raise ValueError(f"two {what} files have the name {k!r}: {seen[k]} and {p}")
            seen[k] = p
        if what == "mask":
            by_key = seen
    pairs = [(p, by_key[p.stem]) for p in img_files if p.stem in by_key]
    used = {m for _, m in pairs}
    unpaired = {"images": [p for p in img_files if p.stem not in by_key],
                "masks": [m for m in mask_files if m not in used]}
    if not pairs:
        raise ValueError(f"no image in {ip} has a mask with the same name"
                         f"{f' + {mask_suffix!r}' if mask_suffix else ''} in {mp} "
                         f"({len(img_files)} image file(s), {len(mask_files)} mask file(s))")
    if (unpaired["images"] or unpaired["masks"]) and not allow_unpaired:
        raise ValueError(describe_unpaired(unpaired, len(pairs), ip, mp)
                         + " Add the missing files, or set allow_unpaired: true to train on the "
                         "pairs only.")
    return pairs, unpaired


def describe_unpaired(unpaired: Dict[str, List[Path]], n_pairs: int, images: Path,
                      masks: Path) -> str:
    """A message listing the files without a partner (first 10 of each kind)."""
    def few(files: Sequence[Path]) -> str:
        names = ", ".join(p.name for p in files[:10])
        return names + (f", ... ({len(files)} in all)" if len(files) > 10 else "")

    parts = [f"{n_pairs} image/mask pair(s) found in {images} / {masks}, but"]
    if unpaired["images"]:
        parts.append(f"{len(unpaired['images'])} image(s) have no mask: {few(unpaired['images'])}")
    if unpaired["masks"]:
        if unpaired["images"]:
            parts.append("and")
        parts.append(f"{len(unpaired['masks'])} mask(s) have no image: {few(unpaired['masks'])}")
    return " ".join(parts) + "."


def peek_shape(path: Path) -> Tuple[int, ...]:
    """The array shape of a file without reading its pixels (TIFF / npy headers; PIL size)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(str(path)) as tf:
                return tuple(int(s) for s in tf.series[0].shape)
        if suffix == ".npy":
            return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        with Image.open(path) as im:
            w, h = im.size
            return (h, w) if im.mode in ("P", "L", "I", "I;16", "I;16B", "1") else (h, w, 3)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
