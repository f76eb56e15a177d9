"""The bf16 CPU attention path of the memory attention (sam2_plugins.modeling.attention_cpu)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sam2_plugins.modeling.attention_cpu import blocked_attention, use_blocked_attention, use_late_value_attention
from sam2_plugins.modeling.memory_attention import MemoryAttention
from sam2_plugins.modeling.rope import RoPEAttention


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dv", [64, 32])
def test_blocked_attention_matches_sdpa(dv: int) -> None:
    q, k, v = _rand(2, 2, 100, 32, seed=1), _rand(2, 2, 300, 32, seed=2), _rand(2, 2, 300, dv, seed=3)
    ref = F.scaled_dot_product_attention(q, k, v)
    # float32 through the same code: only summation order differs
    out32 = blocked_attention(q, k, v, block=64)
    assert out32.shape == ref.shape and out32.dtype == torch.float32
    torch.testing.assert_close(out32, ref, atol=1e-5, rtol=1e-5)
    outb = blocked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), block=64)
    assert outb.dtype == torch.bfloat16
    torch.testing.assert_close(outb.float(), ref, atol=3e-2, rtol=3e-2)


def test_blocked_attention_key_mask() -> None:
    q, k, v = _rand(2, 1, 40, 16, seed=1), _rand(2, 1, 50, 16, seed=2), _rand(2, 1, 50, 16, seed=3)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[0, 30:] = False
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(blocked_attention(q, k, v, key_mask=mask, block=16), ref,
                               atol=1e-5, rtol=1e-5)
    # the masked keys really are ignored: row 0 equals attention over its first 30 keys
    part = F.scaled_dot_product_attention(q[:1], k[:1, :, :30], v[:1, :, :30])
    torch.testing.assert_close(blocked_attention(q, k, v, key_mask=mask)[:1], part,
                               atol=1e-5, rtol=1e-5)


def test_blocked_attention_bad_shapes() -> None:
    q = torch.zeros(1, 1, 4, 8)
    with pytest.raises(ValueError, match="shapes do not fit"):
        blocked_attention(q, torch.zeros(1, 1, 5, 4), torch.zeros(1, 1, 5, 8))
    with pytest.raises(ValueError, match="key_mask"):
        blocked_attention(q, torch.zeros(1, 1, 5, 8), torch.zeros(1, 1, 5, 8),
                          key_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, heads, N, D\)"):
        blocked_attention(q[0], q[0], q[0])


def test_use_blocked_attention_only_bf16_cpu_inference() -> None:
    x = torch.zeros(1, 1, 4, 8, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert use_blocked_attention(x)
        assert not use_blocked_attention(x.float())
    with torch.enable_grad():
        assert not use_blocked_attention(x)


def test_use_late_value_attention_cpu_inference_narrow_values() -> None:
    q = torch.zeros(1, 1, 4, 8)
    with torch.no_grad():
        assert use_late_value_attention(q, 4) and use_late_value_attention(q.bfloat16(), 4)
        assert not use_late_value_attention(q, 8)            # values as wide: fused kernel
        assert not use_late_value_attention(q.double(), 4)
    with torch.enable_grad():
        assert not use_late_value_attention(q, 4)


@pytest.mark.parametrize("heads", [1, 2])
def test_rope_cross_attention_fp32_late_value_path(heads: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 CPU inference with narrow values runs blocked with the late value projection
    and equals the fused-kernel path to float32 rounding."""
    import sam2_plugins.modeling.rope as rope

    torch.manual_seed(0)
    att = RoPEAttention(64, heads, kv_in_dim=16, rope_k_repeat=True, feat_sizes=(4, 4)).eval()
    q, kv = _rand(3, 16, 64, seed=1), _rand(3, 2 * 16 + 4, 16, seed=2)
    mask = torch.ones(3, 36, dtype=torch.bool)
    mask[1, 16:32] = False
    with torch.enable_grad():  # autograd on: the fused kernel (SDPA), as upstream
        ref = att(q, kv, kv, num_k_exclude_rope=4, key_mask=mask).detach()
    calls = []
    real = rope.blocked_attention
    monkeypatch.setattr(rope, "blocked_attention",
                        lambda q, k, v, **kw: calls.append((v.shape[-1], v.dtype)) or real(q, k, v, **kw))
    with torch.no_grad():
        fast = att(q, kv, kv, num_k_exclude_rope=4, key_mask=mask)
    assert calls == [(16, torch.float32)]
    torch.testing.assert_close(fast, ref, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_rope_cross_attention_bf16_path(heads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path (late value projection, blocked bf16 attention) equals the SDPA path."""
    import sam2_plugins.modeling.rope as rope

    calls = []
    real = rope.blocked_attention
    monkeypatch.setattr(rope, "blocked_attention",
                        lambda q, k, v, **kw: calls.append(v.shape[-1]) or real(q, k, v, **kw))
    torch.manual_seed(0)
    att = RoPEAttention(64, heads, kv_in_dim=16, rope_k_repeat=True, feat_sizes=(4, 4)).eval()
    q, kv = _rand(3, 16, 64, seed=1), _rand(3, 2 * 16 + 4, 16, seed=2)
    with torch.enable_grad():
        ref = att(q, kv, kv, num_k_exclude_rope=4).detach()         # fp32 autograd: SDPA
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = att(q, kv, kv, num_k_exclude_rope=4)
    assert fast.dtype == torch.bfloat16
    assert calls == [16]  # the fast path ran, on the 16-channel inputs (late projection)
    err = (fast.float() - ref).norm() / ref.norm()
    assert err < 2e-2, err
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        # grad mode off but not inference mode also takes the fast path: same result
        torch.testing.assert_close(att(q, kv, kv, num_k_exclude_rope=4), fast)


def test_memory_attention_shared_rows_and_fast_path() -> None:
    """Broadcast current features (one frame, several objects) give the same result as
    materialised ones, in fp32 and in bf16; the bf16 result stays close to fp32."""
    torch.manual_seed(0)
    ma = MemoryAttention(d_model=64, num_layers=2, dim_feedforward=128, kv_dim=16,
                         feat_size=4).eval()
    n, B = 16, 3
    curr, cpos = _rand(n, 1, 64, seed=1).expand(n, B, 64), _rand(n, 1, 64, seed=2).expand(n, B, 64)
    mem, mpos = _rand(2 * n + 8, B, 16, seed=3), _rand(2 * n + 8, B, 16, seed=4)
    with torch.inference_mode():
        shared = ma(curr, mem, curr_pos=cpos, memory_pos=mpos, num_obj_ptr_tokens=8)
        dense = ma(curr.contiguous(), mem, curr_pos=cpos.contiguous(), memory_pos=mpos,
                   num_obj_ptr_tokens=8)
        torch.testing.assert_close(shared, dense, atol=1e-5, rtol=1e-5)
        one = ma(curr[:, 1:2], mem[:, 1:2], curr_pos=cpos[:, 1:2], memory_pos=mpos[:, 1:2],
                 num_obj_ptr_tokens=8)
        torch.testing.assert_close(shared[:, 1:2], one, atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = ma(curr, mem, curr_pos=cpos, memory_pos=mpos, num_obj_ptr_tokens=8)
    err = (fast.float() - dense).norm() / dense.norm()
    assert err < 3e-2, err


def test_rope_cpu_complex_path_matches_real_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU the rotation is a complex multiply; the real-arithmetic form (GPUs, MPS,
    torch.compile) and the in-place form used by the bf16 path give the same result."""
    import sam2_plugins.modeling.rope as rope

    cos, sin = rope.compute_axial_cos_sin(32, 4, 4)
    k = _rand(2, 1, 3 * 16 + 5, 32, seed=5)[:, :, :48]  # a strided slice, as the keys are
    cpu = rope._rotate(k, cos, sin, repeat=True)
    inplace = k.clone()
    rope._rotate_inplace(inplace, cos, sin, repeat=True)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    real = rope._rotate(k, cos, sin, repeat=True)
    torch.testing.assert_close(cpu, real, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(inplace, real, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(real, k, atol=1e-3)  # it did rotate
    with pytest.raises(ValueError, match="RoPE"):
        rope._rotate_inplace(k[:, :, :40].clone(), cos, sin, repeat=True)


def test_memory_attention_trains_through_sdpa() -> None:
    """With autograd on, bf16 inputs keep the differentiable SDPA path (gradients flow)."""
    torch.manual_seed(0)
    ma = MemoryAttention(d_model=32, num_layers=1, dim_feedforward=64, kv_dim=8, feat_size=2,
                         dropout=0.0)
    curr = _rand(4, 2, 32).requires_grad_()
    mem = _rand(8, 2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ma(curr, mem, curr_pos=torch.zeros(4, 2, 32), memory_pos=torch.zeros(8, 2, 8))
    out.float().sum().backward()
    assert curr.grad is not None and torch.isfinite(curr.grad).all()
    assert all(p.grad is not None for p in ma.layers[0].cross_attn_image.parameters())


@pytest.mark.parametrize("native", [True, False])
def test_tracking_autocast_auto_on_cpu(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """dtype="auto" picks bf16 on a CPU only where it has native bf16 dot products."""
    import sam2_plugins.modeling.attention_cpu as acpu
    from sam2_plugins.predictors.video.step import tracking_autocast

    monkeypatch.setattr(acpu, "cpu_has_fast_bf16", lambda: native)
    with tracking_autocast(torch.device("cpu"), "auto"):
        y = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert y.dtype == (torch.bfloat16 if native else torch.float32)
    with tracking_autocast(torch.device("cpu"), None):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32
    with tracking_autocast(torch.device("cpu"), "bf16"):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.bfloat16


def test_auto_dtype_is_bf16_only_on_fast_bf16_cpus_for_large_inputs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sam2_plugins.modeling.attention_cpu as ac
    from sam2_plugins.predictors.video import SAM2VideoPredictor
    from sam2_plugins.predictors.video.step import AUTO_BF16_MIN_IMAGE_SIZE, tracking_autocast

    cpu = torch.device("cpu")

    def on(dtype, size) -> bool:
        with tracking_autocast(cpu, dtype, size):
            return torch.is_autocast_enabled("cpu")

    monkeypatch.setattr(ac, "cpu_has_fast_bf16", lambda: True)
    assert on("auto", 1024) and on("auto", AUTO_BF16_MIN_IMAGE_SIZE)
    assert not on("auto", 256)                      # small grids: float32 (the demo model)
    assert not on(None, 1024) and on("bf16", 256)   # explicit choices win
    monkeypatch.setattr(ac, "cpu_has_fast_bf16", lambda: False)
    assert not on("auto", 1024)                     # emulated bf16 would be slower
    import inspect

    assert inspect.signature(SAM2VideoPredictor).parameters["dtype"].default == "auto"
