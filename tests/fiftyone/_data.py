"""Small FiftyOne datasets built from the core's synthetic generator (exact masks)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

H, W = 96, 128


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def inner_point(mask: np.ndarray) -> tuple[float, float]:
    """The pixel centre deepest inside ``mask`` as relative (x, y)."""
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return (x + 0.5) / mask.shape[1], (y + 0.5) / mask.shape[0]


def detections_from_ids(ids: np.ndarray, with_masks: bool = True, label: str = "shape"):
    import fiftyone as fo

    dets = []
    for k in sorted(int(v) for v in np.unique(ids) if v != 0):
        m = ids == k
        d = fo.Detection.from_mask(m, label=label, index=k) if with_masks else None
        if not with_masks:
            ref = fo.Detection.from_mask(m)
            d = fo.Detection(label=label, bounding_box=ref.bounding_box, index=k)
        dets.append(d)
    return fo.Detections(detections=dets)


def image_dataset(media: Path, n: int = 3, objects: int = 3, seed: int = 0, name: str = "img"):
    """``n`` synthetic images; fields ``ground_truth`` (masks, index), ``boxes`` (same objects,
    boxes only), ``points`` (one inner point per object), ``negatives`` (one background point
    per image, unlabeled: applies to every object)."""
    import fiftyone as fo
    from PIL import Image

    from sam2_plugins.evaluation.synthetic import make_image

    ds = fo.Dataset(unique(name))
    samples = []
    for i in range(n):
        img, ids = make_image(H, W, objects, seed=seed + i)
        path = media / f"{ds.name}_{i:03d}.png"
        Image.fromarray(img).save(path)
        gt = detections_from_ids(ids)
        boxes = detections_from_ids(ids, with_masks=False)
        kps = [fo.Keypoint(label="shape", index=d.index, points=[inner_point(ids == d.index)])
               for d in gt.detections]
        bg = inner_point(ids == 0)
        samples.append(fo.Sample(
            filepath=str(path), ground_truth=gt, boxes=boxes, points=fo.Keypoints(keypoints=kps),
            negatives=fo.Keypoints(keypoints=[fo.Keypoint(points=[bg])]), order=i))
    ds.add_samples(samples)
    ds.compute_metadata()
    return ds


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    """RGB uint8 ``(T, H, W, 3)`` -> near-lossless H.264 mp4 (PyAV)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "4", "preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def video_dataset(media: Path, num_frames: int = 10, objects: int = 2, seed: int = 0,
                  videos: int = 1, prompt_frames: Sequence[int] = (1,), name: str = "vid"):
    """Synthetic mp4 videos; frame fields ``gt`` (masks, index, every frame) and ``prompts``
    (GT boxes on ``prompt_frames``, 1-based). Returns (dataset, [gt id maps (T, H, W)])."""
    import fiftyone as fo

    from sam2_plugins.evaluation.synthetic import make_video

    ds = fo.Dataset(unique(name))
    gts = []
    for v in range(videos):
        frames, ids = make_video(num_frames, H, W, objects, seed=seed + v, num_distractors=0)
        path = media / f"{ds.name}_{v}.mp4"
        write_mp4(path, frames)
        s = fo.Sample(filepath=str(path))
        for t in range(num_frames):
            fr = fo.Frame(gt=detections_from_ids(ids[t]))
            if t + 1 in prompt_frames:
                fr["prompts"] = detections_from_ids(ids[t], with_masks=False)
            s.frames[t + 1] = fr
        ds.add_sample(s)
        gts.append(ids)
    ds.compute_metadata()
    return ds, gts
