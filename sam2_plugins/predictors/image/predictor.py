"""``SAM2ImagePredictor``: embed an image once, then turn prompts into masks quickly.

Drop-in compatible with upstream's ``sam2.sam2_image_predictor.SAM2ImagePredictor``: same
constructor, methods, arguments, attributes (``model``, ``_features``, ``_orig_hw``,
``_is_image_set``, ``_is_batch``) and return types (numpy). It also works on upstream's
``SAM2Base`` model object, since :class:`~sam2_plugins.modeling.sam2.SAM2Model` mirrors its API.

Differences, all additive:

* images may be ``HxW`` grey, ``HxWx1/3/4``, uint8 / uint16 / other ints / bool / float, numpy,
  torch or PIL (see :mod:`sam2_plugins.predictors.image.preprocess` for the normalisation rule); uint8
  RGB gives exactly upstream's numbers;
* hole / sprinkle removal works on CPU and any device (upstream needs a CUDA extension);
* bf16 autocast on CUDA by default (``dtype="auto"``), fp32 elsewhere;
* bad input raises ``ValueError`` / ``TypeError`` saying what was expected; a prompt outside
  the image only warns (SAM handles it, and the user may mean it, e.g. a box padded past the
  border);
* ``predict()`` with no prompt at all raises (upstream returns a mask for "nothing").

Coordinates: points ``(x, y)`` and boxes ``(x0, y0, x1, y1)`` in pixels of the original image
(``normalize_coords=True``, default) or already in ``[0, 1]`` (``normalize_coords=False``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
import torch.nn.functional as F

from ...device import autocast_context
from ...modeling.rules import box_to_points
from ...upstream_compat import HF_MODEL_IDS
from .. import prompts
from .postprocess import remove_small_regions_in_logits
from .preprocess import image_hw, prepare_image_tensor, to_rgb_float

if TYPE_CHECKING:
    from ...modeling.sam2 import SAM2Model

__all__ = ["SAM2ImagePredictor", "HF_MODEL_IDS"]

_VALID_LABELS = prompts.VALID_LABELS
_as_float_array = prompts.as_coords  # numbers only, finite (shared with the video predictor)


class SAM2ImagePredictor:
    """Promptable single-image segmentation with a cached image embedding.

    Args:
        sam_model: a :class:`~sam2_plugins.modeling.sam2.SAM2Model` (or upstream ``SAM2Base``).
        mask_threshold: logit threshold for the binary masks.
        max_hole_area: fill background regions of at most this many pixels (of the 256x256
            low-res mask) before upsampling; 0 disables.
        max_sprinkle_area: remove foreground regions of at most this many low-res pixels; 0 disables.
        normalize: default image normalisation rule for :meth:`set_image` (see ``preprocess``).
        dtype: autocast dtype: ``"auto"`` (bf16 on CUDA, fp32 elsewhere), ``"fp32"``, ``"bf16"``, or
            a ``torch.dtype``.
    """

    def __init__(self, sam_model: torch.nn.Module, mask_threshold: float = 0.0,
                 max_hole_area: float = 0.0, max_sprinkle_area: float = 0.0,
                 normalize: str = "auto", dtype: Union[str, torch.dtype, None] = "auto",
                 **kwargs: Any) -> None:
        if not isinstance(sam_model, torch.nn.Module):
            raise TypeError(f"sam_model must be a SAM 2 model (nn.Module), got {type(sam_model).__name__}")
        # typed as SAM2Model, whose API upstream's SAM2Base shares (nn.Module's attributes are untyped)
        self.model = cast("SAM2Model", sam_model)
        self.mask_threshold = float(mask_threshold)
        self.max_hole_area = float(max_hole_area)
        self.max_sprinkle_area = float(max_sprinkle_area)
        self.normalize = normalize
        self.dtype = dtype
        self._is_image_set = False
        self._features: Optional[Dict[str, Any]] = None
        self._orig_hw: Optional[List[Tuple[int, int]]] = None
        self._is_batch = False
        self._dense_pe: Optional[torch.Tensor] = None
        s = int(self.model.image_size)
        # Upstream hard-codes these for 1024; derive them so smaller configs (nano) work too.
        self._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> "SAM2ImagePredictor":
        """Build a model with official weights (``sam2_plugins.build.build_sam2``) and wrap it.

        ``model_id`` is one of our model names or an upstream Hugging Face id
        (``"facebook/sam2.1-hiera-tiny"``). ``checkpoint`` (default ``"download"``), ``device``
        and ``apply_postprocessing`` go to ``build_sam2``; other keywords to the predictor.
        """
        from ...build import build_sam2

        name = HF_MODEL_IDS.get(model_id, model_id)
        build_kw = {k: kwargs.pop(k) for k in ("checkpoint", "device", "apply_postprocessing", "progress")
                    if k in kwargs}
        build_kw.setdefault("checkpoint", "download")
        model = build_sam2(name, **build_kw)
        return cls(model, **kwargs)

    @property
    def device(self) -> torch.device:
        dev = getattr(self.model, "device", None)
        return dev if isinstance(dev, torch.device) else next(self.model.parameters()).device

    def reset_predictor(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self._is_image_set = False
        self._features = None
        self._orig_hw = None
        self._is_batch = False
        self._dense_pe = None

    def _image_pe(self) -> torch.Tensor:
        """The prompt encoder's dense positional encoding, computed once per image (it depends
        only on the weights; recomputing its sin/cos grid cost ~2 ms a click on CPU)."""
        if self._dense_pe is None:
            self._dense_pe = self.model.sam_prompt_encoder.get_dense_pe()
        return self._dense_pe

    # ------------------------------------------------------------------ image embedding
    def _embed(self, batch: torch.Tensor) -> Dict[str, Any]:
        """(B, 3, S, S) normalised input -> upstream's ``_features`` dict."""
        b = batch.shape[0]
        with autocast_context(self.device, self.dtype):
            backbone_out = self.model.forward_image(batch)
            _, vision_feats, _, feat_sizes = self.model.prepare_backbone_features(backbone_out)
            if self.model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        sizes = [tuple(int(v) for v in hw) for hw in feat_sizes] if feat_sizes else self._bb_feat_sizes
        feats = [f.permute(1, 2, 0).reshape(b, -1, *hw) for f, hw in zip(vision_feats, sizes)]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

    def _input_tensor(self, image: Any, normalize: Optional[str]) -> torch.Tensor:
        rgb = to_rgb_float(image, normalize or self.normalize)
        return prepare_image_tensor(rgb, int(self.model.image_size), self.device)

    @torch.inference_mode()
    def set_image(self, image: Any, normalize: Optional[str] = None) -> None:
        """Compute and cache the embedding of one image.

        Args:
            image: ``HxW`` / ``HxWxC`` (C in 1, 3, 4) numpy array or torch tensor, or a PIL image,
                in RGB order. uint8 is read as 0..255 (upstream); see ``preprocess`` for others.
            normalize: overrides the predictor's normalisation rule for this image.
        """
        self.reset_predictor()
        x = self._input_tensor(image, normalize)  # validates the image first
        hw = image_hw(image)
        self._features = self._embed(x)
        self._orig_hw = [hw]
        self._is_image_set = True

    @torch.inference_mode()
    def set_image_batch(self, image_list: Sequence[Any], normalize: Optional[str] = None) -> None:
        """Embed several images at once (sizes may differ); use :meth:`predict_batch` afterwards."""
        self.reset_predictor()
        if not isinstance(image_list, (list, tuple)) or len(image_list) == 0:
            empty = " of length 0" if isinstance(image_list, (list, tuple)) else ""
            raise ValueError(f"image_list must be a non-empty list of images, got {type(image_list).__name__}{empty}")
        batch = torch.cat([self._input_tensor(im, normalize) for im in image_list], dim=0)
        hws = [image_hw(im) for im in image_list]
        self._features = self._embed(batch)
        self._orig_hw = hws
        self._is_image_set = True
        self._is_batch = True

    def get_image_embedding(self) -> torch.Tensor:
        """The cached image embedding ``(B, C, H', W')`` (tiny at 1024²: ``(1, 256, 64, 64)``)."""
        if not self._is_image_set or self._features is None:
            raise RuntimeError("An image must be set with .set_image(...) to generate an embedding.")
        return self._features["image_embed"]

    # ------------------------------------------------------------------ prompts
    def _prep_prompts(self, point_coords: Any, point_labels: Any, box: Any, mask_logits: Any,
                      normalize_coords: bool, img_idx: int = -1
                      ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor],
                                 Optional[torch.Tensor]]:
        """Validate prompts and map them to model-input coordinates (as upstream's ``_prep_prompts``).

        Returns ``(mask_input (B,1,s,s) | None, coords (B,N,2) | None, labels (B,N) int | None,
        box (B,2,2) | None)`` on the model's device, coordinates in ``[0, image_size]``.
        """
        assert self._orig_hw is not None, "no image set"
        h, w = self._orig_hw[img_idx]
        s = float(self.model.image_size)
        dev = self.device
        coords = labels = boxes = mask_input = None
        if point_coords is None and point_labels is not None:
            raise ValueError("point_labels given without point_coords")
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied")
            coords = _as_float_array(point_coords, "point_coords")
            labels = prompts.as_labels(point_labels, "point_labels")
            if coords.dim() not in (2, 3) or coords.shape[-1] != 2:
                raise ValueError(f"point_coords must have shape (N, 2) or (B, N, 2), got {tuple(coords.shape)}")
            if tuple(labels.shape) != tuple(coords.shape[:-1]):
                raise ValueError(f"point_labels must have shape {tuple(coords.shape[:-1])} to match point_coords "
                                 f"{tuple(coords.shape)}, got {tuple(labels.shape)}")
            if coords.dim() == 2:
                coords, labels = coords[None], labels[None]
            if coords.shape[1] == 0:
                coords = labels = None  # an empty point list is "no points"
            else:
                self._warn_outside(coords, normalize_coords, h, w, "point_coords")
                coords = self._to_model_coords(coords, normalize_coords, h, w, s)
        if box is not None:
            b = _as_float_array(box, "box")
            if b.shape[-1:] != (4,) or b.dim() not in (1, 2):
                raise ValueError(f"box must have shape (4,) or (B, 4) in XYXY format, got {tuple(b.shape)}")
            b = prompts.check_boxes(b.reshape(-1, 4)).reshape(-1, 2, 2)
            if b.shape[0] > 0:
                self._warn_outside(b, normalize_coords, h, w, "box")
                boxes = self._to_model_coords(b, normalize_coords, h, w, s)
        if mask_logits is not None:
            m = _as_float_array(mask_logits, "mask_input")
            low = int(self.model.image_size) // 4
            if m.dim() == 2:
                m = m[None]
            if m.dim() == 3:
                m = m[None]
            if m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != (low, low):
                raise ValueError(f"mask_input must have shape (1, {low}, {low}) or (B, 1, {low}, {low}) "
                                 "(low-res logits, e.g. a previous predict()'s third output), got "
                                     f"{tuple(np.shape(mask_logits))}")
            mask_input = m.to(dev)
        if coords is not None:
            assert labels is not None  # set together with coords
            coords, labels = coords.to(dev), labels.to(dev)
        if boxes is not None:
            boxes = boxes.to(dev)
        return mask_input, coords, labels, boxes

    @staticmethod
    def _to_model_coords(c: torch.Tensor, normalize: bool, h: int, w: int, s: float) -> torch.Tensor:
        c = c.clone()
        if normalize:
            c[..., 0] = c[..., 0] / w
            c[..., 1] = c[..., 1] / h
        return c * s

    @staticmethod
    def _warn_outside(c: torch.Tensor, normalize: bool, h: int, w: int, what: str) -> None:
        prompts.warn_outside(c, w, h, not normalize, what, stacklevel=6)

    # ------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def _predict(self, point_coords: Optional[torch.Tensor], point_labels: Optional[torch.Tensor],
                 boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                 multimask_output: bool = True, return_logits: bool = False, img_idx: int = -1
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts already in model coordinates -> (masks (B,C,H,W), ious (B,C), low-res (B,C,s,s)).

        Same contract as upstream's ``_predict`` (used by the automatic mask generator).
        """
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        if point_coords is not None:
            assert point_labels is not None, "point_labels must come with point_coords"
            points = (point_coords, point_labels)
        if boxes is not None:
            boxes, box_labels = box_to_points(boxes)  # (B, 2, 2) corners, labels 2 and 3
            if points is not None:
                pc, pl = points
                if pc.shape[0] != boxes.shape[0]:
                    if pc.shape[0] == 1:  # one point set shared by all boxes
                        pc, pl = pc.expand(boxes.shape[0], -1, -1), pl.expand(boxes.shape[0], -1)
                    elif boxes.shape[0] == 1:
                        boxes, box_labels = boxes.expand(pc.shape[0], -1, -1), box_labels.expand(pc.shape[0], -1)
                    else:
                        raise ValueError(f"{boxes.shape[0]} boxes and {pc.shape[0]} point sets: the counts must match "
                                         "(or one be 1)")
                points = (torch.cat([boxes, pc], dim=1), torch.cat([box_labels, pl], dim=1))
            else:
                points = (boxes, box_labels)
        n_prompts = points[0].shape[0] if points is not None else 1
        if mask_input is not None and mask_input.shape[0] not in (1, n_prompts):
            raise ValueError(f"mask_input has batch {mask_input.shape[0]} but there are {n_prompts} prompt sets")
        if mask_input is not None and mask_input.shape[0] == 1 and n_prompts > 1:
            mask_input = mask_input.expand(n_prompts, -1, -1, -1)
        feats = self._features
        assert feats is not None and self._orig_hw is not None  # set with _is_image_set
        with autocast_context(self.device, self.dtype):
            sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
            batched = points is not None and points[0].shape[0] > 1
            high_res = [lvl[img_idx].unsqueeze(0) for lvl in feats["high_res_feats"]]
            low_res, iou, _, _ = self.model.sam_mask_decoder(
                image_embeddings=feats["image_embed"][img_idx].unsqueeze(0),
                image_pe=self._image_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                repeat_image=batched,
                high_res_features=high_res,
            )
        low_res = low_res.float()
        cleaned = remove_small_regions_in_logits(low_res, self.mask_threshold, self.max_hole_area,
                                                 self.max_sprinkle_area)
        masks = F.interpolate(cleaned, self._orig_hw[img_idx], mode="bilinear", align_corners=False)
        low_res = torch.clamp(low_res, -32.0, 32.0)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou.float(), low_res

    def _run(self, point_coords: Any, point_labels: Any, box: Any, mask_input: Any,
             multimask_output: bool, return_logits: bool, normalize_coords: bool, img_idx: int
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(multimask_output, (bool, np.bool_)):
            raise TypeError(f"multimask_output must be a bool, got {type(multimask_output).__name__}")
        mask_t, coords, labels, boxes = self._prep_prompts(point_coords, point_labels, box, mask_input,
                                                           normalize_coords, img_idx=img_idx)
        if coords is None and boxes is None and mask_t is None:
            raise ValueError("no prompt given: pass point_coords + point_labels, a box and/or a "
                             "mask_input (empty point lists count as no points)")
        masks, iou, low = self._predict(coords, labels, boxes, mask_t, multimask_output,
                                        return_logits=return_logits, img_idx=img_idx)
        return (masks.squeeze(0).float().cpu().numpy(), iou.squeeze(0).float().cpu().numpy(),
                low.squeeze(0).float().cpu().numpy())

    def predict(self, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                box: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
                multimask_output: bool = True, return_logits: bool = False,
                normalize_coords: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on the image set with :meth:`set_image`.

        Args:
            point_coords: ``(N, 2)`` (or ``(B, N, 2)``) points ``(x, y)``; pixels of the original
                image when ``normalize_coords`` (default), else in ``[0, 1]``.
            point_labels: ``(N,)`` (or ``(B, N)``): 1 foreground, 0 background.
            box: ``(4,)`` or ``(B, 4)`` XYXY box(es); B boxes give B independent predictions.
            mask_input: ``(1, s, s)`` low-res logits (s = image_size / 4, 256 at 1024²), e.g. the
                third output of a previous call.
            multimask_output: 3 masks (best for a single click) instead of 1.
            return_logits: return the upsampled logits instead of 0/1 masks.

        Returns:
            ``masks`` float32 ``(C, H, W)`` 0/1 (or logits), ``ious`` float32 ``(C,)``, ``low_res``
            float32 ``(C, s, s)`` logits clamped to ±32; with B prompt sets each gains a leading B.
        """
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        assert self._orig_hw is not None  # set with _is_image_set
        if self._is_batch and len(self._orig_hw) > 1:
            raise RuntimeError(f"{len(self._orig_hw)} images were set with set_image_batch(); use predict_batch()")
        return self._run(point_coords, point_labels, box, mask_input, multimask_output,
                         return_logits, normalize_coords, img_idx=-1)

    def predict_batch(self, point_coords_batch: Optional[List[np.ndarray]] = None,
                      point_labels_batch: Optional[List[np.ndarray]] = None,
                      box_batch: Optional[List[np.ndarray]] = None,
                      mask_input_batch: Optional[List[np.ndarray]] = None,
                      multimask_output: bool = True, return_logits: bool = False,
                      normalize_coords: bool = True
                      ) -> Tuple[List[np.ndarray], List[np.ndarray], List[np.ndarray]]:
        """:meth:`predict` for every image set with :meth:`set_image_batch`; lists per image."""
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image_batch(...) before mask prediction.")
        if not self._is_batch:
            raise RuntimeError("predict_batch() needs images set with set_image_batch(); use predict() after "
                               "set_image()")
        assert self._orig_hw is not None  # set with _is_image_set
        n = len(self._orig_hw)
        for name, val in (("point_coords_batch", point_coords_batch), ("point_labels_batch", point_labels_batch),
                          ("box_batch", box_batch), ("mask_input_batch", mask_input_batch)):
            if val is not None and len(val) != n:
                raise ValueError(f"{name} must have one entry per image ({n}), got {len(val)}")
        out_m, out_i, out_l = [], [], []
        for i in range(n):
            pick = lambda v, i=i: None if v is None else v[i]  # noqa: E731
            m, io, lo = self._run(pick(point_coords_batch), pick(point_labels_batch), pick(box_batch),
                                  pick(mask_input_batch), multimask_output, return_logits,
                                  normalize_coords, img_idx=i)
            out_m.append(m)
            out_i.append(io)
            out_l.append(lo)
        return out_m, out_i, out_l
