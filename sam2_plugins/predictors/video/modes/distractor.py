"""``memory_mode="distractor"``: distractor-aware memory (DAM4SAM / SAM2.1++, Videnovic et al.,
CVPR 2025, "A Distractor-Aware Memory for Visual Object Tracking with SAM2").

SAM 2 reads the last ``num_maskmem - 1`` frames: after a few frames on a look-alike, its memory
holds only the look-alike. This mode splits the memory in two, per object:

* **RAM** (recent appearance): the previous frame plus ``ram_size`` FIFO slots filled every
  ``ram_every`` frames with frames whose mask is not empty, read with SAM 2's temporal
  encodings (newest nearest);
* **DRM** (distractor-resolving): up to ``drm_size`` anchor frames, read like conditioning frames
  (no temporal encoding). A tracked frame becomes an anchor only if its mask is confident
  (predicted IoU above ``drm_iou``), not empty, its area within ``drm_area`` times the median of
  the last ``area_window`` non-empty areas, more than ``drm_gap`` frames after the last anchor,
  and another candidate mask points elsewhere: the box of (that candidate ∪ chosen mask) has IoU
  at most ``drm_box_iou`` with the chosen mask's box (a distractor is in view). Anchors are what
  the object looked like *while* a distractor was around: exactly what tells the two apart.

The candidate choice stays SAM 2's (best predicted IoU). The analysis runs in the step on the
decoder's candidates, batched over objects, on the device; the anchor / RAM bookkeeping is
settled once per frame. One simplification against DAM4SAM's code: the alternative mask is not
reduced to its largest connected component (a device-side connected-components pass would cost
more than the rest of the mode); instead it must add at least ``min_alt_area`` of the chosen
mask's area outside it.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ....modeling.rules import select_closest_cond_frames
from .base import ModePolicy, check_int, check_number
from .boxes import box_iou, mask_boxes

__all__ = ["DistractorPolicy"]


class DistractorPolicy(ModePolicy):
    """DAM4SAM's two-part memory (see the module docstring for the rules).

    Args:
        ram_size, ram_every: FIFO slots of the recent-appearance memory and their update period.
        drm_size: most anchor frames kept (FIFO).
        drm_iou, drm_area, drm_gap, drm_box_iou: the anchor gates (see the module docstring).
        area_window: non-empty areas the median is taken over.
        min_alt_area: smallest part of an alternative candidate outside the chosen mask (as a
            fraction of the chosen area) that counts as pointing elsewhere.
        shot_cuts, cut_threshold, refind_score, refind_iou: see :class:`~.base.ModePolicy`.
    """

    name = "distractor"

    def __init__(self, *, ram_size: int = 3, ram_every: int = 5, drm_size: int = 4, drm_iou: float = 0.8,
                 drm_area: Tuple[float, float] = (0.8, 1.2), drm_gap: int = 5, drm_box_iou: float = 0.7,
                 area_window: int = 10, min_alt_area: float = 0.05, **cuts: Any) -> None:
        super().__init__(**cuts)
        self.ram_size = check_int("ram_size", ram_size, 0)
        self.ram_every = check_int("ram_every", ram_every, 1)
        self.drm_size = check_int("drm_size", drm_size, 0)
        self.drm_iou = check_number("drm_iou", drm_iou, 0.0, 1.0)
        if not isinstance(drm_area, (tuple, list)) or len(drm_area) != 2:
            raise ValueError(f"drm_area must be a (low, high) pair of ratios, got {drm_area!r}")
        lo = check_number("drm_area[0]", drm_area[0], 0.0, lo_open=True)
        hi = check_number("drm_area[1]", drm_area[1], lo)
        self.drm_area = (lo, hi)
        self.drm_gap = check_int("drm_gap", drm_gap, 0)
        self.drm_box_iou = check_number("drm_box_iou", drm_box_iou, 0.0, 1.0)
        self.area_window = check_int("area_window", area_window, 1)
        self.min_alt_area = check_number("min_alt_area", min_alt_area, 0.0)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), ram_size=self.ram_size, ram_every=self.ram_every, drm_size=self.drm_size,
                    drm_iou=self.drm_iou, drm_area=list(self.drm_area), drm_gap=self.drm_gap,
                    drm_box_iou=self.drm_box_iou, area_window=self.area_window, min_alt_area=self.min_alt_area)

    def new_pass(self, bank: Any, frame_idx: int, reverse: bool) -> None:
        super().new_pass(bank, frame_idx, reverse)
        bank.state["ram"] = (deque(maxlen=max(self.ram_size, 1)), None)

    # ---- analysis of the candidates (no choice change) ------------------------------------------
    def choose(self, banks: Sequence[Any], frame_idx: int, candidates: Any, reverse: bool) -> None:
        low = candidates.low_res_multimasks
        if len(banks) != low.shape[0]:
            raise ValueError(f"memory_mode='distractor' tracks one row per object; got {low.shape[0]} rows "
                             f"for {len(banks)} banks")
        b, m = low.shape[:2]
        dev = low.device
        ious = candidates.ious.float()
        best = ious.argmax(-1)
        rows = torch.arange(b, device=dev)
        fg = low > 0
        chosen = fg[rows, best]  # (B, h, w)
        area = chosen.flatten(1).sum(-1).float()
        box_c = mask_boxes(chosen)
        extra = (fg & ~chosen[:, None]).flatten(2).sum(-1).float()  # (B, M)
        alt_box = mask_boxes(fg | chosen[:, None])
        is_alt = (torch.arange(m, device=dev)[None] != best[:, None]) & (extra >= 1) \
            & (extra >= self.min_alt_area * area[:, None])
        distractor = (is_alt & (box_iou(box_c[:, None], alt_box) <= self.drm_box_iou)).any(-1)
        # median of the last `area_window` non-empty areas, the current one included (as DAM4SAM)
        hist = torch.stack([self._areas(bk, dev) for bk in banks])  # (B, W), NaN = none
        nonempty = area >= 1
        pushed = torch.cat([hist[:, 1:], area[:, None]], 1)
        hist = torch.where(nonempty[:, None], pushed, hist)
        ratio = area / hist.nanmedian(dim=1).values
        ok_area = (ratio >= self.drm_area[0]) & (ratio <= self.drm_area[1])
        confident = ious.gather(1, best[:, None])[:, 0] > self.drm_iou
        anchor = confident & nonempty & ok_area & distractor
        for i, bk in enumerate(banks):
            bk.state["areas"] = hist[i]
            # the gap since the last anchor is host bookkeeping: no tensor is built from it
            bk.state["analysis"] = (frame_idx, anchor[i] if self._gap_ok(bk, frame_idx) else None, nonempty[i])
        return None

    def _areas(self, bank: Any, dev: torch.device) -> torch.Tensor:
        h = bank.state.get("areas")
        if h is None:
            h = torch.full((self.area_window,), float("nan"), device=dev)
        return h

    def _gap_ok(self, bank: Any, frame_idx: int) -> bool:
        last = bank.state.get("drm_last")
        return last is None or abs(frame_idx - last) > self.drm_gap

    # ---- memory ------------------------------------------------------------------------------
    def admit(self, bank: Any, frame_idx: int, output: Any, reverse: bool) -> bool:
        kept_out = self.gate(bank, frame_idx, output)
        rec = bank.state.pop("analysis", None)
        if rec is not None and rec[0] == frame_idx:
            anchor, nonempty = rec[1], rec[2]
            if anchor is None:
                anchor = torch.zeros_like(nonempty)
        else:  # a single candidate (no analysis): never an anchor
            nonempty = (output.pred_masks > 0).any()
            anchor = torch.zeros_like(nonempty)
        if kept_out is not None:
            anchor, nonempty = anchor & ~kept_out, nonempty & ~kept_out

        def apply(v: List[float], b: Any = bank, t: int = frame_idx, rev: bool = reverse) -> None:
            if v[0] > 0.5 and self.drm_size > 0:
                drm: Deque[int] = b.state.setdefault("drm", deque(maxlen=self.drm_size))
                drm.append(t)
                b.state["drm_last"] = t
            stored: Optional[Tuple[Deque[int], Optional[int]]] = b.state.get("ram")
            ram, last = stored or (deque(maxlen=max(self.ram_size, 1)), None)
            if v[1] > 0.5 and self.ram_size > 0 and (last is None or abs(t - last) >= self.ram_every):
                ram.append(t)
                last = t
            b.state["ram"] = (ram, last)

        self.defer(torch.stack([anchor.reshape(()), nonempty.reshape(())]), apply)
        return True

    def _read(self, bank: Any, frame_idx: int, reverse: bool, n: int) -> Tuple[List[int], List[int]]:
        """``(anchor frames, recent frames oldest -> newest)`` the frame reads."""
        cond, non_cond = bank.readable()
        drm = [t for t in bank.state.get("drm", ()) if t in non_cond and t != frame_idx]
        ram, _ = bank.state.get("ram") or ((), None)
        prev = frame_idx + (1 if reverse else -1)
        behind = [t for t in ram if (t > frame_idx if reverse else t < frame_idx) and t in non_cond and t != prev]
        recent = behind[-max(n - 1, 0):] if self.ram_size > 0 else []
        if prev in non_cond or prev in cond:
            recent = recent + [prev]
        return drm, recent[-n:]

    def spatial_memories(self, bank: Any, frame_idx: int, reverse: bool, params: Any,
                         training: bool) -> List[Tuple[int, Any]]:
        self.settle()
        cond, non_cond = bank.readable()
        selected, unselected = select_closest_cond_frames(frame_idx, cond, params.max_cond_frames_in_attn)
        mems: List[Tuple[int, Any]] = [(0, out) for out in selected.values()]
        drm, recent = self._read(bank, frame_idx, reverse, params.num_maskmem - 1)
        mems += [(0, non_cond[t]) for t in drm]
        for k, t in enumerate(recent):
            out = non_cond.get(t)
            if out is None:
                out = unselected.get(t)
            if out is not None:
                mems.append((params.num_maskmem - len(recent) + k, out))
        return mems

    def protected_frames(self, bank: Any) -> Iterable[int]:
        self.settle()
        ram, _ = bank.state.get("ram") or ((), None)
        last = bank.state.get("last")
        return list(bank.state.get("drm", ())) + list(ram) + ([] if last is None else [last[0]])
