"""Label propagation over local windows: one engine for the DINO and CRW context conventions (the named protocols that
choose its parameters are in protocols.py).

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
import queue
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import torch
import torch.nn.functional as F

from study.evaluate.protocols import PropagationParams

__all__ = ["LabelPropagation", "PropagationParams", "joint_topk", "propagate_video"]


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


def _buffer(bufs: dict, name: str, shape: tuple) -> torch.Tensor:
    """A reused scratch tensor of `shape` (grown when too small)."""
    need = math.prod(shape)
    if name not in bufs or bufs[name].numel() < need:
        bufs[name] = torch.empty(need)
    return bufs[name][:need].view(shape)


def joint_topk(logits: torch.Tensor, k: int) -> tuple:
    """Top-k of each query over all S*nr*nc positions of logits (S, n_q, nr, nc): values (n_q, k) and the
    positions' (s, r, c), each (n_q, k).

    Exact and cheaper than torch.topk over S*nr*nc (whose cost is mostly per element of each row): each of the k
    largest values lies in one of the k (frame, column) groups with the largest maxima, as a group holding one of
    them has its maximum >= the k-th value, and at most k groups can. The column maxima are one vectorised pass."""
    S, n, nr, nc = logits.shape
    group_max = logits.amax(2).permute(1, 0, 2).reshape(n, S * nc)                 # (n_q, S*nc)
    groups = group_max.topk(min(k, S * nc), dim=1).indices                       # (n_q, kg)
    s, c = groups // nc, groups % nc
    candidates = logits[s, torch.arange(n).view(-1, 1), :, c]                    # (n_q, kg, nr)
    vals, i = candidates.reshape(n, -1).topk(min(k, candidates.shape[1] * nr), dim=1)
    g, r = i // nr, i % nr
    return vals, s.gather(1, g), r, c.gather(1, g)


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
        self.buffers: list[dict] = []     # one per worker thread: reused, as fresh ~90 MB buffers cost page faults
        self.windowed_columns = self._columns(p.halfwidth) if windowed else None
        self.whole_frame_columns = self._columns(-1)

    def _columns(self, s: int) -> list:
        """Query tiles grouped by tile column: [(query cols, key cols, [(query rows, key rows, bias)])].

        A tile's keys are the block (key rows x key cols) around it, the union of its queries' windows clipped to
        the frame (s < 0: the whole frame). bias (n_q, B): -inf where a block position is outside a query's own
        window, else 0; None when every query keeps the whole block. Tiles at the same place relative to the
        frame's edges (all interior ones) share one bias tensor."""
        t, h, w = self.tile, self.h, self.w
        columns, biases = [], {}
        for c0 in range(0, w, t):
            qc = slice(c0, min(c0 + t, w))
            bc = slice(max(0, c0 - s), min(w, qc.stop + s)) if s >= 0 else slice(0, w)
            tiles = []
            for r0 in range(0, h, t):
                qr = slice(r0, min(r0 + t, h))
                br = slice(max(0, r0 - s), min(h, qr.stop + s)) if s >= 0 else slice(0, h)
                place = tuple(x.stop - x.start for x in (qr, br, qc, bc)) + (qr.start - br.start, qc.start - bc.start)
                if place not in biases:
                    ki, kj = torch.meshgrid(torch.arange(br.start, br.stop), torch.arange(bc.start, bc.stop),
                                            indexing="ij")
                    qi, qj = torch.meshgrid(torch.arange(qr.start, qr.stop), torch.arange(qc.start, qc.stop),
                                            indexing="ij")
                    keep = self.params.keeps(ki.reshape(1, -1) - qi.reshape(-1, 1), kj.reshape(1, -1) - qj.reshape(-1, 1))
                    biases[place] = None if s < 0 or bool(keep.all()) else \
                        torch.zeros(keep.shape).masked_fill_(~keep, float("-inf"))
                tiles.append((qr, br, biases[place]))
            columns.append((qc, bc, tiles))
        return columns

    def _key_band(self, ctx: _ContextFrames, slots: int, bc: slice, bufs: dict) -> torch.Tensor:
        """Context features of key columns bc, (S, h, nc, D) contiguous, so that every tile's key block in this
        column is a view (S, nr*nc, D). One copy per tile column instead of one per tile: the blocks of a column
        overlap, and a copy per tile moved ~5x more memory than the matmuls read."""
        if bc.stop - bc.start == self.w:
            return ctx.feats[:slots]                                             # whole rows: a view, no copy
        band = _buffer(bufs, "band", (slots, self.h, bc.stop - bc.start, ctx.feats.shape[-1]))
        band.copy_(ctx.feats[:slots, :, bc])
        return band

    def _column_topk(self, ctx: _ContextFrames, slots: int, offset: int, column: tuple, q_all: torch.Tensor,
                     vals_out: torch.Tensor, rows_out: torch.Tensor, bufs: dict) -> None:
        """For the queries of one tile column, the top-k jointly over their windows in all `slots` frames of ctx:
        logits into vals_out (h, w, k), their rows in the step's label table (frames one after the other from
        `offset`) into rows_out (h, w, k)."""
        k, dim, h, w = vals_out.shape[-1], q_all.shape[-1], self.h, self.w
        qc, bc, tiles = column
        band = self._key_band(ctx, slots, bc, bufs)                                        # (S, h, nc, D)
        for qr, br, bias in tiles:
            q = q_all[qr, qc].reshape(1, -1, dim).expand(slots, -1, -1)                    # (S, n_q, D)
            keys = band[:, br].reshape(slots, -1, dim).transpose(1, 2)                     # (S, D, B), a view
            n_q, nr, nc = q.shape[1], br.stop - br.start, bc.stop - bc.start
            logits = _buffer(bufs, "logits", (slots, n_q, nr * nc))                        # (S, n_q, B)
            if bias is None:
                torch.bmm(q, keys, out=logits)
            else:   # the window as a -inf bias added inside the GEMM: no separate masking pass
                torch.baddbmm(bias.expand(slots, -1, -1), q, keys, out=logits)
            vals, s, r, c = joint_topk(logits.view(slots, n_q, nr, nc), k)                  # (n_q, k) each
            kk, shape = vals.shape[1], (qr.stop - qr.start, qc.stop - qc.start, -1)
            vals_out[qr, qc, :kk] = vals.view(shape)
            rows_out[qr, qc, :kk] = (offset + s * (h * w) + (r + br.start) * w + c + bc.start).view(shape)

    def _run_on_threads(self, jobs: list) -> None:
        """Runs the jobs (functions of a buffer dict) on torch.get_num_threads() Python threads, each running torch
        single-threaded. Why: a tile's GEMM is only ~10-50 ms; split over an OpenMP team, every op waits at a
        barrier for the slowest thread, and on a shared machine (another process on a core) that made a step up
        to 5x slower. Whole tile columns per thread need no synchronisation until the step's end."""
        n = min(torch.get_num_threads(), len(jobs))
        while len(self.buffers) < n:
            self.buffers.append({})
        if n <= 1:
            for job in jobs:
                job(self.buffers[0])
            return
        todo = queue.SimpleQueue()
        for job in jobs:
            todo.put(job)

        def worker(bufs: dict) -> None:
            with torch.no_grad():
                while True:
                    try:
                        job = todo.get_nowait()
                    except queue.Empty:
                        return
                    job(bufs)

        torch.set_num_threads(1)     # read by the new threads when they start; restored below for the caller
        try:
            with ThreadPoolExecutor(n) as pool:
                for done in [pool.submit(worker, bufs) for bufs in self.buffers[:n]]:
                    done.result()
        finally:
            torch.set_num_threads(n)

    def step(self, feats: torch.Tensor) -> torch.Tensor:
        """Soft labels (C, h, w) of the next frame from its features (h, w, D); the frame then joins the queue."""
        pred = self.predict(feats)
        self.push_context(feats, pred)
        return pred

    @torch.no_grad()
    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """Soft labels (C, h, w) of a frame from its features (h, w, D), the context left as it is."""
        p, h, w = self.params, self.h, self.w
        feats = F.normalize(feats.float(), dim=-1)
        scaled = feats / p.temperature                          # folding 1/T into the queries: one tiny multiply
        channels = self.queue.labels.shape[-1]
        table = torch.cat([self.first.labels.view(h * w, channels),
                           self.queue.labels[:self.n_queued].view(-1, channels)])  # (rows, C)
        # top-k jointly over the first frame, then over the queue, then over the union of both: the same set as
        # top-k over all context positions. Entries of a window smaller than k stay -inf (weight 0).
        vals = torch.full((h, w, 2, p.topk), float("-inf"))
        rows = torch.zeros(h, w, 2, p.topk, dtype=torch.long)
        parts = [(self.first, 1, 0)] + [(self.queue, self.n_queued, h * w)] * bool(self.n_queued)
        jobs = [partial(self._column_topk, ctx, slots, offset, column, scaled, vals[:, :, i], rows[:, :, i])
                for i, (ctx, slots, offset) in enumerate(parts)
                for column in (self.windowed_columns if ctx.windowed else self.whole_frame_columns)]
        self._run_on_threads(jobs)
        vals, rows = vals.view(h * w, -1), rows.view(h * w, -1)
        top, pick = vals.topk(min(p.topk, vals.shape[1]), dim=1)                        # jointly: (hw, k)
        weights = torch.softmax(top, dim=1)
        chosen = table[rows.gather(1, pick)]                                            # (hw, k, C)
        pred = (weights[..., None] * chosen).sum(1).T.reshape(channels, h, w).contiguous()
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
