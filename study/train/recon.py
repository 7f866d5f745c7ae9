"""The reconstruction picture: one row per pair, f1 | masked f2 | prediction (visible patches + predicted ones) | f2,
under a header that names the panels and the training step.

With norm_pix_loss the model predicts per-patch normalized pixels; they are mapped back with the true patch's mean and
variance (as MAE's visualization does) so the picture shows what the model knows, in colour.
"""

from __future__ import annotations

from pathlib import Path

import torch

from PIL import Image, ImageDraw, ImageFont

from study.atomic import atomic_path

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
PANELS = ("f1", "f2 masked", "prediction", "f2")


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) ImageNet-normalized -> (B, H, W, 3) uint8."""
    x = (x.float().cpu() * IMAGENET_STD + IMAGENET_MEAN).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def reconstruct(model, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (masked f2, prediction pasted into f2's masked places), both (B, 3, H, W) in the input's normalization."""
    was_training = model.training
    model.eval()
    _, pred, mask = model(f1, f2)  # pred (B, L, p*p*3), mask (B, L) 1 = masked
    model.train(was_training)
    target = model.patchify(f2)
    pred = pred.float()
    if model.norm_pix_loss:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        pred = pred * (var + 1e-6).sqrt() + mean
    m = mask.float().unsqueeze(-1)  # (B, L, 1)
    masked = model.unpatchify(target * (1 - m) + m * _gray(target))
    pasted = model.unpatchify(target * (1 - m) + pred * m)
    return masked, pasted


def _gray(patches: torch.Tensor) -> torch.Tensor:
    """Mid-gray in ImageNet normalization, shaped like the patches (pixels ordered (p, p, 3))."""
    gray = ((0.5 - IMAGENET_MEAN.flatten()) / IMAGENET_STD.flatten()).to(patches.device)
    return gray.repeat(patches.shape[-1] // 3).expand_as(patches)


def save_reconstruction(model, f1: torch.Tensor, f2: torch.Tensor, path: Path, step: int | None = None,
                        scale: int = 2) -> Path:
    masked, pasted = reconstruct(model, f1, f2)
    columns = [to_uint8(img) for img in (f1, masked, pasted, f2)]  # each (B, H, W, 3)
    grid = torch.cat([torch.cat(row, dim=1) for row in zip(*columns)], dim=0).numpy()  # (B*H, 4*W, 3), a pair per row
    img = Image.fromarray(grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img = with_header(img, panel_width=img.width // len(PANELS),
                      title=f"step {step}" if step is not None else "reconstruction")
    with atomic_path(path) as tmp:
        img.save(tmp)
    return path


def with_header(img: Image.Image, panel_width: int, title: str) -> Image.Image:
    """A white band above the grid: the title on the left, then each panel's name centred over its column."""
    size = max(11, min(16, panel_width // 8))  # readable at 64 px panels, not shouting at 448
    font = ImageFont.load_default(size=size)
    line = size + 6
    out = Image.new("RGB", (img.width, img.height + 2 * line), "white")
    out.paste(img, (0, 2 * line))
    draw = ImageDraw.Draw(out)
    draw.text((4, 3), title, fill="black", font=font)
    for i, name in enumerate(PANELS):
        draw.text((i * panel_width + panel_width // 2, line + line // 2), name, fill="black", font=font, anchor="mm")
    return out
