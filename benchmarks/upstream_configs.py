"""Where upstream SAM 2 (``sam2==1.1.0``) keeps the config of each of our model names.

One table for the benchmarks that build upstream beside ours and for the parity tests
(``tests/ref_utils.py`` imports it). Paths are package-relative, as upstream's hydra wants.
Importing this module imports nothing else.
"""

from __future__ import annotations

from typing import Dict

__all__ = ["UPSTREAM_YAML"]

UPSTREAM_YAML: Dict[str, str] = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}
