"""JHMDB PCK and VIP mIoU: CRW's golden numbers, hand-made heatmap cases, readers on generated sets."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from study.errors import UserError
from study.evaluate import jhmdb, vip

FIX = Path(__file__).parent / "fixtures"


def test_golden_jhmdb_pck():
    root = FIX / "jhmdb-pck"
    exp = json.loads((root / "expected.json").read_text())
    gts = [jhmdb.read_joints(root / f"video{i}/joint_positions.mat") for i in range(3)]
    preds = [np.load(root / f"preds/{i}.npy") for i in range(3)]
    out = jhmdb.pck(gts, preds, [(40, 40)] * 3, [(240, 320)] * 3, thresholds=(0.1, 0.2, 0.3, 0.4, 0.5))
    for thr in ("0.1", "0.2", "0.3", "0.4", "0.5"):
        assert out[f"pck@{float(thr)}"] == pytest.approx(exp["pck_mean"][thr], abs=1e-9)
        np.testing.assert_allclose(out[f"per_joint@{float(thr)}"], exp["pck_per_joint"][thr], atol=1e-9, rtol=0)
    assert [len(d) for d in out["distances"]] == exp["num_scored_per_joint"]
    for j, name in enumerate(exp["normalized_distances_per_joint"]):
        np.testing.assert_allclose(out["distances"][j], exp["normalized_distances_per_joint"][name], rtol=1e-5)


def test_heatmap_and_keypoint_by_hand():
    joints = np.zeros((2, 15))
    joints[:, :] = [[5.0], [3.0]]              # every joint at x=5, y=3 on a 10x12 grid
    joints[:, 1] = [-20, -20]                  # joint 1 far outside: no heat, so its keypoint is missing (-1)
    heat = jhmdb.joint_heatmaps(joints, (10, 12))
    assert heat.shape == (16, 10, 12)
    assert heat[1, 3, 5] == 1.0 and heat[1, 3, 6] == pytest.approx(np.exp(-2.0))   # exp(-d^2 / (2 * 0.25))
    assert heat[2].sum() == 0 and heat[0, 3, 5] == 0 and heat[0, 9, 0] == 1
    kp = jhmdb.keypoints_from_heatmaps(heat)
    # top-3 = the peak (1) and two of its four tied neighbours (exp(-2)): at most 2 * 0.135 / 1.27 = 0.21 off centre
    assert np.abs(kp[:, 0] - [5, 3]).max() <= 0.22 and (kp[:, 1] == -1).all()
    # top-3 weighted mean: values 1, .5, .5 at (x, y) = (2, 0), (4, 0), (4, 1) -> x = (2 + 2 + 2) / 2, y = .5 / 2
    soft = torch.zeros(16, 4, 6)
    soft[1, 0, 2], soft[1, 0, 4], soft[1, 1, 4], soft[1, 3, 0] = 1.0, 0.5, 0.5, 0.1
    assert jhmdb.keypoints_from_heatmaps(soft)[:, 0] == pytest.approx([3.0, 0.25])


def test_pck_on_a_non_square_grid_by_hand():
    """A 20 x 40 grid over 240 x 320 frames: a cell is 8 px wide and 12 px high, so x and y convert with their own
    axis. Frame 1's joints lie on cells, predicted exactly, except joint 0, predicted 2 cells (16 px) to the right:
    16 / (0.6 x the box diagonal 182.4 px) = 0.146, within 0.2 and not 0.1. Frame 0 is not scored."""
    cells = np.stack([2.0 + np.arange(15), 2.0 + (7 * np.arange(15)) % 13])         # (2, 15) x, y in cells
    pixels = cells * np.array([[8.0], [12.0]])                                        # 0-based pixels
    gt = np.repeat(pixels[:, :, None] + 1, 2, axis=2)                                 # (2, 15, 2), 1-based
    pred = np.repeat(cells[:, :, None], 2, axis=2).astype(np.float32)
    pred[0, 0, 1] += 2
    out = jhmdb.pck([gt], [pred], [(20, 40)], [(240, 320)])
    box = 0.6 * np.linalg.norm(pixels.max(1) - pixels.min(1))
    assert 0.1 < 16 / box <= 0.2
    np.testing.assert_allclose(out["distances"][0], [16 / box], rtol=1e-6)
    assert all(d.tolist() == [0.0] for d in out["distances"][1:])
    assert out["pck@0.1"] == pytest.approx(100 * 14 / 15) and out["pck@0.2"] == 100.0


def test_golden_vip_miou():
    root = FIX / "vip-miou"
    exp = json.loads((root / "expected.json").read_text())
    out, hist = vip.score_folder(root / "GT", root / "pred")
    assert (hist == np.array(exp["confusion_matrix_rows_gt_cols_pred"])).all()
    for key, ref in (("pixel_acc", "pixel_accuracy"), ("mean_acc", "mean_class_accuracy"), ("miou", "mIoU"),
                     ("fwiou", "fwIoU")):
        assert out[key] == pytest.approx(exp[ref], abs=1e-12)
    ious = [np.nan if v is None else v for v in exp["per_class_IoU"].values()]
    assert list(exp["per_class_IoU"]) == list(vip.CLASSES)
    np.testing.assert_allclose(out["class_iou"], ious, atol=1e-12)


def test_confusion_by_hand():
    gt = np.array([[0, 1, 1, 255]])
    pred = np.array([[0, 1, 2, 5]])
    hist = vip.confusion(gt, pred, n=3)
    assert hist.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]      # 255 ignored whatever the prediction
    s = vip.scores(hist)
    # IoU: class 0 = 1, class 1 = 1/2, class 2 = 0 / (0 + 1 - 0) = 0 -> mean 0.5
    assert s["miou"] == pytest.approx(0.5)


def test_readers_on_generated_sets(tmp_path):
    from study.data import synth_eval as synth

    jroot = synth.write_jhmdb(tmp_path / "jhmdb", n_videos=2, n_frames=3, seed=0)
    videos = jhmdb.list_videos(jroot)
    assert len(videos) == 2 and all(len(v.frames) == 3 for v in videos)
    assert jhmdb.read_joints(videos[0].joints).shape == (2, 15, 3)
    vroot = synth.write_vip(tmp_path / "vip", n_videos=2, n_frames=3, seed=0)
    vids = vip.list_videos(vroot)
    assert len(vids) == 2 and len(vids[0].frames) == len(vids[0].annotations) == 3
    assert vip.read_categories(vids[0].annotations[0]).max() < vip.N_CLASSES


def test_reader_errors(tmp_path):
    with pytest.raises(UserError, match="Rename_Images is missing"):
        jhmdb.list_videos(tmp_path)
    with pytest.raises(UserError, match="VIP_Fine/Images is missing"):
        vip.list_videos(tmp_path)
