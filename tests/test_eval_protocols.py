"""The evaluation protocols: `paper` equals CropMAE's evaluation (golden outputs of its own code), the presets' values
and overrides, frame sizes, and the module stays torch-free for analysis/."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from study.config import EvalConfig
from study.evaluate.dense import DensePropagation
from study.evaluate.frames import labels_to_grid, nearest_resize, soft_to_ids
from study.evaluate.propagate import LabelPropagation, PropagationParams
from study.evaluate.protocols import describe, preset, resolve

CROPMAE = Path(__file__).parent / "fixtures" / "propagation-cropmae"


def cropmae_inputs():
    inputs = np.load(CROPMAE / "inputs.npz")
    return {k: inputs[k] for k in inputs.files}


def run(engine, params, feats, labels):
    prop = engine(params, feats[0], labels)
    return np.stack([labels.numpy()] + [prop.step(f).numpy() for f in feats[1:]])


def test_paper_preset_has_cropmae_values():
    ref = json.loads((CROPMAE / "params.json").read_text())
    for dataset, key in (("davis", "cropmae_davis_defaults"), ("jhmdb", "cropmae_jhmdb_defaults"),
                         ("vip", "cropmae_vip_defaults")):
        p = preset("paper", dataset)
        want = ref[key]
        assert (p.propagation.context, p.propagation.topk, p.propagation.neighborhood, p.propagation.queue,
                p.propagation.temperature) == ("crw", want["topk"], want["radius"], want["video_len"],
                                               want["temperature"]), dataset
        assert p.propagation.minmax_norm is False and p.first_labels == "soft" and p.pos_embed == "bicubic"
        assert p.std == (0.229, 0.224, 0.225)
    assert preset("paper", "davis").frame_hw(480, 854, 16) == tuple(ref["cropmae_davis_defaults"]["crop_size_hw"])
    assert preset("paper", "jhmdb").frame_hw(240, 320, 16) == tuple(ref["cropmae_jhmdb_defaults"]["crop_size_hw"])
    assert preset("paper", "jhmdb").keypoint_topk == 5


@pytest.mark.parametrize("engine", [LabelPropagation, DensePropagation])
@pytest.mark.parametrize("radius", [5, 20])
def test_paper_protocol_reproduces_cropmae_soft_labels(engine, radius):
    inputs = cropmae_inputs()
    feats, labels = torch.from_numpy(inputs["features"]), torch.from_numpy(inputs["first_labels"])
    params = replace(preset("paper", "davis").propagation, neighborhood=radius)
    expected = np.load(CROPMAE / f"expected_radius{radius}.npz")
    out = run(engine, params, feats, labels)
    np.testing.assert_allclose(out, expected["soft_labels"], atol=1e-5, rtol=0)


def test_paper_grid_labels_are_cropmaes_soft_labels_exactly():
    inputs = cropmae_inputs()
    protocol = preset("paper", "davis")
    grid = labels_to_grid(inputs["first_label_image"], (12, 20), (192, 320), [0, 1, 2], protocol)
    assert torch.equal(grid, torch.from_numpy(inputs["first_labels"]))
    assert set(np.unique(grid.numpy())) - {0, 0.25, 0.5, 0.75, 1} == set()      # soft at the edges, as CropMAE's
    hard = labels_to_grid(inputs["first_label_image"], (12, 20), (192, 320), [0, 1, 2], preset("dino"))
    assert set(np.unique(hard.numpy())) == {0, 1}                                 # DINO's: nearest, one-hot


@pytest.mark.parametrize("radius", [5, 20])
def test_paper_output_masks_equal_cropmaes_on_decidable_pixels(radius):
    """Our soft labels pushed through the paper protocol's output path (bilinear x16, argmax, nearest to the GT size)
    give CropMAE's masks wherever the top label is decided by >= 1e-4."""
    inputs = cropmae_inputs()
    feats, labels = torch.from_numpy(inputs["features"]), torch.from_numpy(inputs["first_labels"])
    protocol = preset("paper", "davis")
    params = replace(protocol.propagation, neighborhood=radius)
    soft = run(LabelPropagation, params, feats, labels)
    expected = np.load(CROPMAE / f"expected_radius{radius}.npz")
    decidable = expected["argmax_decidable"]
    for t in range(len(soft)):
        ids = soft_to_ids(torch.from_numpy(soft[t]), (192, 320), (192, 320), protocol, [0, 1, 2])
        assert (ids[decidable[t]] == expected["davis_ids"][t][decidable[t]]).all(), t
        assert (ids[decidable[t]] == expected["argmax_image"][t][decidable[t]]).all(), t
    assert decidable.mean() > 0.999


