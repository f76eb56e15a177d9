"""The memory side of the model on the ``nano`` config: shapes through ``track_step``, RoPE,
memory selection, and gradients through a differentiable multi-frame run (CPU, fast)."""

from __future__ import annotations

from typing import Any, Dict

import pytest
import torch

from sam2_plugins.configs import get_config
from sam2_plugins.modeling.rope import RoPEAttention, apply_rotary_enc, compute_axial_cis, compute_axial_cos_sin
from sam2_plugins.modeling.rules import (
    get_1d_sine_pe,
    memory_slot_frames,
    select_closest_cond_frames,
    select_object_pointers,
)
from sam2_plugins.modeling.sam2 import NO_OBJ_SCORE, SAM2Model

NANO = "sam2.1_hiera_nano"


@pytest.fixture(scope="module")
def nano() -> SAM2Model:
    torch.manual_seed(0)
    model = SAM2Model(get_config(NANO)).eval()
    # Random init can give a negative object score, which gates every mask to -1024 and makes
    # the checks below vacuous: push the score head towards "object present".
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(8.0)
    return model


def _frame_feats(model: SAM2Model, images: torch.Tensor):
    backbone_out = model.forward_image(images)
    return model._prepare_backbone_features(backbone_out)[1:]


def _expand(feats, n):
    return [f.expand(-1, n, -1) for f in feats]


