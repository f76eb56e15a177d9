"""A streaming tracking session: frames arrive one at a time, memory stays bounded.

>>> session = VideoSession(model)
>>> for result in session.run("video.mp4", prompts={0: [dict(obj_id=1, points=[[210, 350]], labels=[1])]}):
...     masks = result.masks()            # (num_objects, H, W) bool at the video's size
...     result.quality[1].score           # object-score logit; .lost / .reappeared / .low_confidence

or, driving it by hand (a live camera, a generator, a napari viewer):

>>> idx = session.push(frame)                          # HxW / HxWxC array, any dtype
>>> session.add_points(obj_id=1, points=[[x, y]], labels=[1])   # prompts on the current frame
>>> result = session.track()                           # all objects on the current frame

Semantics follow the video predictor's forward propagation: a prompt on a frame where the
object was not tracked yet makes it a conditioning frame (as upstream, the prompt alone decides
the mask there); a prompt after ``track()`` on the same frame is a correction (the previous
mask is the decoder's mask prompt; ``correction_as_cond`` keeps it as a conditioning frame,
otherwise it is remembered like a tracked frame, as upstream's default). Prompts are only
accepted on the current frame: past frames are gone by design.

What is kept: each object's conditioning frames, the last ``num_maskmem - 1`` spatial memories,
the last ``max_obj_ptrs_in_encoder - 1`` pointers, and the current frame's features. Memory use
is therefore independent of the stream's length (see ``benchmarks/video_memory.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ContextManager,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
    cast,
)

import numpy as np
import torch

from ...modeling.rules import apply_non_overlapping_constraints
from ..prompts import check_obj_id
from .bank import MemoryBank
from .frames import FrameFeed
from .outputs import binarize, to_video_res
from .policy import MemoryPolicy, resolve_policy
from .quality import FrameQuality, QualityTracker
from .state import NO_OBJ_SCORE, FrameOutput, ObjectState, PointInputs, parse_point_prompt, prepare_mask_prompt
from .step import TrackingStep, tracking_autocast

if TYPE_CHECKING:
    from ...modeling.sam2 import SAM2Model

__all__ = ["VideoSession", "FrameResult"]

PromptSpec = Mapping[str, Any]
PromptSource = Union[Mapping[int, Sequence[PromptSpec]], Callable[["VideoSession", int], None], None]


@dataclass
class FrameResult:
    """Everything about one frame of a stream.

    Attributes:
        frame_idx: index of the frame in the stream (0-based).
        obj_ids: object ids, in row order of ``mask_logits``.
        mask_logits: (N, 1, H, W) float32 logits at the frame's own size (> 0: object).
        quality: obj_id -> :class:`~sam2_plugins.predictors.video.quality.FrameQuality`.
    """

    frame_idx: int
    obj_ids: List[Any]
    mask_logits: torch.Tensor
    quality: Dict[Any, FrameQuality] = field(default_factory=dict)

    def masks(self, threshold: float = 0.0) -> np.ndarray:
        """(N, H, W) bool masks."""
        if not self.obj_ids:
            return np.zeros((0,) + tuple(self.mask_logits.shape[-2:]), dtype=bool)
        return binarize(self.mask_logits, threshold)

    def mask(self, obj_id: Any, threshold: float = 0.0) -> np.ndarray:
        """(H, W) bool mask of one object."""
        if obj_id not in self.obj_ids:
            raise ValueError(f"unknown object id {obj_id!r}; objects on this frame: {self.obj_ids}")
        return (self.mask_logits[self.obj_ids.index(obj_id), 0] > threshold).cpu().numpy()


class VideoSession:
    """Online tracking over a stream of frames (see the module docstring).

    Args:
        model: a ``SAM2Model`` in eval mode.
        num_frames: the stream's length if known. It only sets the object-pointer temporal
            scale (upstream divides positions by ``min(num_frames, 16) - 1``); unknown counts
            as long (>= 16 frames).
        correction_as_cond: corrections become conditioning frames (kept for the whole
            stream) instead of sliding out of the memory window.
        fill_hole_area: fill background holes up to this area in the low-res mask; None: 8
            with ``apply_postprocessing``, else 0 (off).
        non_overlap_masks: returned masks keep only the top object per pixel.
        apply_postprocessing: upstream's video-builder defaults, as the video predictor
            (True): binarised prompted masks for the memory and ``fill_hole_area=8``.
        binarize_prompted_masks: binarise masks of prompted frames before memory encoding; None:
            ``apply_postprocessing`` (False falls back to the model's flag).
        dtype: ``"auto"`` (default: bf16 autocast on CUDA, and on CPUs with native bf16 dot
            products for inputs of 512² and up; float32 otherwise; see
            :func:`~sam2_plugins.predictors.video.step.tracking_autocast`), None for float32
            (upstream's numerics), or ``torch.bfloat16`` / ``"bf16"`` to force bf16.
        quality_window: frames of quality records kept (older ones are dropped).
        policy: the memory policy (default: upstream's rules), as for the video predictor.
        memory_mode, mode_params: the tracking mode by name and its parameters, as for the
            video predictor (``"sam2"``, ``"samurai"``, ``"distractor"``, ``"long"``).
        compile, compile_backend, compile_mode: the compiled step, as for the video predictor.
    """

    def __init__(self, model: torch.nn.Module, *, num_frames: Optional[int] = None,
                 correction_as_cond: bool = False, fill_hole_area: Optional[int] = None,
                 non_overlap_masks: bool = False, apply_postprocessing: bool = True,
                 binarize_prompted_masks: Optional[bool] = None, dtype: Any = "auto",
                 quality_window: int = 64, policy: Optional[MemoryPolicy] = None, compile: bool = False,
                 compile_backend: str = "inductor", compile_mode: Optional[str] = None,
                 memory_mode: Any = "sam2", mode_params: Optional[Mapping[str, Any]] = None) -> None:
        policy = resolve_policy(policy, memory_mode, mode_params)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (SAM2Model), got {type(model).__name__}")
        if num_frames is not None and int(num_frames) < 1:
            raise ValueError(f"num_frames must be >= 1 or None, got {num_frames}")
        # a SAM2Model (or a module with its API); mypy types nn.Module's attributes as Tensor | Module
        self.model = cast("SAM2Model", model)
        if fill_hole_area is None:
            fill_hole_area = 8 if apply_postprocessing else 0
        if binarize_prompted_masks is None and apply_postprocessing:
            binarize_prompted_masks = True
        self.num_frames = None if num_frames is None else int(num_frames)
        self.correction_as_cond = bool(correction_as_cond)
        self.non_overlap_masks = bool(non_overlap_masks)
        self.dtype = dtype
        self.engine = TrackingStep(model, policy, binarize_prompted=binarize_prompted_masks,
                                 fill_hole_area=fill_hole_area)
        if compile:
            self.engine.enable_compile(compile_backend, compile_mode)
        self.quality = QualityTracker(window=quality_window)
        self.objects: Dict[Any, ObjectState] = {}
        self.frame_idx = -1
        self.height: Optional[int] = None
        self.width: Optional[int] = None
        self._raw: Optional[np.ndarray] = None
        self._feed: Optional[FrameFeed] = None
        self._pos_enc: Optional[torch.Tensor] = None
        self._outputs: Dict[Any, FrameOutput] = {}   # this frame's outputs per object
        self._tracked = False                         # track() ran on the current frame

    # ---- basics ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def obj_ids(self) -> List[Any]:
        return list(self.objects)

    def _ctx(self) -> ContextManager:
        return tracking_autocast(self.device, self.dtype, getattr(self.model, "image_size", None))

    def _features(self) -> Any:
        assert self._feed is not None
        return self._feed.features(self.frame_idx, self.engine.encode_image)

    # ---- frames ----------------------------------------------------------------------------
    @torch.inference_mode()
    def push(self, frame: Any) -> int:
        """Make ``frame`` (HxW or HxWxC, any dtype; torch tensors and PIL images too) the
        current frame and return its index. A frame that fails validation raises ValueError
        and changes nothing: earlier results and memories stay as they were."""
        if self.frame_idx >= 0 and not self._tracked and self._pending():
            # prompts given but never tracked: fold them into memory before moving on
            self.track()
        arr = _to_array(frame)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or arr.size == 0 or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise ValueError(f"frame must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}")
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise ValueError(f"frame {self.frame_idx + 1} holds NaN or infinite values")
        if self.height is None:
            self.height, self.width = int(arr.shape[0]), int(arr.shape[1])
            self._feed = FrameFeed(lambda i: self._raw, None, self.height, self.width,
                                   int(self.model.image_size), self.device, cache_size=1)
            self._feed.prefetch = False  # only the current frame exists
        elif tuple(arr.shape[:2]) != (self.height, self.width):
            raise ValueError(f"frame {self.frame_idx + 1} has size {arr.shape[0]}x{arr.shape[1]} but the "
                             f"stream is {self.height}x{self.width}; all frames must have the same size")
        if self.num_frames is not None and self.frame_idx + 1 >= self.num_frames:
            raise ValueError(f"the session was told num_frames={self.num_frames}; got more frames")
        self.frame_idx += 1
        self._raw = arr
        assert self._feed is not None  # made with the first frame
        self._feed.drop()
        self._outputs = {}
        self._tracked = False
        return self.frame_idx

    def _need_frame(self, frame_idx: Optional[int]) -> int:
        if self.frame_idx < 0:
            raise RuntimeError("no frame yet: call push(frame) (or step / run) first")
        if frame_idx is not None and int(frame_idx) != self.frame_idx:
            raise ValueError(f"prompts can only be given on the current frame ({self.frame_idx}) of a "
                             f"stream, got frame_idx={frame_idx}")
        return self.frame_idx

    def _pending(self) -> bool:
        return any(self.frame_idx in o.temp_cond or self.frame_idx in o.temp_non_cond
                   for o in self.objects.values())

    # ---- prompts ---------------------------------------------------------------------------
    @torch.inference_mode()
    def add_points(self, obj_id: Any, points: Any = None, labels: Any = None, box: Any = None,
                   frame_idx: Optional[int] = None, clear_old_points: bool = True,
                   normalize_coords: bool = True) -> torch.Tensor:
        """Clicks (XY pixels of the frame; labels 1 positive / 0 negative) and/or a box (XYXY)
        for one object on the current frame. Returns that object's (1, 1, H, W) mask logits."""
        f = self._need_frame(frame_idx)
        assert self.width is not None and self.height is not None  # known once a frame was pushed
        coords, labs = parse_point_prompt(points, labels, box, clear_old_points, normalized=not normalize_coords,
                                          frame_size=(self.width, self.height))
        if normalize_coords:
            coords = coords / torch.tensor([self.width, self.height], dtype=torch.float32)
        coords = (coords * int(self.model.image_size)).to(self.device)
        obj = self._object(obj_id)
        old = None if clear_old_points else obj.point_inputs.get(f)
        pi = PointInputs(coords, labs.to(self.device)) if old is None else old.cat(coords, labs.to(self.device))
        obj.point_inputs[f] = pi
        obj.mask_inputs.pop(f, None)
        return self._prompt(obj, pi, None)

    def add_box(self, obj_id: Any, box: Any, frame_idx: Optional[int] = None) -> torch.Tensor:
        """A box (x0, y0, x1, y1 pixels) for one object on the current frame."""
        return self.add_points(obj_id, box=box, frame_idx=frame_idx)

    @torch.inference_mode()
    def add_mask(self, obj_id: Any, mask: Any, frame_idx: Optional[int] = None) -> torch.Tensor:
        """An (H, W) mask (bool / 0-1, any size) for one object on the current frame."""
        self._need_frame(frame_idx)
        m = prepare_mask_prompt(mask, int(self.model.image_size), self.device)
        obj = self._object(obj_id)
        obj.mask_inputs[self.frame_idx] = m
        obj.point_inputs.pop(self.frame_idx, None)
        return self._prompt(obj, None, m)

    def _object(self, obj_id: Any) -> ObjectState:
        check_obj_id(obj_id, self.objects)  # also for known ids: True == 1 would match object 1
        if obj_id not in self.objects:
            self.objects[obj_id] = ObjectState(obj_id=obj_id, bank=MemoryBank(pos_enc=self._pos_enc))
        return self.objects[obj_id]

    def _prompt(self, obj: ObjectState, pi: Optional[PointInputs], mask: Optional[torch.Tensor]) -> torch.Tensor:
        f = self.frame_idx
        # more clicks on a frame the object was prompted on refine that prompt (as upstream
        # before propagation); on a tracked frame they are a correction
        is_init = f not in obj.frames_tracked or f in obj.bank.cond or f in obj.temp_cond
        is_cond = is_init or self.correction_as_cond
        prev_logits = None
        if pi is not None:
            prev = obj.temp(is_cond).get(f) or self._outputs.get(obj.obj_id)
            if prev is not None:
                prev_logits = prev.pred_masks.to(self.device).clamp(-32.0, 32.0)
        # the new output replaces this frame's entry (a frame never reads its own entry)
        obj.bank.non_cond.pop(f, None)
        obj.bank.cond.pop(f, None)
        with self._ctx():
            pred = self.engine.predict(f, self._features(), [obj.bank], num_frames=self.num_frames,
                                     is_init_cond_frame=is_init, point_inputs=pi, mask_inputs=mask,
                                     prev_mask_logits=prev_logits)
            out = self.engine.prompt_output(pred, reverse=False)
        out.pred_masks = self.engine.fill_holes(out.pred_masks)
        obj.temp_cond.pop(f, None)
        obj.temp_non_cond.pop(f, None)
        obj.temp(is_cond)[f] = out
        self._outputs[obj.obj_id] = out
        if self._tracked:  # after track(): encode right away so the next frame sees it
            self._commit(obj)
        assert self.height is not None and self.width is not None  # known once a frame was pushed
        return to_video_res(out.pred_masks, self.height, self.width)

    def _commit(self, obj: ObjectState) -> None:
        """Encode the memory of a prompted output and store it in the object's bank."""
        f = self.frame_idx
        for is_cond in (False, True):
            out = obj.temp(is_cond).pop(f, None)
            if out is None:
                continue
            with self._ctx():
                mem, pos = self.engine.memorize_prompted(self._features(), out.pred_masks, out.object_score_logits)
            out.maskmem_features = mem
            if self._pos_enc is None:
                self._pos_enc = pos
                for o in self.objects.values():
                    o.bank.pos_enc = pos
            (obj.bank.cond if is_cond else obj.bank.non_cond)[f] = out
            if is_cond:
                obj.bank.non_cond.pop(f, None)
            obj.frames_tracked[f] = False
            self.engine.policy.observe(obj.bank, f, out, False)
            self.quality.record(obj.obj_id, f, out, False)

    @torch.inference_mode()
    def remove_object(self, obj_id: Any) -> None:
        """Stop tracking an object (its memory is freed)."""
        if obj_id not in self.objects:
            raise ValueError(f"unknown object id {obj_id!r}; known ids: {self.obj_ids}")
        del self.objects[obj_id]
        self._outputs.pop(obj_id, None)
        self.quality.forget(obj_id)

    # ---- tracking --------------------------------------------------------------------------
    @torch.inference_mode()
    def track(self) -> FrameResult:
        """Results for all objects on the current frame: prompted objects keep their prompt's
        mask, the others are tracked from memory (batched); then memories are stored and what
        no later frame can read is dropped."""
        f = self._need_frame(None)
        for obj in self.objects.values():
            self._commit(obj)
        todo = [o for o in self.objects.values()
                if o.obj_id not in self._outputs and o.bank.cond]
        if todo:
            with self._ctx():
                outs = self.engine.track(f, self._features(), [o.bank for o in todo], self.num_frames, False)
            filled = self.engine.fill_holes(torch.cat([out.pred_masks for out in outs], 0))
            for i, (o, out) in enumerate(zip(todo, outs)):
                out.pred_masks = filled[i:i + 1]
                o.bank.non_cond[f] = out
                self.engine.policy.observe(o.bank, f, out, False)
                o.frames_tracked[f] = False
                self._outputs[o.obj_id] = out
            self.quality.record_many([(o.obj_id, out) for o, out in zip(todo, outs)], f, False)
        self._tracked = True
        m = self.model
        max_ptr = m.max_obj_ptrs_in_encoder if self.num_frames is None else min(self.num_frames,
                                                                                 m.max_obj_ptrs_in_encoder)
        for o in self.objects.values():
            o.bank.trim(f, False, m.num_maskmem, m.memory_temporal_stride_for_eval, max_ptr,
                        keep_outputs=False, protected=self.engine.policy.protected_frames(o.bank))
            # frames_tracked only needs the current frame (prompts are never on past frames)
            o.frames_tracked = {f: False} if f in o.frames_tracked else {}
        return self.result()

    def result(self) -> FrameResult:
        """The current frame's :class:`FrameResult` (objects without output: -1024 logits)."""
        f = self._need_frame(None)
        ids = self.obj_ids
        H, W = self.height, self.width
        assert H is not None and W is not None  # known once a frame was pushed
        logits = torch.full((len(ids), 1, H, W), NO_OBJ_SCORE, device=self.device)
        for i, oid in enumerate(ids):
            out = self._outputs.get(oid)
            if out is not None:
                logits[i:i + 1] = to_video_res(out.pred_masks.to(self.device), H, W)
        if self.non_overlap_masks:
            logits = apply_non_overlapping_constraints(logits)
        return FrameResult(frame_idx=f, obj_ids=ids, mask_logits=logits, quality=self.quality.frame(f))

    def step(self, frame: Any, prompts: Optional[Sequence[PromptSpec]] = None) -> FrameResult:
        """``push(frame)``, apply ``prompts`` (dicts of :meth:`add_points` / :meth:`add_mask`
        keyword arguments, each with ``obj_id``), then ``track()``."""
        self.push(frame)
        for p in prompts or ():
            self.apply_prompt(p)
        return self.track()

    def apply_prompt(self, prompt: PromptSpec) -> torch.Tensor:
        """Apply one prompt dict: ``{"obj_id", "points", "labels"}``, ``{"obj_id", "box"}`` or
        ``{"obj_id", "mask"}`` (plus optional ``clear_old_points``)."""
        if not isinstance(prompt, Mapping) or "obj_id" not in prompt:
            raise ValueError(f"a prompt must be a dict with 'obj_id' and points/labels, box or mask; got {prompt!r}")
        p = dict(prompt)
        oid = p.pop("obj_id")
        if "mask" in p:
            return self.add_mask(oid, p.pop("mask"))
        return self.add_points(oid, **p)

    def run(self, source: Any, prompts: PromptSource = None, *, time_axis: int = 0,
            on_error: str = "raise") -> Iterator[FrameResult]:
        """Track through ``source`` (anything :func:`sam2_plugins.io.open_frames` reads: a
        generator, camera iterator, mp4, image folder, TIFF stack, (lazy) array, 3D volume
        with Z as time). Yields one :class:`FrameResult` per frame.

        Args:
            prompts: ``{frame_idx: [prompt dict, ...]}`` or a callback
                ``fn(session, frame_idx)`` called after each push, before tracking.
            on_error: ``"raise"`` stops at a frame that cannot be read or is invalid (results
                already yielded and the session's memory are kept, so the stream can be
                resumed with ``push``); ``"skip"`` warns and goes on with the next frame.
        """
        from sam2_plugins.io import open_frames

        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        src = open_frames(source, time_axis=time_axis)
        if self.num_frames is None and src.num_frames is not None and self.frame_idx < 0:
            self.num_frames = int(src.num_frames)
        i = 0
        while src.num_frames is None or i < src.num_frames:
            try:
                frame = src.get(i)
                self.push(frame)
            except IndexError:  # a stream ended
                return
            except ValueError as e:
                if on_error == "raise":
                    raise
                import warnings
                warnings.warn(f"skipping frame {i} of the stream: {e}", RuntimeWarning, stacklevel=2)
                if src.num_frames is not None or not hasattr(src, "_pull"):
                    i += 1  # a stream already dropped the bad frame: read index i again
                continue
            i += 1
            if callable(prompts):
                prompts(self, self.frame_idx)
            elif prompts is not None:
                for p in prompts.get(self.frame_idx, ()):
                    self.apply_prompt(p)
            yield self.track()

    def memory_footprint(self) -> int:
        """Bytes held by stored outputs (masks, memories, pointers) of all objects."""
        return sum(o.bank.nbytes() for o in self.objects.values())


def _to_array(frame: Any) -> np.ndarray:
    """A frame (numpy, torch tensor, PIL image, dask chunk, array-like) as a numpy array."""
    if isinstance(frame, torch.Tensor):
        return frame.detach().cpu().numpy()
    if hasattr(frame, "compute") and not isinstance(frame, np.ndarray):
        frame = frame.compute()
    arr = np.asarray(frame)
    if arr.dtype == object:
        raise ValueError(f"a frame must be a numeric array, got {type(frame).__name__}")
    return arr
