"""Loading weights without running anything: every file goes through torch.load(weights_only=True).

`load_encoder(spec)` gives a SiamMAE whose `encode` evaluation uses, from 'random', a `study train` checkpoint
({'model': state dict, 'config': RunConfig.to_dict()}) or a timm export ({'format': 'timm-vit', ...}, timm_export.py).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from study.config import ModelConfig, RunConfig
from study.errors import UserError


def safe_load(path: str | Path) -> dict[str, Any]:
    """A checkpoint's plain contents (tensors, dicts, lists, numbers, strings); anything that would run code is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file; pass a `study train` checkpoint, a timm export or 'random'")
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickles before refusing them: the error says it all
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a global (code), or the bytes are not a pickle
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: refused: not a plain tensor checkpoint ({reason[:200]})") from None
    except (EOFError, RuntimeError, KeyError) as e:
        # what torch.load raises on an empty or truncated file (EOFError), a corrupt or foreign zip archive (its zip
        # reader's RuntimeError) and a file that is no torch format at all (KeyError from the legacy reader)
        raise UserError(f"{path}: refused: not a plain tensor checkpoint (unreadable: {type(e).__name__})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: refused: not a plain tensor checkpoint (holds a {type(payload).__name__}, not a dict)")
    return payload


def load_encoder(spec: str, model_cfg: ModelConfig | None = None, seed: int = 0) -> nn.Module:
    """'random' (built from model_cfg, initialized from `seed`), a train checkpoint path, or a timm export path."""
    from study.model import build_model

    if spec == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(model_cfg or ModelConfig()).eval()
    payload = safe_load(spec)
    if payload.get("format") == "timm-vit":
        return _from_timm_export(spec, payload)
    if isinstance(payload.get("model"), dict) and isinstance(payload.get("config"), dict):
        cfg = RunConfig.from_dict(payload["config"])
        model = build_model(cfg.model)
        load_matching(model, payload["model"], spec)
        return model.eval()
    raise UserError(f"{spec}: not a `study train` checkpoint ('model' + 'config') nor a timm export ('format': "
                    f"'timm-vit'); its keys are {', '.join(map(str, list(payload)[:8]))}")


def _from_timm_export(path: str, payload: dict[str, Any]) -> nn.Module:
    from study.model.siammae import SiamMAE

    kw = payload.get("timm_kwargs")
    if not isinstance(kw, dict) or not isinstance(payload.get("state_dict"), dict):
        raise UserError(f"{path}: a timm export needs 'timm_kwargs' and 'state_dict'")
    # only the encoder is exported: the decoder here is a minimal placeholder (evaluation uses `encode` only)
    model = SiamMAE(img_size=kw["img_size"], patch_size=kw["patch_size"], embed_dim=kw["embed_dim"], depth=kw["depth"],
                    num_heads=kw["num_heads"], mlp_ratio=kw.get("mlp_ratio", 4.0), decoder_dim=32, decoder_depth=1,
                    decoder_heads=1)
    load_matching(model.encoder, payload["state_dict"], path)
    return model.eval()


def load_matching(module: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """load_state_dict(strict) with a one-line UserError naming the first key that is missing, extra or mis-shaped."""
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise UserError(f"{path}: key {key} is missing from the checkpoint; it was written for another model")
        got = getattr(state[key], "shape", None)
        if got != value.shape:
            raise UserError(f"{path}: key {key} has shape {tuple(got) if got is not None else type(state[key]).__name__}"
                            f" in the checkpoint but {tuple(value.shape)} in the model built from its config")
    extra = [k for k in state if k not in expected]
    if extra:
        raise UserError(f"{path}: key {extra[0]} in the checkpoint is not part of the model built from its config")
    module.load_state_dict(state, strict=True)
