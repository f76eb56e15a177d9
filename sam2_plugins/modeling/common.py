"""Small building blocks shared by several SAM 2 modules.

State-dict names follow upstream SAM 2 (``MLP.layers.N``, ``LayerNorm2d.{weight,bias}``), so
official checkpoints load key for key.
"""

from __future__ import annotations

from typing import Optional, Type

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "LayerNorm2d", "DropPath", "fused_linear", "linear_fused"]


class MLP(nn.Module):
    """A stack of ``num_layers`` linear layers with an activation between them.

    Args:
        input_dim: channels of the input (last dimension).
        hidden_dim: channels of every hidden layer.
        output_dim: channels of the output.
        num_layers: number of ``nn.Linear`` layers (>= 1); the activation follows every layer
            but the last.
        activation: activation class, instantiated once (``nn.ReLU`` by default).
        sigmoid_output: apply a sigmoid to the output (used by the IoU head).

    Shapes:
        ``(..., input_dim) -> (..., output_dim)``, any leading dimensions, any float dtype.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 activation: Type[nn.Module] = nn.ReLU, sigmoid_output: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs num_layers >= 1, got {num_layers}")
        self.num_layers = num_layers
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        if self.sigmoid_output:
            x = torch.sigmoid(x)
        return x


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of a ``(B, C, H, W)`` tensor.

    Normalises each pixel's C values (biased variance, ``eps`` inside the square root), then
    applies a per-channel affine transform. Parameters ``weight`` and ``bias`` have shape (C,).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # layer_norm over the last axis of the NHWC view: one fused kernel, and no copy at
        # all when x is channels-last in memory (a strided mean over C is several times
        # slower on CPU).
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class DropPath(nn.Module):
    """Stochastic depth: during training, zero whole samples of a residual branch.

    With probability ``drop_prob`` a sample's branch output is zeroed; survivors are divided by
    ``1 - drop_prob`` (when ``scale_by_keep``) so the expectation is unchanged. Identity in
    eval mode or when ``drop_prob`` is 0. Works on any ``(B, ...)`` tensor.
    """

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        if self.scale_by_keep:
            mask = mask / keep
        return x * mask



_ONEDNN_LINEAR: Optional[bool] = None


def _onednn_linear_works() -> bool:
    """Whether torch's oneDNN linear (with fused GELU / add) exists and agrees with F.linear.

    Checked once, on first use (never at import time).
    """
    global _ONEDNN_LINEAR
    if _ONEDNN_LINEAR is None:
        try:
            op = torch.ops.mkldnn._linear_pointwise
            gen = torch.Generator().manual_seed(0)
            x, w, b, r = (torch.randn(s, generator=gen) for s in ((3, 8), (5, 8), (5,), (3, 5)))
            with torch.no_grad():
                ref = F.linear(x, w, b)
                ok = (torch.allclose(op(x, w, b, "none", [], ""), ref, atol=1e-5)
                      and torch.allclose(op(x, w, b, "gelu", [], "none"), F.gelu(ref), atol=1e-5)
                      and torch.allclose(op.binary(x, r, w, b, "add"), ref + r, atol=1e-5))
            _ONEDNN_LINEAR = bool(ok)
        except Exception:  # op missing (build without oneDNN, other torch version)
            _ONEDNN_LINEAR = False
    return _ONEDNN_LINEAR


def _autocast_on_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


def _use_onednn(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                residual: Optional[torch.Tensor]) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight, bias, residual)):
        return False  # the fused op has no autograd formula
    if _autocast_on_cpu() or _compiling():
        return False  # autocast picks its own kernels; the compiler fuses by itself
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    return _onednn_linear_works()


def linear_fused(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                 gelu: bool = False, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, then exact GELU if ``gelu``, then ``residual + ...``.

    The result equals the plain PyTorch expression (up to float32 summation order). For
    float32 CPU inference it runs as one oneDNN call with the bias, the GELU or the residual
    add fused into the GEMM, which saves full memory passes over large token grids (the
    Hiera trunk spends most of its CPU time in these linears). Anywhere else (autograd,
    autocast, GPU, other dtypes, torch.compile) it falls back to the plain ops.

    Args:
        x: (..., in_features).
        weight: (out_features, in_features); bias: (out_features,) or None.
        gelu: apply ``F.gelu`` (erf form) to the linear output.
        residual: (..., out_features) tensor added to the output; not combinable with gelu.

    Returns:
        (..., out_features) tensor.
    """
    if gelu and residual is not None:
        raise ValueError("linear_fused takes either gelu or residual, not both")
    if _use_onednn(x, weight, bias, residual):
        op = torch.ops.mkldnn._linear_pointwise
        if residual is not None:
            out_shape = x.shape[:-1] + (weight.shape[0],)
            if residual.shape == out_shape and residual.is_contiguous():
                return op.binary(x, residual, weight, bias, "add")
            return residual + op(x, weight, bias, "none", [], "")
        if gelu:
            return op(x, weight, bias, "gelu", [], "none")
        return op(x, weight, bias, "none", [], "")
    y = F.linear(x, weight, bias)
    if gelu:
        y = F.gelu(y)
    return y if residual is None else residual + y


def fused_linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False,
                 residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`linear_fused` with the weight and bias of ``layer`` (an ``nn.Linear``)."""
    return linear_fused(x, layer.weight, layer.bias, gelu=gelu, residual=residual)
