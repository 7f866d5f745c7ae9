"""`study eval`: what it prints and writes, where it writes, and every bad input as one line with exit code 2 and
nothing written (no --out, no temp folder, nothing outside)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from study.palette import write_palette_png
from tests.eval_helpers import StaticEncoder, study_eval


def tiny_davis(root, rgb_annotation=False, frames=3, ids=(1,)):
    for sub in ("JPEGImages/480p/s1", "Annotations/480p/s1", "ImageSets/2017"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/2017/val.txt").write_text("s1\n")
    rng = np.random.default_rng(0)
    for t in range(frames):
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(root / f"JPEGImages/480p/s1/{t:05d}.jpg")
        mask = np.zeros((64, 96), np.uint8)
        for k, obj in enumerate(ids):
            mask[10 + 15 * k:20 + 15 * k, 10 + 4 * t:40 + 4 * t] = obj
        if rgb_annotation:
            Image.fromarray(np.stack([mask * 200] * 3, -1)).save(root / f"Annotations/480p/s1/{t:05d}.png")
        else:
            write_palette_png(root / f"Annotations/480p/s1/{t:05d}.png", mask)
    return root


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_eval_prints_a_table_and_writes_percent(monkeypatch, capsys, tmp_path):
    root = tiny_davis(tmp_path / "davis")
    code, out, err = study_eval(monkeypatch, capsys, StaticEncoder(1), "davis", "--checkpoint", "random", "--root",
                                str(root), "--out", str(tmp_path / "res"), "--set", "eval.frame_size=[64, 96]")
    assert code == 0, err
    assert "DAVIS J&F" in out and "protocol paper" in out and "{" not in out     # a table, no JSON line
    res = tmp_path / "res"
    record = json.loads((res / "summary.json").read_text())
    assert record["written_by"] == "study eval" and record["units"] == "percent"
    # static features repeat frame 0: the moving box overlaps its start by 26/30 (frame 1), scored alone
    assert record["summary"]["j_mean"] == pytest.approx(100 * 26 / 34)
    assert Image.open(res / "results/s1/00002.png").mode == "P"
    assert Image.open(res / "results/s1/00002.png").size == (96, 64)
    sheet = Image.open(res / "sheets/contact_s1.png")
    assert sheet.height > 2 * 160                                   # prediction row and ground-truth row
    assert leftovers(tmp_path) == []


def test_out_is_never_a_folder_of_the_users(monkeypatch, capsys, tmp_path):
    root = tiny_davis(tmp_path / "davis")
    args = ["davis", "--checkpoint", "random", "--root", str(root), "--set", "eval.short_side=64"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(8), *args, "--out", str(mine))
    assert code == 2 and err.count("\n") == 1 and "holds no evaluation of ours" in err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "years of work"
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(8), *args, "--out", str(afile))
    assert code == 2 and "is an existing file" in err and afile.read_text() == "keep"
    loads = []
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(8), *args, "--out", "/proc/study-eval-x", loads=loads)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --out /proc/study-eval-x")
    assert loads == []                                              # refused before loading anything
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(8), *args, "--out", str(afile / "sub"))
    assert code == 2 and err.count("\n") == 1
    # an earlier evaluation of ours is replaced; an empty folder is used
    ours = tmp_path / "ours"
    for _ in range(2):
        code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(8), *args, "--out", str(ours))
        assert code == 0, err
    (tmp_path / "empty").mkdir()
    assert study_eval(monkeypatch, capsys, StaticEncoder(8), *args, "--out", str(tmp_path / "empty"))[0] == 0
    assert (tmp_path / "empty/summary.json").is_file() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case,pattern", [
    ("unknown", "dataset 'kitti' is unknown"),
    ("missing", "does not exist"),
    ("rgb", "palette \\('P' mode\\) PNG"),
    ("noframes", "has no frames"),
    ("badckpt", "shape"),
    ("escape", "sequence name '../../escaped' is not a plain name"),
    ("ids", "sequence 's1': annotation ids 201, 202, 203, 204; object ids must be 1..N"),
    ("gap", "sequence 's1': annotation ids 1, 3;"),
    ("late_id", "sequence 's1': annotation ids 1, 2 \\(after frame 0\\)"),
    ("corrupt_jpeg", "00001.jpg: not a readable image"),
    ("corrupt_png", "00002.png: not a readable PNG"),
    ("ann_size", "00001.png: annotation is 48x32 but 00000.png is 96x64"),
    ("frame_size", "00002.jpg: frame is 80x64 but the annotations of sequence 's1' are 96x64"),
    ("frame_size_set", "eval.frame_size = \\[64\\] must be \\[height, width\\]"),
])
def test_user_errors_are_one_line_exit_2(monkeypatch, capsys, tmp_path, case, pattern):
    root = tmp_path / "data" / "davis"
    args = ["davis", "--checkpoint", "random", "--root", str(root), "--out", str(tmp_path / "res"),
            "--set", "eval.short_side=64"]
    encoder = StaticEncoder(8)
    if case != "missing":
        tiny_davis(root, rgb_annotation=case == "rgb", ids=(201, 202, 203, 204) if case == "ids" else
                   (1, 3) if case == "gap" else (1,))
    if case == "unknown":
        args[0] = "kitti"
    elif case == "noframes":
        for f in (root / "JPEGImages/480p/s1").glob("*.jpg"):
            f.unlink()
    elif case == "badckpt":
        from study.config_load import load_config
        from study.model import build_model

        cfg = load_config(budget="smoke", overrides={"model.preset": "mini"})   # wrong width for its own config
        state = build_model(cfg.model).state_dict()
        torch.save({"model": state, "config": load_config(budget="smoke").to_dict()}, tmp_path / "ckpt.pt")
        args[2], encoder = str(tmp_path / "ckpt.pt"), None
    elif case == "escape":
        (root / "ImageSets/2017/val.txt").write_text("s1\n../../escaped\n")
    elif case == "late_id":
        write_palette_png(root / "Annotations/480p/s1/00002.png", np.full((64, 96), 2, np.uint8))
    elif case == "corrupt_jpeg":
        data = (root / "JPEGImages/480p/s1/00001.jpg").read_bytes()
        (root / "JPEGImages/480p/s1/00001.jpg").write_bytes(data[: len(data) // 3])
    elif case == "corrupt_png":
        (root / "Annotations/480p/s1/00002.png").write_bytes(b"\x89PNG not really")
    elif case == "ann_size":
        write_palette_png(root / "Annotations/480p/s1/00001.png", np.zeros((32, 48), np.uint8))
    elif case == "frame_size":
        Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(root / "JPEGImages/480p/s1/00002.jpg")
    elif case == "frame_size_set":
        args[-1] = "eval.frame_size=[64]"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = study_eval(monkeypatch, capsys, encoder, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before     # nothing written anywhere


@pytest.mark.parametrize("dataset", ["vip", "jhmdb"])
def test_vip_and_jhmdb_names_are_plain(monkeypatch, capsys, tmp_path, dataset):
    from study.data.synth_eval import write_jhmdb, write_vip

    if dataset == "vip":
        root = write_vip(tmp_path / "vip", n_videos=1, n_frames=2, seed=0, size=(48, 64), quiet=True)
        (root / "VIP_Fine/lists/val_videos.txt").write_text("videos1\n../../../outside\n")
        pattern = "video name '../../../outside' is not a plain name"
    else:
        root = write_jhmdb(tmp_path / "jhmdb", n_videos=1, n_frames=2, seed=0, quiet=True)
        split = next((root / "splits").glob("*_test_split1.txt"))
        split.write_text(split.read_text() + "../x/evil.avi 2\n")
        pattern = "video name '../x/evil' is not a plain name"
    code, _, err = study_eval(monkeypatch, capsys, StaticEncoder(16), dataset, "--checkpoint", "random", "--root",
                              str(root), "--out", str(tmp_path / "res"))
    assert code == 2 and err.count("\n") == 1 and pattern in err, err
    assert not (tmp_path / "res").exists() and leftovers(tmp_path) == []
