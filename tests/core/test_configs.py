"""The model table: names, aliases, derived sizes."""

from __future__ import annotations

import dataclasses

import pytest

from sam2_plugins.configs import MODEL_CONFIGS, get_config, list_models


def test_eight_official_models_and_nano() -> None:
    names = set(list_models())
    for v in ("sam2", "sam2.1"):
        for s in ("tiny", "small", "base_plus", "large"):
            assert f"{v}_hiera_{s}" in names
    assert "sam2.1_hiera_nano" in names


@pytest.mark.parametrize("alias,name", [
    ("tiny", "sam2.1_hiera_tiny"), ("sam2.1_hiera_b+", "sam2.1_hiera_base_plus"),
    ("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large"), ("sam2_hiera_small.pt", "sam2_hiera_small"),
])
def test_aliases(alias: str, name: str) -> None:
    assert get_config(alias).name == name


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="sam2.1_hiera_tiny"):
        get_config("sam3_hiera_giant")
    with pytest.raises(TypeError):
        get_config(3)  # type: ignore[arg-type]


def test_versions_differ_only_in_pointer_flags() -> None:
    a, b = MODEL_CONFIGS["sam2_hiera_tiny"], MODEL_CONFIGS["sam2.1_hiera_tiny"]
    diff = {f.name for f in dataclasses.fields(a.tracking)
            if getattr(a.tracking, f.name) != getattr(b.tracking, f.name)}
    assert diff == {"no_obj_embed_spatial", "add_tpos_enc_to_obj_ptrs", "proj_tpos_enc_in_obj_ptrs",
                    "use_signed_tpos_enc_to_obj_ptrs"}
    assert a.hiera == b.hiera


def test_channel_lists_and_frozen() -> None:
    assert get_config("large").hiera.channel_list == (1152, 576, 288, 144)
    assert get_config("base_plus").hiera.channel_list == (896, 448, 224, 112)
    assert get_config("tiny").feat_size == 64 and get_config("nano").feat_size == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_config("tiny").image_size = 512  # type: ignore[misc]