def test_bicubic_position_embedding_is_dinos_interpolation():
    from study.model.encoder import ViTEncoder
    from study.model.pos_embed import interpolate_bicubic

    ref = np.load(CROPMAE / "posembed.npz")
    table = torch.from_numpy(ref["pos_embed_224"])                                   # (1, 197, 8)
    for key, grid in (("interp_480x880", (30, 55)), ("interp_320x320", (20, 20))):
        out = interpolate_bicubic(table[:, 1:], grid)
        np.testing.assert_allclose(out.numpy(), ref[key][:, 1:], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(ref[key][:, :1], ref["pos_embed_224"][:, :1])  # [CLS] row kept as is
    # the encoder uses it when the protocol says 'bicubic' (the paper's), and the training grid is left alone
    vit = ViTEncoder(img_size=224, patch_size=16, embed_dim=8, depth=1, num_heads=2)
    vit.pos_embed.data.copy_(table)
    vit.pos_embed_mode = preset("paper", "davis").pos_embed
    np.testing.assert_allclose(vit.patch_pos_embed((30, 55)).numpy(), ref["interp_480x880"][:, 1:], atol=1e-5)
    assert torch.equal(vit.patch_pos_embed((14, 14)), table[:, 1:])


@pytest.mark.parametrize("name,dataset,hw,short_side,patch,expected", [
    ("paper", "davis", (480, 854), 480, 16, (480, 880)),     # exactly 480x880, aspect ignored
    ("paper", "davis", (480, 854), 480, 8, (480, 880)),
    ("paper", "davis", (192, 342), 192, 8, (192, 352)),      # the cpu budget: 480x880 scaled by 192/480
    ("paper", "davis", (64, 114), 64, 8, (64, 112)),         # smoke: 117.3 floored to the patch
    ("dino", "davis", (480, 854), 480, 16, (480, 832)),      # DINO: long side floored to a multiple of 64
    ("dino", "davis", (854, 480), 480, 16, (832, 480)),
    ("dino", "davis", (192, 342), 192, 8, (192, 336)),       # multiple 64 * 192/480 = 25.6 -> 24 at patch 8
    ("crw", "davis", (480, 854), 480, 16, (480, 848)),       # native size, floored to the patch
    ("paper", "vip", (720, 1280), 480, 16, (448, 880)),      # long side 880, short int(720*880/1280)=495 -> 448
    ("paper", "vip", (1280, 720), 480, 16, (880, 448)),
    ("paper", "jhmdb", (240, 320), 480, 16, (320, 320)),
    ("dino", "jhmdb", (240, 320), 240, 8, (160, 160)),
])
def test_frame_sizes(name, dataset, hw, short_side, patch, expected):
    protocol = resolve(EvalConfig(protocol=name, short_side=short_side), dataset)
    assert protocol.frame_hw(*hw, patch) == expected


def test_overrides_and_described_values():
    cfg = EvalConfig(protocol="paper", neighborhood=8.0, topk=3, queue=0, temperature=0.05, pos_embed="extend",
                     frame_size=[64, 120])
    p = resolve(cfg, "vip")
    assert (p.propagation.neighborhood, p.propagation.topk, p.propagation.queue, p.propagation.temperature) == \
        (8.0, 3, 0, 0.05)
    assert p.pos_embed == "extend" and p.frame_hw(720, 1280, 8) == (64, 120)
    untouched = resolve(EvalConfig(protocol="paper"), "vip")
    assert (untouched.propagation.neighborhood, untouched.propagation.topk) == (20, 10)
    values = describe({"eval.protocol": "paper", "eval.topk": "0", "eval.short_side": "192"}, "davis")
    assert values == {"protocol": "paper", "dataset": "davis", "context": "crw", "queue": 20, "neighborhood": 20,
                      "topk": 7, "temperature": 0.7, "norm_mask": False,
                      "frames": "exactly 192x352 (aspect ignored); the protocol's sizes at 480 scaled by 192/480",
                      "short_side": 192,
                      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "first_labels": "soft",
                      "nearest": "floor", "pos_embed": "bicubic"}
    assert describe({"eval.protocol": "dino"}, "davis")["frames"] == \
        "short side 480, other side floored to a multiple of 64"
    dino = describe(EvalConfig(protocol="dino"), "jhmdb")
    assert (dino["context"], dino["topk"], dino["queue"], dino["neighborhood"], dino["temperature"],
            dino["norm_mask"], dino["std"], dino["keypoint_topk"]) == ("dino", 5, 7, 12, 0.1, True,
                                                                       [0.228, 0.224, 0.225], 3)
    crw = resolve(EvalConfig(protocol="crw"), "davis").propagation
    assert crw == PropagationParams("crw", queue=20, neighborhood=12, topk=10, temperature=0.07, minmax_norm=False)


def test_nearest_conventions():
    ids = np.arange(5, dtype=np.uint8)[None].repeat(2, 0)                # (2, 5): columns 0..4
    assert nearest_resize(ids, (2, 3), "floor")[0].tolist() == [0, 1, 3]          # cv2: floor(x * 5/3)
    assert nearest_resize(ids, (2, 3), "centre")[0].tolist() == [0, 2, 4]         # PIL: pixel centres
    assert nearest_resize(ids, (2, 5), "floor") is ids


def test_protocols_module_imports_no_torch():
    code = "import sys, study.evaluate.protocols as p; p.describe({'eval.protocol': 'dino'}, 'vip'); " \
           "assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr


def test_frames_are_normalised_with_the_protocols_mean_and_std(tmp_path):
    from PIL import Image

    from study.evaluate.frames import load_frame

    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(tmp_path / "f.png")
    for name, std in (("paper", 0.229), ("dino", 0.228)):
        x, rgb = load_frame(tmp_path / "f.png", (4, 6), preset(name))
        assert rgb.shape == (4, 6, 3) and x.shape == (3, 4, 6)
        assert float(x[0, 0, 0]) == pytest.approx((200 / 255 - 0.485) / std, abs=1e-6)


def test_paper_table_4b():
    from study.evaluate.protocols import PAPER_TABLE_4B

    assert PAPER_TABLE_4B == {"davis": (7, 20, 20), "vip": (10, 20, 8), "jhmdb": (7, 20, 20)}   # as printed
    for dataset, (topk, queue, size) in PAPER_TABLE_4B.items():
        p = preset("paper", dataset).propagation
        assert (p.topk, p.queue) == (topk, queue)
        assert p.neighborhood == (20 if dataset == "vip" else size)     # VIP: CropMAE's 20, see protocols.py
    assert resolve(EvalConfig(neighborhood=8.0), "vip").propagation.neighborhood == 8      # the table's, by flag
