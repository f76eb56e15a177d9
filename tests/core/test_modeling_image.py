"""Image-side model blocks: key-for-key and numerical parity with upstream SAM 2, plus shapes
and gradients on the small ``nano`` config.

Parity tests (marker ``reference``) build upstream ``sam2==1.1.0`` with random weights, load its
``image_encoder`` / ``sam_prompt_encoder`` / ``sam_mask_decoder`` state dicts strictly into our
modules, and compare outputs in float32 on CPU.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import torch
from torch import nn

from sam2_plugins.configs import HieraConfig, get_config, list_models
from sam2_plugins.modeling.common import MLP, LayerNorm2d
from sam2_plugins.modeling.hiera import Hiera, MultiScaleBlock, window_partition, window_unpartition
from sam2_plugins.modeling.image_encoder import ImageEncoder, build_image_encoder
from sam2_plugins.modeling.mask_decoder import MaskDecoder, build_sam_heads
from sam2_plugins.modeling.position_encoding import PositionEmbeddingRandom, PositionEmbeddingSine
from sam2_plugins.modeling.prompt_encoder import PromptEncoder
from sam2_plugins.modeling.transformer import Attention
from tests.ref_utils import build_reference, require_reference

OFFICIAL = [n for n in list_models() if "nano" not in n]
TOL = 1e-4
SUBMODULES = ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder")


def _ours(name: str) -> Dict[str, nn.Module]:
    cfg = get_config(name)
    pe, md = build_sam_heads(cfg)
    return {"image_encoder": build_image_encoder(cfg), "sam_prompt_encoder": pe,
            "sam_mask_decoder": md}


def _shapes(module: nn.Module) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().float() - b.detach().float()).abs().max()) if a.numel() else 0.0


# ----------------------------------------------------------------------------- key parity
@pytest.mark.reference
@pytest.mark.parametrize("name", OFFICIAL)
def test_state_dict_keys_and_shapes_match_upstream(name: str) -> None:
    ref = build_reference(name)
    ours = _ours(name)
    for sub in SUBMODULES:
        theirs = _shapes(getattr(ref, sub))
        mine = _shapes(ours[sub])
        missing = sorted(set(theirs) - set(mine))
        unexpected = sorted(set(mine) - set(theirs))
        assert not missing and not unexpected, \
            f"{sub}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        wrong = {k: (mine[k], theirs[k]) for k in theirs if mine[k] != theirs[k]}
        assert not wrong, f"{sub}: shape mismatches {wrong}"
        # strict loading is what checkpoints rely on
        ours[sub].load_state_dict(getattr(ref, sub).state_dict(), strict=True)
    n_ref = sum(p.numel() for s in SUBMODULES for p in getattr(ref, s).parameters())
    n_ours = sum(p.numel() for s in SUBMODULES for p in ours[s].parameters())
    assert n_ours == n_ref


# ----------------------------------------------------------------------------- numerical parity
@pytest.fixture(scope="module", params=["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def tiny_pair(request: pytest.FixtureRequest) -> Iterator[dict]:
    """Upstream model and our three modules with the same (random) weights, plus the image
    features of one random 1024² image from both encoders."""
    name = request.param
    ref = build_reference(name, seed=3)
    ours = _ours(name)
    for sub in SUBMODULES:
        ours[sub].load_state_dict(getattr(ref, sub).state_dict(), strict=True)
        ours[sub].eval()
    g = torch.Generator().manual_seed(7)
    image = torch.randn(1, 3, 1024, 1024, generator=g)
    with torch.inference_mode():
        out_ref = ref.image_encoder(image)
        out_ours = ours["image_encoder"](image)
        # What SAM2Base.forward_image + the image predictor feed the decoder.
        fpn = out_ref["backbone_fpn"]
        dec = ref.sam_mask_decoder
        high_res = [dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1])]
        embed = fpn[2] + ref.no_mem_embed.view(1, -1, 1, 1)
    yield {"name": name, "ref": ref, "ours": ours, "out_ref": out_ref, "out_ours": out_ours,
           "high_res": high_res, "embed": embed}


@pytest.mark.reference
def test_image_encoder_matches_upstream(tiny_pair: dict) -> None:
    a, b = tiny_pair["out_ref"], tiny_pair["out_ours"]
    assert len(a["backbone_fpn"]) == len(b["backbone_fpn"]) == 3
    for key in ("backbone_fpn", "vision_pos_enc"):
        for level, (x, y) in enumerate(zip(a[key], b[key])):
            d = _max_diff(x, y)
            assert d <= TOL, f"{tiny_pair['name']} {key}[{level}]: max abs diff {d:.3g}"
    assert _max_diff(a["vision_features"], b["vision_features"]) <= TOL
    assert [tuple(t.shape) for t in b["backbone_fpn"]] == [
        (1, 256, 256, 256), (1, 256, 128, 128), (1, 256, 64, 64)]


Prompt = Tuple[Optional[tuple], Optional[torch.Tensor], Optional[torch.Tensor]]


def _prompts(case: str, g: torch.Generator) -> Prompt:
    """(points, boxes, masks) as SAM 2 feeds its prompt encoder, for a batch of 2 prompts."""
    pts = torch.rand(2, 2, 2, generator=g) * 1024
    lab = torch.tensor([[1, 0], [1, 1]], dtype=torch.int32)
    box = torch.tensor([[100.0, 200.0, 600.0, 900.0], [10.0, 20.0, 1000.0, 500.0]])
    box_pts, box_lab = box.view(2, 2, 2), torch.tensor([[2, 3], [2, 3]], dtype=torch.int32)
    mask = torch.randn(2, 1, 256, 256, generator=g) * 8
    if case == "points":
        return (pts, lab), None, None
    if case == "box":  # a box is two points labelled 2 and 3 (boxes=None -> padded)
        return (box_pts, box_lab), None, None
    if case == "points+box":  # box corners first, as upstream's predictor concatenates
        return (torch.cat([box_pts, pts], 1), torch.cat([box_lab, lab], 1)), None, None
    if case == "mask":  # mask prompt with the (0, 0) label -1 pad point SAM2Base adds
        return (torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32)), None, mask
    if case == "points+mask":
        return (pts, lab), None, mask
    if case == "box-tensor":  # SAM 1-style box argument (not used by SAM 2, still supported)
        return None, box, None
    raise AssertionError(case)


CASES = ["points", "box", "points+box", "mask", "points+mask", "box-tensor"]


@pytest.mark.reference
@pytest.mark.parametrize("case", CASES)
def test_prompt_encoder_and_mask_decoder_match_upstream(tiny_pair: dict, case: str) -> None:
    ref, ours = tiny_pair["ref"], tiny_pair["ours"]
    g = torch.Generator().manual_seed(CASES.index(case))
    points, boxes, masks = _prompts(case, g)
    with torch.inference_mode():
        sp_r, de_r = ref.sam_prompt_encoder(points=points, boxes=boxes, masks=masks)
        sp_o, de_o = ours["sam_prompt_encoder"](points=points, boxes=boxes, masks=masks)
        assert _max_diff(sp_r, sp_o) <= TOL
        assert _max_diff(de_r, de_o) <= TOL
        pe_r = ref.sam_prompt_encoder.get_dense_pe()
        pe_o = ours["sam_prompt_encoder"].get_dense_pe()
        assert _max_diff(pe_r, pe_o) <= TOL
        for multimask in (True, False):
            kw = dict(image_embeddings=tiny_pair["embed"], sparse_prompt_embeddings=sp_r,
                      dense_prompt_embeddings=de_r, multimask_output=multimask,
                      repeat_image=True, high_res_features=tiny_pair["high_res"])
            out_r = ref.sam_mask_decoder(image_pe=pe_r, **kw)
            out_o = ours["sam_mask_decoder"](image_pe=pe_o, **kw)
            names = ("masks", "iou", "sam_tokens", "object_score_logits")
            for what, x, y in zip(names, out_r, out_o):
                d = _max_diff(x, y)
                assert d <= TOL, f"{case} multimask={multimask} {what}: max abs diff {d:.3g}"
            assert out_o[0].shape == (2, 3 if multimask else 1, 256, 256)
        if case == "points+box":
            # End to end: our encoder's features through our heads vs upstream's through theirs.
            fpn = tiny_pair["out_ours"]["backbone_fpn"]
            dec = ours["sam_mask_decoder"]
            embed = fpn[2] + tiny_pair["ref"].no_mem_embed.view(1, -1, 1, 1)
            out_e2e = dec(embed, pe_o, sp_o, de_o, True, True, [dec.conv_s0(fpn[0]),
                                                                dec.conv_s1(fpn[1])])
            kw.update(multimask_output=True)
            out_r = ref.sam_mask_decoder(image_pe=pe_r, **kw)
            for x, y in zip(out_r, out_e2e):
                assert _max_diff(x, y) <= TOL


@pytest.mark.reference
def test_dynamic_multimask_both_branches(tiny_pair: dict) -> None:
    """The stability fallback agrees with upstream whether mask 0 is judged stable or not."""
    ref, ours = tiny_pair["ref"], tiny_pair["ours"]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 8, 8, generator=g)
    logits[0, 0] = 5.0  # perfectly stable single mask
    logits[1, 0] = torch.linspace(-1, 1, 64).view(8, 8)  # ~10% of pixels flip: unstable
    iou = torch.rand(3, 4, generator=g)
    dec_r, dec_o = ref.sam_mask_decoder, ours["sam_mask_decoder"]
    m_r, i_r = dec_r._dynamic_multimask_via_stability(logits, iou)
    m_o, i_o = dec_o._dynamic_multimask_via_stability(logits, iou)
    assert torch.equal(m_r, m_o) and torch.equal(i_r, i_o)
    assert torch.equal(m_o[0, 0], logits[0, 0])  # stable -> kept
    best = int(iou[1, 1:].argmax()) + 1
    assert torch.equal(m_o[1, 0], logits[1, best])  # unstable -> best multimask


@pytest.mark.reference
@pytest.mark.slow
@pytest.mark.parametrize("name", ["sam2.1_hiera_base_plus", "sam2.1_hiera_large"])
def test_large_image_encoder_matches_upstream(name: str) -> None:
    ref = build_reference(name, seed=5)
    enc = build_image_encoder(get_config(name)).eval()
    enc.load_state_dict(ref.image_encoder.state_dict(), strict=True)
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = ref.image_encoder(image), enc(image)
    for key in ("backbone_fpn", "vision_pos_enc"):
        for x, y in zip(a[key], b[key]):
            assert _max_diff(x, y) <= TOL, key


# ----------------------------------------------------------------------------- small units
@pytest.mark.reference
def test_position_encodings_match_upstream() -> None:
    require_reference()
    from sam2.modeling.position_encoding import PositionEmbeddingRandom as RefRandom
    from sam2.modeling.position_encoding import PositionEmbeddingSine as RefSine

    x = torch.zeros(2, 5, 12, 20)
    for feats in (256, 64):
        assert _max_diff(RefSine(feats)(x), PositionEmbeddingSine(feats)(x)) <= 1e-6
    torch.manual_seed(0)
    ref = RefRandom(64)
    ours = PositionEmbeddingRandom(64)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert _max_diff(ref((16, 24)), ours((16, 24))) <= 1e-6
    coords = torch.rand(3, 5, 2) * 512
    assert _max_diff(ref.forward_with_coords(coords, (512, 256)),
                     ours.forward_with_coords(coords, (512, 256))) <= 1e-6


def test_sine_encoding_is_cached_and_read_only_view() -> None:
    pe = PositionEmbeddingSine(32)
    a = pe(torch.zeros(3, 1, 4, 6))
    b = pe(torch.zeros(1, 1, 4, 6))
    assert a.shape == (3, 32, 4, 6) and b.shape == (1, 32, 4, 6)
    assert torch.equal(a[2], b[0])
    # channel 0 is sin(y) of the first row: y = 1 / (4 + 1e-6) * 2π
    assert abs(float(b[0, 0, 0, 0]) - float(torch.sin(torch.tensor(2 * torch.pi / 4)))) < 1e-5
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(5)


def test_window_partition_roundtrip_with_padding() -> None:
    x = torch.randn(2, 10, 13, 3)
    win, pad_hw = window_partition(x, 4)
    assert pad_hw == (12, 16) and win.shape == (2 * 3 * 4, 4, 4, 3)
    assert torch.equal(window_unpartition(win, 4, pad_hw, (10, 13)), x)
    assert torch.equal(win[0], x[0, :4, :4])  # first window is the top-left corner
    assert float(win[3, :, 1:].abs().sum()) == 0.0  # right edge padded with zeros


def test_layernorm2d_and_mlp() -> None:
    ln = LayerNorm2d(6)
    x = torch.randn(2, 6, 3, 4) * 5 + 2
    ref = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), eps=1e-6).permute(0, 3, 1, 2)
    assert _max_diff(ln(x), ref) <= 1e-5
    mlp = MLP(4, 8, 2, 3, sigmoid_output=True)
    assert [tuple(layer.weight.shape) for layer in mlp.layers] == [(8, 4), (8, 8), (2, 8)]
    y = mlp(torch.randn(5, 7, 4))
    assert y.shape == (5, 7, 2) and bool(((y > 0) & (y < 1)).all())
    with pytest.raises(ValueError):
        MLP(4, 8, 2, 0)


def test_attention_kv_in_dim_and_heads() -> None:
    att = Attention(32, 4, downsample_rate=2, kv_in_dim=8)
    assert att.internal_dim == 16 and att.k_proj.in_features == 8
    out = att(torch.randn(2, 5, 32), torch.randn(2, 9, 8), torch.randn(2, 9, 8))
    assert out.shape == (2, 5, 32)
    with pytest.raises(ValueError, match="num_heads"):
        Attention(32, 3)


def test_bad_inputs_are_reported() -> None:
    enc = build_image_encoder(get_config("sam2.1_hiera_nano"))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        enc.trunk(torch.zeros(1, 1, 256, 256))
    with pytest.raises(ValueError, match="multiple"):
        enc.trunk(torch.zeros(1, 3, 200, 200))  # 50² tokens vs 8² window tile
    with pytest.raises(ValueError, match="channels"):
        ImageEncoder(enc.trunk, type(enc.neck)(PositionEmbeddingSine(16), 16, [1, 2, 3, 4]))


# ----------------------------------------------------------------------------- nano: shapes, grads
def _nano() -> Tuple[ImageEncoder, PromptEncoder, MaskDecoder]:
    torch.manual_seed(0)
    cfg = get_config("sam2.1_hiera_nano")
    enc = build_image_encoder(cfg)
    pe, md = build_sam_heads(cfg)
    return enc, pe, md


def _run_heads(enc_out: dict, pe: PromptEncoder, md: MaskDecoder, points: tuple,
               masks: Optional[torch.Tensor], multimask: bool) -> List[torch.Tensor]:
    fpn = enc_out["backbone_fpn"]
    high_res = [md.conv_s0(fpn[0]), md.conv_s1(fpn[1])]
    sparse, dense = pe(points=points, boxes=None, masks=masks)
    return list(md(image_embeddings=fpn[2], image_pe=pe.get_dense_pe(),
                   sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                   multimask_output=multimask, repeat_image=True, high_res_features=high_res))


def test_nano_forward_shapes() -> None:
    enc, pe, md = _nano()
    enc.eval(), md.eval()
    cfg = get_config("sam2.1_hiera_nano")
    d, f = cfg.d_model, cfg.feat_size
    with torch.inference_mode():
        out = enc(torch.randn(2, 3, cfg.image_size, cfg.image_size))
        assert [tuple(t.shape) for t in out["backbone_fpn"]] == [
            (2, d, 4 * f, 4 * f), (2, d, 2 * f, 2 * f), (2, d, f, f)]
        assert [t.shape for t in out["vision_pos_enc"]] == [t.shape for t in out["backbone_fpn"]]
        one = {k: ([t[:1] for t in v] if isinstance(v, list) else v[:1]) for k, v in out.items()}
        pts = (torch.rand(3, 2, 2) * cfg.image_size, torch.ones(3, 2, dtype=torch.int32))
        masks, iou, tokens, obj = _run_heads(one, pe, md, pts, None, multimask=True)
    assert masks.shape == (3, 3, 4 * f, 4 * f) and iou.shape == (3, 3)
    assert tokens.shape == (3, 3, d) and obj.shape == (3, 1)
    assert bool(((iou >= 0) & (iou <= 1)).all())  # sigmoid IoU head


def test_nano_backward_reaches_every_parameter() -> None:
    enc, pe, md = _nano()
    enc.train(), pe.train(), md.train()
    cfg = get_config("sam2.1_hiera_nano")
    out = enc(torch.randn(1, 3, cfg.image_size, cfg.image_size))
    n = cfg.image_size
    # labels 0..3 and the pad point touch every point embedding; a second call with a mask
    # prompt covers the mask downscaler; multimask on and off cover all mask tokens.
    pts = (torch.rand(1, 4, 2) * n, torch.tensor([[0, 1, 2, 3]]))
    loss = torch.zeros(())
    mask_prompt = torch.randn(1, 1, 4 * cfg.feat_size, 4 * cfg.feat_size)
    for masks, multimask in ((None, False), (mask_prompt, True)):
        for t in _run_heads(out, pe, md, pts, masks, multimask):
            loss = loss + t.float().square().mean()
    loss.backward()
    modules = {"image_encoder": enc, "prompt_encoder": pe, "mask_decoder": md}
    missing = [f"{m}.{k}" for m, mod in modules.items() for k, p in mod.named_parameters()
               if p.grad is None or not bool(torch.isfinite(p.grad).all())]
    assert not missing, f"no (finite) gradient for {missing}"
    nonzero = sum(int(p.grad.abs().sum() > 0) for mod in modules.values() for p in mod.parameters())
    total = sum(1 for mod in modules.values() for _ in mod.parameters())
    assert nonzero == total


def test_hiera_grad_mode_does_not_use_stale_pos_cache() -> None:
    trunk = Hiera(get_config("sam2.1_hiera_nano").hiera)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        a = trunk(x)[0]
        trunk.pos_embed.add_(1.0)  # in-place update (as an optimizer step) bumps the version
        b = trunk(x)[0]
    assert not torch.equal(a, b)
    y = trunk(x)[0]
    assert torch.allclose(y, b, atol=1e-5)
    y.sum().backward()
    assert trunk.pos_embed.grad is not None


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_fast_paths_match_plain_pytorch() -> None:
    """The oneDNN-fused linears and the layout-dependent shortcuts give the plain results."""
    enc, pe, md = _nano()
    enc.eval(), md.eval()
    cfg = get_config("sam2.1_hiera_nano")
    x = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    pts = (torch.rand(2, 3, 2) * cfg.image_size, torch.tensor([[1, 0, 1], [2, 3, 1]]))
    with torch.inference_mode():
        fast = enc(x)
        with torch.backends.mkldnn.flags(enabled=False):
            plain = enc(x)
        for a, b in zip(fast["backbone_fpn"], plain["backbone_fpn"]):
            assert _max_diff(a, b) <= 1e-5
        out_fast = _run_heads(fast, pe, md, pts, None, multimask=True)
        # NCHW-contiguous features (not the channels-last ones the encoder returns) and the
        # fallback linears must give the same decoder outputs.
        nchw = {"backbone_fpn": [t.contiguous() for t in fast["backbone_fpn"]]}
        with torch.backends.mkldnn.flags(enabled=False):
            out_plain = _run_heads(nchw, pe, md, pts, None, multimask=True)
        for a, b in zip(out_fast, out_plain):
            assert _max_diff(a, b) <= 1e-5
        # one image embedding per prompt set (repeat_image=False) gives the same masks
        fpn = [t.expand(2, -1, -1, -1).contiguous() for t in fast["backbone_fpn"]]
        sparse, dense = pe(points=pts, boxes=None, masks=None)
        out_b = md(fpn[2], pe.get_dense_pe(), sparse, dense, True, False,
                   [md.conv_s0(fpn[0]), md.conv_s1(fpn[1])])
        assert _max_diff(out_b[0], out_fast[0]) <= 1e-5
        with pytest.raises(ValueError, match="repeat_image"):
            md(fpn[2][:1], pe.get_dense_pe(), sparse, dense, True, False, None)


def _naive_block(blk: MultiScaleBlock, x: torch.Tensor) -> torch.Tensor:
    """MultiScaleBlock written out window by window with plain ops (test oracle)."""
    F = nn.functional
    b, h, w, _ = x.shape
    xn = blk.norm1(x)
    shortcut = x
    s = blk.q_stride[0] if blk.q_stride else 1
    if blk.dim != blk.dim_out:
        shortcut = F.max_pool2d(blk.proj(xn).permute(0, 3, 1, 2), s, s).permute(0, 2, 3, 1)
    wh, ww = (blk.window_size, blk.window_size) if blk.window_size else (h, w)  # 0: global
    hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
    padded = torch.zeros(b, hp, wp, blk.dim)
    padded[:, :h, :w] = xn
    out = torch.zeros(b, hp // s, wp // s, blk.dim_out)
    nh = blk.attn.num_heads
    for i in range(0, hp, wh):
        for j in range(0, wp, ww):
            win = padded[:, i:i + wh, j:j + ww]
            q, k, v = blk.attn.qkv(win).chunk(3, dim=-1)
            if s > 1:
                q = F.max_pool2d(q.permute(0, 3, 1, 2), s, s).permute(0, 2, 3, 1)
            hd = blk.dim_out // nh
            qh, kh, vh = (t.reshape(b, -1, nh, hd).transpose(1, 2) for t in (q, k, v))
            att = torch.softmax(qh @ kh.transpose(-1, -2) / (blk.dim_out // nh) ** 0.5, -1) @ vh
            o = blk.attn.proj(att.transpose(1, 2).reshape(b, wh // s, ww // s, blk.dim_out))
            out[:, i // s:(i + wh) // s, j // s:(j + ww) // s] = o
    x = shortcut + out[:, :shortcut.shape[1], :shortcut.shape[2]]
    return x + blk.mlp(blk.norm2(x))


@pytest.mark.parametrize("dim,dim_out,heads,q_stride,window,hw", [
    (8, 8, 1, None, 4, (8, 8)),      # windows tile the grid: strided residual add
    (8, 8, 2, None, 4, (10, 7)),     # padded windows (unmasked zero padding)
    (8, 16, 2, (2, 2), 4, (8, 12)),  # q-pooling with window shrink
    (8, 16, 2, (2, 2), 6, (10, 10)),  # q-pooling with padding
    (8, 8, 2, None, 0, (6, 5)),      # global attention
])
def test_block_matches_naive_windowed_attention(dim, dim_out, heads, q_stride, window, hw) -> None:
    torch.manual_seed(0)
    blk = MultiScaleBlock(dim, dim_out, heads, q_stride=q_stride, window_size=window).eval()
    x = torch.randn(2, *hw, dim)
    with torch.inference_mode():
        got = blk(x)
        want = _naive_block(blk, x)
    assert got.shape == want.shape
    assert _max_diff(got, want) <= 1e-5


def test_hiera_stochastic_depth_trains() -> None:
    trunk = Hiera(HieraConfig(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                              window_spec=(4, 4, 2, 2), window_pos_embed_bkg_spatial_size=(4, 4),
                              drop_path_rate=0.5)).train()
    out = trunk(torch.randn(2, 3, 64, 64))
    assert [tuple(t.shape) for t in out] == [
        (2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    sum(t.sum() for t in out).backward()
    assert all(p.grad is not None for p in trunk.parameters())


def test_speed_benchmark_script_runs(capsys: pytest.CaptureFixture, tmp_path) -> None:
    from benchmarks.image_encoder_speed import main

    out_json = tmp_path / "speed.json"
    assert main(["--model", "nano", "--iters", "1", "--warmup", "0", "--no-bf16",
                 "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "sam2.1_hiera_nano" in printed and "fp32" in printed
    import json
    result = json.loads(out_json.read_text())
    assert result["fp32"]["ours_median_s"] > 0
