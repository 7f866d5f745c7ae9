"""SiamMAE: ViT encoder (siamese | joint), masking (random | block | grid), decoder (cross-self | cross | joint)."""

from __future__ import annotations

from study.config import ENCODER_PRESETS, ModelConfig
from study.errors import UserError
from study.model.load import load_encoder, safe_load
from study.model.masking import keep_count, random_masking
from study.model.siammae import SiamMAE
from study.model.timm_export import export_timm, save_timm_export, timm_encoder, timm_model_name

__all__ = ["SiamMAE", "build_model", "export_timm", "load_encoder", "random_masking", "safe_load", "save_timm_export",
           "timm_encoder", "timm_model_name", "keep_count"]


def build_model(cfg: ModelConfig) -> SiamMAE:
    """A SiamMAE from the config's model section; width/depth/heads from ENCODER_PRESETS[cfg.preset]."""
    if cfg.preset not in ENCODER_PRESETS:
        raise UserError(f"model.preset = {cfg.preset!r} is unknown; choose one of {', '.join(ENCODER_PRESETS)}")
    num_patches = (cfg.img_size // cfg.patch_size) ** 2
    if keep_count(num_patches, cfg.mask_ratio) == num_patches:
        raise UserError(f"model.mask_ratio = {cfg.mask_ratio} masks none of f2's {num_patches} patches, so there is "
                        "nothing to predict; use a ratio that masks at least one patch (e.g. 0.95)")
    width, depth, heads = ENCODER_PRESETS[cfg.preset]
    return SiamMAE(img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=width, depth=depth, num_heads=heads,
                   encoder=cfg.encoder, decoder=cfg.decoder, decoder_dim=cfg.decoder_dim,
                   decoder_depth=cfg.decoder_depth, decoder_heads=cfg.decoder_heads, mask_ratio=cfg.mask_ratio,
                   mask_ratio_f1=cfg.mask_ratio_f1, mask_strategy=cfg.mask_strategy, norm_pix_loss=cfg.norm_pix_loss,
                   decoder_pos_f1=cfg.decoder_pos_f1)
