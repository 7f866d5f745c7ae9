"""The ViT encoder: timm `PatchEmbed` + [CLS] + fixed 2-D sin-cos position embedding + timm `Block`s + final norm.

Submodule names are timm's `VisionTransformer` names (patch_embed, cls_token, pos_embed, blocks, norm), so the state
dict *is* a timm ViT state dict (see timm_export.py). `pos_embed` is an nn.Parameter with requires_grad=False, as in
MAE: it counts in `parameters()` the way timm counts its (learnable) pos_embed, so the parameter counts agree.
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm, PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from study.model.pos_embed import interpolate_bicubic, sincos_2d


class ViTEncoder(nn.Module):
    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 384, depth: int = 12,
                 num_heads: int = 6, mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_size, self.embed_dim = patch_size, embed_dim
        # strict_img_size=False: `encode` runs on any size whose sides are multiples of the patch (480x832 at eval)
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim, strict_img_size=False)
        self.grid_hw: tuple[int, int] = tuple(self.patch_embed.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        num_patches = self.grid_hw[0] * self.grid_hw[1]
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, self.grid_hw, cls_token=True)[None], requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
                                     for _ in range(depth)])
        self.norm = LayerNorm(embed_dim)
        self._pos_cache: dict[tuple[tuple[int, int], str], torch.Tensor] = {}
        # At a grid other than the training one: "interpolate" samples the training grid's embedding at the new grid's
        # cell centres (as DINO's evaluation interpolates a ViT's embedding), so positions stay in the range the blocks
        # were trained on; "extend" uses integer positions (the new grid's own sin-cos). Measured on the generated DAVIS
        # set, cpu budget: trained features beat random init by +4 J&F with "interpolate", lose to it with "extend".
        # "bicubic" resizes the table as DINO's evaluation does (the protocol that reproduced the paper's numbers).
        self.pos_embed_mode = "interpolate"
        assert self.pos_embed.shape[1] == 1 + num_patches

    def patch_pos_embed(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        """(1, h*w, D) position embedding of the patches (no CLS row) for a grid; for a new grid see pos_embed_mode."""
        if grid_hw == self.grid_hw:
            return self.pos_embed[:, 1:]
        key = (grid_hw, self.pos_embed_mode)
        if key not in self._pos_cache:
            if self.pos_embed_mode not in ("bicubic", "interpolate", "extend"):
                raise ValueError(f"pos_embed_mode must be 'bicubic', 'interpolate' or 'extend', got {self.pos_embed_mode!r}")
            if self.pos_embed_mode == "bicubic":
                self._pos_cache[key] = interpolate_bicubic(self.pos_embed[:, 1:].detach(), grid_hw)
            else:
                base = self.grid_hw if self.pos_embed_mode == "interpolate" else None
                self._pos_cache[key] = sincos_2d(self.embed_dim, grid_hw, base_hw=base)[None]
        return self._pos_cache[key].to(self.pos_embed.device)

    def embed_patches(self, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """frames (B, 3, H, W) -> tokens with position (B, h*w, D), grid (h, w)."""
        H, W = frames.shape[-2:]
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"frame size {H}x{W} is not a multiple of the patch size {p}")
        grid_hw = (H // p, W // p)
        return self.patch_embed(frames) + self.patch_pos_embed(grid_hw), grid_hw

    def cls_with_pos(self, batch: int) -> torch.Tensor:
        """(B, 1, D): [CLS] plus its position row (zeros, kept so the sum is exactly timm's)."""
        return (self.cls_token + self.pos_embed[:, :1]).expand(batch, -1, -1)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, D) with [CLS] first -> (B, N, D) after the blocks and the final norm."""
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
