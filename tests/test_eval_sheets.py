"""Contact sheets: which frames, the outline that keeps a label readable over texture, the layout of the rows."""

import numpy as np
from PIL import Image

from study.evaluate.sheets import LABEL_WIDTH, TILE_HEIGHT, TITLE, contact_sheet, draw_points, overlay_mask, sheet_frames


def test_sheet_frames_spread_first_to_last():
    assert sheet_frames(24) == [0, 8, 15, 23] and sheet_frames(3) == [0, 1, 2] and sheet_frames(1) == [0]


def test_overlay_tints_inside_outlines_edges_and_leaves_background():
    rgb = np.full((20, 20, 3), 100, np.uint8)
    ids = np.zeros((20, 20), np.uint8)
    ids[4:16, 4:16] = 1
    colours = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
    out = overlay_mask(rgb, ids, colours)
    assert (out[ids == 0] == 100).all()                                     # background untouched
    assert out[4, 10].tolist() == out[5, 10].tolist() == [255, 0, 0]        # a 2-px solid outline inside the edge
    assert out[10, 10].tolist() == [154, 65, 65]                            # tinted: 0.65 x 100 + 0.35 x colour
    pts = draw_points(rgb, np.array([[10.0, -1.0], [10.0, -1.0]]), colours)
    assert pts[10, 10].tolist() == [255, 0, 0] and (pts[0, 0] == 100).all()  # a dot; the missing joint is not drawn


def test_sheet_layout_rows_and_missing_tiles(tmp_path):
    frame = np.zeros((40, 80, 3), np.uint8)
    contact_sheet(tmp_path / "s.png", [0, 5], [("prediction", [frame, frame]), ("ground truth", [frame, None])])
    sheet = np.array(Image.open(tmp_path / "s.png"))
    tile_w = 80 * TILE_HEIGHT // 40
    assert sheet.shape[0] == 2 * (TILE_HEIGHT + TITLE + 4)
    assert sheet.shape[1] == LABEL_WIDTH + 2 * (tile_w + 4)
    row2 = TILE_HEIGHT + TITLE + 4
    assert (sheet[row2 + TITLE + 5, LABEL_WIDTH + 5] == 0).all()                  # ground truth of frame 0: the image
    assert (sheet[row2 + TITLE + 5, LABEL_WIDTH + tile_w + 4 + 5] == 255).all()   # no ground truth for frame 5: blank
    assert (sheet[2:TITLE - 2, LABEL_WIDTH:LABEL_WIDTH + 60] < 128).any()         # the title 'frame 0' is drawn
