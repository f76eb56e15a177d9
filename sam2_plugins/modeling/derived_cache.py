"""A value computed from a few parameters or buffers, kept until they change.

The Hiera position embedding (a bicubic resize) and the prompt encoder's dense position code are
pure functions of small parameters and are needed on every forward pass, so they are cached.
"Until they change" is decided per tensor:

* an ordinary tensor: by its storage pointer and version counter (any in-place write, such as an
  optimizer step or ``load_state_dict``, bumps the counter) - no device synchronisation;
* while gradients flow to the tensors (training), nothing is cached: the value must carry its
  own graph;
* an *inference tensor* (a model built under ``torch.inference_mode()``): such tensors have no
  version counter, so a copy of the tensor is kept and compared by value. The parameters in
  question are a few thousand numbers, so the comparison costs microseconds (one host sync on
  CUDA per call).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Optional, Sequence, Tuple

import torch

__all__ = ["DerivedCache"]


def _stamp(t: torch.Tensor) -> tuple:
    version = None if t.is_inference() else t._version
    return (t.data_ptr(), t.device, t.dtype, tuple(t.shape), version)


class DerivedCache:
    """One cached value derived from ``tensors``; :meth:`get` recomputes it when they change."""

    def __init__(self) -> None:
        self._entry: Optional[Tuple[tuple, Any, Tuple[Optional[torch.Tensor], ...]]] = None

    def clear(self) -> None:
        """Forget the cached value (e.g. when the module moves to another device or dtype)."""
        self._entry = None

    def get(self, tensors: Sequence[torch.Tensor], key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value for ``(tensors, key)``: the cached one while neither changed, else ``compute()``."""
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return compute()  # training: the value must carry its own graph to the parameters
        # a value made under inference_mode cannot enter autograd later (training after a
        # validation pass): each mode has its own entry
        full_key = (key, torch.is_inference_mode_enabled()) + tuple(_stamp(t) for t in tensors)
        entry = self._entry
        if entry is not None and entry[0] == full_key and all(
                snap is None or torch.equal(snap, t) for snap, t in zip(entry[2], tensors)):
            return entry[1]
        value = compute()
        snaps = tuple(t.detach().clone() if t.is_inference() else None for t in tensors)
        self._entry = (full_key, value, snaps)
        return value
