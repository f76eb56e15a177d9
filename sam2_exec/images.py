"""Batched automatic labeling of image files: a reader stage feeding the model stage.

:class:`AutoLabeler` is a worker (see :class:`sam2_exec.WorkerSpec`): built once per worker
process (the model stays loaded), it takes a list of image paths and returns one record per
image. Inside, two stages overlap:

- **reader** (``readers`` threads): opens and decodes the next batch of images while the model
  works on the current one (PIL's decoders release the GIL, so this runs beside torch);
- **model**: SAM 2's automatic mask generator with the image encoder run on ``batch_size``
  images at once (:meth:`~sam2_plugins.SAM2AutomaticMaskGenerator.generate_batch`), then the
  point-grid decoding per image.

A file that cannot be read gives a record with ``error`` and the others go on.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["read_image", "AutoLabeler", "IMAGE_SUFFIXES", "AMG_DEFAULTS"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: The generator options ``sam2-plugins label`` exposes, with upstream's defaults.
AMG_DEFAULTS: Dict[str, Any] = {"points_per_side": 32, "points_per_batch": 64, "pred_iou_thresh": 0.8,
                                "stability_score_thresh": 0.95, "box_nms_thresh": 0.7, "crop_n_layers": 0,
                                "min_mask_region_area": 0}


def read_image(path: str) -> np.ndarray:
    """The image at ``path`` as an array: ``(H, W, 3)`` uint8 RGB for 8-bit files, otherwise as
    stored (16-bit / float grey), which the predictor normalises.

    Raises:
        ValueError: the file is missing, truncated, or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not inside the model
            if im.mode in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr", "1"):
                return np.asarray(im.convert("RGB"))
            return np.asarray(im)
    except FileNotFoundError as exc:
        raise ValueError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read {path} as an image: {exc}") from exc


class AutoLabeler:
    """Worker: automatic masks (COCO RLE) for lists of image files.

    Args:
        model: model name (``sam2-plugins models``).
        checkpoint: ``"demo"``, ``"download"``, a path, or None (random weights: tests only).
        device: None (cuda > mps > cpu) or a device string.
        batch_size: images per image-encoder pass.
        amg: generator options (:data:`AMG_DEFAULTS` names).
        readers: decoding threads of the reader stage.
        dtype: autocast dtype for the predictor (``"bf16"``...; None: the predictor's default).
    """

    def __init__(self, model: str = "sam2.1_hiera_nano", checkpoint: Optional[str] = "demo",
                 device: Optional[str] = None, batch_size: int = 1, amg: Optional[Mapping[str, Any]] = None,
                 readers: int = 2, dtype: Optional[str] = None) -> None:
        from sam2_plugins import SAM2AutomaticMaskGenerator, build_sam2

        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, received {batch_size!r}")
        opts = dict(AMG_DEFAULTS)
        unknown = sorted(set(amg or {}) - set(opts))
        if unknown:
            raise ValueError(f"unknown generator option(s) {unknown}; expected some of {sorted(opts)}")
        opts.update({k: v for k, v in (amg or {}).items() if v is not None})
        self.model_name, self.checkpoint = model, checkpoint
        self.sam = build_sam2(model, checkpoint=checkpoint, device=device, progress=False)
        extra = {"dtype": dtype} if dtype else {}
        self.generator = SAM2AutomaticMaskGenerator(self.sam, output_mode="coco_rle", **opts, **extra)
        self.batch_size = int(batch_size)
        self.readers = max(1, int(readers))
        self.options = opts

    def info(self) -> Dict[str, Any]:
        return {"device": str(self.sam.device), "model": self.model_name, "checkpoint": self.checkpoint,
                "batch_size": self.batch_size}

    def units(self, item: Sequence[str], value: Mapping[str, Any]) -> float:
        """Images labeled (for the per-worker throughput)."""
        return float(sum(1 for r in value["images"] if "error" not in r))

    def __call__(self, paths: Sequence[str]) -> Dict[str, Any]:
        """``{"images": [record per path], "model_seconds", "read_wait_seconds"}``; a record is
        ``{"path", "height", "width", "annotations"}`` or ``{"path", "error"}``."""
        out: List[Dict[str, Any]] = []
        stats = {"model_seconds": 0.0, "read_wait_seconds": 0.0}
        for recs in self.label(paths, stats):
            out += recs
        return {"images": out, **stats}

    def label(self, paths: Sequence[str], stats: Optional[Dict[str, float]] = None
              ) -> Iterator[List[Dict[str, Any]]]:
        """Yield the records of each batch as it is done (reader and model stages overlapped)."""
        stats = stats if stats is not None else {}
        for batch, images in self._read_ahead([str(p) for p in paths], stats):
            ok = [i for i, im in enumerate(images) if not isinstance(im, Exception)]
            recs: List[Dict[str, Any]] = [{"path": p, "error": f"{type(im).__name__}: {im}"}
                                          if isinstance(im, Exception) else {} for p, im in zip(batch, images)]
            t0 = time.perf_counter()
            try:
                results: List[Any] = self._generate([images[i] for i in ok]) if ok else []
            except Exception:  # the batch failed as a whole: run its images one by one to find the bad one
                results = [self._one(images[i]) for i in ok]
            stats["model_seconds"] = stats.get("model_seconds", 0.0) + time.perf_counter() - t0
            for i, res in zip(ok, results):
                if isinstance(res, Exception):
                    recs[i] = {"path": batch[i], "error": f"{type(res).__name__}: {res}"}
                else:
                    h, w = images[i].shape[:2]
                    recs[i] = {"path": batch[i], "height": int(h), "width": int(w), "annotations": res}
            yield recs

    def _one(self, image: np.ndarray) -> Any:
        try:
            return self.generator.generate(image)
        except Exception as exc:
            return exc

    def _generate(self, images: List[np.ndarray]) -> List[Any]:
        if len(images) == 1:
            return [self.generator.generate(images[0])]
        return self.generator.generate_batch(images)

    def _read_ahead(self, paths: List[str], stats: Dict[str, float]
                    ) -> Iterator[Tuple[List[str], List[Any]]]:
        """Batches of ``(paths, images or exceptions)``; the next batch is decoded while the
        caller works on the current one."""
        batches = [paths[i:i + self.batch_size] for i in range(0, len(paths), self.batch_size)]
        if not batches:
            return
        with ThreadPoolExecutor(self.readers, thread_name_prefix="sam2-reader") as pool:
            ahead: List[Future] = [pool.submit(read_image, p) for p in batches[0]]
            for k, batch in enumerate(batches):
                current = ahead
                ahead = [pool.submit(read_image, p) for p in batches[k + 1]] if k + 1 < len(batches) else []
                t0 = time.perf_counter()
                images: List[Any] = []
                for f in current:
                    try:
                        images.append(f.result())
                    except Exception as exc:
                        images.append(exc)
                stats["read_wait_seconds"] = stats.get("read_wait_seconds", 0.0) + time.perf_counter() - t0
                yield batch, images


def list_images(root: Path) -> List[Path]:
    """Image files under ``root`` (recursive, sorted; names starting with '.' skipped)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))
