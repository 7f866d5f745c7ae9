"""`study eval davis|vip|jhmdb` end to end on the generated sets, with encoders whose answer is known exactly:
ground-truth features give J&F 100 / mIoU 100; position-only features give frame 0's labels everywhere, whose score is
computed here from the ground truth alone; JHMDB joints placed by hand give PCK@0.1 = 100/3 and PCK@0.2 = 200/3."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from study.data.synth_eval import write_davis, write_jhmdb, write_vip
from study.evaluate import davis_metrics, vip
from tests.eval_helpers import OracleEncoder, StaticEncoder, study_eval

DAVIS_KEYS = ("jf_mean", "j_mean", "f_mean", "j_recall", "f_recall", "j_decay", "f_decay")


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    return write_davis(tmp_path_factory.mktemp("sets") / "davis", n_sequences=2, n_frames=6, short_side=32, seed=3,
                       quiet=True)


def davis_ground_truth(root):
    names = (root / "ImageSets/2017/val.txt").read_text().split()
    return {n: [np.array(Image.open(p)) for p in sorted((root / "Annotations/480p" / n).glob("*.png"))] for n in names}


def test_davis_ground_truth_features_score_100(monkeypatch, capsys, tmp_path, davis_root):
    gt = davis_ground_truth(davis_root)
    frames = [p for n in gt for p in sorted((davis_root / "JPEGImages/480p" / n).glob("*.jpg"))]
    encoder = OracleEncoder(frames, [m for n in gt for m in gt[n]], n_labels=4)
    h, w = gt[next(iter(gt))][0].shape
    code, out, err = study_eval(monkeypatch, capsys, encoder, "davis", "--checkpoint", "random", "--root",
                                str(davis_root), "--out", str(tmp_path / "res"), "--set", f"eval.frame_size=[{h}, {w}]")
    assert code == 0, err
    summary = json.loads((tmp_path / "res/summary.json").read_text())["summary"]
    assert summary == {"jf_mean": 100.0, "j_mean": 100.0, "f_mean": 100.0, "j_recall": 100.0, "f_recall": 100.0,
                       "j_decay": 0.0, "f_decay": 0.0}
    assert encoder.seen == list(range(len(frames)))                  # every frame once, in order
    assert "100.00" in out and "{" not in out                        # the table, no raw JSON line after it
    for name, masks in gt.items():
        for t, mask in enumerate(masks):
            assert (np.array(Image.open(tmp_path / f"res/results/{name}/{t:05d}.png")) == mask).all()


def test_davis_static_features_repeat_frame_0(monkeypatch, capsys, tmp_path, davis_root):
    """Every prediction is frame 0's mask; the expected numbers come from the scorer on the ground truth alone."""
    gt = davis_ground_truth(davis_root)
    per_object = {}
    for name, masks in gt.items():
        j, f = davis_metrics.score_sequence(np.stack(masks), np.stack([masks[0]] * len(masks)))
        per_object.update({f"{name}_{k + 1}": (j[k], f[k]) for k in range(len(j))})
    ref, _ = davis_metrics.summarize(per_object)
    expected = dict(zip(DAVIS_KEYS, (100 * ref[k] for k in ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "F-Recall",
                                                             "J-Decay", "F-Decay"))))
    h, w = gt[next(iter(gt))][0].shape
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(1), "davis", "--checkpoint", "random", "--root",
                              str(davis_root), "--out", str(tmp_path / "res"), "--set", f"eval.frame_size=[{h}, {w}]")
    assert code == 0, err
    record = json.loads((tmp_path / "res/summary.json").read_text())
    assert record["summary"] == pytest.approx(expected, abs=1e-9)
    assert expected["jf_mean"] < 90 and expected["j_mean"] != expected["f_mean"]    # a case where swaps show
    assert record["params"]["protocol"] == "paper" and record["params"]["frames"] == f"exactly {h}x{w} (eval.frame_size)"
    seqs = (tmp_path / "res/per_sequence.csv").read_text().splitlines()
    assert seqs[0] == "sequence,objects,frames,jf_mean_pct,j_mean_pct,f_mean_pct"
    objects = (tmp_path / "res/per_object.csv").read_text().splitlines()
    assert objects[0] == "object,j_mean_pct,j_recall_pct,j_decay_pct,f_mean_pct,f_recall_pct,f_decay_pct"
    mean_j = np.mean([float(line.split(",")[1]) for line in objects[1:]])
    assert mean_j == pytest.approx(expected["j_mean"])                              # percent, like summary.json


