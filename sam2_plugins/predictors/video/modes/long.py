"""``memory_mode="long"``: a training-free memory tree (SAM2Long, Ding et al., arXiv 2410.16268).

Written from the paper's description only. SAM 2 keeps one memory per object and commits to
one mask per frame, so one wrong choice poisons every later frame. Here each object keeps
``pathways`` (P = 3) memory pathways:

* on each frame every pathway reads its own memory and the decoder gives 3 candidate masks:
  P x 3 branches, each scored by its pathway's running sum of ``log(predicted IoU + 1e-5)``;
  the P best branches become the new pathways (a pathway may fork into two, another die);
* when the object is uncertain on every pathway (all ``|object-score logit| <`` ``uncertain``)
  each pathway keeps its own best candidate instead, so the pathways stay diverse instead of
  collapsing onto one guess;
* a pathway reads a tracked frame as spatial memory only if that frame's mask on the pathway
  had a predicted IoU above ``memory_iou`` and an object-score logit above ``memory_score``; the
  memory tokens of its tracked frames are scaled from ``key_scale[0]`` (lowest object score) to
  ``key_scale[1]`` (highest), so confident frames draw a little more attention (keys only:
  the memory attention's keys are memory + position code, so adding ``(s - 1)(memory +
  position)`` to the position code scales the keys by ``s`` and leaves the values alone);
* the output on each frame is the mask of the pathway with the best running score.

Engine extension (documented in :mod:`~sam2_plugins.predictors.video.policy`): a policy with
``pathways > 1`` tracks its objects itself through the step's pieces
(:meth:`LongPolicy.track`). Each object's bank holds its user-visible outputs (the best
pathway's), and its ``state["paths"]`` a pathway bank of P rows: entries of tracked frames have
one row per pathway; when pathways fork, the rows of the stored entries are re-indexed on the
device (no host round-trip); prompted frames are 1-row entries read by every pathway. All
objects' pathways share one memory-attention call (memories padded to one length with an
attention mask), one decoder call and one memory-encoder call. Cost: about P times SAM 2's
memory attention, decoder and memory encoder; the image encoder is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ....modeling.memory_tokens import pointer_memory_tokens, spatial_memory_tokens
from ....modeling.rules import entry_field, pointer_window
from ....modeling.sam_heads import Candidates
from ..bank import MemoryBank
from ..entry import FrameOutput
from ..policy import MemoryPolicy
from .base import ModePolicy, check_int, check_number

__all__ = ["LongPolicy"]


@dataclass
class _Paths:
    """One object's pathways: a P-row bank, running scores ``(P,)`` and whether they were just
    seeded (all pathways identical)."""

    bank: MemoryBank
    scores: torch.Tensor
    fresh: bool = True


class LongPolicy(ModePolicy):
    """SAM2Long's memory tree (see the module docstring).

    Args:
        pathways: memory pathways per object (>= 2).
        memory_iou, memory_score: gates of a tracked frame's memory on a pathway.
        uncertain: object-score magnitude under which every pathway is uncertain.
        key_scale: ``(low, high)`` scale of the tracked memories, by object-score rank.
        shot_cuts, cut_threshold, refind_score, refind_iou: see :class:`~.base.ModePolicy`.
    """

    name = "long"

    def __init__(self, *, pathways: int = 3, memory_iou: float = 0.1, memory_score: float = 0.0,
                 uncertain: float = 2.0, key_scale: Tuple[float, float] = (0.95, 1.05), **cuts: Any) -> None:
        super().__init__(**cuts)
        self.pathways = check_int("pathways", pathways, 2)
        self.memory_iou = check_number("memory_iou", memory_iou, 0.0, 1.0)
        self.memory_score = check_number("memory_score", memory_score)
        self.uncertain = check_number("uncertain", uncertain, 0.0)
        if not isinstance(key_scale, (tuple, list)) or len(key_scale) != 2:
            raise ValueError(f"key_scale must be a (low, high) pair, got {key_scale!r}")
        lo = check_number("key_scale[0]", key_scale[0], 0.0, lo_open=True)
        self.key_scale = (lo, check_number("key_scale[1]", key_scale[1], lo))

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), pathways=self.pathways, memory_iou=self.memory_iou,
                    memory_score=self.memory_score, uncertain=self.uncertain, key_scale=list(self.key_scale))

    def new_pass(self, bank: Any, frame_idx: int, reverse: bool) -> None:
        super().new_pass(bank, frame_idx, reverse)
        bank.state.pop("paths", None)

    def observe(self, bank: Any, frame_idx: int, output: Any, reverse: bool) -> None:
        if entry_field(output, "mask_from_points"):  # a prompt or correction: pathways start again from it
            bank.state.pop("paths", None)

    # ---- pathways ------------------------------------------------------------------------------
    def _seed(self, step: Any, bank: MemoryBank, frame_idx: int, reverse: bool) -> _Paths:
        """P identical pathways from the object's own bank (its prompts and the tracked frames
        a frame here can read), as 1-row entries shared by every pathway."""
        p = MemoryBank(rows=self.pathways, pos_enc=bank.pos_enc)
        p.cond = bank.cond  # prompts stay shared (the same dict: new prompts show up)
        cond, non_cond = bank.readable()
        params = step.params
        reach = max(params.max_obj_ptrs_in_encoder, params.num_maskmem * params.stride(False)) + 1
        for t in sorted(non_cond, key=lambda t: -t if reverse else t):
            d = (frame_idx - t) * (-1 if reverse else 1)
            if 0 < d <= reach:
                p.non_cond[t] = non_cond[t].rows(0, 1)  # a copy: trimming it leaves the object's own alone
        dev = bank_device(bank)
        return _Paths(p, torch.zeros(self.pathways, device=dev))

    def _memory(self, step: Any, paths: _Paths, frame_idx: int, reverse: bool, num_frames: Optional[int],
                dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """One object's pathway memories: spatial ``(S, P, C)`` + pointer tokens, positions,
        ``(P, S + T)`` read mask, and the pointer-token count ``T``."""
        m, P, bank = step.model, self.pathways, paths.bank
        sel = MemoryPolicy.spatial_memories(self, bank, frame_idx, reverse, step.params, False)
        toks: List[torch.Tensor] = []
        poss: List[torch.Tensor] = []
        masks: List[torch.Tensor] = []
        tracked: List[Tuple[int, torch.Tensor]] = []  # (index in toks, object scores (P,))
        for t_pos, entry in sel:
            feats, pos = bank.spatial(entry)
            if feats is None or pos is None:
                continue
            feats = feats.to(device)
            if feats.shape[0] == 1:
                feats = feats.expand(P, -1, -1, -1)
            tok, ps = spatial_memory_tokens(m, feats, pos.to(device), t_pos, P, dtype)
            ok = torch.ones(P, dtype=torch.bool, device=device)
            if t_pos > 0:
                iou = entry.iou.reshape(-1).to(device).expand(P)
                score = entry.object_score_logits.reshape(-1).to(device).expand(P)
                ok = (iou > self.memory_iou) & (score > self.memory_score)
                tracked.append((len(toks), score))
            toks.append(tok)
            poss.append(ps)
            masks.append(ok[:, None].expand(P, tok.shape[0]))
        if len(tracked) > 1 and _keys_take_pos(m):  # scale the tracked memories' keys by object-score rank
            lo, hi = self.key_scale
            scores = torch.stack([s for _, s in tracked], 1)  # (P, F)
            rank = scores.argsort(1).argsort(1).to(dtype)
            scale = lo + (hi - lo) * rank / (len(tracked) - 1)
            for k, (i, _) in enumerate(tracked):
                # keys are memory + pos and values memory: pos' = pos + (s - 1)(memory + pos)
                # makes the keys s (memory + pos) and leaves the values alone
                s = scale[:, k][None, :, None]
                poss[i] = poss[i] + (s - 1) * (toks[i] + poss[i])
        ptr_sel = MemoryPolicy.object_pointers(self, bank, frame_idx, reverse, num_frames, step.params, False)
        n_ptr = 0
        if ptr_sel:
            ptrs = []
            for _, e in ptr_sel:
                x = entry_field(e, "obj_ptr").to(device)
                ptrs.append(x.expand(P, -1) if x.shape[0] == 1 else x)
            tok, ps = pointer_memory_tokens(m, torch.stack(ptrs), [d for d, _ in ptr_sel], num_frames, dtype)
            toks.append(tok)
            poss.append(ps)
            masks.append(torch.ones(P, tok.shape[0], dtype=torch.bool, device=device))
            n_ptr = tok.shape[0]
        if not toks:
            raise RuntimeError(f"no memory (spatial or pointer) is available for frame {frame_idx}; "
                               "were the prompted frames memory-encoded?")
        return torch.cat(toks), torch.cat(poss), torch.cat(masks, 1), n_ptr

    def track(self, step: Any, frame_idx: int, feats: Any, banks: Sequence[MemoryBank], num_frames: Optional[int],
              reverse: bool, run_mem_encoder: bool = True) -> List[FrameOutput]:
        """Track the objects' pathways on a frame (see the module docstring); returns one
        1-row :class:`FrameOutput` per object: its best pathway's."""
        m, P, B = step.model, self.pathways, len(banks)
        for b in banks:
            if b.rows != 1:
                raise ValueError("memory_mode='long' tracks one row per object")
            if not b.cond:
                raise RuntimeError(f"frame {frame_idx} is tracked from memory, but an object has no "
                                   "conditioning frame (a prompted frame) stored in its memory")
        R = B * P
        curr, curr_pos = feats.expand(R)
        top = curr[-1]
        h, w = feats.feat_sizes[-1]
        paths = []
        for b in banks:
            ps = b.state.get("paths")
            if ps is None:
                ps = b.state["paths"] = self._seed(step, b, frame_idx, reverse)
            paths.append(ps)
        t0 = step._now()
        mems = [self._memory(step, ps, frame_idx, reverse, num_frames, top.dtype, top.device) for ps in paths]
        memory, pos, mask, n_ptr = _pad(mems, P)
        out = m.memory_attention(curr=[top], curr_pos=[curr_pos], memory=memory, memory_pos=pos,
                                 num_obj_ptr_tokens=n_ptr, memory_mask=mask)
        pix = out.permute(1, 2, 0).reshape(R, m.hidden_dim, h, w)
        step._tick("memory_attention", t0)
        t0 = step._now()
        cand = m.decode_masks(pix, None, None, step.high_res(feats, R), m.use_multimask(False, 0))
        parents, choice, scores = self._branch(cand, paths, B)
        rows = (torch.arange(B, device=parents.device) * P)[:, None] + parents  # (B, P) rows of cand
        g = rows.reshape(-1)
        picked = Candidates(cand.low_res_multimasks.index_select(0, g), cand.ious.index_select(0, g),
                            cand.sam_tokens.index_select(0, g), cand.object_score_logits.index_select(0, g),
                            cand.multimask)
        flat_choice = choice.reshape(-1)
        sam = m.select_masks(picked, flat_choice)
        step._tick("mask_decoder", t0)
        maskmem = None
        if run_mem_encoder and m.num_maskmem > 0:
            maskmem, _ = step.memorize(feats, sam.high_res_masks, sam.object_score_logits, from_points=False)
        ious_all = sam.ious.float()
        iou = ious_all.gather(1, flat_choice[:, None])[:, 0] if ious_all.shape[1] > 1 else ious_all[:, 0]
        score = sam.object_score_logits.float()
        best = scores.argmax(1)
        best_rows = torch.arange(B, device=best.device) * P + best
        outs = []
        params = step.params
        max_ptr = pointer_window(num_frames, params.max_obj_ptrs_in_encoder)
        for i, (b, ps) in enumerate(zip(banks, paths)):
            s = slice(i * P, (i + 1) * P)
            _reindex(ps.bank, parents[i])
            # pathway entries hold what later frames read (no masks)
            entry = FrameOutput(pred_masks=score.new_zeros(P, 1, 0, 0), obj_ptr=sam.obj_ptr[s],
                                object_score_logits=score[s], iou=iou[s],
                                maskmem_features=None if maskmem is None else maskmem[s], reverse=reverse)
            ps.bank.non_cond[frame_idx] = entry
            ps.scores = scores[i]
            ps.fresh = False
            r = best_rows[i:i + 1]
            out = FrameOutput(pred_masks=sam.low_res_masks.float().index_select(0, r),
                              obj_ptr=sam.obj_ptr.index_select(0, r), object_score_logits=score.index_select(0, r),
                              iou=iou.index_select(0, r),
                              maskmem_features=None if maskmem is None else maskmem.index_select(0, r),
                              reverse=reverse)
            kept_out = self.gate(b, frame_idx, out)
            if kept_out is not None:
                def admit(v: List[float], e: FrameOutput = entry) -> None:
                    e.in_memory = v[0] <= 0.5

                self.defer(kept_out, admit)
            ps.bank.trim(frame_idx, reverse, params.num_maskmem, params.stride(False), max_ptr, keep_outputs=False)
            outs.append(out)
        return outs

    def _branch(self, cand: Candidates, paths: Sequence[_Paths], B: int
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(parents (B, P), candidate (B, P), new running scores (B, P))`` of the kept branches."""
        P = self.pathways
        ious = cand.ious.float()
        M = ious.shape[1]
        logp = torch.log(ious.clamp(min=0) + 1e-5).view(B, P, M)
        run = torch.stack([ps.scores for ps in paths])  # (B, P)
        total = (run[:, :, None] + logp).reshape(B, P * M)
        for i, ps in enumerate(paths):
            if ps.fresh:  # identical pathways: branch from the first only
                total[i, M:] = float("-inf")
        k = min(P, P * M)
        vals, idx = total.topk(k, dim=1)
        parents, choice = idx // M, idx % M
        if k < P:  # a single candidate per pathway on a fresh start: repeat the best
            pad = P - k
            parents = torch.cat([parents, parents[:, :1].expand(B, pad)], 1)
            choice = torch.cat([choice, choice[:, :1].expand(B, pad)], 1)
            vals = torch.cat([vals, vals[:, :1].expand(B, pad)], 1)
        # uncertain on every pathway: each keeps its own best candidate (diversity)
        uncertain = (cand.object_score_logits.float().view(B, P).abs() < self.uncertain).all(1)
        fresh = torch.zeros(B, dtype=torch.bool, device=ious.device)
        for i, ps in enumerate(paths):
            if ps.fresh:
                fresh[i] = True
        own = logp.argmax(-1)  # (B, P)
        own_vals = run + logp.gather(2, own[..., None])[..., 0]
        keep = (uncertain & ~fresh)[:, None]
        ar = torch.arange(P, device=ious.device)[None].expand(B, P)
        return torch.where(keep, ar, parents), torch.where(keep, own, choice), torch.where(keep, own_vals, vals)

    def spatial_memories(self, bank: Any, frame_idx: int, reverse: bool, params: Any,
                         training: bool) -> List[Tuple[int, Any]]:
        # what a fresh seed reads first (the predictor recomputes evicted memories from it)
        return super().spatial_memories(bank, frame_idx, reverse, params, training)


def _keys_take_pos(model: Any) -> bool:
    """Whether the memory attention adds the position code to its keys (SAM 2's configs do),
    which is what lets :meth:`LongPolicy._memory` scale keys without touching values."""
    layers = getattr(model.memory_attention, "layers", [])
    return bool(layers) and all(getattr(layer, "pos_enc_at_cross_attn_keys", False) for layer in layers)


def bank_device(bank: MemoryBank) -> torch.device:
    for e in list(bank.cond.values()) + list(bank.non_cond.values()):
        ptr = entry_field(e, "obj_ptr")
        if isinstance(ptr, torch.Tensor):
            return ptr.device
    return torch.device("cpu")


def _reindex(bank: MemoryBank, parents: torch.Tensor) -> None:
    """Pathway ``j`` continues pathway ``parents[j]``: re-order the rows of every stored
    multi-row entry (1-row entries are shared by all pathways)."""
    for e in bank.non_cond.values():
        if e.obj_ptr.shape[0] == 1:
            continue
        idx = parents.to(e.obj_ptr.device)
        e.obj_ptr = e.obj_ptr.index_select(0, idx)
        e.object_score_logits = e.object_score_logits.index_select(0, idx)
        e.iou = e.iou.index_select(0, idx)
        if e.maskmem_features is not None:
            e.maskmem_features = e.maskmem_features.index_select(0, idx.to(e.maskmem_features.device))


def _pad(mems: Sequence[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]], P: int
         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Objects' memories ``(tokens, pos, mask, n_ptr)`` -> one padded batch: spatial tokens
    first (whole grids), pointer tokens last; padding is masked out of the attention."""
    if len(mems) == 1:
        tok, pos, mask, n_ptr = mems[0]
        return tok, pos, mask, n_ptr
    n_sp = [t.shape[0] - n for t, _, _, n in mems]
    S, T = max(n_sp), max(n for *_, n in mems)
    ref = mems[0][0]
    R = P * len(mems)
    memory = ref.new_zeros(S + T, R, ref.shape[2])
    pos = ref.new_zeros(S + T, R, ref.shape[2])
    mask = torch.zeros(R, S + T, dtype=torch.bool, device=ref.device)
    for i, ((tok, ps, mk, n), s) in enumerate(zip(mems, n_sp)):
        r = slice(i * P, (i + 1) * P)
        memory[:s, r], pos[:s, r], mask[r, :s] = tok[:s], ps[:s], mk[:, :s]
        if n:
            memory[S:S + n, r], pos[S:S + n, r], mask[r, S:S + n] = tok[s:], ps[s:], mk[:, s:]
    return memory, pos, mask, T
