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
        assert 1 <= k <= 3 and set(np.unique(ids[0])) == set(range(k + 1))  # every object labelled in frame 0
        assert max(int(i.max()) for i in ids) == k


def test_davis_scenes_vary_objects_exits_and_occlusions():
    """Over 30 sequences: 1, 2 and 3 objects all occur, every object is visible in frame 0, some sequences send the
    last object out of the frame, and `cross` puts the later object over the earlier one at the middle frame."""
    from study.data.synth_eval import davis_scene

    counts, exits = set(), 0
    for s in range(30):
        scene = davis_scene(np.random.default_rng([9, s]), 36, 64, 9)
        counts.add(len(scene.objects))
        assert min(scene.visible_fraction(0)) > 0
        exits += len(scene.objects) > 1 and scene.visible_fraction(8)[-1] == 0
    assert counts == {1, 2, 3} and 3 <= exits <= 27
    scene = Scene(np.random.default_rng(1), 64, 96, 11, n_objects=2)
    scene.cross(scene.objects[0], scene.objects[1], 11)
    first, second = scene.objects
    visible = (scene.render(5)[1] == 1).sum()
    areas = []
    for obj in (first, second):
        scene.objects = [obj]
        areas.append((scene.render(5)[1] == 1).sum())
    assert areas[0] - visible >= 0.8 * min(areas)              # the second lies (almost) wholly over the first


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
    assert first.name == f"davis-1x4-32p-s0-v{default_sets.GENERATOR_VERSION['davis']}"
    assert (first / "ImageSets/2017/val.txt").is_file()

    def fail(*a, **k):
        raise AssertionError("regenerated a cached set")
    monkeypatch.setattr(default_sets, "write_davis", fail)
    assert default_sets.ensure_davis_set(tmp_path, short_side=32, n_sequences=1, n_frames=4) == first
    train = default_sets.ensure_train_set(tmp_path, n_videos=2, n_frames=4, size=32, seed=0)
    assert len(find_videos(train)) == 2
    monkeypatch.setattr(default_sets, "write_video_set", fail)
    assert default_sets.ensure_train_set(tmp_path, n_videos=2, n_frames=4, size=32, seed=0) == train


def study_data(*args):
    return subprocess.run([sys.executable, "-m", "study.cli", "data", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command,extra,said", [
    ("synth-davis", ["--sequences", "2", "--frames", "3", "--short-side", "32"],
     r"wrote 2 DAVIS-2017 sequences x 3 frames at 56x32, \d objects \(13 files, 0\.\d MB\) to .*/out in \d+\.\d s"),
    ("synth-jhmdb", ["--videos", "2", "--frames", "2"],
     r"wrote 2 JHMDB videos x 2 frames at 320x240, 15 joints \(\d+ files, 0\.\d MB\) to .*/out in \d+\.\d s"),
    ("synth-vip", ["--videos", "1", "--frames", "2"],
     r"wrote 1 VIP videos x 2 frames at 320x240 \(5 files, 0\.\d MB\) to .*/out in \d+\.\d s"),
    ("synth", ["--videos", "2", "--frames", "3", "--size", "32"],
     r"wrote 2 videos x 3 frames at 32x32 \(0\.\d MB\) to .*/out in \d+\.\d s"),
])
def test_cli_says_what_it_wrote(tmp_path, command, extra, said):
    import re

    done = study_data(command, "--out", str(tmp_path / "out"), *extra)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(said, done.stdout.strip()), done.stdout


@pytest.mark.parametrize("command", ["synth", "synth-davis", "synth-jhmdb", "synth-vip"])
def test_cli_refuses_bad_outs_in_one_line(tmp_path, command):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    (tmp_path / "afile").write_text("keep me too")
    small = {"synth": ["--videos", "1", "--frames", "2", "--size", "32"], "synth-davis": ["--sequences", "1"],
             "synth-jhmdb": ["--videos", "1"], "synth-vip": ["--videos", "1"]}[command]
    before = sorted(tmp_path.rglob("*"))
    for out, said in ((tmp_path / "taken", "already exists"), (tmp_path / "afile", "already exists"),
                      (tmp_path / "afile" / "sub", "cannot create"), ("/proc/study-synth-x", "cannot write in /proc")):
        done = study_data(command, "--out", str(out), *small)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
        assert done.stderr.startswith(f"error: --out {out}")
    assert sorted(tmp_path.rglob("*")) == before
    assert (tmp_path / "taken" / "x").read_text() == "keep me" and (tmp_path / "afile").read_text() == "keep me too"


@pytest.mark.parametrize("size", [33, 48, 72])
def test_cli_refuses_sizes_it_cannot_read_back(tmp_path, size):
    done = study_data("synth", "--out", str(tmp_path / "n"), "--size", str(size), "--videos", "1", "--frames", "2")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and f"--size {size}" in done.stderr
    assert list(tmp_path.iterdir()) == []
