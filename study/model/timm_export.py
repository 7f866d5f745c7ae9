"""The encoder as a timm ViT: `timm.create_model(name, num_classes=0, ...)` loads the export with strict=True.

The encoder's submodules already carry timm's names, so the export is its state dict; timm's learnable pos_embed
(1 + L rows, the CLS row zeros as in MAE's sin-cos with cls_token=True) receives our fixed embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from study.atomic import atomic_path
from study.config import ENCODER_PRESETS

# preset -> timm architecture family; the registered names exist for these patch sizes at 224
_TIMM_FAMILY = {"tiny": "vit_tiny", "small": "vit_small", "base": "vit_base"}
_TIMM_PATCHES = {"tiny": (16,), "small": (8, 16, 32), "base": (8, 16, 32)}


def timm_kwargs(model: nn.Module) -> dict[str, Any]:
    """The create_model keyword arguments that rebuild exactly this encoder (num_classes=0: no head)."""
    enc = model.encoder
    blk = enc.blocks[0]
    return {"num_classes": 0, "img_size": enc.grid_hw[0] * enc.patch_size, "patch_size": enc.patch_size,
            "embed_dim": enc.embed_dim, "depth": len(enc.blocks), "num_heads": blk.attn.num_heads,
            "mlp_ratio": blk.mlp.fc1.out_features / enc.embed_dim}


def timm_model_name(model_or_kwargs: nn.Module | dict[str, Any]) -> str:
    """'vit_small_patch16_224' for a standard preset; otherwise the generic 'vit_base_patch16_224' (whose defaults
    the explicit timm_kwargs override: any width, depth, heads, patch and size)."""
    kw = model_or_kwargs if isinstance(model_or_kwargs, dict) else timm_kwargs(model_or_kwargs)
    for preset, family in _TIMM_FAMILY.items():
        width, depth, heads = ENCODER_PRESETS[preset]
        if (kw["embed_dim"], kw["depth"], kw["num_heads"], kw["mlp_ratio"]) == (width, depth, heads, 4.0) \
                and kw["patch_size"] in _TIMM_PATCHES[preset]:
            return f"{family}_patch{kw['patch_size']}_224"
    return "vit_base_patch16_224"


def export_timm(model: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's weights under timm's VisionTransformer keys (detached CPU copies)."""
    return {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}


def timm_encoder(model_or_meta: nn.Module | dict[str, Any]) -> nn.Module:
    """An empty timm ViT of the same shape: from a SiamMAE, or from the `timm_kwargs` dict of an export file."""
    kw = model_or_meta if isinstance(model_or_meta, dict) else timm_kwargs(model_or_meta)
    return timm.create_model(timm_model_name(kw), pretrained=False, **kw)


def save_timm_export(model: nn.Module, path: str | Path) -> Path:
    """Write {'format': 'timm-vit', 'timm_name', 'timm_kwargs', 'state_dict'}; atomic (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": "timm-vit", "timm_name": timm_model_name(model), "timm_kwargs": timm_kwargs(model),
               "state_dict": export_timm(model)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
