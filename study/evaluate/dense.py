"""The dense reference propagation: the affinity of every query with every context position, (h*w) x (n*h*w), masked by
the neighbourhood, as DINO's and CRW's scripts compute it. It exists to check the windowed engine (`LabelPropagation`;
tests compare both with the golden fixtures) and to measure what windowing buys (`study bench propagate`); evaluation
never uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.evaluate.propagate import PropagationParams


class DensePropagation:
    """Same API and results as `LabelPropagation`, computed with the dense affinity of the reference scripts."""

    def __init__(self, params: PropagationParams, first_feats: torch.Tensor, first_labels: torch.Tensor):
        self.params = params
        h, w, _ = first_feats.shape
        self.h, self.w = h, w
        first = (F.normalize(first_feats.float(), dim=-1).reshape(h * w, -1), first_labels.float().reshape(-1, h * w).T)
        self.first = first
        self.queue = [first] * params.queue if params.context == "crw" else []   # CRW pads with copies of frame 0
        ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        di = ii.reshape(-1, 1) - ii.reshape(1, -1)                                   # (hw query, hw key)
        dj = jj.reshape(-1, 1) - jj.reshape(1, -1)
        self.keep = params.keeps(di, dj)                                             # (hw, hw) bool

    def push_context(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        if self.params.queue == 0:
            return
        self.queue.append((F.normalize(feats.float(), dim=-1).reshape(self.h * self.w, -1),
                           labels.float().reshape(-1, self.h * self.w).T))
        self.queue = self.queue[-self.params.queue:]

    def step(self, feats: torch.Tensor) -> torch.Tensor:
        pred = self.predict(feats)
        self.push_context(feats, pred)
        return pred

    @torch.no_grad()
    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        p = self.params
        q = F.normalize(feats.float(), dim=-1).reshape(self.h * self.w, -1)          # (hw, D)
        context = [self.first] + self.queue
        keys = torch.stack([k for k, _ in context])                                  # (n, hw, D)
        labels = torch.cat([lab for _, lab in context])                              # (n*hw, C)
        logits = torch.matmul(q, keys.transpose(1, 2)).div_(p.temperature)           # (n, hw, n*hw) dense
        restricted = slice(1, None) if p.context == "crw" else slice(None)           # CRW: long memory unmasked
        logits[restricted].masked_fill_(~self.keep, float("-inf"))
        vals, idx = logits.topk(p.topk, dim=-1)                                      # (n, hw, k) per frame ...
        idx += (torch.arange(len(context)) * self.h * self.w)[:, None, None]
        vals, idx = vals.permute(1, 0, 2).flatten(1), idx.permute(1, 0, 2).flatten(1)
        top, pick = vals.topk(p.topk, dim=1)                                         # ... then jointly
        weights = torch.softmax(top, dim=1)                                          # (hw, k)
        pred = (weights[..., None] * labels[idx.gather(1, pick)]).sum(1)             # (hw, C)
        return pred.T.reshape(-1, self.h, self.w).contiguous()
