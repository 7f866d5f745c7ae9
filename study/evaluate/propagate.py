"""Label propagation over local windows: one engine, the DINO and CRW context conventions, named presets.

A target frame's soft labels are a weighted sum of context positions' labels; the weights are a softmax over the top-k
of cosine / temperature, taken jointly over all context positions inside each query's spatial neighbourhood.
- DINO (facebookresearch/dino eval_video_segmentation.py): context = the first frame (given labels) + a queue of the
  last n predicted frames (soft labels); square window |di|, |dj| <= size on every context frame, the first included.
- CRW (ajabri/videowalk test.py): context = a long memory (frame 0 with its labels, never restricted) + the n preceding
  frames, the video padded in front with n copies of frame 0; circular window dist < radius (strict) on those only.

Why hand-written: no library does windowed top-k label propagation, and the dense (h*w) x (n*h*w) affinity of the
reference codes does not fit at ViT-S/8 480p (60x104 tokens, 21 frames: 131k keys per query). We tile the queries
(tile x tile blocks); a tile's keys are the (tile + 2*halfwidth)^2 block around it in each context frame, so the work is
one small GEMM per tile and memory does not grow with h*w. Frames without a window (CRW's long memory) use the whole
frame as the block. Top-k jointly = top-k of the union of each frame's own top-k, so frames are reduced one by one.
Ties at the k-th value are broken by index (torch.topk); DINO keeps every tied entry, which differs only for exactly
equal affinities between positions with different labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

CONTEXTS = ("dino", "crw")


@dataclass(frozen=True)
class PropagationParams:
    context: str = "dino"        # 'dino' | 'crw': which context convention (see the module docstring)
    queue: int = 7               # n: predicted frames kept as context (CRW: n preceding, padded with frame 0)
    neighborhood: float = 12.0   # dino: window half-width (|di|,|dj| <= size); crw: radius (dist < r); <= 0: whole frame
    topk: int = 5
    temperature: float = 0.1
    minmax_norm: bool = True     # DINO's per-channel min-max normalisation of the upsampled soft labels (CRW: off)

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if self.topk < 1 or self.queue < 0 or self.temperature <= 0:
            raise ValueError(f"topk >= 1, queue >= 0 and temperature > 0 are required: {self}")

    @property
    def halfwidth(self) -> int:
        """Largest |offset| along one axis that the window keeps (-1: no window)."""
        if self.neighborhood <= 0:
            return -1
        if self.context == "dino":
            return int(self.neighborhood)
        return math.ceil(self.neighborhood) - 1   # dist < r strictly

    def keeps(self, di: torch.Tensor, dj: torch.Tensor) -> torch.Tensor:
        """Which offsets (di, dj) the window keeps."""
        if self.neighborhood <= 0:
            return torch.ones_like(di, dtype=torch.bool)
        if self.context == "dino":
            return (di.abs() <= self.neighborhood) & (dj.abs() <= self.neighborhood)
        return (di * di + dj * dj).double().sqrt() < self.neighborhood


PRESETS = {
    "dino": PropagationParams("dino", queue=7, neighborhood=12, topk=5, temperature=0.1, minmax_norm=True),
    "crw": PropagationParams("crw", queue=20, neighborhood=12, topk=10, temperature=0.07, minmax_norm=False),
}
# The paper's Table 4b (top-k, queue, neighbourhood). It gives no temperature or context convention: we use 0.1 and
# DINO's context (first frame + queue, square window), the protocol the paper compares against in Table 1.
PAPER_TABLE_4B = {"davis": (7, 20, 20), "vip": (10, 20, 8), "jhmdb": (7, 20, 20)}


def preset(protocol: str, dataset: str = "davis") -> PropagationParams:
    """The named preset: 'dino', 'crw', or 'paper' (per dataset: davis, vip, jhmdb)."""
    if protocol == "paper":
        topk, queue, size = PAPER_TABLE_4B[dataset]
        return PropagationParams("dino", queue=queue, neighborhood=size, topk=topk, temperature=0.1, minmax_norm=True)
    return PRESETS[protocol]


def params_from_config(eval_cfg, dataset: str) -> PropagationParams:
    """The preset of `eval_cfg.protocol` with EvalConfig's overrides (0 / -1 mean: keep the preset's value)."""
    p = preset(eval_cfg.protocol, dataset)
    return replace(p, topk=eval_cfg.topk or p.topk,
                   queue=p.queue if eval_cfg.queue < 0 else eval_cfg.queue,
                   neighborhood=p.neighborhood if eval_cfg.neighborhood < 0 else eval_cfg.neighborhood,
                   temperature=eval_cfg.temperature or p.temperature)


class _ContextFrames:
    """Context frames in fixed slots, zero-padded so that every query tile's key block is an in-bounds slice.

    feats (S, h + pads, w + pads, D) L2-normalized, labels (S, ..., C); `valid` marks real (unpadded) positions."""

    def __init__(self, slots: int, h: int, w: int, dim: int, channels: int, halfwidth: int, tile: int):
        self.windowed = halfwidth >= 0
        self.h, self.w = h, w
        hp, wp = -(-h // tile) * tile, -(-w // tile) * tile      # query grid rounded up to whole tiles
        s = max(halfwidth, 0)
        self.pad = s
        self.block = (tile + 2 * s, tile + 2 * s) if self.windowed else (h, w)
        shape = (hp + 2 * s, wp + 2 * s) if self.windowed else (h, w)
        self.feats = torch.zeros(slots, *shape, dim)
        self.labels = torch.zeros(slots, *shape, channels)
        self.valid = torch.zeros(shape, dtype=torch.bool)
        self.valid[s:s + h, s:s + w] = True
        self.filled = 0

    def put(self, slot: int, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """feats (h, w, D) normalized, labels (h, w, C) into `slot`."""
        s = self.pad
        self.feats[slot, s:s + self.h, s:s + self.w] = feats
        self.labels[slot, s:s + self.h, s:s + self.w] = labels
        self.filled = max(self.filled, slot + 1)

    def block_at(self, r0: int, c0: int) -> tuple[slice, slice]:
        """The key block of the query tile whose top-left query is (r0, c0)."""
        if not self.windowed:
            return slice(0, self.h), slice(0, self.w)
        return slice(r0, r0 + self.block[0]), slice(c0, c0 + self.block[1])


class LabelPropagation:
    """Propagates the first frame's labels through a video, one target frame at a time.

        prop = LabelPropagation(params, first_feats (h, w, D), first_labels (C, h, w))
        soft = prop.step(feats (h, w, D))      # (C, h, w) soft labels of the next frame
    """

    def __init__(self, params: PropagationParams, first_feats: torch.Tensor, first_labels: torch.Tensor,
                 tile: int = 8):
        p = self.params = params
        h, w, dim = first_feats.shape
        channels = first_labels.shape[0]
        self.h, self.w, self.tile = h, w, tile
        first_feats = F.normalize(first_feats.float(), dim=-1)
        first_labels = first_labels.float().permute(1, 2, 0)                      # (h, w, C)
        hw = p.halfwidth
        self.queue = _ContextFrames(max(p.queue, 1), h, w, dim, channels, hw, tile)
        if p.context == "dino":   # first frame: windowed like the queue
            self.first = _ContextFrames(1, h, w, dim, channels, hw, tile)
        else:                     # CRW long memory: never restricted; queue padded with copies of frame 0
            self.first = _ContextFrames(1, h, w, dim, channels, -1, tile)
            for slot in range(p.queue):
                self.queue.put(slot, first_feats, first_labels)
        self.first.put(0, first_feats, first_labels)
        self.n_queued = p.queue if p.context == "crw" else 0
        self.next_slot = 0
        self.rel_keep = self._relative_window()

    def _relative_window(self) -> torch.Tensor | None:
        """(tile^2, block^2) bool: key (ki, kj) of a block within the window of query (qi, qj) of its tile."""
        if self.queue.pad == 0 and not self.queue.windowed:
            return None
        t, (bh, bw), s = self.tile, self.queue.block, self.queue.pad
        qi, qj = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
        ki, kj = torch.meshgrid(torch.arange(bh), torch.arange(bw), indexing="ij")
        di = ki.reshape(1, -1) - s - qi.reshape(-1, 1)
        dj = kj.reshape(1, -1) - s - qj.reshape(-1, 1)
        return self.params.keeps(di, dj)

    def _frame_topk(self, ctx: _ContextFrames, slots: int, q: torch.Tensor, r0: int, c0: int):
        """Top-k of one store's frames for one query tile: values (tile^2, slots*k), labels (tile^2, slots*k, C)."""
        rows, cols = ctx.block_at(r0, c0)
        keys = ctx.feats[:slots, rows, cols].reshape(slots, -1, q.shape[-1])           # (S, B, D)
        logits = torch.matmul(q, keys.transpose(1, 2)).div_(self.params.temperature)   # (S, tile^2, B)
        if ctx.windowed:
            keep = self.rel_keep & ctx.valid[rows, cols].reshape(1, -1)                  # (tile^2, B)
            logits.masked_fill_(~keep, float("-inf"))
        k = min(self.params.topk, logits.shape[-1])
        vals, idx = logits.topk(k, dim=-1)                                               # (S, tile^2, k)
        labels = ctx.labels[:slots, rows, cols].reshape(slots, -1, ctx.labels.shape[-1])  # (S, B, C)
        picked = torch.stack([labels[s][idx[s]] for s in range(slots)])                 # (S, tile^2, k, C)
        n = q.shape[0]
        return vals.permute(1, 0, 2).reshape(n, -1), picked.permute(1, 0, 2, 3).reshape(n, slots * k, -1)

    @torch.no_grad()
    def step(self, feats: torch.Tensor) -> torch.Tensor:
        """Soft labels (C, h, w) of the next frame from its features (h, w, D); the frame then joins the queue."""
        p, t = self.params, self.tile
        feats = F.normalize(feats.float(), dim=-1)
        hp, wp = -(-self.h // t) * t, -(-self.w // t) * t
        padded = F.pad(feats, (0, 0, 0, wp - self.w, 0, hp - self.h))                   # (hp, wp, D)
        out = torch.empty(hp, wp, self.queue.labels.shape[-1])
        for r0 in range(0, hp, t):
            for c0 in range(0, wp, t):
                q = padded[r0:r0 + t, c0:c0 + t].reshape(t * t, -1)                     # (tile^2, D)
                vals, labels = self._frame_topk(self.first, 1, q, r0, c0)
                if self.n_queued:
                    v2, l2 = self._frame_topk(self.queue, self.n_queued, q, r0, c0)
                    vals, labels = torch.cat([vals, v2], 1), torch.cat([labels, l2], 1)
                top, idx = vals.topk(min(p.topk, vals.shape[1]), dim=1)                  # (tile^2, k)
                weights = torch.softmax(top, dim=1)
                chosen = labels.gather(1, idx[..., None].expand(-1, -1, labels.shape[-1]))  # (tile^2, k, C)
                out[r0:r0 + t, c0:c0 + t] = (weights[..., None] * chosen).sum(1).reshape(t, t, -1)
        pred = out[:self.h, :self.w]                                                     # (h, w, C)
        if p.queue > 0:
            self.queue.put(self.next_slot, feats, pred)
            self.next_slot = (self.next_slot + 1) % p.queue
            self.n_queued = min(self.n_queued + 1, p.queue)
        return pred.permute(2, 0, 1).contiguous()


def propagate_video(features: torch.Tensor, first_labels: torch.Tensor, params: PropagationParams,
                    tile: int = 8) -> torch.Tensor:
    """features (T, h, w, D), first_labels (C, h, w) -> soft labels (T, C, h, w); frame 0 = first_labels."""
    prop = LabelPropagation(params, features[0], first_labels, tile=tile)
    out = [first_labels.float()]
    for t in range(1, len(features)):
        out.append(prop.step(features[t]))
    return torch.stack(out)
