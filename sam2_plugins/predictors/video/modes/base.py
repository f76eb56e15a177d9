"""What the tracking modes share: host decisions deferred to once per frame, pass bookkeeping,
and the shot-cut gate.

A mode decides things on the device inside the tracking step (which candidate wins, whether a
frame is good enough for the memory) but the memory's frame selection is host bookkeeping.
:class:`ModePolicy` therefore queues each decision as a small device tensor with a callback
(:meth:`ModePolicy.defer`) and applies them all with **one** device-to-host copy
(:meth:`ModePolicy.settle`) when the bank is next read or trimmed, after the step: the step
itself never synchronises, and a frame costs one extra tiny copy for all objects together.

The shot-cut gate (``shot_cuts=True``): a :class:`~.cuts.CutDetector` compares each tracked
frame's image features with the previous frame's; from a cut on, an object's frames stay out of
its memory until it is confidently found again: object-score logit above ``refind_score``,
predicted IoU above ``refind_iou`` *and* a mask area within ``refind_area`` times the median of
its last 10 areas before the cut (object scores alone are not enough: a model can stay sure of
itself on a scene where the object is absent, as the shipped demo model does). Every output
gets ``flags["cut"]`` and ``flags["refound"]``, which the quality signals report.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..policy import MemoryPolicy
from .cuts import DEFAULT_CUT_THRESHOLD, CutDetector

__all__ = ["ModePolicy", "check_number", "check_int"]


def check_number(name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float within ``[lo, hi]`` (open ends optional), else a ValueError that
    names the parameter, the range and what was given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}, "
                         f"got {value!r}")
    return v


def check_int(name: str, value: Any, lo: int = 0) -> int:
    """``value`` as an int >= ``lo``, else a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


