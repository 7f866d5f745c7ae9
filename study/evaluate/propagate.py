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
    """Context frames in fixed slots: feats (S, h, w, D) L2-normalized, labels (S, h, w, C)."""

    def __init__(self, slots: int, h: int, w: int, dim: int, channels: int, windowed: bool):
        self.windowed = windowed
        self.feats = torch.zeros(slots, h, w, dim)
        self.labels = torch.zeros(slots, h, w, channels)

    def put(self, slot: int, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """feats (h, w, D) normalized, labels (h, w, C) into `slot`."""
        self.feats[slot] = feats
        self.labels[slot] = labels


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
        windowed = p.halfwidth >= 0
        self.queue = _ContextFrames(max(p.queue, 1), h, w, dim, channels, windowed)
        # DINO: the first frame is windowed like the queue. CRW: the long memory never is, and the queue starts
        # as n copies of frame 0 (the video padded in front).
        self.first = _ContextFrames(1, h, w, dim, channels, windowed and p.context == "dino")
        self.first.put(0, first_feats, first_labels)
        self.n_queued = 0
        if p.context == "crw":
            for slot in range(p.queue):
                self.queue.put(slot, first_feats, first_labels)
            self.n_queued = p.queue
        self.next_slot = 0
        self.tiles = [self._tile(r0, c0) for r0 in range(0, h, tile) for c0 in range(0, w, tile)]
        self.block_buf = torch.empty(0)

    def _tile(self, r0: int, c0: int):
        """A query tile, its key block (the union of its queries' windows, clipped to the frame) and which block
        positions each query's window drops: (query rows, query cols, block rows, block cols, drop (n_q, n_b) | None)."""
        t, s, h, w = self.tile, self.params.halfwidth, self.h, self.w
        qr, qc = slice(r0, min(r0 + t, h)), slice(c0, min(c0 + t, w))
        if s < 0:
            return qr, qc, slice(0, h), slice(0, w), None
        br = slice(max(0, r0 - s), min(h, qr.stop + s))
        bc = slice(max(0, c0 - s), min(w, qc.stop + s))
        qi, qj = torch.meshgrid(torch.arange(qr.start, qr.stop), torch.arange(qc.start, qc.stop), indexing="ij")
        ki, kj = torch.meshgrid(torch.arange(br.start, br.stop), torch.arange(bc.start, bc.stop), indexing="ij")
        keep = self.params.keeps(ki.reshape(1, -1) - qi.reshape(-1, 1), kj.reshape(1, -1) - qj.reshape(-1, 1))
        return qr, qc, br, bc, None if bool(keep.all()) else ~keep

    def _topk_in(self, ctx: _ContextFrames, slots: int, offset: int, q: torch.Tensor, tile) -> tuple:
        """Each frame's top-k for one query tile: logits (n_q, slots*k) and their rows in the step's label table."""
        _, _, br, bc, drop = tile
        if not ctx.windowed:
            br, bc, drop = slice(0, self.h), slice(0, self.w), None
        nr, nc = br.stop - br.start, bc.stop - bc.start
        if nr == self.h and nc == self.w:
            keys = ctx.feats[:slots].view(slots, nr * nc, -1)                    # whole frames: a view, no copy
        else:   # the key block, copied into a reused buffer (fresh 70 MB buffers per tile cost page faults)
            need = slots * nr * nc * ctx.feats.shape[-1]
            if self.block_buf.numel() < need:
                self.block_buf = torch.empty(need)
            keys = self.block_buf[:need].view(slots, nr, nc, -1)
            keys.copy_(ctx.feats[:slots, br, bc])
            keys = keys.view(slots, nr * nc, -1)                                 # (S, B, D)
        logits = torch.matmul(q, keys.transpose(1, 2))                           # (S, n_q, B): cos / temperature
        if drop is not None:
            logits.masked_fill_(drop, float("-inf"))
        vals, idx = logits.topk(min(self.params.topk, nr * nc), dim=-1)          # (S, n_q, k)
        # block position -> row in the label table (frames laid out one after the other, h*w rows each)
        rows = (idx // nc + br.start) * self.w + idx % nc + bc.start
        rows += offset + torch.arange(slots).view(-1, 1, 1) * (self.h * self.w)
        n = q.shape[0]
        return vals.permute(1, 0, 2).reshape(n, -1), rows.permute(1, 0, 2).reshape(n, -1)

    @torch.no_grad()
    def step(self, feats: torch.Tensor) -> torch.Tensor:
        """Soft labels (C, h, w) of the next frame from its features (h, w, D); the frame then joins the queue."""
        p, hw = self.params, self.h * self.w
        feats = F.normalize(feats.float(), dim=-1)
        scaled = feats / p.temperature                          # folding 1/T into the queries: one tiny multiply
        channels = self.queue.labels.shape[-1]
        table = torch.cat([self.first.labels.view(hw, channels),
                           self.queue.labels[:self.n_queued].view(-1, channels)])  # (rows, C)
        out = torch.empty(self.h, self.w, channels)
        for tile in self.tiles:
            qr, qc = tile[0], tile[1]
            q = scaled[qr, qc].reshape(-1, feats.shape[-1])                             # (n_q, D)
            vals, rows = self._topk_in(self.first, 1, 0, q, tile)
            if self.n_queued:
                v2, r2 = self._topk_in(self.queue, self.n_queued, hw, q, tile)
                vals, rows = torch.cat([vals, v2], 1), torch.cat([rows, r2], 1)
            top, pick = vals.topk(min(p.topk, vals.shape[1]), dim=1)                    # jointly: (n_q, k)
            weights = torch.softmax(top, dim=1)
            chosen = table[rows.gather(1, pick)]                                        # (n_q, k, C)
            out[qr, qc] = (weights[..., None] * chosen).sum(1).view(qr.stop - qr.start, qc.stop - qc.start, -1)
        pred = out.permute(2, 0, 1).contiguous()                                        # (C, h, w)
        self.push_context(feats, pred)
        return pred

    def push_context(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a frame (feats (h, w, D), soft labels (C, h, w)) to the queue, dropping the oldest when full."""
        if self.params.queue == 0:
            return
        self.queue.put(self.next_slot, F.normalize(feats.float(), dim=-1), labels.float().permute(1, 2, 0))
        self.next_slot = (self.next_slot + 1) % self.params.queue
        self.n_queued = min(self.n_queued + 1, self.params.queue)


def propagate_video(features: torch.Tensor, first_labels: torch.Tensor, params: PropagationParams,
                    tile: int = 8) -> torch.Tensor:
    """features (T, h, w, D), first_labels (C, h, w) -> soft labels (T, C, h, w); frame 0 = first_labels."""
    prop = LabelPropagation(params, features[0], first_labels, tile=tile)
    out = [first_labels.float()]
    for t in range(1, len(features)):
        out.append(prop.step(features[t]))
    return torch.stack(out)
