"""An exported standard-size checkpoint loads strictly into upstream's ``build_sam2``."""

from __future__ import annotations

import pytest
import torch

from lightning_module.export import convert_lightning_checkpoint
from lightning_module.module import SAM2FineTuner
from tests.ref_utils import require_reference


@pytest.mark.reference
def test_tiny_export_loads_in_upstream_and_gives_the_same_outputs(tmp_path):
    require_reference()
    from sam2.build_sam import build_sam2 as upstream_build

    torch.manual_seed(0)
    module = SAM2FineTuner(model_name="sam2.1_hiera_tiny")
    # a fine-tune moves weights away from their init: perturb so the check is not trivial
    with torch.no_grad():
        for p in module.model.sam_mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = module.export(tmp_path / "tiny.pt")
    # upstream's builder loads with strict=True and raises on any key mismatch
    ref = upstream_build("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=str(path),
                         device="cpu", mode="eval")
    ours = module.model.eval()
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert set(ref_sd) == set(our_sd)
    for k, v in our_sd.items():
        assert torch.equal(v, ref_sd[k]), k

    # the SAM heads on the same (random) backbone features give the same masks
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(1, 256, 64, 64, generator=g)
    hi = [torch.randn(1, 32, 256, 256, generator=g), torch.randn(1, 64, 128, 128, generator=g)]
    pts = {"point_coords": torch.tensor([[[500.0, 400.0]]]),
           "point_labels": torch.tensor([[1]], dtype=torch.int32)}
    with torch.no_grad():
        a = ours._forward_sam_heads(feat, pts, None, hi, True)
        b = ref._forward_sam_heads(feat, pts, None, hi, True)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)


def test_lightning_checkpoint_converts_to_official(tmp_path):
    import lightning.pytorch as pl

    from sam2_plugins.build import build_sam2

    module = SAM2FineTuner(lora_rank=2, lora_alpha=4.0)
    with torch.no_grad():  # non-zero adapters, so merging matters
        for n, p in module.model.named_parameters():
            if n.endswith("lora_B"):
                p.normal_(0, 0.05)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    out = convert_lightning_checkpoint(tmp_path / "run.ckpt", tmp_path / "official.pt")
    reloaded = build_sam2("sam2.1_hiera_nano", checkpoint=out, device="cpu")
    direct = module.export(tmp_path / "direct.pt")
    direct_sd = torch.load(direct, weights_only=True)["model"]
    for k, v in reloaded.state_dict().items():
        torch.testing.assert_close(v, direct_sd[k], rtol=1e-5, atol=1e-6)
    # and Lightning itself restores the module (model rebuilt from the saved hyper-parameters)
    restored = SAM2FineTuner.load_from_checkpoint(tmp_path / "run.ckpt")
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, restored.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        convert_lightning_checkpoint(direct, tmp_path / "x.pt")