class ModePolicy(MemoryPolicy):
    """Upstream's memory rules plus the machinery of the tracking modes (see the module
    docstring). Used as is for ``memory_mode="sam2"`` with ``shot_cuts=True``.

    Args:
        shot_cuts: detect shot cuts and keep post-cut frames out of the memory until the
            object is confidently found again.
        cut_threshold: the cut detector's similarity threshold (see :mod:`.cuts`).
        refind_score: object-score logit above which an object counts as confidently found.
        refind_iou: predicted IoU above which an object counts as confidently found.
        refind_area: ``(low, high)`` mask area ratio to the pre-cut median that counts as the
            object found again.
    """

    name = "sam2"

    def __init__(self, *, shot_cuts: bool = False, cut_threshold: float = DEFAULT_CUT_THRESHOLD,
                 refind_score: float = 2.0, refind_iou: float = 0.7,
                 refind_area: Tuple[float, float] = (0.5, 2.0)) -> None:
        if not isinstance(shot_cuts, bool):
            raise ValueError(f"shot_cuts must be True or False, got {shot_cuts!r}")
        self.cuts = CutDetector(cut_threshold) if shot_cuts else None
        self.refind_score = check_number("refind_score", refind_score)
        self.refind_iou = check_number("refind_iou", refind_iou, 0.0, 1.0)
        if not isinstance(refind_area, (tuple, list)) or len(refind_area) != 2:
            raise ValueError(f"refind_area must be a (low, high) pair of ratios, got {refind_area!r}")
        lo = check_number("refind_area[0]", refind_area[0], 0.0)
        self.refind_area = (lo, check_number("refind_area[1]", refind_area[1], lo))
        self._pending: List[Tuple[torch.Tensor, Callable[[List[float]], None]]] = []

    def params(self) -> Dict[str, Any]:
        """The mode's parameters (for reports)."""
        return {"shot_cuts": self.cuts is not None,
                "cut_threshold": None if self.cuts is None else self.cuts.threshold,
                "refind_score": self.refind_score, "refind_iou": self.refind_iou,
                "refind_area": list(self.refind_area)}

    # ---- deferred host decisions -----------------------------------------------------------
    def defer(self, values: torch.Tensor, apply: Callable[[List[float]], None]) -> None:
        """Queue ``apply(values as floats)``; it runs at the next :meth:`settle`."""
        self._pending.append((values.detach().reshape(-1).float(), apply))

    def settle(self) -> None:
        """Apply every queued decision with one device-to-host copy (in queue order)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        devices = {v.device for v, _ in pending}
        if len(devices) == 1:
            flat = torch.cat([v for v, _ in pending]).cpu().tolist()
        else:  # values on several devices (rare): one copy per device
            flat = [x for v, _ in pending for x in v.cpu().tolist()]
        i = 0
        for v, apply in pending:
            n = v.numel()
            apply(flat[i:i + n])
            i += n

    # ---- passes ------------------------------------------------------------------------------
    @staticmethod
    def follows(bank: Any, frame_idx: int, reverse: bool) -> bool:
        """Whether ``frame_idx`` is the next frame of the pass the bank last saw."""
        last = bank.state.get("last")
        return last is not None and last[1] == reverse and last[0] == frame_idx + (1 if reverse else -1)

    def new_pass(self, bank: Any, frame_idx: int, reverse: bool) -> None:
        """A tracked frame that does not follow the bank's last one: forget per-pass state."""
        bank.state.pop("gap", None)
        bank.state.pop("cut_desc", None)

    # ---- hooks -------------------------------------------------------------------------------
    def see_frame(self, banks: Sequence[Any], frame_idx: int, feats: Any, reverse: bool) -> None:
        for b in banks:
            if not self.follows(b, frame_idx, reverse):
                self.new_pass(b, frame_idx, reverse)
            b.state["last"] = (frame_idx, reverse)
        if self.cuts is None or not banks:
            return
        desc = self.cuts.descriptor(feats)
        for b in banks:
            prev = b.state.get("cut_desc")
            sim = self.cuts.similarity(desc, None if prev is None else prev)
            b.state["cut_now"] = (frame_idx, self.cuts.is_cut(sim), sim)
            b.state["cut_desc"] = desc

    def admit(self, bank: Any, frame_idx: int, output: Any, reverse: bool) -> bool:
        self.gate(bank, frame_idx, output)
        return True

    def gate(self, bank: Any, frame_idx: int, output: Any) -> Optional[torch.Tensor]:
        """The shot-cut gate for one object's tracked output: sets ``output.flags`` and defers
        ``output.in_memory = False`` while the object has not been re-found after a cut.
        Returns the 0-d bool "kept out" tensor (None without cut detection)."""
        if self.cuts is None:
            return None
        score = output.object_score_logits.reshape(-1)[0].float()
        rec = bank.state.get("cut_now")
        cut = rec[1] if rec is not None and rec[0] == frame_idx else torch.zeros((), dtype=torch.bool,
                                                                                  device=score.device)
        cut = cut.to(score.device)
        gap = bank.state.get("gap")
        before = cut if gap is None else (cut | gap)
        area = (output.pred_masks > 0).sum().float().to(score.device)
        hist = bank.state.get("gate_areas")
        if hist is None:
            hist = torch.full((10,), float("nan"), device=score.device)
        ratio = area / hist.nanmedian()
        like = (ratio >= self.refind_area[0]) & (ratio <= self.refind_area[1]) | hist.isnan().all()
        iou = output.iou.reshape(-1)[0].float().to(score.device)
        confident = (score > self.refind_score) & (iou > self.refind_iou) & like & (area >= 1)
        refound = before & confident
        out_gap = before & ~confident
        bank.state["gap"] = out_gap
        # the areas of frames in memory (not empty) set what "looks like the object" means
        keep = (~out_gap) & (area >= 1)
        bank.state["gate_areas"] = torch.where(keep, torch.cat([hist[1:], area.reshape(1)]), hist)
        flags = dict(output.flags or {})
        flags.update(cut=cut.reshape(1), refound=refound.reshape(1))
        output.flags = flags

        def apply(v: List[float], out: Any = output) -> None:
            if v[0] > 0.5:
                out.in_memory = False

        self.defer(out_gap, apply)
        return out_gap

    def spatial_memories(self, bank: Any, frame_idx: int, reverse: bool, params: Any,
                         training: bool) -> List[Tuple[int, Any]]:
        self.settle()
        return super().spatial_memories(bank, frame_idx, reverse, params, training)

    def object_pointers(self, bank: Any, frame_idx: int, reverse: bool, num_frames: Optional[int],
                        params: Any, training: bool) -> List[Tuple[int, Any]]:
        self.settle()
        return super().object_pointers(bank, frame_idx, reverse, num_frames, params, training)

    def protected_frames(self, bank: Any) -> Iterable[int]:
        self.settle()
        return ()

    def reset(self, bank: Any) -> None:
        self.settle()
        bank.state.clear()
