"""SiamMAE (Gupta et al., NeurIPS 2023): predict f2's masked patches from f1 and f2's few visible patches.

The steps are MAE's (facebookresearch/mae models_mae.py): patchify -> random_masking -> forward_encoder ->
forward_decoder -> forward_loss. Decisions where the paper is silent (PAPER.md marks them [U]):
- the decoder's f2 stream holds f2's L places only (visible tokens + mask tokens); [CLS] goes with f1 as memory
  (siamese: f1's [CLS]; joint encoder: the one shared [CLS]). f2's own [CLS] output is not used by the decoder.
- decoder_pos_f1 (default on): f1's memory tokens get the decoder position embedding of their places too.
- with f1 masked (symmetric masking) f1's memory is its visible tokens only; no mask tokens stand in for f1.
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm
from timm.models.vision_transformer import Block
from torch import nn

from study.model import masking
from study.model.decoder import CrossDecoderBlock, CrossSelfDecoderBlock
from study.model.encoder import ViTEncoder
from study.model.pos_embed import sincos_2d

ENCODERS = ("siamese", "joint")
DECODERS = ("cross-self", "cross", "joint")


class SiamMAE(nn.Module):
    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 384, depth: int = 12,
                 num_heads: int = 6, encoder: str = "siamese", decoder: str = "cross-self", decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_heads: int = 16, mask_ratio: float = 0.95, mask_ratio_f1: float = 0.0,
                 mask_strategy: str = "random", norm_pix_loss: bool = True, decoder_pos_f1: bool = True,
                 mlp_ratio: float = 4.0):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder {encoder!r} is unknown; choose one of {', '.join(ENCODERS)}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder {decoder!r} is unknown; choose one of {', '.join(DECODERS)}")
        if mask_strategy not in masking.STRATEGIES:
            raise ValueError(f"mask strategy {mask_strategy!r} is unknown; choose one of {', '.join(masking.STRATEGIES)}")
        self.encoder_kind, self.decoder_kind = encoder, decoder
        self.mask_ratio, self.mask_ratio_f1, self.mask_strategy = mask_ratio, mask_ratio_f1, mask_strategy
        self.norm_pix_loss, self.decoder_pos_f1 = norm_pix_loss, decoder_pos_f1
        self.patch_size, self.embed_dim = patch_size, embed_dim

        # ---- encoder (shared by both frames)
        self.encoder = ViTEncoder(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio)
        self.grid_hw = self.encoder.grid_hw
        num_patches = self.grid_hw[0] * self.grid_hw[1]

        # ---- decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(decoder_dim, self.grid_hw, cls_token=True)[None],
                                              requires_grad=False)  # (1, 1 + L, Dd), fixed
        if decoder == "joint":
            blocks = [Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
                      for _ in range(decoder_depth)]
        else:
            block = CrossSelfDecoderBlock if decoder == "cross-self" else CrossDecoderBlock
            blocks = [block(decoder_dim, decoder_heads, mlp_ratio) for _ in range(decoder_depth)]
        self.decoder_blocks = nn.ModuleList(blocks)
        self.decoder_norm = LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size**2 * 3)
        assert self.decoder_pos_embed.shape[1] == 1 + num_patches
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's init: xavier_uniform for linears and the patch projection (viewed 2-D), normal(0.02) tokens."""
        w = self.encoder.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ pixels <-> patches
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs (B, 3, H, W) -> (B, h*w, p*p*3), raster order, channels last within a patch (as MAE)."""
        p = self.patch_size
        B, C, H, W = imgs.shape
        h, w = H // p, W // p
        x = imgs.reshape(B, C, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(B, h * w, p * p * C)

    def unpatchify(self, x: torch.Tensor, grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """x (B, h*w, p*p*3) -> imgs (B, 3, H, W)."""
        p = self.patch_size
        h, w = grid_hw or self.grid_hw
        x = x.reshape(x.shape[0], h, w, p, p, 3)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], 3, h * p, w * p)

    def random_masking(self, x: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, L, D) -> x_kept (B, L_keep, D), mask (B, L) 0 keep / 1 masked, ids_restore (B, L)."""
        return masking.random_masking(x, mask_ratio, self.mask_strategy, self.grid_hw)

    # ------------------------------------------------------------------ the paper's steps
    def forward_encoder(self, f1: torch.Tensor, f2: torch.Tensor):
        """f1, f2 (B, 3, H, W) -> latent1 (B, 1 + n1, D) [CLS first], mask1, ids_restore1,
        latent2 (B, n2, D) (f2's visible tokens), mask2, ids_restore2."""
        enc = self.encoder
        x1, _ = enc.embed_patches(f1)  # (B, L, D) with position
        x2, _ = enc.embed_patches(f2)
        x1, mask1, ids_restore1 = self.random_masking(x1, self.mask_ratio_f1)  # (B, n1, D)
        x2, mask2, ids_restore2 = self.random_masking(x2, self.mask_ratio)  # (B, n2, D)
        cls = enc.cls_with_pos(f1.shape[0])  # (B, 1, D)
        n1 = x1.shape[1]
        if self.encoder_kind == "joint":  # one pass over [CLS, f1 visible, f2 visible]
            latent = enc.forward_blocks(torch.cat([cls, x1, x2], dim=1))
            latent1, latent2 = latent[:, : 1 + n1], latent[:, 1 + n1:]
        else:  # siamese: the same weights, frame by frame
            latent1 = enc.forward_blocks(torch.cat([cls, x1], dim=1))
            latent2 = enc.forward_blocks(torch.cat([cls, x2], dim=1))[:, 1:]
        return latent1, mask1, ids_restore1, latent2, mask2, ids_restore2

    def forward_decoder(self, latent1: torch.Tensor, ids_restore1: torch.Tensor, latent2: torch.Tensor,
                        ids_restore2: torch.Tensor) -> torch.Tensor:
        """-> pred (B, L, p*p*3): f2's pixels at every place."""
        pos = self.decoder_pos_embed  # (1, 1 + L, Dd)
        # f1 memory: [CLS, visible tokens], with decoder positions (CLS row is zeros) when decoder_pos_f1
        y1 = self.decoder_embed(latent1)  # (B, 1 + n1, Dd)
        if self.decoder_pos_f1:
            n1 = latent1.shape[1] - 1
            ids_keep1 = torch.argsort(ids_restore1, dim=1)[:, :n1]  # (B, n1) patch index of each kept token
            pos1 = pos[0, 1:][ids_keep1]  # (B, n1, Dd)
            y1 = y1 + torch.cat([pos[:, :1].expand(y1.shape[0], -1, -1), pos1], dim=1)
        # f2 queries: visible tokens and mask tokens back in patch order, plus decoder positions
        y2 = self.decoder_embed(latent2)  # (B, n2, Dd)
        B, n2, Dd = y2.shape
        L = ids_restore2.shape[1]
        y2 = torch.cat([y2, self.mask_token.expand(B, L - n2, -1)], dim=1)  # (B, L, Dd) in shuffled order
        y2 = torch.gather(y2, 1, ids_restore2.unsqueeze(-1).expand(-1, -1, Dd)) + pos[:, 1:]  # (B, L, Dd)

        if self.decoder_kind == "joint":
            x = torch.cat([y1, y2], dim=1)
            for block in self.decoder_blocks:
                x = block(x)
            y2 = x[:, -L:]
        else:
            for block in self.decoder_blocks:
                y2 = block(y2, y1)
        return self.decoder_pred(self.decoder_norm(y2))  # (B, L, p*p*3)

    def forward_loss(self, f2: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE over f2's masked patches; with norm_pix_loss the target is each patch normalized by its mean and std."""
        target = self.patchify(f2).float()  # (B, L, p*p*3)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred.float() - target) ** 2).mean(dim=-1)  # (B, L) per-patch loss
        return (loss * mask).sum() / mask.sum()

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f1, f2 (B, 3, H, W), ImageNet-normalized -> loss (), pred (B, L, p*p*3), mask (B, L) of f2."""
        latent1, _, ids_restore1, latent2, mask2, ids_restore2 = self.forward_encoder(f1, f2)
        pred = self.forward_decoder(latent1, ids_restore1, latent2, ids_restore2)
        return self.forward_loss(f2, pred, mask2), pred, mask2

    # ------------------------------------------------------------------ evaluation
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 3, H, W), sides multiples of the patch -> (B, h, w, D): patch tokens after the final norm."""
        x, (h, w) = self.encoder.embed_patches(frames)  # (B, h*w, D)
        x = self.encoder.forward_blocks(torch.cat([self.encoder.cls_with_pos(x.shape[0]), x], dim=1))
        return x[:, 1:].reshape(x.shape[0], h, w, self.embed_dim)