def test_davis_at_the_protocol_size_resizes_both_ways(monkeypatch, capsys, tmp_path, davis_root):
    """No frame_size override: the paper's 480x880 scaled to 32x58 -> 32x56 at patch 8, frames resized; results come
    back at the annotation size and the static encoder still repeats frame 0 (up to the grid's resolution)."""
    code, out, err = study_eval(monkeypatch, capsys, StaticEncoder(8), "davis", "--checkpoint", "random", "--root",
                                str(davis_root), "--out", str(tmp_path / "res"), "--set", "eval.short_side=32")
    assert code == 0, err
    gt = davis_ground_truth(davis_root)
    name = next(iter(gt))
    last = np.array(Image.open(tmp_path / f"res/results/{name}/00004.png"))
    one = np.array(Image.open(tmp_path / f"res/results/{name}/00001.png"))
    assert last.shape == gt[name][0].shape and (last == one).all()
    assert json.loads((tmp_path / "res/summary.json").read_text())["params"]["frames"].startswith("exactly 32x59")


@pytest.fixture(scope="module")
def vip_root(tmp_path_factory):
    return write_vip(tmp_path_factory.mktemp("sets") / "vip", n_videos=2, n_frames=4, seed=0, size=(72, 96),
                     quiet=True)


def vip_ground_truth(root):
    ann = root / "VIP_Fine/Annotations/Category_ids"
    return {v.name: [np.array(Image.open(p)) for p in sorted(v.glob("*.png"))] for v in sorted(ann.iterdir())}


def test_vip_ground_truth_features_score_100(monkeypatch, capsys, tmp_path, vip_root):
    gt = vip_ground_truth(vip_root)
    for masks in gt.values():   # the case holds: every class of a later frame is in frame 0
        assert set(np.unique(np.stack(masks))) <= set(np.unique(masks[0]))
    frames = [p for n in gt for p in sorted((vip_root / "VIP_Fine/Images" / n).glob("*.jpg"))]
    encoder = OracleEncoder(frames, [m for n in gt for m in gt[n]], n_labels=vip.N_CLASSES)
    code, out, err = study_eval(monkeypatch, capsys, encoder, "vip", "--checkpoint", "random", "--root", str(vip_root),
                                "--out", str(tmp_path / "res"), "--set", "eval.frame_size=[72, 96]")
    assert code == 0, err
    assert json.loads((tmp_path / "res/summary.json").read_text())["summary"] == {"miou": 100.0}
    assert encoder.seen == list(range(len(frames)))
    rows = (tmp_path / "res/per_video.csv").read_text().splitlines()
    assert rows == ["video,frames,miou_pct", "videos1,4,100.0", "videos2,4,100.0"]


def test_vip_static_features_repeat_frame_0(monkeypatch, capsys, tmp_path, vip_root):
    gt = vip_ground_truth(vip_root)
    hist = sum(vip.confusion(m, masks[0]) for masks in gt.values() for m in masks)
    expected = 100 * vip.scores(hist)["miou"]
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(1), "vip", "--checkpoint", "random", "--root",
                              str(vip_root), "--out", str(tmp_path / "res"), "--set", "eval.frame_size=[72, 96]")
    assert code == 0, err
    record = json.loads((tmp_path / "res/summary.json").read_text())
    assert record["summary"]["miou"] == pytest.approx(expected, abs=1e-9) and expected < 95
    classes = (tmp_path / "res/per_class.csv").read_text().splitlines()
    assert classes[0] == "class,iou_pct,accuracy_pct" and classes[1].startswith("background,")
    assert float(classes[1].split(",")[1]) == pytest.approx(100 * vip.scores(hist)["class_iou"][0])


