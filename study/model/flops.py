"""FLOPs of one frame pair through SiamMAE, and its parameter counts, both from the shapes alone (no torch, so
`study model-info` answers at once; tests check both against a built model).

Convention (as torch.utils.flop_counter): a matmul (m x k) @ (k x n) is 2*m*n*k; attention counts QK^T and AV;
layernorm, GELU, softmax and the loss are not counted. Backward = 2x forward (the usual estimate: grads of inputs and
of weights); FlopCounterMode gives slightly less because the frames need no gradient (see tests/test_model_export.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from study.config import ENCODER_PRESETS, ModelConfig, RunConfig, keep_count


@dataclass
class Dims:
    img_size: int
    patch_size: int
    width: int
    depth: int
    encoder: str
    decoder: str
    decoder_dim: int
    decoder_depth: int
    mask_ratio: float
    mask_ratio_f1: float
    loss_frames: str = "f2"
    mlp_ratio: float = 4.0


def _dims(model_or_config, img_size: int | None) -> Dims:
    if isinstance(model_or_config, RunConfig):
        model_or_config = model_or_config.model
    if isinstance(model_or_config, ModelConfig):
        c = model_or_config
        width, depth, _ = ENCODER_PRESETS[c.preset]
        return Dims(img_size or c.img_size, c.patch_size, width, depth, c.encoder, c.decoder, c.decoder_dim,
                    c.decoder_depth, c.mask_ratio, c.mask_ratio_f1, c.loss_frames)
    m = model_or_config  # a SiamMAE
    return Dims(img_size or m.grid_hw[0] * m.patch_size, m.patch_size, m.embed_dim, len(m.encoder.blocks),
                m.encoder_kind, m.decoder_kind, m.decoder_embed.out_features, len(m.decoder_blocks), m.mask_ratio,
                m.mask_ratio_f1, m.loss_frames, m.encoder.blocks[0].mlp.fc1.out_features / m.embed_dim)


def linear(n: int, d_in: int, d_out: int) -> int:
    return 2 * n * d_in * d_out


def attention(n_q: int, n_k: int, dim: int) -> int:
    """QK^T and AV summed over heads (heads x head_dim = dim)."""
    return 2 * (2 * n_q * n_k * dim)


def self_attention_block(n: int, dim: int, mlp_ratio: float) -> int:
    """A timm Block: qkv, attention, proj, MLP."""
    hidden = int(dim * mlp_ratio)
    return linear(n, dim, 3 * dim) + attention(n, n, dim) + linear(n, dim, dim) + mlp(n, dim, hidden)


def mlp(n: int, dim: int, hidden: int) -> int:
    return linear(n, dim, hidden) + linear(n, hidden, dim)


def cross_attention(n_q: int, n_k: int, dim: int) -> int:
    return linear(n_q, dim, dim) + linear(n_k, dim, 2 * dim) + attention(n_q, n_k, dim) + linear(n_q, dim, dim)


def pair_flops(model_or_config, img_size: int | None = None) -> dict[str, int]:
    """{'forward': int, 'forward_backward': int} for one (f1, f2) pair; model_or_config: SiamMAE, ModelConfig, RunConfig."""
    d = _dims(model_or_config, img_size)
    L = (d.img_size // d.patch_size) ** 2
    n1, n2 = keep_count(L, d.mask_ratio_f1), keep_count(L, d.mask_ratio)
    both = d.loss_frames == "both" and n1 < L  # f1's L places are decoded too
    patch_dim = 3 * d.patch_size**2
    D, Dd = d.width, d.decoder_dim

    flops = 2 * linear(L, patch_dim, D)  # patch embedding of both frames (all patches, before masking)
    if d.encoder == "joint":
        flops += d.depth * self_attention_block(1 + n1 + n2, D, d.mlp_ratio)
    else:
        flops += d.depth * (self_attention_block(1 + n1, D, d.mlp_ratio) + self_attention_block(1 + n2, D, d.mlp_ratio))
    flops += linear(1 + n1, D, Dd) + linear(n2 + both, D, Dd)  # decoder_embed: f1 with [CLS]; f2's when memory
    hidden = int(Dd * d.mlp_ratio)

    def cross_pass(n_memory: int) -> int:  # L queries over a memory of n_memory tokens, every block
        block = cross_attention(L, n_memory, Dd) + mlp(L, Dd, hidden)
        if d.decoder == "cross-self":
            block += linear(L, Dd, 3 * Dd) + attention(L, L, Dd) + linear(L, Dd, Dd)
        return d.decoder_depth * block

    if d.decoder == "joint":
        flops += d.decoder_depth * self_attention_block(1 + (L if both else n1) + L, Dd, d.mlp_ratio)
    else:
        flops += cross_pass(1 + n1) + (cross_pass(1 + n2) if both else 0)
    flops += (2 if both else 1) * linear(L, Dd, patch_dim)  # decoder_pred
    return {"forward": flops, "forward_backward": 3 * flops}


def _block_params(dim: int, hidden: int) -> int:
    """A timm Block: two LayerNorms, qkv (with bias), proj, MLP."""
    return 2 * 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + _mlp_params(dim, hidden)


def _mlp_params(dim: int, hidden: int) -> int:
    return dim * hidden + hidden + hidden * dim + dim


def param_counts(cfg: ModelConfig, mlp_ratio: float = 4.0) -> dict[str, int]:
    """{'encoder', 'decoder', 'fixed'} parameter counts of build_model(cfg), as sum(p.numel()) would give them
    ('fixed': the sin-cos position embeddings, counted in both totals as timm counts its pos_embed)."""
    width, depth, _ = ENCODER_PRESETS[cfg.preset]
    L = (cfg.img_size // cfg.patch_size) ** 2
    patch_dim, D, Dd = 3 * cfg.patch_size**2, width, cfg.decoder_dim
    encoder = (patch_dim * D + D) + D + (1 + L) * D + depth * _block_params(D, int(D * mlp_ratio)) + 2 * D
    hidden = int(Dd * mlp_ratio)
    if cfg.decoder == "joint":
        block = _block_params(Dd, hidden)
    else:
        cross = 2 * Dd + 2 * Dd + (Dd * Dd + Dd) + (Dd * 2 * Dd + 2 * Dd) + (Dd * Dd + Dd)  # norms, q, kv, proj
        block = cross + 2 * Dd + _mlp_params(Dd, hidden)
        if cfg.decoder == "cross-self":
            block += 2 * Dd + (Dd * 3 * Dd + 3 * Dd) + (Dd * Dd + Dd)  # norm, timm Attention (qkv, proj)
    decoder = ((D * Dd + Dd) + Dd + (1 + L) * Dd + cfg.decoder_depth * block + 2 * Dd
               + (Dd * patch_dim + patch_dim))  # decoder_embed, mask token, pos, blocks, norm, pred
    return {"encoder": encoder, "decoder": decoder, "fixed": (1 + L) * (D + Dd)}
