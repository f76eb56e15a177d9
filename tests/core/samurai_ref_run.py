"""Runs SAMURAI's reference code (the ``absolutely-not-samurai`` sdist: a ``sam2`` fork with
``samurai_mode``) in its own process, since its package is also called ``sam2``.

Usage: ``python samurai_ref_run.py REF_DIR REPO FRAMES_DIR OUT_DIR OVERRIDES_JSON``. Builds the
fork's tiny 2.1 SAMURAI config at 256² with random weights (seed 0) and the given config
overrides, saves them as an official checkpoint (``OUT_DIR/ckpt.pt``), tracks the object of
``FRAMES_DIR/mask0.npy`` from frame 0 and saves every frame's mask logits (``OUT_DIR/ref.npy``).
"""

from __future__ import annotations

import json
import logging
import sys
import types

import numpy as np
import torch


def main() -> None:
    ref_dir, repo, folder, out, overrides = sys.argv[1:6]
    sys.path.insert(0, ref_dir)
    sys.path.insert(1, repo)
    from tests.ref_utils import install_torchvision_shim

    install_torchvision_shim()
    # the fork logs through loguru (not a dependency here); the standard logger stands in
    sys.modules.setdefault("loguru", types.SimpleNamespace(logger=logging.getLogger("samurai")))
    import sam2

    assert sam2.__file__.startswith(ref_dir), f"imported {sam2.__file__}, not the reference"
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    extra = ["++model.image_size=256"] + [f"++model.{k}={v}" for k, v in json.loads(overrides).items()]
    p = build_sam2_video_predictor("configs/samurai/sam2.1_hiera_t.yaml", None, device="cpu",
                                   hydra_overrides_extra=extra)
    p.eval()
    torch.save({"model": p.state_dict()}, f"{out}/ckpt.pt")
    with torch.inference_mode():
        s = p.init_state(folder)
        p.add_new_mask(s, 0, 1, np.load(f"{folder}/mask0.npy"))
        res = {f: m[0, 0].float().numpy() for f, _, m in p.propagate_in_video(s)}
    np.save(f"{out}/ref.npy", np.stack([res[f] for f in sorted(res)]))


if __name__ == "__main__":
    main()
