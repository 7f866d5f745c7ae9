"""SiamMAE (Gupta et al., NeurIPS 2023): predict f2's masked patches from f1 and f2's few visible patches.

The steps are MAE's (facebookresearch/mae models_mae.py): patchify -> random_masking -> forward_encoder ->
forward_decoder -> forward_loss. Decisions where the paper is silent:
- each frame's decoder memory is [its [CLS], its visible tokens] (siamese: the frame's own [CLS] output; joint encoder:
  the one shared [CLS]). The f2 stream holds f2's L places (visible tokens + mask tokens) and attends to f1's memory.
- decoder_pos_f1 (default on): f1's memory tokens get the decoder position embedding of their places too.
- with f1 masked (symmetric masking) f1's memory is its visible tokens only; no mask tokens stand in for f1, unless
  loss_frames = "both": then f1's masked patches are predicted too (MAE-ST's reading of a masked clip), by the same
  decoder with f1's L places as queries over f2's memory (the joint decoder: one sequence holding both frames' L
  places). The loss is the mean over every masked patch of both frames. f2's prediction is unchanged by this in the
  cross decoders (a separate pass); in the joint decoder f2's places also see f1's mask tokens, as in MAE-ST.
- masking draws from `mask_generator` (set by the training run, saved in its checkpoints) so a resumed run masks
  exactly as an uninterrupted one; None (evaluation, tests) draws from torch's global RNG.
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm
from timm.models.vision_transformer import Block
from torch import nn

from study.config import DECODERS, ENCODERS, LOSS_FRAMES, MASK_STRATEGIES, keep_count
from study.model import masking
from study.model.decoder import CrossDecoderBlock, CrossSelfDecoderBlock
from study.model.encoder import ViTEncoder
from study.model.pos_embed import sincos_2d


class SiamMAE(nn.Module):
    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 384, depth: int = 12,
                 num_heads: int = 6, encoder: str = "siamese", decoder: str = "cross-self", decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_heads: int = 16, mask_ratio: float = 0.95, mask_ratio_f1: float = 0.0,
                 mask_strategy: str = "random", norm_pix_loss: bool = True, decoder_pos_f1: bool = True,
                 loss_frames: str = "f2", mlp_ratio: float = 4.0):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder {encoder!r} is unknown; choose one of {', '.join(ENCODERS)}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder {decoder!r} is unknown; choose one of {', '.join(DECODERS)}")
        if mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask strategy {mask_strategy!r} is unknown; choose one of {', '.join(MASK_STRATEGIES)}")
        if mask_strategy == "tube" and mask_ratio_f1 != mask_ratio:
            raise ValueError(f"tube masking masks both frames alike: mask_ratio_f1 ({mask_ratio_f1}) must equal "
                             f"mask_ratio ({mask_ratio})")
        if loss_frames not in LOSS_FRAMES:
            raise ValueError(f"loss_frames {loss_frames!r} is unknown; choose one of {', '.join(LOSS_FRAMES)}")
        self.encoder_kind, self.decoder_kind = encoder, decoder
        self.mask_ratio, self.mask_ratio_f1, self.mask_strategy = mask_ratio, mask_ratio_f1, mask_strategy
        self.norm_pix_loss, self.decoder_pos_f1, self.loss_frames = norm_pix_loss, decoder_pos_f1, loss_frames
        self.mask_generator: torch.Generator | None = None  # the training run sets its own, seeded (see module doc)
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.mask_shard = (0, 1)  # (rank, world size): set by the training engine under DDP (see masking.random_masking)

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
        return masking.random_masking(x, mask_ratio, self.mask_strategy, self.grid_hw, self.mask_generator,
                                      self.mask_shard)

    def mask_frames(self, x1: torch.Tensor, x2: torch.Tensor):
        """Each frame's tokens (B, L, D) -> (x_kept, mask, ids_restore) per frame; tube: one draw for both frames."""
        if self.mask_strategy != "tube":
            return self.random_masking(x1, self.mask_ratio_f1), self.random_masking(x2, self.mask_ratio)
        B, L, _ = x2.shape
        n_keep = keep_count(L, self.mask_ratio)
        score = masking.mask_scores(B, L, n_keep, "tube", self.grid_hw, self.mask_generator,
                                    self.mask_shard).to(x2.device)
        return masking.apply_scores(x1, score, n_keep), masking.apply_scores(x2, score, n_keep)

    @property
    def predicts_f1(self) -> bool:
        """loss_frames = both and f1 has masked patches to predict."""
        L = self.grid_hw[0] * self.grid_hw[1]
        return self.loss_frames == "both" and keep_count(L, self.mask_ratio_f1) < L

    # ------------------------------------------------------------------ the paper's steps
    def forward_encoder(self, f1: torch.Tensor, f2: torch.Tensor):
        """f1, f2 (B, 3, H, W) -> latent1 (B, 1 + n1, D) [CLS first], mask1, ids_restore1,
        latent2 (B, 1 + n2, D) [CLS first], mask2, ids_restore2."""
        enc = self.encoder
        x1, _ = enc.embed_patches(f1)  # (B, L, D) with position
        x2, _ = enc.embed_patches(f2)
        (x1, mask1, ids_restore1), (x2, mask2, ids_restore2) = self.mask_frames(x1, x2)  # (B, n1, D), (B, n2, D)
        cls = enc.cls_with_pos(f1.shape[0])  # (B, 1, D)
        n1 = x1.shape[1]
        if self.encoder_kind == "joint":  # one pass over [CLS, f1 visible, f2 visible]
            latent = enc.forward_blocks(torch.cat([cls, x1, x2], dim=1))
            latent1 = latent[:, : 1 + n1]
            latent2 = torch.cat([latent[:, :1], latent[:, 1 + n1:]], dim=1)  # the shared [CLS] heads both frames
        else:  # siamese: the same weights, frame by frame
            latent1 = enc.forward_blocks(torch.cat([cls, x1], dim=1))
            latent2 = enc.forward_blocks(torch.cat([cls, x2], dim=1))
        return latent1, mask1, ids_restore1, latent2, mask2, ids_restore2

    def _memory(self, y: torch.Tensor, ids_restore: torch.Tensor, with_pos: bool) -> torch.Tensor:
        """A frame's decoder memory: y (B, 1 + n, Dd) [CLS, visible tokens], plus each token's decoder position."""
        if not with_pos:
            return y
        pos = self.decoder_pos_embed  # (1, 1 + L, Dd); the CLS row is zeros
        ids_keep = torch.argsort(ids_restore, dim=1)[:, : y.shape[1] - 1]  # (B, n) patch index of each kept token
        return y + torch.cat([pos[:, :1].expand(y.shape[0], -1, -1), pos[0, 1:][ids_keep]], dim=1)

    def _queries(self, y: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """A frame's L places: visible tokens y (B, n, Dd) and mask tokens, back in patch order, plus positions."""
        B, n, Dd = y.shape
        L = ids_restore.shape[1]
        y = torch.cat([y, self.mask_token.expand(B, L - n, -1)], dim=1)  # (B, L, Dd) in shuffled order
        return torch.gather(y, 1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd)) + self.decoder_pos_embed[:, 1:]

    def forward_decoder(self, latent1: torch.Tensor, ids_restore1: torch.Tensor, latent2: torch.Tensor,
                        ids_restore2: torch.Tensor, predict_f1: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> pred2 (B, L, p*p*3): f2's pixels at every place; pred1 likewise for f1 when predict_f1, else None."""
        y1 = self.decoder_embed(latent1)  # (B, 1 + n1, Dd)
        y2 = self.decoder_embed(latent2 if predict_f1 else latent2[:, 1:])  # f2's [CLS] only when it is memory
        memory1 = self._memory(y1, ids_restore1, self.decoder_pos_f1)
        q2 = self._queries(y2[:, 1:] if predict_f1 else y2, ids_restore2)  # (B, L, Dd)
        q1 = self._queries(y1[:, 1:], ids_restore1) if predict_f1 else None  # (B, L, Dd)
        L = q2.shape[1]
        if self.decoder_kind == "joint":  # one sequence: [CLS, f1 memory or f1's L places, f2's L places]
            first = memory1 if q1 is None else torch.cat([memory1[:, :1], q1], dim=1)
            x = torch.cat([first, q2], dim=1)
            for block in self.decoder_blocks:
                x = block(x)
            q2 = x[:, -L:]
            q1 = None if q1 is None else x[:, 1:1 + L]
        else:
            for block in self.decoder_blocks:
                q2 = block(q2, memory1)
            if q1 is not None:  # the same blocks, f1's places as queries over f2's memory
                memory2 = self._memory(y2, ids_restore2, True)
                for block in self.decoder_blocks:
                    q1 = block(q1, memory2)
        return self.predict_pixels(q2), (None if q1 is None else self.predict_pixels(q1))

    def predict_pixels(self, q: torch.Tensor) -> torch.Tensor:
        """Decoder output (B, L, Dd) -> (B, L, p*p*3)."""
        return self.decoder_pred(self.decoder_norm(q))

    def patch_loss(self, frame: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """(B, L) squared error per patch; with norm_pix_loss the target is each patch normalized by its mean and std."""
        target = self.patchify(frame).float()  # (B, L, p*p*3)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return ((pred.float() - target) ** 2).mean(dim=-1)

    def forward_loss(self, f2: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE over a frame's masked patches (mask 1 = masked)."""
        return (self.patch_loss(f2, pred) * mask).sum() / mask.sum()

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f1, f2 (B, 3, H, W), ImageNet-normalized -> loss (), pred (B, L, p*p*3), mask (B, L) of f2.
        With loss_frames = both (and f1 masked) the loss is the mean over the masked patches of both frames."""
        latent1, mask1, ids_restore1, latent2, mask2, ids_restore2 = self.forward_encoder(f1, f2)
        pred2, pred1 = self.forward_decoder(latent1, ids_restore1, latent2, ids_restore2, self.predicts_f1)
        if pred1 is None:
            return self.forward_loss(f2, pred2, mask2), pred2, mask2
        total = (self.patch_loss(f2, pred2) * mask2).sum() + (self.patch_loss(f1, pred1) * mask1).sum()
        return total / (mask2.sum() + mask1.sum()), pred2, mask2

    # ------------------------------------------------------------------ evaluation
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 3, H, W), sides multiples of the patch -> (B, h, w, D): patch tokens after the final norm."""
        x, (h, w) = self.encoder.embed_patches(frames)  # (B, h*w, D)
        x = self.encoder.forward_blocks(torch.cat([self.encoder.cls_with_pos(x.shape[0]), x], dim=1))
        return x[:, 1:].reshape(x.shape[0], h, w, self.embed_dim)
