"""The operators' model defaults follow sam2_plugins.default_model: official tiny weights by
default; offline, the operator's error says so and offers the demo model (labelled as such);
choosing the demo weights runs the demo model whatever model the form shows."""

from __future__ import annotations

import pytest

from sam2_plugins.default_model import DEFAULT_MODEL, DEMO_LABEL, MIRROR_ENV
from tests.fiftyone import _data
from tests.file_server import closed_port_url

SEG = "@sam2-plugins/sam2/sam2_segment"


@pytest.fixture
def images(media_dir):
    return _data.image_dataset(media_dir, n=2)


def test_form_defaults_are_the_official_tiny_weights(images):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params={"dataset_name": images.name, "params": {}})
    props = foo.get_operator(SEG).resolve_input(ctx).type.properties
    assert props["model"].default == DEFAULT_MODEL and props["checkpoint"].default == "download"
    labels = {c.value: c.label for c in props["checkpoint"].view.choices}
    assert DEMO_LABEL in labels["demo"]


def test_offline_default_says_so_and_demo_still_runs(images, tmp_path, monkeypatch):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    from fiftyone_sam2._models import clear_cache

    monkeypatch.setenv("SAM2_PLUGINS_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv(MIRROR_ENV, closed_port_url())
    clear_cache()
    with pytest.raises(ExecutionError) as info:  # an operator's error, as the App shows it
        foo.execute_operator(SEG, ctx={"view": images.view(), "params": {
            "prompt_field": "boxes", "label_field": "offline", "device": "cpu"}})
    msg = str(info.value)
    assert "could not download the sam2.1_hiera_tiny weights" in msg and "offline" in msg
    assert DEMO_LABEL in msg and "checkpoint='demo'" in msg
    assert images.exists("offline").count() == 0, "nothing written"
    res = foo.execute_operator(SEG, ctx={"view": images.view(), "params": {
        "prompt_field": "boxes", "label_field": "with_demo", "device": "cpu", "checkpoint": "demo",
        "model": DEFAULT_MODEL}})
    assert res.error is None, res.error
    assert images.exists("with_demo").count() == len(images)
