"""The training engine: schedule, parameter groups, resume equality, non-finite loss, refused checkpoints, smoke run."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.config import RunConfig, load_config
from study.errors import UserError
from study.model import build_model
from study.train.engine import NonFiniteLoss, build_optimizer, train
from study.train.state import Schedule, learning_rate, load_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    from study.data.synth_videos import write_video_set
    from study.data.video import find_videos

    out = tmp_path_factory.mktemp("vids") / "set"
    write_video_set(out, n_videos=8, n_frames=12, size=64, seed=3)
    return find_videos(out)


def smoke_cfg(**overrides) -> RunConfig:
    base = {"train.epochs": 6.0, "train.checkpoint_every": 2, "train.log_every": 1, "train.recon_pairs": 0}
    return load_config("smoke", overrides={**base, **overrides})


def test_lr_schedule_matches_the_formula():
    t = RunConfig().train
    t.epochs, t.warmup_epochs, t.blr, t.min_lr = 10.0, 2.0, 1e-3, 1e-5
    s = Schedule(n_videos=256, repeated_sampling=2, micro_batch=32, accum_iter=2, world_size=1, epochs=t.epochs)
    peak = 1e-3 * 64 / 256  # blr x effective batch / 256
    per_epoch = s.steps_per_epoch  # 256 videos / 16 videos per batch = 16 batches per pass = 8 per effective epoch; / 2 accum
    assert per_epoch == 4.0 and s.total_steps == 40
    assert learning_rate(0, s, t) == 0.0                                   # warmup start
    assert learning_rate(4, s, t) == pytest.approx(peak / 2)               # mid-warmup (epoch 1 of 2)
    assert learning_rate(8, s, t) == pytest.approx(peak)                   # warmup end
    assert learning_rate(24, s, t) == pytest.approx(1e-5 + (peak - 1e-5) * 0.5)  # mid-cosine (epoch 6 of 2..10)
    assert learning_rate(40, s, t) == pytest.approx(1e-5)                  # end = min_lr


def test_no_weight_decay_on_norms_biases_and_tokens():
    cfg = load_config("smoke")
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = [names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    plain = [names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decayed and plain
    assert all(not n.endswith(".bias") and "norm" not in n and "token" not in n for n in decayed)
    assert any(n.endswith("qkv.weight") for n in decayed)
    assert any("norm" in n for n in plain) and any(n.endswith(".bias") for n in plain)
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, cfg.train.weight_decay}


def test_resume_gives_the_same_losses_step_for_step(videos, tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        cfg = smoke_cfg(**{"train.precision": "fp32"})
        full = train(cfg, tmp_path / "full", videos=videos, progress=False)
        assert full.steps == len(full.losses) > 4
        # an interrupted run: stop after 4 steps (the checkpoint at step 4 stays), then a new process picks it up
        short = smoke_cfg(**{"train.precision": "fp32"})
        part_dir = tmp_path / "part"

        class Interrupt(Exception):
            pass

        def stop_at_4(model, step, epoch):
            if step == 4:
                raise Interrupt
            return False

        with pytest.raises(Interrupt):
            train(short, part_dir, videos=videos, progress=False, periodic=(1, stop_at_4))
        assert int(load_checkpoint(part_dir / "checkpoint.pt")["step"]) == 4
        resumed = train(short, part_dir, videos=videos, progress=False)
        assert resumed.resumed_from == 4
        assert resumed.losses == full.losses  # exact: same batches, masks and updates
    finally:
        torch.use_deterministic_algorithms(False)


def test_resume_with_another_model_is_refused(videos, tmp_path):
    train(smoke_cfg(), tmp_path / "r", videos=videos, progress=False)
    with pytest.raises(UserError, match="model.mask_ratio"):
        train(smoke_cfg(**{"model.mask_ratio": 0.5}), tmp_path / "r", videos=videos, progress=False)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(videos, tmp_path, monkeypatch):
    from study.model.siammae import SiamMAE

    real = SiamMAE.forward_loss
    calls = {"n": 0}

    def poisoned(self, f2, pred, mask):
        calls["n"] += 1
        loss = real(self, f2, pred, mask)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(SiamMAE, "forward_loss", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 5; the last good checkpoint is .*checkpoint.pt"):
        train(smoke_cfg(), tmp_path / "nan", videos=videos, progress=False)
    state = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert int(state["step"]) == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values())


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_a_callable_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"model": _Payload(marker)}, f)
    with pytest.raises(UserError, match="evil.pt"):
        load_checkpoint(evil)
    assert not marker.exists()
    (tmp_path / "run").mkdir()
    evil.rename(tmp_path / "run" / "checkpoint.pt")
    proc = subprocess.run([sys.executable, "-m", "study.cli", "train", "--budget", "smoke", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "checkpoint.pt" in proc.stderr
    assert not marker.exists()


def test_study_train_smoke_finishes_and_its_loss_falls(tmp_path):
    env = {**os.environ, "STUDY_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "study.cli", "train", "--budget", "smoke", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    losses = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["losses"].tolist()
    k = len(losses) // 5
    assert sum(losses[-k:]) / k < 0.9 * sum(losses[:k]) / k
    assert (tmp_path / "run" / "recon.png").stat().st_size > 1000
    assert "done:" in proc.stdout


@pytest.mark.parametrize("flag, message", [
    (["--set", "train.epochs=-1"], "train.epochs"),
    (["--set", "model.nope=1"], "unknown config key 'model.nope'"),
    (["--set", "data.augmentation=blur"], "data.augmentation"),
    (["--set", "train.batch_size=abc"], "train.batch_size must be int"),
    (["--budget", "huge"], "--budget"),
    (["--budget", "smoke", "--set", "data.root=/no/such/videos"], "data.root"),
])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, flag, message):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "study.cli", "train", *flag, "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
