"""``SAM2VideoPredictor``: drop-in compatible with upstream's video predictor.

Same methods, arguments and return values as ``sam2.sam2_video_predictor.SAM2VideoPredictor``
(``init_state``, ``add_new_points_or_box``, ``add_new_mask``, ``propagate_in_video``,
``clear_all_prompts_in_frame``, ``remove_object``, ``reset_state``) and the same tracking
semantics, but it wraps the model instead of being it, and:

* frames are decoded lazily (any :func:`sam2_plugins.io.open_frames` source) and only a few
  frames' image features are cached, instead of all frames decoded up front;
* with ``bounded_memory=True`` (default) spatial memories a later frame of the current pass
  cannot read are dropped, and recomputed from the kept mask if another pass needs them;
* the objects tracked on a frame are batched (see :mod:`sam2_plugins.predictors.video.step`);
* ``propagate_in_video(direction="both")`` and per-frame quality signals (``state.quality``).

Masks come back as upstream's: ``(num_objects, 1, H, W)`` float32 logits at the video's size,
rows in the order objects were first prompted.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, List, Mapping, Optional, Sequence, Tuple, cast

import torch

from ...modeling.rules import apply_non_overlapping_constraints
from ..prompts import check_obj_id
from .bank import MemoryBank
from .frames import FrameFeatures, FrameFeed
from .outputs import to_video_res
from .policy import MemoryPolicy, resolve_policy
from .quality import QualityTracker
from .state import (
    NO_OBJ_SCORE,
    FrameOutput,
    ObjectState,
    PointInputs,
    VideoState,
    parse_point_prompt,
    prepare_mask_prompt,
)
from .step import TrackingStep, tracking_autocast

if TYPE_CHECKING:
    from ...modeling.sam2 import SAM2Model

__all__ = ["SAM2VideoPredictor"]

DIRECTIONS = ("forward", "backward", "both")


class SAM2VideoPredictor:
    """Track objects through a video from clicks, boxes or masks on any frames.

    Its defaults are upstream's ``build_sam2_video_predictor``: masks of prompted frames are
    binarised before they are encoded into memory, holes up to 8 pixels are filled in returned
    masks (and ``build_sam2``'s default model uses dynamic multimask via stability), so
    ``SAM2VideoPredictor(build_sam2(name, checkpoint))`` gives upstream's masks.

    Args:
        model: a ``SAM2Model`` in eval mode.
        fill_hole_area: fill background holes up to this area (pixels of the low-res mask) in
            returned masks; None: 8 with ``apply_postprocessing`` (upstream's video builder), else
            the model's ``fill_hole_area`` (0 for our configs). 0 turns it off.
        non_overlap_masks: returned masks keep only the top object per pixel.
        clear_non_cond_mem_around_input: after a correction, forget the object's tracked
            memories within ``num_maskmem`` frames around it (upstream's intent; its own code
            raises AttributeError here).
        add_all_frames_to_correct_as_cond: corrections become conditioning frames.
        apply_postprocessing: upstream's video-builder defaults (True): binarised prompted
            masks for the memory and ``fill_hole_area=8``. False turns both off (unless given
            explicitly).
        binarize_prompted_masks: binarise masks of point-prompted frames before memory
            encoding; None: ``apply_postprocessing`` (False falls back to the model's
            ``binarize_mask_from_pts_for_mem_enc``).
        bounded_memory: drop spatial memories no later frame of the pass can read (they are
            recomputed on demand), so memory does not grow by ~0.5 MiB per object and frame.
        feature_cache_size: frames whose image features are kept (LRU).
        dtype: ``"auto"`` (default): bf16 autocast on CUDA, and on CPUs with native bf16 dot
            products for inputs of 512² and up (about twice as fast there; mask IoU against
            float32 ≥ 0.99 measured), float32 otherwise; see
            :func:`~sam2_plugins.predictors.video.step.tracking_autocast`. None: float32,
            upstream's numerics (what the parity tests use). ``torch.bfloat16`` / ``"bf16"``:
            always bf16.
        policy: the memory policy (which frames are read, kept, and which candidate mask wins);
            default: upstream's rules (:class:`~sam2_plugins.predictors.video.policy.MemoryPolicy`).
        memory_mode: the tracking mode by name: ``"sam2"`` (default, upstream's rules),
            ``"samurai"`` (motion-aware), ``"distractor"`` (distractor-aware memory) or
            ``"long"`` (memory pathways), or a ``MemoryPolicy`` instance; see
            :mod:`sam2_plugins.predictors.video.modes` and ``docs/tracking_modes.md``.
        mode_params: the mode's parameters (e.g. ``{"shot_cuts": False}``), checked here.
        compile: run the image encoder and the tracked-frame step through ``torch.compile``
            with static shapes (memories padded to a fixed capacity, objects to a bucket of
            1, 2, 4, ... rows; see :mod:`sam2_plugins.predictors.video.compiled`). Masks equal
            the eager ones within float rounding; the first frames are slow (compilation).
        compile_backend, compile_mode: ``torch.compile``'s backend and mode (on CUDA,
            ``compile_mode="reduce-overhead"`` also captures CUDA graphs).
    """

    def __init__(self, model: torch.nn.Module, fill_hole_area: Optional[int] = None,
                 non_overlap_masks: bool = False, clear_non_cond_mem_around_input: bool = False,
                 add_all_frames_to_correct_as_cond: bool = False, *,
                 apply_postprocessing: bool = True, binarize_prompted_masks: Optional[bool] = None,
                 bounded_memory: bool = True, feature_cache_size: int = 2, dtype: Any = "auto",
                 policy: Optional[MemoryPolicy] = None, compile: bool = False,
                 compile_backend: str = "inductor", compile_mode: Optional[str] = None,
                 memory_mode: Any = "sam2", mode_params: Optional[Mapping[str, Any]] = None) -> None:
        policy = resolve_policy(policy, memory_mode, mode_params)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (SAM2Model), got {type(model).__name__}")
        # a SAM2Model (or a module with its API); mypy types nn.Module's attributes as Tensor | Module
        self.model = cast("SAM2Model", model)
        if fill_hole_area is None:
            fill_hole_area = 8 if apply_postprocessing else int(getattr(model, "fill_hole_area", 0) or 0)
        if int(fill_hole_area) < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        if binarize_prompted_masks is None and apply_postprocessing:
            binarize_prompted_masks = True
        self.fill_hole_area = int(fill_hole_area)
        self.non_overlap_masks = bool(non_overlap_masks)
        self.clear_non_cond_mem_around_input = bool(clear_non_cond_mem_around_input)
        self.add_all_frames_to_correct_as_cond = bool(add_all_frames_to_correct_as_cond)
        self.bounded_memory = bool(bounded_memory)
        self.feature_cache_size = int(feature_cache_size)
        self.dtype = dtype
        self.engine = TrackingStep(model, policy, binarize_prompted=binarize_prompted_masks,
                                 fill_hole_area=self.fill_hole_area)
        if compile:
            self.engine.enable_compile(compile_backend, compile_mode)

    # ---- basics ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    def _ctx(self) -> ContextManager:
        return tracking_autocast(self.device, self.dtype, getattr(self.model, "image_size", None))

    @property
    def policy(self) -> MemoryPolicy:
        return self.engine.policy

    def _features(self, state: VideoState, idx: int) -> FrameFeatures:
        return state.frames.features(idx, self.engine.encode_image)

    # ---- session ---------------------------------------------------------------------------
    @torch.inference_mode()
    def init_state(self, video_path: Any, offload_video_to_cpu: bool = False,
                   offload_state_to_cpu: bool = False, async_loading_frames: bool = False,
                   *, time_axis: int = 0) -> VideoState:
        """Open a video and return its tracking state.

        Args:
            video_path: a folder of JPEG frames named by integer (as upstream), a video file
                (mp4 and whatever PyAV reads) or its bytes, a TIFF stack, an array
                ``(T, H, W[, C])`` (numpy, torch, dask, zarr; a 3D volume uses Z as time), a
                list of frames, or any iterable of frames (read once and kept).
            offload_video_to_cpu: keep the cached image features on the CPU and move each frame's
                to the model's device when it is read (frames are decoded lazily and never
                all stored either way).
            offload_state_to_cpu: keep per-frame outputs on the CPU.
            async_loading_frames: accepted for compatibility (frames are always lazy).
            time_axis: the frame axis of arrays and TIFF stacks.
        """
        from sam2_plugins.io import open_frames

        tmp_path = None
        if isinstance(video_path, (bytes, bytearray)):
            if len(video_path) == 0:
                raise ValueError("empty video: the bytes are empty")
            with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as tmp:
                tmp.write(bytes(video_path))
            video_path = tmp_path = tmp.name
        try:
            src = open_frames(video_path, time_axis=time_axis)
        except Exception:
            if tmp_path is not None:
                os.remove(tmp_path)
            raise
        if src.num_frames is None:  # a stream: random access needs the frames kept
            src = open_frames(list(iter(src)))
        if not src.num_frames:
            raise ValueError("empty video: the source holds no frames")
        dev = self.device
        feed = FrameFeed(src.get, src.num_frames, src.height, src.width, self.image_size, dev,
                         storage_device=torch.device("cpu") if offload_video_to_cpu else dev,
                         cache_size=self.feature_cache_size)
        state = VideoState(frames=feed, num_frames=src.num_frames, video_height=src.height,
                           video_width=src.width, device=dev,
                           storage_device=torch.device("cpu") if offload_state_to_cpu else dev,
                           offload_video_to_cpu=offload_video_to_cpu,
                           offload_state_to_cpu=offload_state_to_cpu)
        state.constants["source"] = src
        if tmp_path is not None:  # the decoded bytes' file lives as long as the state
            weakref.finalize(state, _remove_quietly, tmp_path)
        state.constants["quality"] = QualityTracker()
        with self._ctx():
            self._features(state, 0)  # warm-up, as upstream (also validates frame 0)
        return state

    def _obj(self, state: VideoState, obj_id: Any) -> ObjectState:
        """The object's state, created on first use (objects may be added at any time)."""
        _check_state(state)
        check_obj_id(obj_id, state.objects)  # also for known ids: True == 1 would match object 1
        if obj_id not in state.objects:
            state.objects[obj_id] = ObjectState(obj_id=obj_id,
                                                bank=MemoryBank(pos_enc=state.constants.get("maskmem_pos_enc")))
        return state.objects[obj_id]

    # ---- prompts ---------------------------------------------------------------------------
    @torch.inference_mode()
    def add_new_points_or_box(self, inference_state: VideoState, frame_idx: int, obj_id: Any,
                              points: Any = None, labels: Any = None, clear_old_points: bool = True,
                              normalize_coords: bool = True, box: Any = None
                              ) -> Tuple[int, List[Any], torch.Tensor]:
        """Add clicks and/or a box for one object on one frame.

        Args:
            points: (N, 2) XY pixels of the video (or normalised 0..1 coordinates times the
                model size when ``normalize_coords=False``); labels: (N,) 1 positive, 0 negative.
            box: (4,) XYXY pixels; it becomes two points (labels 2, 3) placed first.

        Returns:
            ``(frame_idx, obj_ids, video_res_masks (num_objects, 1, H, W) logits)``.
        """
        state = inference_state
        _check_state(state)
        frame_idx = state.check_frame(frame_idx)
        coords, labs = parse_point_prompt(points, labels, box, clear_old_points, normalized=not normalize_coords,
                                          frame_size=(state.video_width, state.video_height))
        if normalize_coords:
            coords = coords / torch.tensor([state.video_width, state.video_height], dtype=torch.float32)
        coords = (coords * self.image_size).to(state.device)
        labs = labs.to(state.device)
        obj = self._obj(state, obj_id)
        old = None if clear_old_points else obj.point_inputs.get(frame_idx)
        pi = PointInputs(coords, labs) if old is None else old.cat(coords, labs)
        obj.point_inputs[frame_idx] = pi
        obj.mask_inputs.pop(frame_idx, None)
        return self._prompt(state, obj, frame_idx, pi, None)

    def add_new_points(self, *args: Any, **kwargs: Any) -> Tuple[int, List[Any], torch.Tensor]:
        """Deprecated upstream alias of :meth:`add_new_points_or_box`."""
        return self.add_new_points_or_box(*args, **kwargs)

    @torch.inference_mode()
    def add_new_mask(self, inference_state: VideoState, frame_idx: int, obj_id: Any,
                     mask: Any) -> Tuple[int, List[Any], torch.Tensor]:
        """Give one object's mask on one frame: an (H, W) bool/0-1 array (any size; it is
        resized to the model input with antialiasing and thresholded at 0.5)."""
        state = inference_state
        _check_state(state)
        frame_idx = state.check_frame(frame_idx)
        m = prepare_mask_prompt(mask, self.image_size, state.device)
        obj = self._obj(state, obj_id)
        obj.mask_inputs[frame_idx] = m
        obj.point_inputs.pop(frame_idx, None)
        return self._prompt(state, obj, frame_idx, None, m)

    def _prompt(self, state: VideoState, obj: ObjectState, frame_idx: int,
                pi: Optional[PointInputs], mask: Optional[torch.Tensor]) -> Tuple[int, List[Any], torch.Tensor]:
        is_init = frame_idx not in obj.frames_tracked
        reverse = False if is_init else obj.frames_tracked[frame_idx]
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        prev_logits = None
        if pi is not None:
            prev = obj.lookup(frame_idx, is_cond)
            if prev is not None and prev.pred_masks is not None:
                prev_logits = prev.pred_masks.to(state.device).clamp(-32.0, 32.0)
        with self._ctx():
            if not is_init:
                self._ensure_memories(state, [obj], frame_idx, reverse)
            feats = self._features(state, frame_idx)
            pred = self.engine.predict(frame_idx, feats, [obj.bank], num_frames=state.num_frames, reverse=reverse,
                                     is_init_cond_frame=is_init, point_inputs=pi, mask_inputs=mask,
                                     prev_mask_logits=prev_logits)
            out = self.engine.prompt_output(pred, reverse)
        out.pred_masks = self.engine.fill_holes(out.pred_masks).to(state.storage_device)
        obj.temp(is_cond)[frame_idx] = out
        state.constants["quality"].record(obj.obj_id, frame_idx, out, reverse)
        return frame_idx, state.obj_ids, self._consolidated(state, frame_idx, is_cond)

    def _consolidated(self, state: VideoState, frame_idx: int, is_cond: bool) -> torch.Tensor:
        """All objects' masks on a frame at video resolution (missing ones: -1024)."""
        H, W = state.video_height, state.video_width
        out = torch.full((len(state.objects), 1, H, W), NO_OBJ_SCORE, dtype=torch.float32,
                         device=state.device)
        for i, obj in enumerate(state.objects.values()):
            o = obj.lookup(frame_idx, is_cond)
            if o is not None:
                out[i:i + 1] = to_video_res(o.pred_masks.to(state.device), H, W)
        if self.non_overlap_masks:
            out = self._apply_non_overlapping_constraints(out)
        return out

    # ---- propagation -----------------------------------------------------------------------
    @torch.inference_mode()
    def propagate_in_video_preflight(self, inference_state: VideoState) -> None:
        """Encode memories of prompted frames and move them into the memory banks."""
        state = inference_state
        _check_state(state)
        if not state.objects:
            raise RuntimeError("No input points or masks are provided for any object; please add inputs first.")
        with self._ctx():
            for obj in state.objects.values():
                for is_cond in (False, True):
                    temp = obj.temp(is_cond)
                    for frame_idx, out in temp.items():
                        if out.maskmem_features is None:
                            self._encode_prompted(state, frame_idx, out)
                        (obj.bank.cond if is_cond else obj.bank.non_cond)[frame_idx] = out
                        self.policy.observe(obj.bank, frame_idx, out, out.reverse)
                        if self.clear_non_cond_mem_around_input:
                            self._clear_around(state, obj, frame_idx)
                    temp.clear()
                if not obj.bank.cond:
                    raise RuntimeError(f"No input points or masks are provided for object id "
                                       f"{obj.obj_id}; please add inputs first.")
                for t in obj.bank.cond:
                    obj.bank.non_cond.pop(t, None)

    def _encode_prompted(self, state: VideoState, frame_idx: int, out: FrameOutput) -> None:
        """Encode a stored output's memory from its low-res mask (prompted frames when
        propagation starts; evicted memories when a later pass reads them again)."""
        feats = self._features(state, frame_idx)
        score = out.object_score_logits.to(state.device)
        if out.mask_from_points:
            mem, pos = self.engine.memorize_prompted(feats, out.pred_masks.to(state.device), score)
        else:  # a tracked frame's evicted memory: its decoder mask was the upsampled low-res one
            low = out.pred_masks if out.unfilled_masks is None else out.unfilled_masks
            mem, pos = self.engine.memorize(feats, self.engine.upsample(low.to(state.device)), score, from_points=False)
        out.maskmem_features = mem.to(state.storage_device)
        out.evicted = False
        pos = state.constants.setdefault("maskmem_pos_enc", pos)
        for obj in state.objects.values():
            obj.bank.pos_enc = pos

    def _ensure_memories(self, state: VideoState, objs: Sequence[ObjectState], frame_idx: int,
                         reverse: bool) -> None:
        """Recompute evicted spatial memories that ``frame_idx`` is about to read."""
        training = bool(self.model.training)
        for obj in objs:
            entries = self.policy.spatial_memories(obj.bank, frame_idx, reverse, self.engine.params, training)
            missing = [id(e) for _, e in entries if e.maskmem_features is None]
            if not missing:
                continue
            where = {id(o): t for t, o in list(obj.bank.cond.items()) + list(obj.bank.non_cond.items())}
            for _, e in entries:
                if e.maskmem_features is None:
                    self._encode_prompted(state, where[id(e)], e)

    def _clear_around(self, state: VideoState, obj: ObjectState, frame_idx: int) -> None:
        r = self.model.memory_temporal_stride_for_eval
        n = self.model.num_maskmem
        for t in range(frame_idx - r * n, frame_idx + r * n + 1):
            obj.bank.non_cond.pop(t, None)

    @torch.inference_mode()
    def propagate_in_video(self, inference_state: VideoState, start_frame_idx: Optional[int] = None,
                           max_frame_num_to_track: Optional[int] = None, reverse: bool = False,
                           *, direction: Optional[str] = None
                           ) -> Iterator[Tuple[int, List[Any], torch.Tensor]]:
        """Track all objects through the video; yields ``(frame_idx, obj_ids, masks)``.

        ``masks`` is ``(num_objects, 1, H, W)`` float32 logits at the video's size.

        Args:
            start_frame_idx: first frame (default: the earliest prompted frame).
            max_frame_num_to_track: frames to track after the start (default: all).
            reverse: track towards frame 0 (upstream argument). As upstream, a reverse pass
                that starts at frame 0 (``start_frame_idx=0``, or the earliest prompt is on
                frame 0) yields **nothing**, not even frame 0: there is nothing before it to
                track. Read frame 0's result from a forward pass (or ``direction="both"``).
            direction: ``"forward"``, ``"backward"`` or ``"both"`` (overrides ``reverse``).
                ``"both"`` is upstream's usual forward-then-reverse workflow in one call: a
                forward pass from the start to the end, then a backward pass from the start
                towards frame 0. Each frame is yielded once: frames after the start come from
                the forward pass, frames before it from the backward pass (which, as in
                upstream, also reads the forward pass's memories next to the start).
        """
        state = inference_state
        if direction is None:
            direction = "backward" if reverse else "forward"
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.propagate_in_video_preflight(state)
        if start_frame_idx is None:
            start_frame_idx = min(t for o in state.objects.values() for t in o.bank.cond)
        start = state.check_frame(start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = state.num_frames
        if isinstance(max_frame_num_to_track, bool) or int(max_frame_num_to_track) < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frame_num_to_track}")
        n = int(max_frame_num_to_track)
        passes: List[Tuple[bool, Sequence[int]]] = []
        if direction in ("forward", "both"):
            passes.append((False, range(start, min(start + n, state.num_frames - 1) + 1)))
        if direction in ("backward", "both"):
            end = max(start - n, 0)
            order = range(start, end - 1, -1) if start > 0 else range(0)
            if direction == "both":
                order = order[1:]
            passes.append((True, order))
        for rev, frames in passes:
            for frame_idx in frames:
                yield frame_idx, state.obj_ids, self._propagate_frame(state, frame_idx, rev)

    def _propagate_frame(self, state: VideoState, frame_idx: int, reverse: bool) -> torch.Tensor:
        objs = list(state.objects.values())
        tracked = [o for o in objs if frame_idx not in o.bank.cond]
        policy = self.policy
        if tracked:
            with self._ctx():
                self._ensure_memories(state, tracked, frame_idx, reverse)
                feats = self._features(state, frame_idx)
                outs = self.engine.track(frame_idx, feats, [o.bank for o in tracked], state.num_frames, reverse)
            raw = torch.cat([out.pred_masks for out in outs], 0)
            filled = self.engine.fill_holes(raw)
            for i, (o, out) in enumerate(zip(tracked, outs)):
                if filled is not raw and self.bounded_memory and not torch.equal(filled[i], raw[i]):
                    # an evicted memory is recomputed from the mask it was encoded from
                    out.unfilled_masks = raw[i:i + 1].to(state.storage_device)
                out.pred_masks = filled[i:i + 1].to(state.storage_device)
                if out.maskmem_features is not None:
                    out.maskmem_features = out.maskmem_features.to(state.storage_device)
                o.bank.non_cond[frame_idx] = out
                policy.observe(o.bank, frame_idx, out, reverse)
        quality = state.constants["quality"]
        masks = []
        m = self.model
        max_ptr = min(state.num_frames, m.max_obj_ptrs_in_encoder)
        outs_now = []
        for o in objs:
            now = o.bank.get(frame_idx)
            assert now is not None  # tracked just above, or prompted on this frame
            outs_now.append((o.obj_id, now))
            if frame_idx in o.bank.cond and self.clear_non_cond_mem_around_input:
                self._clear_around(state, o, frame_idx)
            o.frames_tracked[frame_idx] = reverse
            masks.append(now.pred_masks.to(state.device))
            if self.bounded_memory:
                o.bank.trim(frame_idx, reverse, m.num_maskmem, m.memory_temporal_stride_for_eval,
                            max_ptr, keep_outputs=True, protected=policy.protected_frames(o.bank))
        quality.record_deferred(outs_now, frame_idx, reverse)  # no host sync per frame on a GPU
        all_masks = torch.cat(masks, dim=0)
        video = to_video_res(all_masks, state.video_height, state.video_width)
        if self.non_overlap_masks:
            video = self._apply_non_overlapping_constraints(video)
        return video

    # ---- editing ---------------------------------------------------------------------------
    @torch.inference_mode()
    def clear_all_prompts_in_frame(self, inference_state: VideoState, frame_idx: int, obj_id: Any,
                                   need_output: bool = True
                                   ) -> Optional[Tuple[int, List[Any], torch.Tensor]]:
        """Remove one object's clicks/mask on a frame; its output there becomes a tracked one."""
        state = inference_state
        _check_state(state)
        frame_idx = state.check_frame(frame_idx)
        obj = state.get_object(obj_id)
        obj.point_inputs.pop(frame_idx, None)
        obj.mask_inputs.pop(frame_idx, None)
        obj.temp_cond.pop(frame_idx, None)
        obj.temp_non_cond.pop(frame_idx, None)
        out = obj.bank.cond.pop(frame_idx, None)
        if out is not None:
            obj.bank.non_cond[frame_idx] = out
            obj.frames_tracked.pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in o.temp_cond for o in state.objects.values())
        return frame_idx, state.obj_ids, self._consolidated(state, frame_idx, is_cond)

    @torch.inference_mode()
    def remove_object(self, inference_state: VideoState, obj_id: Any, strict: bool = False,
                      need_output: bool = True) -> Tuple[List[Any], List[Tuple[int, torch.Tensor]]]:
        """Forget an object; returns ``(obj_ids, [(frame_idx, masks) for its prompted frames])``."""
        state = inference_state
        _check_state(state)
        if obj_id not in state.objects:
            if not strict:
                return state.obj_ids, []
            raise RuntimeError(f"Cannot remove object id {obj_id} as it doesn't exist. "
                               f"All existing object ids: {state.obj_ids}.")
        if len(state.objects) == 1:
            self.reset_state(state)
            return state.obj_ids, []
        obj = state.objects[obj_id]
        frames = set(obj.point_inputs) | set(obj.mask_inputs)
        for t in frames:
            self.clear_all_prompts_in_frame(state, t, obj_id, need_output=False)
        del state.objects[obj_id]
        state.constants["quality"].forget(obj_id)
        updated = []
        if need_output:
            for t in frames:
                is_cond = any(t in o.temp_cond for o in state.objects.values())
                updated.append((t, self._consolidated(state, t, is_cond)))
        return state.obj_ids, updated

    @torch.inference_mode()
    def reset_state(self, inference_state: VideoState) -> None:
        """Remove every prompt, result and object (the frames stay open)."""
        _check_state(inference_state)
        inference_state.objects.clear()
        inference_state.constants["quality"] = QualityTracker()

    def _apply_non_overlapping_constraints(self, pred_masks: torch.Tensor) -> torch.Tensor:
        """Upstream's name, called by its ``tools/vos_inference.py``: per pixel, keep only the
        top object's logit of ``(num_objects, 1, H, W)`` logits; the others are clamped to <= -10."""
        return apply_non_overlapping_constraints(pred_masks)

    # ---- extras ----------------------------------------------------------------------------
    def quality(self, inference_state: VideoState) -> QualityTracker:
        """Per-frame quality signals recorded so far (see :mod:`.quality`)."""
        return inference_state.constants["quality"]

    def memory_footprint(self, inference_state: VideoState) -> int:
        """Bytes held by stored per-frame outputs (masks, memories, pointers)."""
        return sum(o.bank.nbytes() for o in inference_state.objects.values())


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _check_state(state: Any) -> None:
    if not isinstance(state, VideoState):
        raise TypeError(f"expected the state returned by init_state(), got {type(state).__name__}")
