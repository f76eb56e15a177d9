"""``SAM2AutomaticMaskGenerator``: segment everything by prompting SAM 2 with a grid of points.

Drop-in compatible with upstream's ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator``
(same parameters, defaults and output records), without torchvision, pycocotools or cv2:
box NMS is :func:`~sam2_plugins.predictors.image.amg_utils.batched_nms`, COCO RLE is
:func:`sam2_plugins.rle.encode_coco_rle`.

Pipeline per crop (layer 0 = the whole image; ``crop_n_layers`` adds 2x2, 4x4, ... crops):
embed the crop, prompt each grid point (``points_per_batch`` at a time, one positive click,
3 masks each), optionally refine each mask once with its own low-res logits as mask prompt
(``use_m2m``), drop masks by predicted IoU and stability score, binarise, drop masks touching an
inner crop edge, box-NMS inside the crop; then box-NMS across crops preferring smaller crops.

Differences: ``min_mask_region_area`` really removes small holes / islands on CPU too (upstream
skips it without its CUDA extension); images may be any type :class:`SAM2ImagePredictor`
accepts (normalised once for the whole image, before cropping).

Each record: ``segmentation`` (bool ``HxW`` array, or an RLE dict), ``area`` (int), ``bbox``
(XYWH floats), ``predicted_iou``, ``point_coords`` (``[[x, y]]`` in image pixels),
``stability_score``, ``crop_box`` (XYWH floats).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...rle import encode_coco_rle, masks_to_rle_torch, rle_area, rle_to_mask
from .amg_stats import AMGStats
from .amg_utils import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from .postprocess import remove_small_regions
from .predictor import SAM2ImagePredictor
from .preprocess import to_rgb_float

__all__ = ["SAM2AutomaticMaskGenerator"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class SAM2AutomaticMaskGenerator:
    """Generate masks for a whole image (see the module docstring; arguments as upstream).

    Args:
        model: a SAM 2 model (ours or upstream's ``SAM2Base``).
        points_per_side: grid points per side (``None``: give ``point_grids``).
        points_per_batch: points prompted together (memory vs speed).
        pred_iou_thresh: keep masks whose predicted IoU is above this.
        stability_score_thresh: keep masks whose stability score is at least this.
        stability_score_offset: logit offset of the stability score.
        mask_threshold: logit threshold for binarising.
        box_nms_thresh: box IoU above which duplicates inside a crop are dropped.
        crop_n_layers: extra crop layers (layer i has ``(2**i)²`` crops).
        crop_nms_thresh: box IoU for duplicates across crops.
        crop_overlap_ratio: overlap of first-layer crops as a fraction of the short side.
        crop_n_points_downscale_factor: points per side shrink by this per layer.
        point_grids: explicit ``(N, 2)`` grids in ``[0, 1]``, one per layer.
        min_mask_region_area: fill holes / drop islands up to this area (low-res pixels, as the
            predictor's ``max_hole_area`` / ``max_sprinkle_area``).
        output_mode: ``"binary_mask"``, ``"uncompressed_rle"`` or ``"coco_rle"``.
        use_m2m: one refinement step feeding each mask's low-res logits back as a mask prompt.
        multimask_output: 3 masks per point (else 1).
        **kwargs: passed to :class:`SAM2ImagePredictor` where it knows them (``normalize``, ``dtype``).
    """

    def __init__(self, model: torch.nn.Module, points_per_side: Optional[int] = 32,
                 points_per_batch: int = 64, pred_iou_thresh: float = 0.8,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0,
                 mask_threshold: float = 0.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: Optional[List[np.ndarray]] = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask", use_m2m: bool = False,
                 multimask_output: bool = True, **kwargs: Any) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side or point_grids "
                             f"(got points_per_side={points_per_side!r}, "
                                 f"point_grids={'set' if point_grids is not None else None})")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if points_per_batch <= 0:
            raise ValueError(f"points_per_batch must be positive, got {points_per_batch}")
        for name, val in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh),
                          ("box_nms_thresh", box_nms_thresh), ("crop_nms_thresh", crop_nms_thresh)):
            if isinstance(val, bool) or not isinstance(val, (int, float, np.floating, np.integer)) or math.isnan(val):
                raise ValueError(f"{name} must be a number, got {val!r}")
        if stability_score_thresh > 1.0:
            raise ValueError(f"stability_score_thresh must be <= 1 (a stability score is an IoU), got "
                             f"{stability_score_thresh}: every mask would be filtered out")
        if pred_iou_thresh >= 1.0:
            warnings.warn(f"pred_iou_thresh={pred_iou_thresh} is >= 1: predicted IoUs rarely exceed 1, so almost "
                          "every mask will be filtered out (see generator.last_stats after generate())",
                          UserWarning, stacklevel=2)
        if points_per_side is not None:
            if int(points_per_side) <= 0:
                raise ValueError(f"points_per_side must be positive, got {points_per_side}")
            self.point_grids = build_all_layer_point_grids(int(points_per_side), crop_n_layers,
                                                           crop_n_points_downscale_factor)
        else:
            assert point_grids is not None  # exactly one of the two is given (checked above)
            grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
            if len(grids) < crop_n_layers + 1 or any(g.ndim != 2 or g.shape[1] != 2 for g in grids):
                raise ValueError(f"point_grids must hold {crop_n_layers + 1} arrays of shape (N, 2) in [0, 1]")
            self.point_grids = grids
        pred_kw = {k: kwargs[k] for k in ("normalize", "dtype") if k in kwargs}
        self.predictor = SAM2ImagePredictor(model, max_hole_area=min_mask_region_area,
                                            max_sprinkle_area=min_mask_region_area, **pred_kw)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output
        self.last_stats = AMGStats()
        """What the last :meth:`generate` call's filters removed (see :class:`AMGStats`)."""

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> "SAM2AutomaticMaskGenerator":
        """Build a model with official weights (our name or an upstream HF id) and wrap it.

        ``checkpoint`` (default ``"download"``), ``device``, ``apply_postprocessing`` and
        ``progress`` go to ``build_sam2``; the rest to the generator.
        """
        from ...build import build_sam2
        from .predictor import HF_MODEL_IDS

        name = HF_MODEL_IDS.get(model_id, model_id)
        build_kw = {k: kwargs.pop(k) for k in ("checkpoint", "device", "apply_postprocessing", "progress")
                    if k in kwargs}
        build_kw.setdefault("checkpoint", "download")
        return cls(build_sam2(name, **build_kw), **kwargs)

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, image: Any) -> List[Dict[str, Any]]:
        """All masks of ``image`` (``HxW`` / ``HxWxC`` array or tensor, or PIL) as records.

        :attr:`last_stats` then says how many candidates each filter removed; an empty result
        also warns with that explanation (e.g. "0 masks: all 3072 candidates fell below
        pred_iou_thresh ...").
        """
        rgb = to_rgb_float(image, self.predictor.normalize)
        self.last_stats = AMGStats(pred_iou_thresh=float(self.pred_iou_thresh),
                                   stability_score_thresh=float(self.stability_score_thresh))
        return self._records(self._generate_masks(rgb))

    @torch.inference_mode()
    def generate_batch(self, images: Sequence[Any], batch_size: Optional[int] = None) -> List[List[Dict[str, Any]]]:
        """:meth:`generate` for several images, the image encoder running on batches.

        The whole-image crop (layer 0) of ``batch_size`` images (default: all) is embedded in one
        encoder pass (:meth:`SAM2ImagePredictor.set_image_batch`; sizes may differ); the extra
        crop layers, if any, are embedded crop by crop as :meth:`generate` does. Masks equal
        :meth:`generate`'s up to the float rounding of a batched encoder pass (batch 1: exactly).

        Returns:
            One list of records per image, in order. :attr:`last_stats` then counts the filters
            over the whole batch; an image with no mask warns with that explanation.
        """
        if not isinstance(images, (list, tuple)) or not images:
            raise ValueError(f"images must be a non-empty list, got {type(images).__name__}"
                             + (" of length 0" if isinstance(images, (list, tuple)) else ""))
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        rgbs = [to_rgb_float(im, self.predictor.normalize) for im in images]
        self.last_stats = AMGStats(pred_iou_thresh=float(self.pred_iou_thresh),
                                   stability_score_thresh=float(self.stability_score_thresh))
        step = int(batch_size or len(rgbs))
        out: List[List[Dict[str, Any]]] = []
        for start in range(0, len(rgbs), step):
            chunk = rgbs[start:start + step]
            self.predictor.set_image_batch(chunk, normalize="none")  # already in [0, 1]
            try:
                firsts = [self._crop_masks([0, 0, r.shape[1], r.shape[0]], 0, r.shape[:2], img_idx=i)
                          for i, r in enumerate(chunk)]
            finally:
                self.predictor.reset_predictor()
            out += [self._records(self._generate_masks(r, first=f)) for r, f in zip(chunk, firsts)]
        return out

    def _records(self, data: MaskData) -> List[Dict[str, Any]]:
        rles = data["rles"]
        self.last_stats.kept += len(rles)
        if not rles:
            warnings.warn(f"automatic mask generator: {self.last_stats.explain()}", UserWarning, stacklevel=3)
        if self.output_mode == "coco_rle":
            segs: List[Any] = [encode_coco_rle(r) for r in rles]
        elif self.output_mode == "binary_mask":
            segs = [rle_to_mask(r) for r in rles]
        else:
            segs = rles
        records = []
        for i in range(len(rles)):
            records.append({
                "segmentation": segs[i],
                "area": rle_area(rles[i]),
                "bbox": box_xyxy_to_xywh(data["boxes"][i]).tolist(),
                "predicted_iou": float(data["iou_preds"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability_score"][i]),
                "crop_box": box_xyxy_to_xywh(data["crop_boxes"][i]).tolist(),
            })
        return records

    # ------------------------------------------------------------------ pipeline
    def _generate_masks(self, rgb: np.ndarray, first: Optional[MaskData] = None) -> MaskData:
        """All crops of ``rgb``; ``first``: the whole-image crop's masks if already computed."""
        orig_size = rgb.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        data = MaskData()
        for k, (crop_box, layer) in enumerate(zip(crop_boxes, layer_idxs)):
            data.cat(first if k == 0 and first is not None else self._process_crop(rgb, crop_box, layer, orig_size))
        if len(crop_boxes) > 1 and "boxes" in data and len(data["rles"]) > 0:
            # Across crops prefer the mask from the smaller crop (finer detail).
            scores = (1 / box_area(data["crop_boxes"])).to(data["boxes"].device)
            keep = batched_nms(data["boxes"].float(), scores, torch.zeros_like(data["boxes"][:, 0]),
                               self.crop_nms_thresh)
            self.last_stats.crop_nms += len(data["rles"]) - len(keep)
            data.filter(keep)
        if "rles" not in data:
            data = MaskData(rles=[], boxes=torch.zeros(0, 4), iou_preds=torch.zeros(0), points=torch.zeros(0, 2),
                            stability_score=torch.zeros(0), crop_boxes=torch.zeros(0, 4))
        data.to_numpy()
        return data

    def _process_crop(self, rgb: np.ndarray, crop_box: List[int], layer: int,
                      orig_size: Tuple[int, int]) -> MaskData:
        x0, y0, x1, y1 = crop_box
        self.predictor.set_image(rgb[y0:y1, x0:x1, :], normalize="none")  # already in [0, 1]
        try:
            return self._crop_masks(crop_box, layer, orig_size)
        finally:
            self.predictor.reset_predictor()

    def _crop_masks(self, crop_box: List[int], layer: int, orig_size: Tuple[int, int],
                    img_idx: int = -1) -> MaskData:
        """Masks of one crop whose embedding is set (image ``img_idx`` of a batch)."""
        x0, y0, x1, y1 = crop_box
        crop_hw = (y1 - y0, x1 - x0)
        scale = np.array(crop_hw, dtype=np.float64)[None, ::-1]  # (w, h)
        points_for_image = self.point_grids[layer] * scale
        data = MaskData()
        for (points,) in batch_iterator(self.points_per_batch, points_for_image):
            data.cat(self._process_batch(points, crop_hw, crop_box, orig_size, img_idx))
        if "rles" not in data or len(data["rles"]) == 0:
            return MaskData()
        keep = batched_nms(data["boxes"].float(), data["iou_preds"], torch.zeros_like(data["boxes"][:, 0]),
                           self.box_nms_thresh)
        self.last_stats.box_nms += len(data["rles"]) - len(keep)
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box] * len(data["rles"]))
        return data

    def _model_points(self, points: torch.Tensor, crop_hw: Tuple[int, int]) -> torch.Tensor:
        h, w = crop_hw
        s = float(self.predictor.model.image_size)
        out = points.clone()
        out[..., 0] = out[..., 0] / w
        out[..., 1] = out[..., 1] / h
        return out * s

    def _filter(self, data: MaskData) -> None:
        st = self.last_stats
        n = len(data["iou_preds"])
        st.candidates += n
        if n:
            st.see("max_pred_iou", float(data["iou_preds"].max()))
        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        st.pred_iou += n - len(data["iou_preds"])
        n = len(data["iou_preds"])
        data["stability_score"] = calculate_stability_score(data["masks"], self.mask_threshold,
                                                            self.stability_score_offset)
        if n:
            st.see("max_stability", float(data["stability_score"].max()))
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        st.stability += n - len(data["iou_preds"])

    def _process_batch(self, points: np.ndarray, crop_hw: Tuple[int, int], crop_box: List[int],
                       orig_size: Tuple[int, int], img_idx: int = -1) -> MaskData:
        orig_h, orig_w = orig_size
        dev = self.predictor.device
        pts = torch.as_tensor(points, dtype=torch.float32, device=dev)
        in_pts = self._model_points(pts, crop_hw)
        labels = torch.ones(in_pts.shape[0], dtype=torch.int, device=dev)
        masks, iou, low_res = self.predictor._predict(in_pts[:, None, :], labels[:, None],
                                                      multimask_output=self.multimask_output,
                                                      return_logits=True, img_idx=img_idx)
        data = MaskData(masks=masks.flatten(0, 1), iou_preds=iou.flatten(0, 1),
                        points=pts.repeat_interleave(masks.shape[1], dim=0),
                        low_res_masks=low_res.flatten(0, 1))
        del masks
        if self.use_m2m:
            in_pts = self._model_points(data["points"], crop_hw)
            lab = torch.ones(in_pts.shape[0], dtype=torch.int, device=dev)
            m, ious = self.refine_with_m2m(in_pts, lab, data["low_res_masks"], self.points_per_batch, img_idx)
            data["masks"] = m.squeeze(1)
            data["iou_preds"] = ious.squeeze(1)
        self._filter(data)
        data["masks"] = data["masks"] > self.mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            self.last_stats.crop_edge += int((~keep).sum())
            data.filter(keep)
        data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
        data["rles"] = masks_to_rle_torch(data["masks"])
        del data["masks"]
        del data["low_res_masks"]
        return data

    def refine_with_m2m(self, points: torch.Tensor, point_labels: torch.Tensor,
                        low_res_masks: torch.Tensor, points_per_batch: int, img_idx: int = -1
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One refinement pass: each point again, with its mask's low-res logits as mask prompt.

        ``points`` ``(N, 2)`` in model coordinates, ``low_res_masks`` ``(N, s, s)``; returns
        ``(masks (N, 1, h, w) logits, ious (N, 1))``.
        """
        out_m, out_i = [], []
        for p, lab, lr in batch_iterator(points_per_batch, points, point_labels, low_res_masks):
            m, iou, _ = self.predictor._predict(p[:, None, :], lab[:, None], mask_input=lr[:, None, :],
                                                multimask_output=False, return_logits=True, img_idx=img_idx)
            out_m.append(m)
            out_i.append(iou)
        return torch.cat(out_m, dim=0), torch.cat(out_i, dim=0)

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """Fill holes / drop islands below ``min_area`` in final masks, then NMS again (in place).

        Kept for upstream compatibility (upstream defines but never calls it); no cv2 needed.
        """
        if len(mask_data["rles"]) == 0:
            return mask_data
        new_masks, scores = [], []
        for rle in mask_data["rles"]:
            m = rle_to_mask(rle)
            m, changed_h = remove_small_regions(m, min_area, mode="holes")
            m, changed_i = remove_small_regions(m, min_area, mode="islands")
            new_masks.append(torch.as_tensor(m)[None])
            scores.append(float(not (changed_h or changed_i)))
        masks = torch.cat(new_masks, dim=0)
        boxes = batched_mask_to_box(masks)
        keep = batched_nms(boxes.float(), torch.as_tensor(scores), torch.zeros_like(boxes[:, 0]), nms_thresh)
        for i in keep.tolist():
            if scores[i] == 0.0:
                mask_data["rles"][i] = masks_to_rle_torch(masks[i][None])[0]
                mask_data["boxes"][i] = boxes[i]
        mask_data.filter(keep)
        return mask_data
