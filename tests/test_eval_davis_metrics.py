"""DAVIS-2017 J and F: hand-made cases worked out by hand, and the official scorer's golden numbers (davis-mini)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study.errors import UserError
from study.evaluate import davis_metrics as m
from study.evaluate.davis import list_sequences, read_annotation, score_results
from study.palette import write_palette_png

FIXTURE = Path(__file__).parent / "fixtures" / "davis-mini"


def box(shape, r0, r1, c0, c1):
    a = np.zeros(shape, bool)
    a[r0:r1, c0:c1] = True
    return a


def test_iou_by_hand():
    gt = box((6, 6), 1, 3, 1, 3)                      # 4 px
    assert m.region_iou(gt, box((6, 6), 1, 3, 1, 2)) == 0.5   # 2 inside, union 4
    assert m.region_iou(gt, box((6, 6), 2, 4, 2, 4)) == pytest.approx(1 / 7)
    empty = np.zeros((6, 6), bool)
    assert m.region_iou(empty, empty) == 1.0           # empty union -> 1
    assert m.region_iou(gt, empty) == 0.0
    assert m.region_iou(empty, gt) == 0.0


def test_seg2bmap_single_pixel():
    seg = np.zeros((6, 6), bool)
    seg[2, 2] = True
    # the pixel itself and the three whose east / south / south-east neighbour it is
    assert set(map(tuple, np.argwhere(m.seg2bmap(seg)))) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    full = np.ones((4, 5), bool)
    assert not m.seg2bmap(full).any()


def test_boundary_f_by_hand():
    gt = np.zeros((10, 10), bool)
    gt[2, 2] = True                                    # boundary (1,1) (1,2) (2,1) (2,2)
    pred = np.zeros((10, 10), bool)
    pred[2, 5] = True                                  # boundary (1,4) (1,5) (2,4) (2,5)
    # radius 2: (1,4) and (2,4) are 2 away from (1,2) / (2,2); the other two are 3 away -> P = R = 1/2
    assert m.boundary_f(gt, pred, bound_th=2) == pytest.approx(0.5)
    assert m.boundary_f(gt, pred, bound_th=3) == 1.0
    assert m.boundary_f(gt, pred, bound_th=1) == 0.0
    empty = np.zeros((10, 10), bool)
    assert m.boundary_f(empty, empty) == 1.0           # both empty
    assert m.boundary_f(gt, empty) == 0.0              # P = 1, R = 0
    assert m.boundary_f(empty, gt) == 0.0              # P = 0, R = 1
    assert m.bound_pixels((480, 854)) == 8


def test_mean_recall_decay_by_hand():
    mean, recall, decay = m.mean_recall_decay(np.array([1, 1, 1, 1, 0, 0, 0, 0.0]))
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)    # bins [0:3] and [5:8]
    mean, recall, decay = m.mean_recall_decay(np.array([0.9, 0.8, 0.2, 0.4, 0.6]))
    # ids = round(linspace(1, 5, 5)) - 1 = 0..4 -> bin 0 = [0.9, 0.8], bin 3 = [0.4, 0.6]
    assert mean == pytest.approx(0.58) and recall == pytest.approx(0.6) and decay == pytest.approx(0.85 - 0.5)


def test_means_are_over_objects_not_sequences():
    one = (np.ones(3), np.ones(3))
    zero = (np.zeros(3), np.zeros(3))
    summary, rows = m.summarize({"a_1": one, "b_1": zero, "b_2": zero, "b_3": zero})
    assert summary["J-Mean"] == 0.25 and summary["J&F-Mean"] == 0.25 and len(rows) == 4


def test_first_and_last_frames_not_scored_and_void_is_background():
    gt = np.zeros((4, 8, 8), np.uint8)
    gt[:, 2:5, 2:5] = 1
    gt[:, 0, :] = 255
    pred = gt.copy()
    pred[pred == 255] = 0
    pred[0] = 0                                        # first and last frames wrong: not scored
    pred[3] = 0
    j, f = m.score_sequence(gt, pred)
    assert j.shape == (1, 2) and (j == 1).all() and (f == 1).all()


@pytest.mark.parametrize("folder", ["gt", "shift", "morph", "noisy", "swap", "fewer", "empty_some"])
def test_golden_davis_mini(folder):
    expected = json.loads((FIXTURE / "expected.json").read_text())[folder]
    summary, objects, _ = score_results(FIXTURE, FIXTURE / "results" / folder)
    for key in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-6), key
    assert {r["object"] for r in objects} == set(expected["per_object"])
    for r in objects:
        assert r["J-Mean"] == pytest.approx(expected["per_object"][r["object"]]["J-Mean"], abs=1e-6)
        assert r["F-Mean"] == pytest.approx(expected["per_object"][r["object"]]["F-Mean"], abs=1e-6)


def test_palette_roundtrip_and_rgb_refused(tmp_path):
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    write_palette_png(tmp_path / "a.png", ids)
    assert Image.open(tmp_path / "a.png").mode == "P"
    assert (read_annotation(tmp_path / "a.png") == ids).all()
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(UserError, match=r"rgb\.png.*palette \('P' mode\)"):
        read_annotation(tmp_path / "rgb.png")


def test_layout_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        list_sequences(tmp_path / "nope")
    with pytest.raises(UserError, match=r"Annotations/480p is missing"):
        list_sequences(tmp_path)
    (tmp_path / "Annotations/480p/s1").mkdir(parents=True)
    (tmp_path / "JPEGImages/480p/s1").mkdir(parents=True)
    (tmp_path / "ImageSets/2017").mkdir(parents=True)
    (tmp_path / "ImageSets/2017/val.txt").write_text("s1\n")
    write_palette_png(tmp_path / "Annotations/480p/s1/00000.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="s1' has no frames"):
        list_sequences(tmp_path)


def test_annotation_pngs_of_ids_only(tmp_path):
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    write_palette_png(tmp_path / "ok.png", ids)
    assert (read_annotation(tmp_path / "ok.png") == ids).all()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(UserError, match=r"rgb.png: annotation is a RGB image; a palette \('P' mode\) PNG"):
        read_annotation(tmp_path / "rgb.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(UserError, match=r"broken.png: not a readable PNG .*; replace or remove the file"):
        read_annotation(tmp_path / "broken.png")
