"""The DAVIS palette, and PNGs of ids (object or class ids as pixel values) written and read: shared by the generated
data sets (data/) and the evaluation (evaluate/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from study.atomic import atomic_path
from study.errors import UserError


def davis_palette() -> list[int]:
    """The DAVIS colour map (the PASCAL VOC bit-interleaving palette): id 0 black, 1 red, 2 green, 3 yellow, ..."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_palette_png(path: Path, ids: np.ndarray) -> None:
    """(H, W) uint8 ids -> palette PNG in the DAVIS colours, written atomically."""
    im = Image.fromarray(ids.astype(np.uint8), mode="P")
    im.putpalette(davis_palette())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def read_id_png(path: Path, modes: tuple[str, ...], expected: str) -> np.ndarray:
    """A PNG whose pixel values are ids -> (H, W) uint8. Another mode (RGB: the values would be colours) or an unreadable
    file is a user error naming the file; `expected` says what PNG is wanted and how to make one."""
    try:
        with Image.open(path) as im:
            if im.mode not in modes:
                raise UserError(f"{path}: annotation is a {im.mode} image; {expected}")
            return np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: not a readable PNG ({e}); replace or remove the file") from None
