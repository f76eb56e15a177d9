"""Device and precision choice: cuda > mps > cpu, never a hard-coded "cuda" default.

bf16 autocast is the default on CUDA (as upstream's demos do); CPU and MPS run fp32 unless the
caller asks for bf16 explicitly.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Optional, Union

import torch

__all__ = ["pick_device", "autocast_context", "default_dtype", "host_to_device", "DeviceLike"]

DeviceLike = Union[str, torch.device, None]


def pick_device(device: DeviceLike = None) -> torch.device:
    """Resolve ``device``: ``None``/``"auto"`` gives cuda if available, else mps, else cpu.

    Raises:
        ValueError: for a device string torch does not understand, or one that is not available
            (for example ``"cuda"`` on a machine without a GPU).
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"expected a device such as 'cpu', 'cuda', 'cuda:1', 'mps' or None; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


def default_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype used by default on ``device``: bf16 on CUDA (if supported), else None."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast_context(device: Union[torch.device, str], dtype: Union[torch.dtype, str, None] = "auto") -> ContextManager:
    """An autocast context for ``device``.

    Args:
        device: where the model runs.
        dtype: ``"auto"`` (bf16 on CUDA, off elsewhere), ``None``/``"fp32"`` (off), or a dtype /
            ``"bf16"`` / ``"fp16"`` to force autocast with it.
    """
    dev = torch.device(device)
    if isinstance(dtype, str):
        key = dtype.lower()
        if key == "auto":
            dtype = default_dtype(dev)
        elif key in ("fp32", "float32", "none", "off"):
            dtype = None
        elif key in ("bf16", "bfloat16"):
            dtype = torch.bfloat16
        elif key in ("fp16", "float16", "half"):
            dtype = torch.float16
        else:
            raise ValueError(f"dtype must be 'auto', 'fp32', 'bf16', 'fp16' or a torch.dtype; got {dtype!r}")
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=dtype)


def host_to_device(values: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor of Python numbers on ``device`` without a host-device synchronisation.

    ``torch.tensor(values, device="cuda")`` copies from pageable memory, which makes the host
    wait for the GPU; staged through pinned memory the copy is asynchronous (the tracking step
    builds small index and position tensors this way).
    """
    t = torch.tensor(values, dtype=dtype)
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
