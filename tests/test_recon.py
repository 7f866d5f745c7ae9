"""recon.png says what it shows: the panels' names (f1 | f2 masked | prediction | f2) and the training step above
the pictures, which stay pixel for pixel what the model made."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from study.config_load import load_config
from study.model import build_model
from study.train.recon import PANELS, reconstruct, save_reconstruction, to_uint8


def _pictures(tmp_path, step):
    torch.manual_seed(0)
    cfg = load_config("smoke")
    model = build_model(cfg.model)
    g = torch.Generator().manual_seed(1)
    size = cfg.model.img_size
    f1, f2 = torch.randn(2, 3, size, size, generator=g), torch.randn(2, 3, size, size, generator=g)
    path = save_reconstruction(model, f1, f2, tmp_path / f"recon-{step}.png", step=step, scale=2)
    return model, f1, f2, np.asarray(Image.open(path).convert("RGB")), size


def test_recon_png_has_a_header_with_panel_names_and_step_over_unchanged_pictures(tmp_path):
    model, f1, f2, img, size = _pictures(tmp_path, 1200)
    _, _, _, other, _ = _pictures(tmp_path, 7)
    assert PANELS == ("f1", "f2 masked", "prediction", "f2")
    body_h = 2 * size * 2  # two pairs, scale 2
    header_h = img.shape[0] - body_h
    assert img.shape[1] == 4 * size * 2 and header_h >= 20  # a band above the 2 x 4 grid
    header = img[:header_h]
    assert (header < 128).any() and (header == 255).mean() > 0.5  # dark text on white
    for i in range(4):  # a name over every panel
        assert (header[header_h // 2:, i * size * 2:(i + 1) * size * 2] < 128).any(), PANELS[i]
    assert (img[:header_h] != other[:header_h]).any()  # the step is written: step 1200 and step 7 differ
    torch.manual_seed(0)  # the pictures below the band are the model's, untouched
    expected_f1 = to_uint8(f1).numpy()[0].repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(img[header_h:header_h + 2 * size, :2 * size], expected_f1)
    masked, _ = reconstruct(model, f1, f2)
    assert masked.shape == f2.shape
