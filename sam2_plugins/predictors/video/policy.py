"""The memory policy: which frames enter the memory, which a frame reads, which mask is kept.

The tracking step (:mod:`.step`) asks one :class:`MemoryPolicy` object four questions:

* :meth:`~MemoryPolicy.spatial_memories`: which stored frames a frame reads as spatial memory,
  and in which temporal slot;
* :meth:`~MemoryPolicy.object_pointers`: which stored frames' object pointers it reads, at which
  frame distance;
* :meth:`~MemoryPolicy.choose`: which of the decoder's candidate masks each object keeps;
* :meth:`~MemoryPolicy.admit`: whether a new frame's output enters the memory (frames left
  out keep their mask as an output but are never read).

and tells it what happened (:meth:`~MemoryPolicy.observe`); :meth:`~MemoryPolicy.see_frame` shows
it a tracked frame's image features first (shot-cut detection). The default is upstream SAM 2's
rules exactly (the parity tests run through it). A policy keeps per-object state in its bank's
``state`` dict, so one policy object serves every object and every video of a predictor.
Motion-aware (SAMURAI-style) or distractor-aware memories are subclasses that override some of
these methods; :meth:`~MemoryPolicy.protected_frames` keeps frames they still need out of the
bounded bank's eviction.

Two class attributes extend the step where answering those questions is not enough:

* ``object_threshold``: the object-score logit above which an object counts as present in its
  masks and pointer (SAM 2: 0; SAMURAI: -1);
* ``pathways``: memory pathways per object. A policy with more than one (SAM2Long keeps a tree
  of mask hypotheses) tracks the objects itself: the step calls :meth:`~MemoryPolicy.track`
  instead of its own condition -> heads -> memory path, and the policy runs those pieces on as
  many rows per object as it keeps pathways (see :mod:`.modes.long`).

The tracking modes (``memory_mode="samurai"``, ``"distractor"``, ``"long"``) live in
:mod:`.modes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Sequence, Tuple

import torch

from ...modeling.rules import (
    pointer_window,
    select_closest_cond_frames,
    select_object_pointers,
    select_spatial_memories,
)

if TYPE_CHECKING:  # pragma: no cover
    from ...modeling.sam_heads import Candidates
    from .bank import MemoryBank

__all__ = ["MemoryParams", "MemoryPolicy", "resolve_policy"]

Entry = Any
"""A stored frame output: a :class:`~.entry.FrameOutput`, or an upstream-style dict."""


@dataclass(frozen=True)
class MemoryParams:
    """The model's memory settings (upstream ``SAM2Base`` attributes of the same names).

    Attributes:
        num_maskmem: spatial memory slots (7): conditioning frames + ``num_maskmem - 1`` previous.
        memory_temporal_stride_for_eval: step between the older previous-frame slots at inference.
        max_cond_frames_in_attn: conditioning frames read per frame (-1: all).
        use_obj_ptrs_in_encoder: object pointers are memory tokens.
        max_obj_ptrs_in_encoder: the pointer window (16).
        only_obj_ptrs_in_the_past_for_eval: at inference, conditioning pointers only from frames
            at or before the current one in tracking order.
        use_signed_tpos_enc_to_obj_ptrs: signed frame distances for pointers (2.1).
    """

    num_maskmem: int
    memory_temporal_stride_for_eval: int
    max_cond_frames_in_attn: int
    use_obj_ptrs_in_encoder: bool
    max_obj_ptrs_in_encoder: int
    only_obj_ptrs_in_the_past_for_eval: bool
    use_signed_tpos_enc_to_obj_ptrs: bool

    @classmethod
    def of(cls, model: Any) -> "MemoryParams":
        """The settings of a ``SAM2Model`` (or upstream ``SAM2Base``)."""
        return cls(int(model.num_maskmem), int(model.memory_temporal_stride_for_eval),
                   int(model.max_cond_frames_in_attn), bool(model.use_obj_ptrs_in_encoder),
                   int(model.max_obj_ptrs_in_encoder), bool(model.only_obj_ptrs_in_the_past_for_eval),
                   bool(model.use_signed_tpos_enc_to_obj_ptrs))

    def stride(self, training: bool) -> int:
        """Upstream reads consecutive frames in training and every r-th frame at inference."""
        return 1 if training else self.memory_temporal_stride_for_eval


class MemoryPolicy:
    """Upstream SAM 2's memory rules (the default policy, ``memory_mode="sam2"``).

    Subclasses override what they change; every method gets the object's :class:`MemoryBank`
    (its ``state`` dict is the policy's per-object storage).
    """

    name = "sam2"
    pathways = 1
    """Memory pathways per object; above 1 the policy tracks through :meth:`track`."""
    object_threshold = 0.0
    """Object-score logit above which an object is present (masks and pointers)."""

    def spatial_memories(self, bank: "MemoryBank", frame_idx: int, reverse: bool, params: MemoryParams,
                         training: bool) -> List[Tuple[int, Entry]]:
        """``[(t_pos, entry)]`` the frame reads as spatial memory, in token order: conditioning
        frames (slot 0, the closest ``max_cond_frames_in_attn``), then the previous frames in
        tracking order (slots ``1 .. num_maskmem - 1``)."""
        cond, non_cond = bank.readable()
        mems, _, _ = select_spatial_memories(frame_idx, cond, non_cond, params.num_maskmem,
                                             params.max_cond_frames_in_attn, params.stride(training),
                                             reverse)
        return mems

    def object_pointers(self, bank: "MemoryBank", frame_idx: int, reverse: bool, num_frames: Optional[int],
                        params: MemoryParams, training: bool) -> List[Tuple[int, Entry]]:
        """``[(frame distance, entry)]`` whose object pointers the frame reads."""
        if not params.use_obj_ptrs_in_encoder:
            return []
        cond, non_cond = bank.readable()
        selected, unselected = select_closest_cond_frames(frame_idx, cond, params.max_cond_frames_in_attn)
        return select_object_pointers(
            frame_idx, selected, unselected, non_cond,
            pointer_window(num_frames, params.max_obj_ptrs_in_encoder), num_frames, reverse,
            only_past=(not training) and params.only_obj_ptrs_in_the_past_for_eval,
            signed=params.use_signed_tpos_enc_to_obj_ptrs)

    def choose(self, banks: Sequence["MemoryBank"], frame_idx: int, candidates: "Candidates",
               reverse: bool) -> Optional[torch.Tensor]:
        """Which candidate mask each row keeps on a tracked frame: ``(B,)`` long indices into
        ``candidates`` (rows in the order of ``banks``), or None for the best predicted IoU
        (upstream). Called only when the decoder returned several candidates."""
        return None

    def see_frame(self, banks: Sequence["MemoryBank"], frame_idx: int, feats: Any, reverse: bool) -> None:
        """A tracked frame's image features (:class:`~.frames.FrameFeatures`), before its memories
        are read (device work only: it runs inside the step). Default: nothing."""

    def track(self, step: Any, frame_idx: int, feats: Any, banks: Sequence["MemoryBank"],
              num_frames: Optional[int], reverse: bool, run_mem_encoder: bool = True) -> List[Any]:
        """Track a frame for policies with ``pathways > 1`` (one
        :class:`~.entry.FrameOutput` per bank), through ``step``'s pieces."""
        raise NotImplementedError(f"policy {self.name!r} keeps one pathway per object: the step tracks it")

    def admit(self, bank: "MemoryBank", frame_idx: int, output: Entry, reverse: bool) -> bool:
        """Whether a tracked frame's output enters the memory (upstream: always)."""
        return True

    def observe(self, bank: "MemoryBank", frame_idx: int, output: Entry, reverse: bool) -> None:
        """Called once a frame's output is stored (prompted or tracked): update per-object state."""

    def protected_frames(self, bank: "MemoryBank") -> Iterable[int]:
        """Frames whose spatial memories the bounded bank must not evict (beyond upstream's window)."""
        return ()

    def reset(self, bank: "MemoryBank") -> None:
        """Forget per-object state (the object's prompts or memory were cleared)."""
        bank.state.clear()


def resolve_policy(policy: Optional[MemoryPolicy], memory_mode: Any = "sam2",
                   mode_params: Optional[Any] = None) -> MemoryPolicy:
    """The policy a predictor or session runs: ``policy`` if given (then ``memory_mode`` must
    stay ``"sam2"``), else the tracking mode ``memory_mode`` with ``mode_params`` (see
    :func:`~.modes.make_policy`; bad names and parameters raise ValueError here)."""
    from .modes import make_policy

    if policy is not None:
        if not isinstance(policy, MemoryPolicy):
            raise TypeError(f"policy must be a MemoryPolicy, got {type(policy).__name__}")
        if not (isinstance(memory_mode, str) and memory_mode.strip().lower() == "sam2") or mode_params:
            raise ValueError("give either policy= or memory_mode= (with mode_params=), not both")
        return policy
    return make_policy(memory_mode, mode_params)
