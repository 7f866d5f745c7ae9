"""Decoder blocks. Queries are f2's tokens (visible ones and mask tokens, all L places); f1's tokens are the memory.

- CrossSelfDecoderBlock: cross-attention (queries f2, keys/values f1), then self-attention over f2, then MLP; pre-norm.
- CrossDecoderBlock: cross-attention and MLP only, so each f2 place is predicted from f1 and its own token alone.
- joint: timm `Block` over [f1; f2] (built in siammae.py, no class needed here).
Cross-attention is written here because timm has no cross-attention block; it runs on F.scaled_dot_product_attention.
f1's memory tokens are the same in every block (the decoder_embed output), as in the paper's description.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm, Mlp
from timm.models.vision_transformer import Attention
from torch import nn


class CrossAttention(nn.Module):
    """Multi-head attention of queries x (B, Nq, C) over memory m (B, Nk, C)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)  # fused key/value projection: one matmul over the memory
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, Nq, C = x.shape
        Nk = memory.shape[1]
        q = self.q(x).reshape(B, Nq, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, Nq, d)
        k, v = self.kv(memory).reshape(B, Nk, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, h, Nk, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, Nq, d)
        return self.proj(out.transpose(1, 2).reshape(B, Nq, C))


class CrossDecoderBlock(nn.Module):
    """x = x + CrossAttn(norm(x), norm(f1)); x = x + MLP(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q, self.norm_kv = LayerNorm(dim), LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm_mlp = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm_q(x), self.norm_kv(memory))
        return x + self.mlp(self.norm_mlp(x))


class CrossSelfDecoderBlock(CrossDecoderBlock):
    """x = x + CrossAttn(norm(x), norm(f1)); x = x + SelfAttn(norm(x)); x = x + MLP(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__(dim, num_heads, mlp_ratio)
        self.norm_self = LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, qkv_bias=True)  # timm's, on SDPA

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm_q(x), self.norm_kv(memory))
        x = x + self.self_attn(self.norm_self(x))
        return x + self.mlp(self.norm_mlp(x))
