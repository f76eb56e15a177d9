"""``sam2-plugins label``: through the console script's module as a subprocess, as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.ray_local import PY, local_cluster, require_ray, subprocess_env

AMG = ["--points-per-side", "4", "--pred-iou-thresh", "0.3", "--stability-score-thresh", "0.5"]
OPTS = dict(points_per_side=4, pred_iou_thresh=0.3, stability_score_thresh=0.5)


def _images(folder: Path, n: int, size=(96, 128)) -> list:
    from PIL import Image

    from sam2_plugins.evaluation.synthetic import make_image

    names = []
    for i in range(n):
        img, _ = make_image(size[0], size[1], 3, seed=i)
        rel = f"{'sub/' if i % 2 else ''}img{i:03d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / rel)
        names.append(rel)
    return names


def _label(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "sam2_plugins.cli", "label", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=600, **kw)


def _outputs(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png.json"))}


def test_label_folder_equals_python_api_resumes_and_skips_corrupt_images(tmp_path: Path) -> None:
    import torch

    from sam2_exec.images import read_image
    from sam2_plugins import SAM2AutomaticMaskGenerator, build_sam2

    src, out = tmp_path / "images", tmp_path / "out"
    names = _images(src, 3)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (src / "notes.txt").write_text("not an image, not listed")
    r = _label(str(src), "--out", str(out), *AMG, "--batch-size", "2")
    assert r.returncode == 3, r.stderr  # finished, with a failed image
    assert "failed: broken.png: ValueError: cannot read" in r.stderr
    assert "labeled 3, skipped 0 (done before), failed 1 of 4 images" in r.stderr
    files = _outputs(out)
    assert sorted(files) == sorted(n + ".json" for n in names)  # nothing for the corrupt image
    summary = json.loads((out / "sam2_label_summary.json").read_text())
    assert list(summary["failed"]) == ["broken.png"] and summary["labeled"] == 3

    # The same records as the core's Python API (same thread count: bit-equal floats)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = SAM2AutomaticMaskGenerator(build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu"),
                                         output_mode="coco_rle", **OPTS)
        n_masks = 0
        for name in names:
            got = json.loads(files[name + ".json"])
            want = gen.generate(read_image(str(src / name)))
            assert got["image"] == name and (got["height"], got["width"]) == (96, 128)
            assert [{k: v for k, v in a.items() if k != "id"} for a in got["annotations"]] == json.loads(
                json.dumps(want))
            assert [a["id"] for a in got["annotations"]] == list(range(1, len(want) + 1))
            n_masks += len(want)
        assert n_masks > 0, "the check compared empty outputs"
    finally:
        torch.set_num_threads(threads)

    # A rerun skips what is done (files untouched) and retries the corrupt image only
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png.json")}
    r2 = _label(str(src), "--out", str(out), *AMG, "--batch-size", "2")
    assert r2.returncode == 3 and "labeled 0, skipped 3 (done before), failed 1 of 4 images" in r2.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png.json")} == mtimes
    # Other settings into the same folder are refused, nothing is touched
    r3 = _label(str(src), "--out", str(out), "--points-per-side", "8")
    assert r3.returncode == 2 and "other settings" in r3.stderr
    assert _outputs(out) == files


def test_label_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    r = _label(str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    (tmp_path / "empty").mkdir()
    r = _label(str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no image files" in r.stderr
    r = _label(str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--workers", "2")
    assert r.returncode == 2 and "--workers need(s) --executor ray" in r.stderr
    r = _label(str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--model", "sam9")
    assert r.returncode == 2 and "sam9" in r.stderr
    assert not (tmp_path / "o").exists()


def _interrupt_after_first_file(cmd_args: list, out: Path, check=None) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([PY, "-m", "sam2_plugins.cli", "label", *cmd_args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not list(out.rglob("*.png.json")):
        time.sleep(0.1)
    assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
    if check is not None:
        check()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_label_ctrl_c_keeps_whole_files_and_a_rerun_finishes(tmp_path: Path) -> None:
    src, out = tmp_path / "images", tmp_path / "out"
    names = _images(src, 12)
    r = _interrupt_after_first_file([str(src), "--out", str(out), *AMG, "--images-per-task", "1"], out)
    assert r.returncode == 130 and "interrupted" in r.stderr, r.stderr
    done = _outputs(out)
    assert 1 <= len(done) < len(names)
    for body in done.values():  # every file is whole (written to a temporary name, then renamed)
        assert json.loads(body)["annotations"] is not None
    assert not [p for p in out.rglob("*.tmp")]
    r2 = _label(str(src), "--out", str(out), *AMG)
    assert r2.returncode == 0, r2.stderr
    assert f"labeled {len(names) - len(done)}, skipped {len(done)}" in r2.stderr
    assert len(_outputs(out)) == len(names)


@pytest.fixture(scope="module")
def cluster():
    require_ray()
    with local_cluster(2) as addr:
        yield addr


@pytest.mark.slow
def test_label_on_ray_equals_in_process_and_ctrl_c_stops_the_workers(tmp_path: Path, cluster: str) -> None:
    import ray

    src = tmp_path / "images"
    names = _images(src, 8)
    (src / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    ref = tmp_path / "ref"
    r = _label(str(src), "--out", str(ref), *AMG, "--batch-size", "2")
    assert r.returncode == 3, r.stderr
    out = tmp_path / "ray"
    r = _label(str(src), "--out", str(out), *AMG, "--batch-size", "2", "--images-per-task", "2",
               "--executor", "ray", "--workers", "2", "--ray-address", cluster)
    assert r.returncode == 3, r.stderr
    assert "failed: zz_broken.jpg" in r.stderr and "2 worker(s)" in r.stderr
    assert _outputs(out) == _outputs(ref) and len(_outputs(ref)) == len(names)
    summary = json.loads((out / "sam2_label_summary.json").read_text())
    assert summary["execution"]["workers"] == 2 and set(summary["per_worker"]) == {"ray-0", "ray-1"}

    # Ctrl-C on the driver: the remote workers are stopped, finished files stay whole
    out2 = tmp_path / "ray2"

    def workers_running() -> None:
        assert sum("-worker-" in n for n in _named_actors(ray)) == 2, _named_actors(ray)

    r = _interrupt_after_first_file([str(src), "--out", str(out2), *AMG, "--images-per-task", "1", "--executor",
                                     "ray", "--workers", "2", "--ray-address", cluster], out2, workers_running)
    assert r.returncode == 130, r.stderr
    for body in _outputs(out2).values():
        json.loads(body)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any("-worker-" in n for n in _named_actors(ray)):
        time.sleep(0.5)
    assert not any("-worker-" in n for n in _named_actors(ray)), _named_actors(ray)


def _named_actors(ray) -> list:
    return [a if isinstance(a, str) else a.get("name", "") for a in ray.util.list_named_actors(all_namespaces=True)]


def test_label_is_lazy_in_the_core_cli() -> None:
    """``sam2_plugins.cli`` (the core) imports neither the execution layer nor Ray."""
    code = ("import sys, sam2_plugins.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'sam2_exec')))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert out.stdout.strip() == "[]"
