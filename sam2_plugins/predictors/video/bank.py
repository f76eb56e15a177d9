"""The memory bank: one row group's stored frame outputs, bounded.

What a later frame can read of an object's past (upstream ``SAM2Base`` semantics, decided by
the :class:`~.policy.MemoryPolicy`):

* every conditioning (prompted) frame: its spatial memory and, if not in the future, its pointer;
* the ``num_maskmem - 1`` frames just before it in the tracking direction (spatial memories,
  every ``memory_temporal_stride_for_eval``-th frame plus the last one);
* the ``min(num_frames, max_obj_ptrs_in_encoder) - 1`` frames just before it (pointers only).

:class:`MemoryBank` stores frame outputs for a group of ``B`` rows that share a schedule: one
object in the video predictor and the session, a batch of objects in training. It can drop
what no later frame can read after each frame (:meth:`MemoryBank.trim`), so the memory of a
long video stays bounded. :meth:`MemoryBank.view` reads upstream's ``output_dict`` in place.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, MutableMapping, Optional, Tuple

import torch

from ...modeling.rules import entry_field, memory_slot_frames

__all__ = ["MemoryBank"]

Entry = Any
"""A :class:`~.entry.FrameOutput`, or an upstream-style dict with the same field names."""


class MemoryBank:
    """Conditioning (prompted) and tracked (non-conditioning) frame outputs of one row group.

    Dict insertion order is kept as upstream's (it fixes the order of memory tokens).

    Args:
        rows: ``B``, the rows of every stored output (1 per object in the predictors).
        pos_enc: the spatial position code shared by every memory of the bank,
            ``(1, mem_dim, h, w)`` (it depends only on the feature size); None reads each
            entry's own ``maskmem_pos_enc[-1]`` (upstream's dicts).

    Attributes:
        cond / non_cond: frame index -> output.
        state: per-object storage of the memory policy.
    """

    def __init__(self, rows: int = 1, pos_enc: Optional[torch.Tensor] = None) -> None:
        if rows < 1:
            raise ValueError(f"a memory bank holds >= 1 rows, got {rows}")
        self.rows = int(rows)
        self.cond: MutableMapping[int, Entry] = {}
        self.non_cond: MutableMapping[int, Entry] = {}
        self.pos_enc = pos_enc
        self.state: Dict[str, Any] = {}

    @classmethod
    def view(cls, output_dict: Mapping[str, MutableMapping[int, Entry]], rows: int) -> "MemoryBank":
        """A bank of ``rows`` rows over upstream's ``{"cond_frame_outputs",
        "non_cond_frame_outputs"}`` dicts (the same dict objects: no copy)."""
        bank = cls(rows=rows)
        bank.cond = output_dict["cond_frame_outputs"]
        bank.non_cond = output_dict["non_cond_frame_outputs"]
        return bank

    def __len__(self) -> int:
        return len(self.cond) + len(self.non_cond)

    def get(self, frame_idx: int) -> Optional[Entry]:
        """The stored output on a frame (conditioning first), or None."""
        out = self.cond.get(frame_idx)
        return out if out is not None else self.non_cond.get(frame_idx)

    def clear(self) -> None:
        self.cond.clear()
        self.non_cond.clear()
        self.state.clear()

    def nbytes(self) -> int:
        """Bytes held by the stored tensors (masks, spatial memories, pointers)."""
        total = 0
        for out in list(self.cond.values()) + list(self.non_cond.values()):
            for name in ("pred_masks", "maskmem_features", "obj_ptr"):
                t = entry_field(out, name)
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total

    # ---- reading -----------------------------------------------------------------------------
    def readable(self) -> Tuple[Mapping[int, Entry], Mapping[int, Entry]]:
        """``(cond, non_cond)`` without the entries the policy kept out of the memory."""
        if not any(entry_field(o, "in_memory") is False for o in self.non_cond.values()):
            return self.cond, self.non_cond
        return self.cond, {t: o for t, o in self.non_cond.items() if entry_field(o, "in_memory") is not False}

    def spatial(self, entry: Entry) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``(features (B, mem_dim, h, w), position (1 or B, mem_dim, h, w))`` of a stored
        memory; features None when it was never encoded or was evicted."""
        feats = entry_field(entry, "maskmem_features")
        if self.pos_enc is not None:
            return feats, self.pos_enc
        pos = entry_field(entry, "maskmem_pos_enc")
        return feats, (None if pos is None else pos[-1])

    # ---- bounding ----------------------------------------------------------------------------
    def trim(self, frame_idx: int, reverse: bool, num_maskmem: int, stride: int,
             max_ptr: int, keep_outputs: bool, protected: Iterable[int] = ()) -> int:
        """Drop what no frame after ``frame_idx`` (in the tracking direction) can read.

        Spatial memories of tracked frames behind the memory window are dropped (marked
        ``evicted``: they can be recomputed from the kept mask if a later pass needs them).
        With ``keep_outputs=False`` (streaming) whole entries behind both the memory and the
        pointer windows are deleted too. Conditioning frames and ``protected`` frames (the
        policy's, see :meth:`~.policy.MemoryPolicy.protected_frames`) are always kept.

        Returns:
            The number of spatial memories dropped.
        """
        nxt = frame_idx - 1 if reverse else frame_idx + 1
        spatial = list(memory_slot_frames(nxt, num_maskmem, stride, reverse).values())
        keep = set(protected)
        if reverse:
            mem_bound = max(spatial, default=nxt)
            ptr_bound = nxt + max_ptr - 1
        else:
            mem_bound = min(spatial, default=nxt)
            ptr_bound = nxt - (max_ptr - 1)

        def behind(t: int, bound: int) -> bool:
            return t > bound if reverse else t < bound

        dropped = 0
        for t in list(self.non_cond):
            out = self.non_cond[t]
            if t in keep or not behind(t, mem_bound):
                continue
            if not keep_outputs and behind(t, ptr_bound):
                del self.non_cond[t]
                dropped += int(out.maskmem_features is not None)
                continue
            if out.maskmem_features is not None:
                out.maskmem_features = None
                out.evicted = True
                dropped += 1
        return dropped
