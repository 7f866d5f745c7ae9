"""Contact sheets: a few frames of a video, the prediction in the top row and the ground truth below, each tile titled
with its frame number. Masks are a light tint plus a solid outline per label, so colours stay readable over textured
objects; keypoints are dots with a dark ring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from study.atomic import atomic_path

SHEET_FRAMES = 4     # frames shown per video
TILE_HEIGHT = 160
TITLE = 16           # pixels of the title bar above each tile
LABEL_WIDTH = 92     # the row names' column
GAP = 4
TINT = 0.35          # how much of a label's colour covers its pixels; the outline is drawn at full colour


def sheet_frames(n: int) -> list[int]:
    """Which of n frames a sheet shows: SHEET_FRAMES spread evenly, first and last included."""
    return sorted({round(i * (n - 1) / (SHEET_FRAMES - 1)) for i in range(SHEET_FRAMES)}) if n > 1 else [0]


def overlay_mask(rgb: np.ndarray, ids: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """rgb (H, W, 3) uint8 with labels > 0 tinted and outlined (2 px inside each label's boundary) in their colours."""
    out = rgb.astype(np.float32)
    fg = ids > 0
    out[fg] = (1 - TINT) * out[fg] + TINT * colours[ids[fg]]
    for label in np.unique(ids[fg]):
        inside = ids == label
        edge = inside & ~ndimage.binary_erosion(inside, iterations=2, border_value=1)
        out[edge] = colours[label]
    return out.astype(np.uint8)


def draw_points(rgb: np.ndarray, points: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """rgb with points (2, J) in pixels (x, y; x < 0 = missing) drawn as dots of colours[j + 1] in a dark ring."""
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    r = max(2, min(rgb.shape[:2]) // 60)
    for j, (x, y) in enumerate(points.T):
        if x >= 0:
            draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], fill=(0, 0, 0))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in colours[j + 1]))
    return np.asarray(im)


def _tile(img: np.ndarray, title: str, font) -> Image.Image:
    im = Image.fromarray(img)
    im = im.resize((max(1, round(im.width * TILE_HEIGHT / im.height)), TILE_HEIGHT), Image.BILINEAR)
    tile = Image.new("RGB", (im.width, TILE_HEIGHT + TITLE), "white")
    tile.paste(im, (0, TITLE))
    ImageDraw.Draw(tile).text((3, 2), title, fill="black", font=font)
    return tile


def contact_sheet(path: Path, frame_numbers: list[int], rows: list[tuple[str, list[np.ndarray]]]) -> None:
    """A sheet of len(frame_numbers) columns and one row per (name, images) (images already overlaid), each tile
    titled 'frame <n>', written atomically as PNG. A row may hold None for a frame it has no image of."""
    font = ImageFont.load_default()
    grid = [[_tile(img, f"frame {n}", font) if img is not None else None for n, img in zip(frame_numbers, images)]
            for _, images in rows]
    widths = [max((r[c].width for r in grid if r[c] is not None), default=TILE_HEIGHT)
              for c in range(len(frame_numbers))]
    height = TILE_HEIGHT + TITLE
    sheet = Image.new("RGB", (LABEL_WIDTH + sum(widths) + GAP * len(widths), len(rows) * (height + GAP)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, ((name, _), tiles) in enumerate(zip(rows, grid)):
        y = r * (height + GAP)
        draw.text((4, y + height // 2 - 6), name, fill="black", font=font)
        x = LABEL_WIDTH
        for c, tile in enumerate(tiles):
            if tile is not None:
                sheet.paste(tile, (x, y))
            x += widths[c] + GAP
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
