"""Image normalisation shared by the image and video predictors.

Two steps:

1. :func:`to_rgb_float` turns whatever the user has (grey, RGB, RGBA; uint8, uint16, other
   ints, bool, float; numpy, torch or PIL) into ``float32`` ``HxWx3`` RGB in ``[0, 1]``.
2. :func:`prepare_image_tensor` applies upstream's image-path numerics: bilinear,
   antialiased resize of the float pixels straight to ``S x S`` (no aspect-ratio
   preservation, no padding), then ImageNet mean / std.

For ``uint8`` RGB input the result is bit-for-bit upstream's ``ToTensor -> Resize -> Normalize``.

Normalisation rule (``normalize=`` argument, default ``"auto"``):

=============  ==============================================================================
``"auto"``     uint8: ``/ 255`` (upstream). bool: ``{0, 1}``. Other integer dtypes (uint16
               microscopy data often holds 12-bit values): ``"percentile"``. Float: kept as is
               when every value lies in ``[0, 1]``, otherwise ``"minmax"``.
``"dtype"``    integers divided by their dtype's maximum (uint16: 65535); floats clipped to
               ``[0, 1]``.
``"percentile"``  per-image robust range: values mapped linearly so that the 0.1th percentile
               becomes 0 and the 99.9th becomes 1, then clipped. All channels share one range
               (colour balance is kept).
``"minmax"``   per-image linear map of ``[min, max]`` to ``[0, 1]`` (all channels together).
``"none"``     values taken as they are (must already lie in ``[0, 1]``; else ``ValueError``).
=============  ==============================================================================

A constant image maps to zeros under ``"percentile"`` / ``"minmax"``. NaN or infinite values
raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZE_MODES",
    "to_rgb_float",
    "prepare_image_tensor",
    "image_hw",
]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
NORMALIZE_MODES = ("auto", "dtype", "percentile", "minmax", "none")
PERCENTILES: Tuple[float, float] = (0.1, 99.9)


def _to_numpy(image: Any) -> np.ndarray:
    """PIL / torch / array-like -> numpy, keeping the dtype."""
    try:
        from PIL import Image as PILImage
        is_pil = isinstance(image, PILImage.Image)
    except ImportError:  # pillow is a core dependency; this is only defensive
        is_pil = False
    if is_pil:
        if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "1"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        return np.asarray(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()  # numpy has no bf16
    if isinstance(image, np.ndarray):
        return image
    raise TypeError("image must be a numpy array (HxW or HxWxC), a torch tensor or a PIL image, "
                    f"got {type(image).__name__}")


def image_hw(image: Any) -> Tuple[int, int]:
    """``(H, W)`` of an image in any accepted form, without converting it."""
    try:
        from PIL import Image as PILImage
        if isinstance(image, PILImage.Image):
            w, h = image.size
            return int(h), int(w)
    except ImportError:
        pass
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) < 2:
        raise ValueError(f"image must be HxW or HxWxC, got shape {shape}")
    return int(shape[0]), int(shape[1])


def _drop_alpha(arr: np.ndarray) -> np.ndarray:
    """HxW / HxWx1 / HxWx3 / HxWx4 -> HxWx1 or HxWx3 (grey stays one channel until the end,
    so statistics such as percentiles see every pixel once)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"image must be HxW (grey) or HxWxC with C in (1, 3, 4), got shape {arr.shape}")
    c = arr.shape[2]
    if c in (1, 3):
        return arr
    if c == 4:
        return arr[:, :, :3]  # alpha is dropped, not composited
    hint = ""
    if arr.shape[0] in (1, 3, 4):
        hint = " (it looks channels-first; use np.moveaxis(image, 0, -1))"
    raise ValueError(f"image must be HxW or HxWxC with C in (1, 3, 4), got shape {arr.shape}{hint}")


def _rescale(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = arr.astype(np.float32)
    if not hi > lo:  # constant image: nothing to stretch
        return np.zeros_like(out)
    out = (out - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def to_rgb_float(image: Any, normalize: str = "auto",
                 percentiles: Tuple[float, float] = PERCENTILES) -> np.ndarray:
    """Convert an image to ``float32`` RGB ``HxWx3`` in ``[0, 1]`` (see the module docstring).

    Args:
        image: ``HxW`` grey, ``HxWx1``, ``HxWx3`` RGB or ``HxWx4`` RGBA (alpha dropped) as a numpy
            array or torch tensor (uint8, uint16, other ints, bool, float), or a PIL image.
        normalize: one of ``"auto"`` (default), ``"dtype"``, ``"percentile"``, ``"minmax"``,
            ``"none"``.
        percentiles: the (low, high) percentiles used by ``"percentile"``.

    Returns:
        ``np.ndarray`` of shape ``(H, W, 3)``, dtype float32, values in ``[0, 1]``.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    arr = _drop_alpha(_to_numpy(image))
    out = _normalise(arr, normalize, percentiles)
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def _normalise(arr: np.ndarray, normalize: str, percentiles: Tuple[float, float]) -> np.ndarray:
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    kind = arr.dtype.kind
    if kind not in "buif":
        raise TypeError(f"image dtype must be bool, integer or float, got {arr.dtype}")
    if kind == "f" and not np.isfinite(arr).all():
        raise ValueError("image holds NaN or infinite values; clean it (e.g. np.nan_to_num) first")

    mode = normalize
    if mode == "auto":
        if arr.dtype == np.uint8 or kind == "b":
            mode = "dtype"
        elif kind in "iu":
            mode = "percentile"
        else:
            mode = "none" if (arr.min() >= 0.0 and arr.max() <= 1.0) else "minmax"

    if kind == "b":
        return arr.astype(np.float32)
    if mode == "dtype":
        if kind in "iu":
            info = np.iinfo(arr.dtype)
            if kind == "i":  # signed: negative values mean nothing for an intensity
                return np.clip(arr.astype(np.float32) / np.float32(info.max), 0.0, 1.0)
            return arr.astype(np.float32) / np.float32(info.max)
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    if mode == "percentile":
        lo, hi = np.percentile(arr, percentiles)
        return _rescale(arr, float(lo), float(hi))
    if mode == "minmax":
        return _rescale(arr, float(arr.min()), float(arr.max()))
    # "none"
    out = arr.astype(np.float32)
    if out.min() < 0.0 or out.max() > 1.0:
        raise ValueError("normalize='none' needs values in [0, 1], got range "
                         f"[{float(out.min())}, {float(out.max())}]; use 'auto', 'minmax' or 'percentile'")
    return out


def prepare_image_tensor(rgb_float: Union[np.ndarray, torch.Tensor], size: int,
                         device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Upstream's image-path numerics: ``(H, W, 3)`` float in [0,1] -> ``(1, 3, S, S)`` float32.

    Bilinear, antialiased (``align_corners=False``) resize straight to ``size x size``, then
    ``(x - mean) / std`` with ImageNet statistics. The resize runs on ``device``.
    """
    x = torch.as_tensor(rgb_float)
    if x.dim() != 3 or x.shape[2] != 3:
        raise ValueError(f"rgb_float must be (H, W, 3), got {tuple(x.shape)}; call to_rgb_float first")
    x = x.to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