def place_joints(root, shifts: list[float]) -> None:
    """Rewrite every video's joints: frame 0 on feature-grid cells of the paper protocol's 20x20 grid (16 px x 12 px
    cells of the 320x240 frame), frame t the same pose moved by shifts[t] x the PCK normalizer (0.6 x the box
    diagonal) along x."""
    cells = np.array([[3 + i, 3 + (7 * i) % 13] for i in range(15)], float)      # 15 distinct cells, away from edges
    pose = np.stack([cells[:, 0] * 16, cells[:, 1] * 12])                           # (2, 15) 0-based pixels
    norm = 0.6 * np.linalg.norm(pose.max(1) - pose.min(1))
    for mat in sorted(root.glob("joint_positions/*/*/joint_positions.mat")):
        n = loadmat(mat)["pos_img"].shape[2]
        pos = np.stack([pose + np.array([[shifts[t] * norm], [0.0]]) for t in range(n)], axis=2) + 1
        savemat(mat, {"pos_img": pos})


def test_jhmdb_pck_of_joints_placed_by_hand(monkeypatch, capsys, tmp_path):
    """Static features keep frame 0's heatmaps, whose top-5 weighted mean is exactly the joint on its cell; frame 2's
    ground truth is 0.15 normalizer away (within 0.2, not 0.1), frame 3's 0.25 (neither). Frame 0 is not scored."""
    root = write_jhmdb(tmp_path / "jhmdb", n_videos=2, n_frames=4, seed=0, quiet=True)
    place_joints(root, [0.0, 0.0, 0.15, 0.25])
    code, out, err = study_eval(monkeypatch, capsys, StaticEncoder(16), "jhmdb", "--checkpoint", "random", "--root",
                                str(root), "--out", str(tmp_path / "res"), "--set", "eval.short_side=480")
    assert code == 0, err
    summary = json.loads((tmp_path / "res/summary.json").read_text())["summary"]
    assert summary["pck_0.1"] == pytest.approx(100 / 3, abs=1e-9)
    assert summary["pck_0.2"] == pytest.approx(200 / 3, abs=1e-9)
    joints = (tmp_path / "res/per_joint.csv").read_text().splitlines()
    assert joints[0] == "joint,pck_0.1_pct,pck_0.2_pct" and len(joints) == 16
    assert all(np.allclose([float(v) for v in line.split(",")[1:]], [100 / 3, 200 / 3]) for line in joints[1:])
    keypoints = sorted((tmp_path / "res/keypoints").glob("*.npy"))
    assert len(keypoints) == 2 and np.load(keypoints[0]).shape == (2, 15, 4)
    pose = loadmat(next(root.glob("joint_positions/*/*/joint_positions.mat")))["pos_img"][:, :, 0] - 1
    np.testing.assert_allclose(np.load(keypoints[0])[:, :, 3], pose, atol=1e-3)     # frame 0's pose, in pixels
    place_joints(root, [0.0, 0.0, 0.0, 0.0])                                        # a still pose: 100 / 100
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(16), "jhmdb", "--checkpoint", "random", "--root",
                              str(root), "--out", str(tmp_path / "res"), "--set", "eval.short_side=480")
    assert code == 0, err
    assert json.loads((tmp_path / "res/summary.json").read_text())["summary"] == {"pck_0.1": 100.0, "pck_0.2": 100.0}


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluation_follows_the_encoder_to_the_gpu(tmp_path, davis_root):
    """A trial's model stays on the GPU it trained on: frames must be encoded there (they were sent to the CPU, a
    device mismatch), and the numbers must be the CPU's up to float rounding (TF32 off, as CropMAE's notes ask)."""
    import torch

    from study.config_load import load_config
    from study.evaluate.run import evaluate_dataset
    from study.model import load_encoder

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cfg = load_config(budget="smoke")
    model = load_encoder("random", cfg.model, seed=0)
    on_cpu = evaluate_dataset(model, "davis", davis_root, cfg.eval, tmp_path / "cpu")
    model = model.cuda()
    on_gpu = evaluate_dataset(model, "davis", davis_root, cfg.eval, tmp_path / "gpu")
    assert next(model.parameters()).is_cuda
    assert on_gpu == pytest.approx(on_cpu, abs=0.5)
    same = [np.mean(np.array(Image.open(p)) == np.array(Image.open(tmp_path / "gpu" / p.relative_to(tmp_path / "cpu"))))
            for p in (tmp_path / "cpu/results").rglob("*.png")]
    assert np.mean(same) > 0.99
