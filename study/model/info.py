"""`study model-info`: parameter counts and FLOPs per frame pair of a configuration.

Both are counted from the shapes (study.model.flops), without importing torch or building the model: the command
answers in well under a second instead of the seconds torch and timm take to import.
"""

from __future__ import annotations

from study.config import RunConfig, apply_overrides
from study.console import console, table as make_table
from study.model.flops import pair_flops, param_counts


def print_model_info(preset: str, patch_size: int, img_size: int, encoder: str, decoder: str, decoder_dim: int,
                     decoder_depth: int, decoder_heads: int, mask_ratio: float) -> None:
    cfg = apply_overrides(RunConfig(), {
        "model.preset": preset, "model.patch_size": patch_size, "model.img_size": img_size, "model.encoder": encoder,
        "model.decoder": decoder, "model.decoder_dim": decoder_dim, "model.decoder_depth": decoder_depth,
        "model.decoder_heads": decoder_heads, "model.mask_ratio": mask_ratio}, source="model-info")
    m = cfg.model
    counts = param_counts(m)
    n_enc, n_dec = counts["encoder"], counts["decoder"]
    flops = pair_flops(m)
    grid = img_size // patch_size
    table = make_table(f"SiamMAE {preset}/{patch_size} at {img_size}px ({grid}x{grid} patches), encoder {encoder}, "
                       f"decoder {decoder} {decoder_dim}/{decoder_depth}/{decoder_heads}, f2 mask ratio {m.mask_ratio}",
                       ["quantity"], ["value"])
    table.add_row("encoder parameters", f"{n_enc:,}")
    table.add_row("decoder parameters", f"{n_dec:,}")
    table.add_row("total parameters", f"{n_enc + n_dec:,}")
    table.add_row("  of which fixed (sin-cos position embeddings)", f"{counts['fixed']:,}")
    table.add_row("FLOPs per pair, forward", f"{flops['forward'] / 1e9:.2f} G ({flops['forward']:,})")
    table.add_row("FLOPs per pair, forward + backward", f"{flops['forward_backward'] / 1e9:.2f} G "
                                                          f"({flops['forward_backward']:,})")
    console().print(table)
