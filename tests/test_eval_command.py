"""`study eval`: a run on a small generated set, and every user error as one line with exit code 2."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from study import cli
from study.palette import write_palette_png


def study(monkeypatch, capsys, *args):
    monkeypatch.setenv("STUDY_BUDGET", "smoke")
    monkeypatch.setattr(sys, "argv", ["study", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def tiny_davis(root, rgb_annotation=False, frames=3):
    for sub in ("JPEGImages/480p/s1", "Annotations/480p/s1", "ImageSets/2017"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/2017/val.txt").write_text("s1\n")
    rng = np.random.default_rng(0)
    for t in range(frames):
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(root / f"JPEGImages/480p/s1/{t:05d}.jpg")
        ids = np.zeros((64, 96), np.uint8)
        ids[10:30, 10 + 4 * t:40 + 4 * t] = 1
        if rgb_annotation:
            Image.fromarray(np.stack([ids * 200] * 3, -1)).save(root / f"Annotations/480p/s1/{t:05d}.png")
        else:
            write_palette_png(root / f"Annotations/480p/s1/{t:05d}.png", ids)
    return root


def test_eval_random_encoder_on_davis_layout(monkeypatch, capsys, tmp_path):
    root = tiny_davis(tmp_path / "davis")
    code, out, err = study(monkeypatch, capsys, "eval", "davis", "--checkpoint", "random", "--root", str(root),
                           "--out", str(tmp_path / "res"), "--set", "eval.short_side=64")
    assert code in (0, None), err
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"jf_mean", "j_mean", "f_mean", "j_recall", "f_recall", "j_decay", "f_decay"}
    assert 0 <= summary["jf_mean"] <= 100
    res = tmp_path / "res"
    assert json.loads((res / "summary.json").read_text())["summary"] == summary
    assert (res / "per_object.csv").read_text().startswith("object,")
    assert Image.open(res / "results/s1/00002.png").mode == "P"
    assert Image.open(res / "results/s1/00002.png").size == (96, 64)
    assert (res / "sheets/contact_s1.png").is_file() and not (tmp_path / "res.tmp").exists()


@pytest.mark.parametrize("case,pattern", [
    ("unknown", "dataset 'kitti' is unknown"),
    ("missing", "does not exist"),
    ("rgb", "palette \\('P' mode\\) PNG"),
    ("noframes", "has no frames"),
    ("badckpt", "shape"),
])
def test_user_errors_are_one_line_exit_2(monkeypatch, capsys, tmp_path, case, pattern):
    root = tmp_path / "davis"
    args = ["eval", "davis", "--checkpoint", "random", "--root", str(root), "--out", str(tmp_path / "res"),
            "--set", "eval.short_side=64"]
    if case == "unknown":
        args[1] = "kitti"
        tiny_davis(root)
    elif case == "missing":
        pass
    elif case == "rgb":
        tiny_davis(root, rgb_annotation=True)
    elif case == "noframes":
        tiny_davis(root)
        for f in (root / "JPEGImages/480p/s1").glob("*.jpg"):
            f.unlink()
    elif case == "badckpt":
        tiny_davis(root)
        from study.config import load_config
        from study.model import build_model

        cfg = load_config(budget="smoke", overrides={"model.preset": "mini"})   # wrong width for its own config
        state = build_model(cfg.model).state_dict()
        small = load_config(budget="smoke")
        torch.save({"model": state, "config": small.to_dict()}, tmp_path / "ckpt.pt")
        args[3] = str(tmp_path / "ckpt.pt")
    code, _, err = study(monkeypatch, capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "res").exists() and not (tmp_path / "res.tmp").exists()
