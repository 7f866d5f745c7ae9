"""SiamMAE: ViT encoder (siamese | joint), masking (random | block | grid | tube), decoder (cross-self | cross | joint).

The names below load on first use (PEP 562 `__getattr__`), so `study.model.info` can check a command's inputs and
fail in a fraction of a second before torch and timm are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from study.config import ENCODER_PRESETS, ModelConfig, validate_model

if TYPE_CHECKING:
    from study.model.siammae import SiamMAE

_LAZY = {
    "SiamMAE": "study.model.siammae", "random_masking": "study.model.masking", "keep_count": "study.model.masking",
    "load_encoder": "study.model.load", "safe_load": "study.model.load", "export_timm": "study.model.timm_export",
    "save_timm_export": "study.model.timm_export", "timm_encoder": "study.model.timm_export",
    "timm_model_name": "study.model.timm_export", "pair_flops": "study.model.flops",
}
__all__ = ["build_model", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'study.model' has no attribute {name!r}")


def build_model(cfg: ModelConfig) -> "SiamMAE":
    """A SiamMAE from the config's model section; width/depth/heads from ENCODER_PRESETS[cfg.preset]."""
    from study.model.siammae import SiamMAE

    validate_model(cfg, "model")  # a ModelConfig built by hand has not been through the config loader's checks
    width, depth, heads = ENCODER_PRESETS[cfg.preset]
    return SiamMAE(img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=width, depth=depth, num_heads=heads,
                   encoder=cfg.encoder, decoder=cfg.decoder, decoder_dim=cfg.decoder_dim,
                   decoder_depth=cfg.decoder_depth, decoder_heads=cfg.decoder_heads, mask_ratio=cfg.mask_ratio,
                   mask_ratio_f1=cfg.mask_ratio_f1, mask_strategy=cfg.mask_strategy, norm_pix_loss=cfg.norm_pix_loss,
                   decoder_pos_f1=cfg.decoder_pos_f1, loss_frames=cfg.loss_frames)
