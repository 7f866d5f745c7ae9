"""The report's pictures: valid PNGs, and the contact sheets shown pixel for pixel in the propagation strip."""

import io

import numpy as np
from PIL import Image

from analysis import plots


def test_propagation_strip_shows_each_sheet_unresampled(tmp_path):
    rng = np.random.default_rng(0)
    sheets = []
    for i, (h, w) in enumerate([(60, 240), (40, 200)]):
        a = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / f"contact_{i}.png")
        sheets.append(a)
    png = plots.propagation_strip([("first", tmp_path / "contact_0.png"), ("missing", None),
                                   ("second", tmp_path / "contact_1.png")])
    strip = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    for a in sheets:  # each sheet's pixels appear, exactly, somewhere in the strip
        h, w = a.shape[:2]
        rows = [y for y in range(strip.shape[0] - h + 1) if (strip[y, :, :] == a[0, 0]).all(-1).any()]
        hits = [(y, x) for y in rows for x in range(strip.shape[1] - w + 1)
                if (strip[y, x] == a[0, 0]).all() and (strip[y:y + h, x:x + w] == a).all()]
        assert len(hits) == 1, hits
    assert plots.propagation_strip([("none", None)]) is None
