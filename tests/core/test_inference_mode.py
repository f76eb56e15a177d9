"""Models built (or used) under ``torch.inference_mode()``.

Upstream's tools build and run everything inside ``torch.inference_mode()``; the parameters are
then *inference tensors*, which have no version counter. Both predictors must work with such a
model, give upstream's results for upstream's model built the same way, and the cached position
codes must still notice a change of the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
import torch

from sam2_plugins import build_sam2, build_sam2_video_predictor
from sam2_plugins.configs import get_config
from sam2_plugins.modeling.hiera import Hiera
from sam2_plugins.modeling.prompt_encoder import PromptEncoder
from sam2_plugins.predictors.image import SAM2ImagePredictor
from tests.ref_utils import build_reference, install_torchvision_shim, require_reference, save_reference_checkpoint

TINY = "configs/sam2.1/sam2.1_hiera_t.yaml"
SIZE = ["++model.image_size=256"]  # tiny's code at 16x fewer pixels


def test_position_caches_follow_inference_tensor_updates() -> None:
    with torch.inference_mode():
        trunk = Hiera(get_config("sam2.1_hiera_nano").hiera)
        pe = PromptEncoder(32, (16, 16), (256, 256), 8)
        x = torch.randn(1, 3, 256, 256)
        assert trunk.pos_embed.is_inference()
        a, dense_a = trunk(x)[0], pe.get_dense_pe()
        assert torch.equal(trunk(x)[0], a) and pe.get_dense_pe() is dense_a  # cached
        trunk.pos_embed.add_(1.0)  # no version counter to bump: the cache must compare values
        pe.pe_layer.positional_encoding_gaussian_matrix.mul_(2.0)
        b, dense_b = trunk(x)[0], pe.get_dense_pe()
    assert not torch.equal(a, b) and not torch.equal(dense_a, dense_b)
    with torch.no_grad():  # and outside inference mode, recomputed from scratch
        trunk._pos_cache.clear()
        assert torch.allclose(trunk(x)[0], b, atol=1e-6)


def test_position_caches_stay_out_of_compiled_graphs() -> None:
    """The caches' checks (version counters, inference-tensor tests) would break a
    ``torch.compile`` graph; when compiling, the codes are computed inside the graph."""
    trunk = Hiera(get_config("sam2.1_hiera_nano").hiera).eval()
    pe = PromptEncoder(32, (16, 16), (256, 256), 8)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        eager = trunk(x)[0], pe.get_dense_pe()
        compiled = (torch.compile(trunk, backend="eager", fullgraph=True)(x)[0],
                    torch.compile(pe.get_dense_pe, backend="eager", fullgraph=True)())
    for a, b in zip(eager, compiled):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Upstream's random-init tiny 2.1 (at 256²) as an official checkpoint file."""
    require_reference()
    model = build_reference("sam2.1_hiera_tiny", extra_overrides=tuple(SIZE))
    return save_reference_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _image(h: int = 90, w: int = 120) -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[20:60, 30:80] = (240, 30, 30)
    return img


@pytest.mark.reference
def test_image_predictor_with_model_built_in_inference_mode(ckpt: Path) -> None:
    install_torchvision_shim()
    from sam2.build_sam import build_sam2 as upstream_build
    from sam2.sam2_image_predictor import SAM2ImagePredictor as UpstreamImagePredictor

    with torch.inference_mode():
        up = upstream_build(TINY, str(ckpt), device="cpu", hydra_overrides_extra=SIZE)
        ours = build_sam2(TINY, str(ckpt), device="cpu", hydra_overrides_extra=SIZE)
    assert next(ours.parameters()).is_inference()
    img, pts, labels = _image(), np.array([[50.0, 40.0], [10.0, 10.0]]), np.array([1, 0])
    for inside in (True, False):  # used inside inference mode, and outside it
        results = []
        up_pred = UpstreamImagePredictor(up)
        up_pred._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]  # upstream hard-codes 1024's sizes
        for pred in (up_pred, SAM2ImagePredictor(ours, dtype=None)):
            with torch.inference_mode(inside):
                pred.set_image(img)
                results.append(pred.predict(point_coords=pts, point_labels=labels, multimask_output=True,
                                            return_logits=True))
        (m_up, s_up, low_up), (m_ours, s_ours, low_ours) = results
        assert m_ours.shape == m_up.shape == (3, 90, 120)
        assert np.abs(m_ours - m_up).max() <= 1e-3 and np.abs(s_ours - s_up).max() <= 1e-4


def _jpegs(folder: Path, n: int = 2) -> Path:
    from PIL import Image

    folder.mkdir()
    base = _image(48, 64)
    for i in range(n):
        fr = base.copy()
        fr[12:30, 8 + 3 * i:26 + 3 * i] = (250, 250, 40)
        Image.fromarray(fr).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def _session(p: Any, video: Path) -> List[torch.Tensor]:
    state = p.init_state(video_path=str(video))
    out = [p.add_new_points_or_box(state, 0, 1, points=np.array([[15.0, 20.0]]), labels=np.array([1]))[2]]
    out += [m for _, _, m in p.propagate_in_video(state)]
    return out


@pytest.mark.reference
def test_video_predictor_with_model_built_in_inference_mode(ckpt: Path, tmp_path: Path) -> None:
    from sam2.build_sam import build_sam2_video_predictor as upstream_builder

    video = _jpegs(tmp_path / "frames")
    with torch.inference_mode():
        up = upstream_builder(TINY, str(ckpt), device="cpu", hydra_overrides_extra=SIZE,
                              apply_postprocessing=False)
        ours = build_sam2_video_predictor(TINY, str(ckpt), device="cpu", hydra_overrides_extra=SIZE,
                                          apply_postprocessing=False)
    assert next(ours.model.parameters()).is_inference()
    ref, got = _session(up, video), _session(ours, video)
    assert len(ref) == len(got) == 3
    for a, b in zip(ref, got):
        assert a.shape == b.shape == (1, 1, 48, 64)
        assert (a - b).abs().max() <= 1e-3