def test_track_step_shapes_and_memory(nano: SAM2Model) -> None:
    cfg = nano.config
    s, f, c, m = cfg.image_size, cfg.feat_size, cfg.d_model, cfg.memory.mem_dim
    b = 2  # two objects on the same frames
    torch.manual_seed(1)
    images = torch.randn(4, 3, s, s)
    output_dict: Dict[str, Dict[int, Any]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    with torch.inference_mode():
        feats, pos, sizes = _frame_feats(nano, images)
        assert sizes == [(4 * f, 4 * f), (2 * f, 2 * f), (f, f)]
        assert [t.shape[-1] for t in feats] == [c // 8, c // 4, c]
        pts = {"point_coords": torch.tensor([[[60.0, 80.0]], [[150.0, 100.0]]]),
               "point_labels": torch.ones(b, 1, dtype=torch.int32)}
        for t in range(4):
            ft = _expand([x[:, t:t + 1] for x in feats], b)
            pt = _expand([x[:, t:t + 1] for x in pos], b)
            if t == 0:
                out = nano.track_step(0, True, ft, pt, sizes, pts, None, output_dict, 4)
                output_dict["cond_frame_outputs"][0] = out
            elif t == 2:
                mask = torch.zeros(b, 1, s, s)
                mask[0, :, 40:120, 50:140] = 1.0  # object 1 present, object 2 absent
                out = nano.track_step(2, False, ft, pt, sizes, None, mask, output_dict, 4)
                output_dict["cond_frame_outputs"][2] = out
                assert out["object_score_logits"].flatten().tolist() == [10.0, -10.0]
                assert torch.equal(out["pred_masks_high_res"], mask * 20 - 10)
            else:
                out = nano.track_step(t, False, ft, pt, sizes, None, None, output_dict, 4)
                output_dict["non_cond_frame_outputs"][t] = out
            assert out["pred_masks"].shape == (b, 1, s // 4, s // 4)
            assert out["pred_masks_high_res"].shape == (b, 1, s, s)
            assert out["obj_ptr"].shape == (b, c)
            assert out["object_score_logits"].shape == (b, 1)
            assert out["maskmem_features"].shape == (b, m, f, f)
            assert out["maskmem_pos_enc"][-1].shape == (b, m, f, f)
            assert torch.isfinite(out["pred_masks"]).all()
    # The frame-2 mask of the absent object carries the no-object pointer.
    absent = output_dict["cond_frame_outputs"][2]["obj_ptr"][1]
    assert torch.allclose(absent, nano.no_obj_ptr[0])


def test_no_object_gating(nano: SAM2Model) -> None:
    s = nano.image_size
    torch.manual_seed(2)
    with torch.inference_mode():
        feats, pos, sizes = _frame_feats(nano, torch.randn(1, 3, s, s))
        pix = feats[-1].permute(1, 2, 0).reshape(1, nano.hidden_dim, *sizes[-1])
        hi = [f.permute(1, 2, 0).reshape(1, f.size(2), *sz) for f, sz in zip(feats[:2], sizes[:2])]
        bias = nano.sam_mask_decoder.pred_obj_score_head.layers[-1].bias
        old = bias.clone()
        try:
            bias.fill_(-50.0)
            out = nano._forward_sam_heads(pix, high_res_features=hi, multimask_output=True)
        finally:
            bias.copy_(old)
    low, high, _, best_low, _, obj_ptr, score = out
    assert (score <= 0).all()
    assert (low == NO_OBJ_SCORE).all() and (high == NO_OBJ_SCORE).all()
    assert torch.allclose(obj_ptr, nano.no_obj_ptr)


def test_bf16_memory_without_pointers_runs(nano: SAM2Model) -> None:
    """Upstream crashes here (bf16 spatial memory, no pointer to promote the dtype)."""
    s = nano.image_size
    torch.manual_seed(3)
    with torch.inference_mode():
        feats, pos, sizes = _frame_feats(nano, torch.randn(3, 3, s, s))
        pts = {"point_coords": torch.tensor([[[100.0, 90.0]]]),
               "point_labels": torch.ones(1, 1, dtype=torch.int32)}
        sel = lambda xs, t: [x[:, t:t + 1] for x in xs]  # noqa: E731
        out2 = nano.track_step(2, True, sel(feats, 2), sel(pos, 2), sizes, pts, None,
                               {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}, 3)
        out2["maskmem_features"] = out2["maskmem_features"].to(torch.bfloat16)
        bank = {"cond_frame_outputs": {2: out2}, "non_cond_frame_outputs": {}}
        # Tracking frame 0 forward: the cond frame is in the future, so no pointer is read.
        out0 = nano.track_step(0, False, sel(feats, 0), sel(pos, 0), sizes, None, None, bank, 3)
    assert out0["pred_masks"].dtype == torch.float32
    assert torch.isfinite(out0["pred_masks"]).all()


def test_gradients_reach_memory_modules() -> None:
    torch.manual_seed(4)
    model = SAM2Model(get_config(NANO)).train()
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(8.0)
    s = model.image_size
    images = torch.randn(2, 3, s, s)
    feats, pos, sizes = _frame_feats(model, images)
    bank: Dict[str, Dict[int, Any]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    pts = {"point_coords": torch.tensor([[[20.0, 30.0], [200.0, 220.0], [100.0, 120.0],
                                          [30.0, 200.0]]]),
           "point_labels": torch.tensor([[2, 3, 1, 0]], dtype=torch.int32)}
    sel = lambda xs, t: [x[:, t:t + 1] for x in xs]  # noqa: E731
    out0 = model.track_step(0, True, sel(feats, 0), sel(pos, 0), sizes, pts, None, bank, 2)
    bank["cond_frame_outputs"][0] = out0
    out1 = model.track_step(1, False, sel(feats, 1), sel(pos, 1), sizes, None, None, bank, 2)
    loss = (out1["pred_masks_high_res"].sigmoid().mean() + out1["obj_ptr"].square().mean()
            + out1["maskmem_features"].square().mean() + out1["object_score_logits"].mean())
    loss.backward()
    names = {n for n, p in model.named_parameters() if p.grad is None}
    # Unused in this run: the no-memory position embedding (unused with directly_add_no_mem_embed,
    # as upstream), the mask-prompt paths, the IoU head (only picks the best mask) and the
    # decoder's no-object pointer when the object is present.
    allowed_prefixes = ("no_mem_pos_enc", "mask_downsample.", "sam_prompt_encoder.mask_downscaling",
                        "sam_prompt_encoder.no_mask_embed", "sam_mask_decoder.iou_prediction_head")
    unexpected = [n for n in names if not n.startswith(allowed_prefixes)]
    assert not unexpected, f"no gradient for {unexpected}"
    for prefix in ("memory_attention.", "memory_encoder.", "obj_ptr_proj.", "obj_ptr_tpos_proj.",
                   "maskmem_tpos_enc", "no_mem_embed", "image_encoder.trunk."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None for g in grads), prefix
        assert sum(float(g.abs().sum()) for g in grads) > 0, f"zero gradient into {prefix}"


def test_training_forward_gradients() -> None:
    torch.manual_seed(5)
    model = SAM2Model(get_config(NANO)).train()
    s = model.image_size
    out = model(torch.randn(2, 3, s, s), point_coords=torch.tensor([[[50.0, 60.0]], [[9.0, 9.0]]]),
                point_labels=torch.ones(2, 1, dtype=torch.int64),
                boxes=torch.tensor([[10.0, 10.0, 120.0, 140.0], [0.0, 0.0, 255.0, 255.0]]),
                mask_inputs=torch.randn(2, 1, s // 4, s // 4), multimask_output=True)
    assert out["low_res_masks"].shape == (2, 3, s // 4, s // 4)
    assert out["high_res_masks"].shape == (2, 3, s, s)
    assert out["iou_pred"].shape == (2, 3)
    assert out["object_score_logits"].shape == (2, 1)
    assert out["obj_ptr"].shape == (2, model.hidden_dim)
    (out["iou_pred"].sum() + out["object_score_logits"].sum() + out["obj_ptr"].sum()).backward()
    for n in ("sam_mask_decoder.iou_prediction_head.layers.0.weight",
              "sam_prompt_encoder.mask_downscaling.0.weight", "no_mem_embed",
              "image_encoder.trunk.patch_embed.proj.weight"):
        p = dict(model.named_parameters())[n]
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, n
    with pytest.raises(ValueError, match="images must be"):
        model(torch.randn(1, 3, s, s + 1))
    with pytest.raises(ValueError, match="together"):
        model(torch.randn(1, 3, s, s), point_coords=torch.zeros(1, 1, 2))


def test_rope_real_path_matches_complex() -> None:
    torch.manual_seed(6)
    q, k = torch.randn(2, 1, 16, 32), torch.randn(2, 1, 48, 32)
    cis = compute_axial_cis(32, 4, 4)
    cos, sin = compute_axial_cos_sin(32, 4, 4)
    assert torch.allclose(cis.real, cos) and torch.allclose(cis.imag, sin)
    q1, k1 = apply_rotary_enc(q, k, cis, repeat_freqs_k=True)
    # Direct complex rotation, each 16-token grid of keys rotated like the queries.
    qc = torch.view_as_complex(q.reshape(2, 1, 16, 16, 2))
    kc = torch.view_as_complex(k.reshape(2, 1, 3, 16, 16, 2))
    assert torch.allclose(q1, torch.view_as_real(qc * cis).flatten(3), atol=1e-6)
    assert torch.allclose(k1, torch.view_as_real(kc * cis).reshape(2, 1, 48, 32), atol=1e-6)
    with pytest.raises(ValueError):
        apply_rotary_enc(q, k[:, :, :40], cis, repeat_freqs_k=True)


def test_rope_attention_excludes_pointer_tokens_and_regrids() -> None:
    torch.manual_seed(7)
    att = RoPEAttention(32, 1, kv_in_dim=8, rope_k_repeat=True, feat_sizes=(8, 8)).eval()
    q = torch.randn(1, 16, 32)  # a 4x4 grid, not the configured 8x8: tables are rebuilt
    mem = torch.randn(1, 2 * 16 + 4, 8)
    out = att(q, mem, mem, num_k_exclude_rope=4)
    assert out.shape == (1, 16, 32)
    assert att._rope_cos is not None and att._rope_cos.shape[0] == 16
    # Moving the pointer tokens must not matter if they are not rotated: permute them.
    mem2 = torch.cat([mem[:, :32], mem[:, 32:].flip(1)], dim=1)
    assert torch.allclose(att(q, mem2, mem2, num_k_exclude_rope=4), out, atol=1e-6)
    with pytest.raises(ValueError, match="square"):
        att(torch.randn(1, 12, 32), mem[:, :12], mem[:, :12])


def test_selection_helpers() -> None:
    assert memory_slot_frames(10, 7) == {1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9}
    assert memory_slot_frames(10, 7, reverse=True) == {
        1: 16, 2: 15, 3: 14, 4: 13, 5: 12, 6: 11}
    assert memory_slot_frames(20, 4, stride=5) == {1: 10, 2: 15, 3: 19}
    cond = {0: "a", 5: "b", 9: "c", 20: "d"}
    sel, unsel = select_closest_cond_frames(10, cond, 2)
    assert sorted(sel) == [9, 20] and sorted(unsel) == [0, 5]
    assert select_closest_cond_frames(10, cond, -1) == (cond, {})
    ptr = lambda v: {"obj_ptr": torch.full((1, 4), float(v))}  # noqa: E731
    got = select_object_pointers(5, {0: ptr(0), 8: ptr(8)}, {}, {4: ptr(4), 2: ptr(2)},
                                 max_obj_ptrs=4, num_frames=10, signed=True)
    assert [(d, float(p["obj_ptr"][0, 0])) for d, p in got] == [(5, 0.0), (1, 4.0), (3, 2.0)]
    pe = get_1d_sine_pe(torch.tensor([0.0, 0.5]), 8)
    assert pe.shape == (2, 8) and torch.allclose(pe[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_memory_mask_batches_different_memory_lengths(nano: SAM2Model) -> None:
    """Two objects with 1 and 2 spatial memories and 1 and 2 pointers, padded into one batch,
    give the same result as running each alone."""
    torch.manual_seed(8)
    ma = nano.memory_attention
    n, c, m = nano.config.feat_size ** 2, nano.hidden_dim, nano.mem_dim
    curr, cpos = torch.randn(n, 2, c), torch.randn(n, 2, c)
    spatial = [torch.randn(k * n, 1, m) for k in (1, 2)]
    ptrs = [torch.randn(k * 4, 1, m) for k in (1, 2)]
    pos = [torch.randn_like(x) for x in spatial], [torch.randn_like(x) for x in ptrs]
    with torch.inference_mode():
        alone = [ma(curr[:, i:i + 1], torch.cat([spatial[i], ptrs[i]]), cpos[:, i:i + 1],
                    torch.cat([pos[0][i], pos[1][i]]), num_obj_ptr_tokens=ptrs[i].shape[0])
                 for i in range(2)]
        pad = lambda x, length: torch.cat([x, torch.zeros(length - x.shape[0], 1, m)])  # noqa
        mem = torch.cat([torch.cat([pad(spatial[i], 2 * n), pad(ptrs[i], 8)]) for i in range(2)], 1)
        mpos = torch.cat([torch.cat([pad(pos[0][i], 2 * n), pad(pos[1][i], 8)]) for i in range(2)], 1)
        valid = torch.zeros(2, 2 * n + 8, dtype=torch.bool)
        valid[0, :n] = True
        valid[0, 2 * n: 2 * n + 4] = True
        valid[1] = True
        both = ma(curr, mem, cpos, mpos, num_obj_ptr_tokens=8, memory_mask=valid)
    assert torch.allclose(both[:, 0:1], alone[0], atol=1e-5)
    assert torch.allclose(both[:, 1:2], alone[1], atol=1e-5)


@pytest.mark.slow  # dynamo tracing of the encoder alone takes ~1 min on one core
def test_compile_modules_is_opt_in() -> None:
    torch.manual_seed(9)
    model = SAM2Model(get_config(NANO)).eval()
    assert "forward" not in vars(model.image_encoder)  # nothing compiled at construction
    keys = list(model.state_dict())
    x = torch.randn(1, 3, model.image_size, model.image_size)
    with torch.inference_mode():
        ref = model.forward_image(x)["vision_features"]
        model.compile_modules(backend="eager")  # the graph-capture path, without codegen
        got = model.forward_image(x)["vision_features"]
    assert "forward" in vars(model.image_encoder)
    assert list(model.state_dict()) == keys
    assert torch.allclose(ref, got, atol=1e-5)


def test_model_misuse_errors(nano: SAM2Model) -> None:
    with pytest.raises(TypeError, match="SAM2Config"):
        SAM2Model("sam2.1_hiera_nano")  # type: ignore[arg-type]
    s, f = nano.image_size, nano.config.feat_size
    feats = [torch.zeros(f * f, 1, nano.hidden_dim)]
    pos = [torch.zeros(f * f, 1, nano.hidden_dim)]
    empty = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    with pytest.raises(RuntimeError, match="no conditioning frame"):
        nano._prepare_memory_conditioned_features(3, False, feats, pos, [(f, f)], empty, 5)
    with pytest.raises(ValueError, match="backbone features"):
        nano._forward_sam_heads(torch.zeros(1, nano.hidden_dim, f + 1, f))
    assert "forward" not in vars(nano.image_encoder)  # torch.compile only when asked
    assert s == 256
