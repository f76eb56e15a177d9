"""Our builders called the way upstream's are: config file names, ``ckpt_path=``, positional
arguments, ``hydra_overrides_extra`` and ``apply_postprocessing`` (and clear errors for what is
not supported). The flag-by-flag comparison builds upstream's model with the same arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest
import torch

from sam2_plugins import build_sam2, build_sam2_hf, build_sam2_video_predictor, build_sam2_video_predictor_hf
from sam2_plugins.configs import TrackingConfig
from sam2_plugins.upstream_compat import UPSTREAM_YAML, supported_override_keys
from tests.ref_utils import require_reference

TINY = "configs/sam2.1/sam2.1_hiera_t.yaml"
DECODER_KEYS = ("dynamic_multimask_via_stability", "dynamic_multimask_stability_delta",
                "dynamic_multimask_stability_thresh")


@pytest.mark.parametrize("config_file,name", [
    ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny"),
    ("sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny"),
    ("configs/sam2/sam2_hiera_s.yaml", "sam2_hiera_small"),
    ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus"),
])
def test_builders_take_upstream_config_names(config_file: str, name: str) -> None:
    with torch.device("meta"):
        by_keyword = build_sam2(config_file=config_file, ckpt_path=None, device="meta")
        by_position = build_sam2(config_file, None, "meta", "eval", [], True)
    assert by_keyword.config.name == name and by_position.config.name == name
    assert UPSTREAM_YAML[name].endswith(config_file.rsplit("/", 1)[-1])
    assert not by_keyword.training


def _our_flags(model: torch.nn.Module, predictor: Any = None) -> Dict[str, Any]:
    flags = {k: getattr(model, k) for k in (f.name for f in TrackingConfig.__dataclass_fields__.values())
             if k not in ("no_obj_embed_spatial", "fill_hole_area")}
    flags.update({k: getattr(model.sam_mask_decoder, k) for k in DECODER_KEYS})
    flags["image_size"] = model.image_size
    if predictor is not None:
        flags.update(fill_hole_area=predictor.fill_hole_area, non_overlap_masks=predictor.non_overlap_masks,
                     add_all_frames_to_correct_as_cond=predictor.add_all_frames_to_correct_as_cond,
                     clear_non_cond_mem_around_input=predictor.clear_non_cond_mem_around_input)
    return flags


def _upstream_flags(model: torch.nn.Module, keys: Sequence[str]) -> Dict[str, Any]:
    out = {}
    for k in keys:
        src = model.sam_mask_decoder if k in DECODER_KEYS else model
        out[k] = getattr(src, k)
    return out


OVERRIDE_CASES: List[Sequence[str]] = [
    ["++model.non_overlap_masks=true"],  # what vos_inference.py passes
    ["++model.memory_temporal_stride_for_eval=2", "+model.max_cond_frames_in_attn=4",
     "++model.binarize_mask_from_pts_for_mem_enc=True", "++model.fill_hole_area=3",
     "++model.add_all_frames_to_correct_as_cond=true", "model.multimask_output_in_sam=false",
     "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
     "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.1",
     "++model.image_size=512", "++model.compile_image_encoder=false"],
]


@pytest.mark.reference
@pytest.mark.parametrize("apply_postprocessing", [False, True])
@pytest.mark.parametrize("overrides", OVERRIDE_CASES, ids=["vos_inference", "many"])
def test_video_builder_flags_match_upstream(overrides: Sequence[str], apply_postprocessing: bool) -> None:
    """Every flag our model and predictor end up with equals upstream's for the same call
    (including upstream's rule that apply_postprocessing wins over the caller's overrides)."""
    require_reference()
    from sam2.build_sam import build_sam2_video_predictor as upstream_builder

    up = upstream_builder(TINY, None, "cpu", "eval", list(overrides), apply_postprocessing)
    ours = build_sam2_video_predictor(TINY, None, "cpu", "eval", list(overrides), apply_postprocessing)
    got = _our_flags(ours.model, ours)
    assert got == _upstream_flags(up, list(got))
    assert ours.dtype is None  # upstream's numerics: float32 unless an outer autocast is active


@pytest.mark.reference
def test_image_builder_flags_match_upstream() -> None:
    require_reference()
    from sam2.build_sam import build_sam2 as upstream_build

    overrides = ["++model.num_maskmem=5", "++model.image_size=256", "++model.sigmoid_scale_for_mem_enc=15.0"]
    for post in (False, True):
        up = upstream_build(config_file=TINY, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides,
                            apply_postprocessing=post)
        ours = build_sam2(config_file=TINY, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides,
                          apply_postprocessing=post)
        got = _our_flags(ours)
        assert got == _upstream_flags(up, list(got))
        assert tuple(ours.maskmem_tpos_enc.shape) == tuple(up.maskmem_tpos_enc.shape)


def test_video_builder_options() -> None:
    with torch.device("meta"):
        p = build_sam2_video_predictor("nano", device="meta", dtype="auto", bounded_memory=False,
                                       hydra_overrides_extra=["++model.non_overlap_masks=true"])
    assert p.dtype == "auto" and p.bounded_memory is False and p.non_overlap_masks is True
    assert p.model.binarize_mask_from_pts_for_mem_enc and p.fill_hole_area == 8
    with torch.device("meta"):
        p = build_sam2_video_predictor("nano", device="meta", apply_postprocessing=False)
    assert p.dtype is None and not p.model.binarize_mask_from_pts_for_mem_enc and p.fill_hole_area == 0
    assert not p.model.sam_mask_decoder.dynamic_multimask_via_stability


@pytest.mark.parametrize("override,needle", [
    ("++model.foo=1", "model.foo"),
    ("++model.image_encoder.trunk.embed_dim=64", "model.image_encoder.trunk.embed_dim"),
    ("++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor", "build_sam2_video_predictor"),
    ("++model.non_overlap_masks=true", "video predictor option"),
    ("++model.num_maskmem=seven", "expected an integer"),
    ("++model.binarize_mask_from_pts_for_mem_enc=1", "expected true or false"),
    ("++model.image_size=1000", "multiple of 32"),
    ("++model.compile_image_encoder=true", "vos_optimized=True"),
    ("++scratch.resolution=512", "[++]model.<key>=<value>"),
    ("~model.num_maskmem", "deleting"),
    ("++model.fill_hole_area=-1", ">= 0"),
])
def test_unsupported_override_is_refused_by_name(override: str, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        build_sam2("nano", device="cpu", hydra_overrides_extra=[override])
    msg = str(err.value)
    assert needle in msg and (override in msg or override.lstrip("+") in msg)
    if "unsupported override" in msg:
        assert "model.memory_temporal_stride_for_eval" in msg  # the supported keys are listed


def test_supported_keys_are_listed() -> None:
    video, image = supported_override_keys(video=True), supported_override_keys(video=False)
    assert "non_overlap_masks" in video and "non_overlap_masks" not in image
    assert {"fill_hole_area", "binarize_mask_from_pts_for_mem_enc", "num_maskmem", "image_size",
            "sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh"} <= set(image)


def test_bad_builder_calls() -> None:
    with pytest.raises(TypeError, match="not both"):
        build_sam2("nano", config_file=TINY)
    with pytest.raises(TypeError, match="not both"):
        build_sam2("nano", checkpoint="a.pt", ckpt_path="b.pt")
    with pytest.raises(TypeError, match="unexpected keyword arguments: colour"):
        build_sam2("nano", colour="red")
    with pytest.raises(TypeError, match="list of strings"):
        build_sam2("nano", hydra_overrides_extra="++model.num_maskmem=7")
    with pytest.raises(ValueError, match="mode must be"):
        build_sam2_video_predictor("nano", device="cpu", mode="test")
    with pytest.raises(TypeError, match="non_overlap_masks given both"):
        build_sam2_video_predictor("nano", device="cpu", non_overlap_masks=True,
                                   hydra_overrides_extra=["++model.non_overlap_masks=true"])


def test_ckpt_path_loads_like_checkpoint(tmp_path: Path) -> None:
    src = build_sam2("nano", device="cpu")
    path = tmp_path / "nano.pt"
    torch.save({"model": src.state_dict()}, path)
    loaded = build_sam2_video_predictor(config_file="nano", ckpt_path=str(path), device="cpu").model
    for (k, a), b in zip(src.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_hugging_face_ids() -> None:
    with torch.device("meta"):
        model = build_sam2_hf("facebook/sam2-hiera-small", checkpoint=None, device="meta")
        video = build_sam2_video_predictor_hf("facebook/sam2.1-hiera-base-plus", ckpt_path=None, device="meta")
    assert model.config.name == "sam2_hiera_small"
    assert video.model.config.name == "sam2.1_hiera_base_plus" and video.dtype is None
    with pytest.raises(ValueError, match="unknown Hugging Face model id 'facebook/sam3'.*facebook/sam2.1-hiera-tiny"):
        build_sam2_hf("facebook/sam3")
