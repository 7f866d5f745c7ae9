"""Generated data: mp4 training set, DAVIS / JHMDB / VIP layouts, the cached default sets, the CLI's one-line errors."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

import study.data.default_sets as default_sets
from study.data.scene import Scene
from study.data.synth_eval import write_davis, write_jhmdb, write_vip
from study.palette import davis_palette
from study.data.synth_videos import write_video_set
from study.data.video import find_videos, read_frames, video_info


def test_scene_is_deterministic_and_its_id_map_exact():
    a = Scene(np.random.default_rng(4), 48, 64, 10)
    b = Scene(np.random.default_rng(4), 48, 64, 10)
    for t in (0, 5, 9):
        (ra, ia), (rb, ib) = a.render(t), b.render(t)
        assert np.array_equal(ra, rb) and np.array_equal(ia, ib)
    assert ia.max() <= len(a.objects) and ra.shape == (48, 64, 3) and ia.shape == (48, 64)
    rgb0, ids0 = a.render(0)
    assert not np.array_equal(rgb0, a.render(9)[0])  # things move


def test_write_video_set_decodable_and_deterministic(tmp_path, capsys):
    out = write_video_set(tmp_path / "a", n_videos=3, n_frames=6, size=32, seed=7, processes=1)
    assert "wrote 3 videos x 6 frames at 32x32" in capsys.readouterr().out
    videos = find_videos(out)
    assert [p.name for p in videos] == ["video_00000.mp4", "video_00001.mp4", "video_00002.mp4"]
    assert video_info(videos[0]) == (6, 30.0)
    first = read_frames(videos[1], range(6))
    assert first.shape == (6, 32, 32, 3) and first.std() > 10
    again = read_frames(find_videos(write_video_set(tmp_path / "b", 3, 6, 32, seed=7, processes=2, quiet=True))[1], range(6))
    assert np.array_equal(first, again)  # the same set whatever the process count
    assert not list(tmp_path.glob(".*tmp*"))  # no temp folder left behind


def test_davis_layout_palette_and_objects(tmp_path):
    root = write_davis(tmp_path / "davis", n_sequences=2, n_frames=8, short_side=64, seed=0)
    seqs = (root / "ImageSets/2017/val.txt").read_text().split()
    assert len(seqs) == 2
    for seq in seqs:
        jpgs = sorted((root / "JPEGImages/480p" / seq).iterdir())
        pngs = sorted((root / "Annotations/480p" / seq).iterdir())
        assert [p.name for p in jpgs] == [f"{t:05d}.jpg" for t in range(8)]
        assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(8)]
        assert Image.open(jpgs[0]).size == (114, 64)  # 16:9, even width
        ann = [Image.open(p) for p in pngs]
        assert all(a.mode == "P" and a.size == (114, 64) for a in ann)
        assert ann[0].getpalette()[: 3 * 5] == davis_palette()[: 3 * 5] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
        ids = [np.array(a) for a in ann]
        k = int(ids[0].max())
        assert 3 <= k <= 4 and set(np.unique(ids[0])) == set(range(k + 1))  # every object labelled in frame 0
        assert k not in np.unique(ids[-1])  # the last object has left the frame
        assert max(int(i.max()) for i in ids) == k


def test_jhmdb_layout_and_joints(tmp_path):
    root = write_jhmdb(tmp_path / "jhmdb", n_videos=2, n_frames=5, seed=1)
    lines = (root / "vallist.txt").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        frames_dir, mat = line.split()
        frames = sorted((root / frames_dir).iterdir())
        assert [p.name for p in frames] == [f"{t:05d}.png" for t in range(1, 6)]
        assert Image.open(frames[0]).size == (320, 240)
        pos = loadmat(root / mat)["pos_img"]
        assert pos.shape == (2, 15, 5)
        assert 1 <= pos[0].min() and pos[0].max() <= 320 and 1 <= pos[1].min() and pos[1].max() <= 240
        assert np.abs(np.diff(pos, axis=2)).max() > 0.5  # the figure moves
    cls = lines[0].split()[0].split("/")[1]
    assert (root / "splits" / f"{cls}_test_split1.txt").read_text().strip().endswith(".avi 2")


def test_vip_layout_and_classes(tmp_path):
    root = write_vip(tmp_path / "vip", n_videos=2, n_frames=3, seed=2)
    names = (root / "VIP_Fine/lists/val_videos.txt").read_text().split()
    assert names == ["videos1", "videos2"]
    for name in names:
        imgs = sorted((root / "VIP_Fine/Images" / name).iterdir())
        anns = sorted((root / "VIP_Fine/Annotations/Category_ids" / name).iterdir())
        assert [p.name for p in imgs] == ["000000000001.jpg", "000000000002.jpg", "000000000003.jpg"]
        assert [p.stem for p in anns] == [p.stem for p in imgs]
        labels = np.array(Image.open(anns[0]))
        assert Image.open(anns[0]).mode == "L" and labels.max() < 20
        assert {0, 2, 13}.issubset(set(np.unique(labels)))  # background, hair, face at least


def test_default_sets_are_cached(tmp_path, monkeypatch):
    first = default_sets.ensure_davis_set(tmp_path, short_side=32, n_sequences=1, n_frames=4)
    assert first.name == f"davis-1x4-32p-s0-v{default_sets.GENERATOR_VERSION}"
    assert (first / "ImageSets/2017/val.txt").is_file()

    def fail(*a, **k):
        raise AssertionError("regenerated a cached set")
    monkeypatch.setattr(default_sets, "write_davis", fail)
    assert default_sets.ensure_davis_set(tmp_path, short_side=32, n_sequences=1, n_frames=4) == first
    train = default_sets.ensure_train_set(tmp_path, n_videos=2, n_frames=4, size=32, seed=0)
    assert len(find_videos(train)) == 2
    monkeypatch.setattr(default_sets, "write_video_set", fail)
    assert default_sets.ensure_train_set(tmp_path, n_videos=2, n_frames=4, size=32, seed=0) == train


def test_cli_refuses_a_non_empty_out_in_one_line(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    run = subprocess.run([sys.executable, "-m", "study.cli", "data", "synth-davis", "--out", str(tmp_path / "taken")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--out" in run.stderr
    assert (tmp_path / "taken" / "x").read_text() == "keep me"
    bad = subprocess.run([sys.executable, "-m", "study.cli", "data", "synth", "--out", str(tmp_path / "n"), "--size", "33"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--size 33" in bad.stderr and not (tmp_path / "n").exists()
