"""``memory_mode="samurai"``: motion-aware memory (SAMURAI, Yang et al., arXiv 2411.11922).

What changes against SAM 2, per object (every rule batched over the objects of a frame, on the
device, both tracking directions):

* **candidate choice**: a constant-velocity Kalman filter (:mod:`.kalman`) follows the object's
  box. Until it has seen ``stable_frames`` frames in a row whose chosen mask has a predicted IoU
  above ``stable_iou`` the best predicted IoU wins (as SAM 2); after that each candidate mask
  scores ``kf_score_weight * IoU(predicted box, mask box) + (1 - kf_score_weight) * predicted
  IoU`` and the best score wins. A chosen IoU under ``stable_iou`` restarts the warm-up (the
  filter is re-initialised from the next frame's mask). Boxes come from the candidates'
  full-resolution masks, as in SAMURAI.
* **memory**: a tracked frame is read as spatial memory only if its chosen mask's predicted IoU
  is above ``memory_iou``, its object score above ``memory_score`` and (after the warm-up) its
  motion score (box IoU with the prediction) above ``memory_kf``. Each frame reads the newest
  ``num_maskmem - 1`` such frames, always with the previous frame among them, so frames from
  before an occlusion stay in memory through it. Object pointers follow SAM 2's rule.
* **presence**: an object counts as present when its object-score logit is above
  ``min_obj_score_logits`` (-1; SAM 2 uses 0), for its masks and its pointer.

Defaults are SAMURAI's configs for tiny / small / base+ (``kf_score_weight=0.25``; its large
config uses 0.15). Differences from SAMURAI's code: the filter and validity flags live per object
(SAMURAI keeps one filter on the model, so one object per predictor) and are never read back to
the host inside the step; reverse passes run the same rules in their own direction.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ....modeling.rules import select_closest_cond_frames
from .base import ModePolicy, check_int, check_number
from .boxes import box_iou, mask_boxes
from .kalman import BoxKalman, xyah_to_xyxy, xyxy_to_xyah

__all__ = ["SamuraiPolicy"]


class SamuraiPolicy(ModePolicy):
    """SAMURAI's motion-aware memory (see the module docstring for the rules).

    Args:
        kf_score_weight: weight of the motion score in the candidate score, in [0, 1].
        stable_frames: frames of warm-up before the motion score is used (>= 1).
        stable_iou: predicted IoU a chosen mask needs to keep the filter running, in [0, 1].
        memory_iou, memory_score, memory_kf: the memory gates (predicted IoU, object-score
            logit, motion score).
        min_obj_score_logits: object-score logit above which the object counts as present.
        shot_cuts, cut_threshold, refind_score, refind_iou: see :class:`~.base.ModePolicy`.
    """

    name = "samurai"

    def __init__(self, *, kf_score_weight: float = 0.25, stable_frames: int = 15, stable_iou: float = 0.3,
                 memory_iou: float = 0.5, memory_score: float = 0.0, memory_kf: float = 0.0,
                 min_obj_score_logits: float = -1.0, **cuts: Any) -> None:
        super().__init__(**cuts)
        self.kf_score_weight = check_number("kf_score_weight", kf_score_weight, 0.0, 1.0)
        self.stable_frames = check_int("stable_frames", stable_frames, 1)
        self.stable_iou = check_number("stable_iou", stable_iou, 0.0, 1.0)
        self.memory_iou = check_number("memory_iou", memory_iou, 0.0, 1.0)
        self.memory_score = check_number("memory_score", memory_score)
        self.memory_kf = check_number("memory_kf", memory_kf, 0.0, 1.0)
        self.object_threshold = check_number("min_obj_score_logits", min_obj_score_logits)
        self.kf = BoxKalman()

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), kf_score_weight=self.kf_score_weight, stable_frames=self.stable_frames,
                    stable_iou=self.stable_iou, memory_iou=self.memory_iou, memory_score=self.memory_score,
                    memory_kf=self.memory_kf, min_obj_score_logits=self.object_threshold)

    def new_pass(self, bank: Any, frame_idx: int, reverse: bool) -> None:
        super().new_pass(bank, frame_idx, reverse)
        bank.state.pop("kf", None)
        bank.state.pop("recent", None)

    # ---- candidate choice ----------------------------------------------------------------------
    def choose(self, banks: Sequence[Any], frame_idx: int, candidates: Any, reverse: bool) -> torch.Tensor:
        low = candidates.low_res_multimasks
        if len(banks) != low.shape[0]:
            raise ValueError(f"memory_mode='samurai' tracks one row per object; got {low.shape[0]} rows "
                             f"for {len(banks)} banks")
        dev = low.device
        dt = torch.float32 if dev.type == "mps" else torch.float64
        s = low.shape[-1] * 4  # SAMURAI measures boxes on the full-resolution masks
        high = F.interpolate(low.float(), size=(s, s), mode="bilinear", align_corners=False)
        boxes = mask_boxes(high).to(dt)  # (B, M, 4)
        ious = candidates.ious.to(dt)
        mean, cov, stable = self._stack(banks, dev, dt)
        pm, pc = self.kf.predict(mean, cov)
        init = stable == 0
        steady = stable >= self.stable_frames
        kf_ious = box_iou(xyah_to_xyxy(pm[:, :4])[:, None], boxes)  # (B, M)
        weighted = self.kf_score_weight * kf_ious + (1 - self.kf_score_weight) * ious
        choice = torch.where(steady, weighted.argmax(-1), ious.argmax(-1))
        pick = choice[:, None]
        chosen_iou = ious.gather(1, pick)[:, 0]
        z = xyxy_to_xyah(boxes.gather(1, pick[..., None].expand(-1, 1, 4))[:, 0])
        im, ic = self.kf.initiate(z)
        good = chosen_iou > self.stable_iou
        um, uc = self._update(pm, pc, z, ~init)
        upd = (~init) & torch.where(steady, chosen_iou >= self.stable_iou, good)
        mean = torch.where(init[:, None], im, torch.where(upd[:, None], um, pm))
        cov = torch.where(init[:, None, None], ic, torch.where(upd[:, None, None], uc, pc))
        stable = torch.where(init, torch.ones_like(stable),
                             torch.where(upd, torch.where(steady, stable, stable + 1), torch.zeros_like(stable)))
        kf_ok = (~steady) | (kf_ious.gather(1, pick)[:, 0] > self.memory_kf)
        for i, b in enumerate(banks):
            b.state["kf"] = (mean[i], cov[i], stable[i])
            b.state["choice"] = (frame_idx, kf_ok[i])
        return choice

    def _stack(self, banks: Sequence[Any], dev: torch.device, dt: torch.dtype
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        means, covs, stables = [], [], []
        for b in banks:
            st = b.state.get("kf")
            if st is None:
                means.append(torch.zeros(8, device=dev, dtype=dt))
                covs.append(torch.eye(8, device=dev, dtype=dt))
                stables.append(torch.zeros((), device=dev, dtype=torch.long))
            else:
                means.append(st[0])
                covs.append(st[1])
                stables.append(st[2])
        return torch.stack(means), torch.stack(covs), torch.stack(stables)

    def _update(self, mean: torch.Tensor, cov: torch.Tensor, z: torch.Tensor, rows: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        # rows that are not updated get a harmless state (a zero box makes the system singular)
        eye = torch.eye(8, dtype=cov.dtype, device=cov.device).expand_as(cov)
        safe_mean = torch.where(rows[:, None], mean, torch.ones_like(mean))
        safe_cov = torch.where(rows[:, None, None], cov, eye)
        return self.kf.update(safe_mean, safe_cov, z)

    # ---- memory ------------------------------------------------------------------------------
    def admit(self, bank: Any, frame_idx: int, output: Any, reverse: bool) -> bool:
        kept_out = self.gate(bank, frame_idx, output)
        score = output.object_score_logits.reshape(-1)[0].float()
        valid = (output.iou.reshape(-1)[0].float().to(score.device) > self.memory_iou) & (score > self.memory_score)
        rec = bank.state.pop("choice", None)
        if rec is not None and rec[0] == frame_idx:
            valid = valid & rec[1].to(score.device)
        if kept_out is not None:
            valid = valid & ~kept_out

        def apply(v: List[float], b: Any = bank, t: int = frame_idx, rev: bool = reverse) -> None:
            recent = b.state.get("recent")
            if recent is None or recent[0] != (t - (-1 if rev else 1), rev):
                recent = self._rebuild(b, t, rev)
            if v[0] > 0.5:
                recent[2].append(t)
            b.state["recent"] = ((t, rev), rev, recent[2])
            b.state.setdefault("valid", {})[t] = v[0] > 0.5

        self.defer(valid, apply)
        return True

    def _rebuild(self, bank: Any, frame_idx: int, reverse: bool) -> Tuple[Any, bool, Deque[int]]:
        """The newest valid frames behind ``frame_idx`` (exclusive), by a scan (once a pass)."""
        valid: Dict[int, bool] = bank.state.get("valid", {})
        _, non_cond = bank.readable()
        behind = sorted((t for t in non_cond if (t > frame_idx if reverse else t < frame_idx)),
                        key=lambda t: abs(t - frame_idx))
        cap = 32
        keep: Deque[int] = deque(maxlen=cap)
        for t in behind:
            if valid.get(t, True):
                keep.appendleft(t)
                if len(keep) >= cap:
                    break
        return ((frame_idx - (-1 if reverse else 1), reverse), reverse, keep)

    def _selected(self, bank: Any, frame_idx: int, reverse: bool, n: int,
                  non_cond: Any, unselected: Any) -> List[int]:
        recent = bank.state.get("recent")
        prev = frame_idx + (1 if reverse else -1)
        if recent is None or recent[0] != (prev, reverse):
            recent = self._rebuild(bank, frame_idx, reverse)
        frames = [t for t in recent[2] if t in non_cond][-n:]
        if prev not in frames and (prev in non_cond or prev in unselected):
            frames = (frames + [prev])[-n:]
        return frames

    def spatial_memories(self, bank: Any, frame_idx: int, reverse: bool, params: Any,
                         training: bool) -> List[Tuple[int, Any]]:
        self.settle()
        cond, non_cond = bank.readable()
        selected, unselected = select_closest_cond_frames(frame_idx, cond, params.max_cond_frames_in_attn)
        mems: List[Tuple[int, Any]] = [(0, out) for out in selected.values()]
        n = params.num_maskmem - 1
        frames = self._selected(bank, frame_idx, reverse, n, non_cond, unselected)
        # newest frame in the last slot (num_maskmem - 1), older ones before it
        for k, t in enumerate(frames):
            out = non_cond.get(t)
            if out is None:
                out = unselected.get(t)
            mems.append((params.num_maskmem - len(frames) + k, out))
        return mems

    def protected_frames(self, bank: Any) -> Iterable[int]:
        self.settle()
        last = bank.state.get("last")
        recent = bank.state.get("recent")
        if last is None or recent is None:
            return ()
        return list(recent[2])[-16:] + [last[0]]
