"""One prepared GPU run: parity on CUDA, image-encoder and video FPS (ours vs upstream), bf16 and fp32.

Run on a CUDA machine from the repo root (upstream ``sam2`` + hydra importable):

    python tools/device_check.py --out OUTDIR [--skip video] [--frames 48]

Writes ``OUTDIR/device_results.json`` after every section, so a run cut short keeps what it
measured. Figures are printed as ratios ours / upstream, measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.ref_utils import build_reference, install_torchvision_shim  # noqa: E402

RESULTS: Dict[str, Any] = {}
MODELS = {"parity": ("sam2.1_hiera_tiny", "sam2_hiera_tiny", "sam2.1_hiera_large"),
          "speed": ("sam2.1_hiera_tiny", "sam2.1_hiera_large")}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _save(out: Path) -> None:
    (out / "device_results.json").write_text(json.dumps(RESULTS, indent=2, default=str))


def _timeit(fn: Callable[[], Any], n: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        _sync()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _ours_from(ref: torch.nn.Module, name: str) -> torch.nn.Module:
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    m = SAM2Model(get_config(name))
    m.load_state_dict(ref.state_dict(), strict=True)
    return m


def mask_agreement(a: torch.Tensor, b: torch.Tensor, prefix: str) -> Dict[str, Any]:
    """IoU of two boolean masks, with their areas; two empty masks give IoU None and say so
    (an IoU of two empty masks is undefined, not 0 and not 1)."""
    inter, union = int((a & b).sum().item()), int((a | b).sum().item())
    out: Dict[str, Any] = {f"{prefix}_mask_iou": inter / union if union else None,
                           f"{prefix}_mask_pixels": [int(a.sum().item()), int(b.sum().item())]}
    if not union:
        out[f"{prefix}_note"] = "both masks are empty: IoU undefined, nothing was compared"
    return out


_UPSTREAM_NAMES = {"prepare_backbone_features": "_prepare_backbone_features", "sam_heads": "_forward_sam_heads"}


def _api(model: torch.nn.Module, name: str) -> Callable[..., Any]:
    """Our model's public step method, or upstream's underscored one of the same job."""
    return getattr(model, name, None) or getattr(model, _UPSTREAM_NAMES[name])


def parity(dev: torch.device) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for name in MODELS["parity"]:
        ref = build_reference(name)
        with torch.no_grad():
            # Random weights give a random object-score sign; a negative one gates every mask to
            # -1024, and comparing two empty masks says nothing (it was once reported as IoU 0.0).
            # A clearly positive bias keeps the masks ungated, as in tests/core/test_model_parity.py.
            ref.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
        ref = ref.to(dev)
        ours = _ours_from(ref.cpu(), name).to(dev).eval()
        ref = ref.to(dev)
        x = torch.randn(1, 3, 1024, 1024, device=dev)
        res: Dict[str, Any] = {}
        with torch.inference_mode():
            a, b = ref.forward_image(x), ours.forward_image(x)
            res["fpn_max_abs"] = max(float((p - q).abs().max()) for p, q in zip(a["backbone_fpn"], b["backbone_fpn"]))
            res["pos_max_abs"] = max(float((p - q).abs().max())
                                     for p, q in zip(a["vision_pos_enc"], b["vision_pos_enc"]))
            pts = {"point_coords": torch.tensor([[[300.0, 400.0], [600.0, 200.0]]], device=dev),
                   "point_labels": torch.tensor([[1, 0]], dtype=torch.int32, device=dev)}
            outs = []
            for m, bo in ((ref, a), (ours, b)):
                _, feats, _, sizes = _api(m, "prepare_backbone_features")(bo)
                hr = [f.permute(1, 2, 0).view(f.size(1), f.size(2), *s) for f, s in zip(feats[:-1], sizes[:-1])]
                pix = feats[-1].permute(1, 2, 0).view(1, -1, *sizes[-1])
                outs.append(_api(m, "sam_heads")(pix, point_inputs=pts, high_res_features=hr, multimask_output=True))
            res["heads_max_abs"] = max(float((p.float() - q.float()).abs().max()) for p, q in zip(outs[0], outs[1]))
            # bf16 autocast: agreement of our bf16 masks with fp32 ones.
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                c = ours.forward_image(x)
                _, feats, _, sizes = ours.prepare_backbone_features(c)
                hr = [f.permute(1, 2, 0).view(f.size(1), f.size(2), *s) for f, s in zip(feats[:-1], sizes[:-1])]
                pix = feats[-1].permute(1, 2, 0).view(1, -1, *sizes[-1])
                o16 = ours.sam_heads(pix, point_inputs=pts, high_res_features=hr, multimask_output=True)
            res.update(mask_agreement(outs[1][1] > 0, o16[1].float() > 0, "bf16_vs_fp32"))
        RESULTS.setdefault("parity_cuda_fp32", {})[name] = res
        print(name, res, flush=True)
        del ref, ours
        _sync()


def encoder_speed(dev: torch.device) -> None:
    for name in MODELS["speed"]:
        ref = build_reference(name)
        ours = _ours_from(ref, name).to(dev).eval()
        ref = ref.to(dev).eval()
        x = torch.randn(1, 3, 1024, 1024, device=dev)
        row: Dict[str, Any] = {}
        for dtype in ("fp32", "bf16"):
            ctx = ((lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if dtype == "bf16"
                   else (lambda: torch.autocast(dev.type, enabled=False)))

            def run(m: torch.nn.Module, ctx: Any = ctx, x: Any = x) -> Callable[[], Any]:
                def f() -> Any:
                    with torch.inference_mode(), ctx():
                        return m.forward_image(x)
                return f
            t_ours = _timeit(run(ours), 20)
            t_ref = _timeit(run(ref), 20)
            row[dtype] = {"ours_ms": 1e3 * t_ours, "upstream_ms": 1e3 * t_ref, "ours_fps": 1 / t_ours,
                          "upstream_fps": 1 / t_ref, "ratio_ours_over_upstream": t_ours / t_ref}
        RESULTS.setdefault("image_encoder_speed", {})[name] = row
        print(name, row, flush=True)
        del ref, ours
        _sync()


def video_speed(dev: torch.device, frames: int, objects: tuple = (1, 10)) -> None:
    from PIL import Image

    from sam2_plugins.predictors.video import SAM2VideoPredictor

    rng = np.random.default_rng(0)
    h, w = 480, 854
    video = np.zeros((frames, h, w, 3), np.uint8)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for t in range(frames):
        v = base.copy()
        for k in range(10):
            cx, cy = 60 + 70 * k + 2 * t, 100 + 25 * k
            v[cy - 20: cy + 20, cx - 20: cx + 20] = (40 * k % 255, 200, 255 - 20 * k)
        video[t] = v
    tmp = Path(tempfile.mkdtemp())
    for t in range(frames):
        Image.fromarray(video[t]).save(tmp / f"{t:05d}.jpg", quality=95)
    for name in MODELS["speed"]:
        ref = build_reference(name, video=True).to(dev)
        ours_model = _ours_from(ref.cpu(), name).to(dev).eval()
        ref = ref.to(dev)
        pred = SAM2VideoPredictor(ours_model)
        row: Dict[str, Any] = {}
        for n_obj in objects:
            def run_ours(pred: Any = pred, n_obj: int = n_obj) -> float:
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    st = pred.init_state(video)
                    for k in range(n_obj):
                        cx, cy = 60 + 70 * k, 100 + 25 * k
                        pred.add_new_points_or_box(st, frame_idx=0, obj_id=k + 1, points=[[cx, cy]], labels=[1])
                    _sync()
                    t0 = time.perf_counter()
                    for _ in pred.propagate_in_video(st):
                        pass
                    _sync()
                    return time.perf_counter() - t0

            def run_ref(ref: Any = ref, n_obj: int = n_obj) -> float:
                with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
                    st = ref.init_state(str(tmp))
                    for k in range(n_obj):
                        cx, cy = 60 + 70 * k, 100 + 25 * k
                        ref.add_new_points_or_box(st, frame_idx=0, obj_id=k + 1,
                                                  points=np.array([[cx, cy]], np.float32),
                                                  labels=np.array([1], np.int32))
                    _sync()
                    t0 = time.perf_counter()
                    for _ in ref.propagate_in_video(st):
                        pass
                    _sync()
                    return time.perf_counter() - t0
            run_ours()  # warm-up (cudnn autotune, allocator)
            t_o = run_ours()
            try:
                run_ref()
                t_r = run_ref()
            except Exception as exc:  # upstream failing must not hide our figure
                t_r = float("nan")
                row[f"upstream_error_{n_obj}"] = repr(exc)
            row[f"{n_obj}obj"] = {"ours_fps": frames / t_o, "upstream_fps": frames / t_r,
                                  "ratio_time_ours_over_upstream": t_o / t_r}
            print(name, n_obj, row[f"{n_obj}obj"], flush=True)
        if len(objects) < 2:
            RESULTS.setdefault("video_speed_bf16", {})[name] = row
            continue
        row["ours_time_ratio_10_over_1"] = row["1obj"]["ours_fps"] / row["10obj"]["ours_fps"]
        row["upstream_time_ratio_10_over_1"] = row["1obj"]["upstream_fps"] / row["10obj"]["upstream_fps"]
        RESULTS.setdefault("video_speed_bf16", {})[name] = row
        del ref, ours_model, pred
        _sync()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "out/device"))
    ap.add_argument("--skip", default="")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--objects", default="1,10")
    ap.add_argument("--models", default="", help="comma list overriding the model lists (smoke runs)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    if args.models:
        MODELS["parity"] = MODELS["speed"] = tuple(args.models.split(","))
    install_torchvision_shim() if "torchvision" not in sys.modules and _no_tv() else None
    RESULTS["env"] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}
    sections = {"parity": lambda: parity(dev), "encoder": lambda: encoder_speed(dev),
                "video": lambda: video_speed(dev, args.frames, tuple(int(v) for v in args.objects.split(",")))}
    for key, fn in sections.items():
        if key in args.skip.split(","):
            continue
        t0 = time.time()
        try:
            fn()
        except Exception:
            RESULTS.setdefault("errors", {})[key] = traceback.format_exc()
            print(traceback.format_exc(), flush=True)
        RESULTS.setdefault("section_seconds", {})[key] = time.time() - t0
        _save(out)


def _no_tv() -> bool:
    try:
        import torchvision  # noqa: F401
        return False
    except Exception:
        return True


if __name__ == "__main__":
    main()
