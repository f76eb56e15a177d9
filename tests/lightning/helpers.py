"""Helpers shared by the Lightning tests."""

from __future__ import annotations


def synthetic_spec(num_frames: int = 3, length: int = 50, seed: int = 0, **kw) -> dict:
    return {"kind": "synthetic", "length": length, "num_frames": num_frames, "height": 48,
            "width": 64, "seed": seed, **kw}


def trainer_kwargs(**kw) -> dict:
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    base.update(kw)
    return base
