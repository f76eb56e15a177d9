"""Where upstream SAM 2 (``sam2==1.1.0``) keeps the config of each of our model names.

The table lives in the core (:data:`sam2_plugins.upstream_compat.UPSTREAM_YAML`, which our
builders use to accept upstream's config names); this module re-exports it for the benchmarks
that build upstream beside ours and for the parity tests (``tests/ref_utils.py``). Importing it
imports no torch.
"""

from __future__ import annotations

from sam2_plugins.upstream_compat import UPSTREAM_YAML

__all__ = ["UPSTREAM_YAML"]
