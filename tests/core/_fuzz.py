"""Shared checks of the fuzz suite (``tests/core/test_fuzz_*.py``, ``tests/benchmarks/test_cli_safety.py``).

Every case asserts one outcome category:

* ``Err(type, match)``: a clear error of that type whose message matches, raised before any work,
  and not a message from deep inside torch / numpy;
* ``Warn(match)``: a ``UserWarning`` matching ``match``, and a finite result;
* ``Ok(check)``: documented behaviour, checked by ``check(result)``; the result is finite.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch

#: fragments of messages that come from inside torch / numpy / Python, not from a clear check
INTERNAL = (
    "size of tensor",
    "must match the size",
    "Expected all tensors",
    "__len__() should",
    "object of type",
    "unsupported operand",
    "can't convert",
    "could not convert",
    "invalid literal",
    "not subscriptable",
    "has no attribute",
    "index out of range",
    "out of bounds for axis",
    "shape '[",
    "mat1 and mat2",
    "Traceback",
    "numpy.core",
    "_C.",
    "'NoneType'",
)


@dataclass
class Err:
    exc: Any
    match: str


@dataclass
class Warn:
    match: str
    check: Optional[Callable[[Any], None]] = None


@dataclass
class Ok:
    check: Callable[[Any], None]


def assert_clean(exc: BaseException) -> None:
    """The error is ours: not raised from torch / numpy internals, and says something readable."""
    msg = str(exc)
    mod = type(exc).__module__ or ""
    assert not mod.startswith(("torch", "numpy")), f"{type(exc).__name__} from {mod}: {msg}"
    bad = [frag for frag in INTERNAL if frag in msg]
    assert not bad, f"internal message {bad}: {msg}"
    assert len(msg) >= 15, f"message too short to be clear: {msg!r}"


def assert_finite(x: Any) -> None:
    """No NaN / inf anywhere in a (nested) result of arrays and tensors."""
    if isinstance(x, torch.Tensor):
        assert torch.isfinite(x.float()).all(), "NaN or inf in a tensor output"
    elif isinstance(x, np.ndarray):
        if x.dtype.kind in "fc":
            assert np.isfinite(x).all(), "NaN or inf in an array output"
    elif isinstance(x, (list, tuple)):
        for v in x:
            assert_finite(v)
    elif isinstance(x, dict):
        for v in x.values():
            assert_finite(v)


def run_case(fn: Callable[[], Any], outcome: Any) -> Any:
    """Run ``fn`` and assert its outcome category (see the module docstring)."""
    if isinstance(outcome, Err):
        with pytest.raises(outcome.exc, match=outcome.match) as info:
            fn()
        assert_clean(info.value)
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if isinstance(outcome, Warn):
        assert any(re.search(outcome.match, m) for m in messages), (outcome.match, messages)
        assert_finite(result)
        if outcome.check is not None:
            outcome.check(result)
    else:
        assert_finite(result)
        outcome.check(result)
    return result
