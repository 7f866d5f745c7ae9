"""The training engine: schedule, parameter groups, resume equality, non-finite loss, refused checkpoints, smoke run."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.config import RunConfig
from study.config_load import load_config
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


def test_weight_decay_groups_follow_mae_add_weight_decay():
    """MAE's add_weight_decay: every trainable parameter with 2+ dimensions decays, [CLS] and mask tokens included;
    biases and 1-D parameters do not; the fixed sin-cos position embeddings are not optimized at all."""
    cfg = load_config("smoke")
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    group = {names[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    wd = cfg.train.weight_decay
    assert group["encoder.cls_token"] == wd and group["mask_token"] == wd
    assert group["encoder.patch_embed.proj.weight"] == wd and group["encoder.blocks.0.attn.qkv.weight"] == wd
    assert group["decoder_embed.weight"] == wd and group["decoder_pred.weight"] == wd
    assert group["encoder.blocks.0.attn.qkv.bias"] == 0.0 and group["encoder.norm.weight"] == 0.0
    assert group["decoder_norm.bias"] == 0.0 and group["encoder.patch_embed.proj.bias"] == 0.0
    assert "encoder.pos_embed" not in group and "decoder_pos_embed" not in group
    for name, p in model.named_parameters():  # the rule itself, over every parameter
        if p.requires_grad:
            assert group[name] == (wd if p.ndim >= 2 else 0.0), name
    assert opt.defaults["betas"] == (0.9, 0.95)


def test_resume_gives_the_same_losses_step_for_step(videos, tmp_path):
    """At mask ratio 0.5 (32 of 64 patches visible) the masks matter: the resumed run must draw exactly the masks the
    uninterrupted one drew (its own masking generator, restored from the checkpoint)."""
    torch.use_deterministic_algorithms(True)
    try:
        exact = {"train.precision": "fp32", "model.mask_ratio": 0.5}
        cfg = smoke_cfg(**exact)
        full = train(cfg, tmp_path / "full", videos=videos, progress=False)
        assert full.steps == len(full.losses) > 4
        # an interrupted run: stop after 4 steps (the checkpoint at step 4 stays), then a new process picks it up
        short = smoke_cfg(**exact)
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


def test_gradient_accumulation_equals_one_big_batch(videos, tmp_path):
    """accum_iter 2 at batch B/2 takes the same optimizer step as accum_iter 1 at batch B (the same pairs and masks,
    the loss averaged over both halves), and the lr schedule counts optimizer steps, not micro-steps."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    torch.use_deterministic_algorithms(True)
    runs = {}
    try:
        for accum, batch in ((1, 8), (2, 4)):
            grads, params, lrs = [], [], []
            flat = lambda opt: [p for g in opt.param_groups for p in g["params"]]  # noqa: E731
            pre = register_optimizer_step_pre_hook(
                lambda opt, a, k: None if grads else grads.append([p.grad.clone() for p in flat(opt)]))
            post = register_optimizer_step_post_hook(
                lambda opt, a, k: None if params else params.append([p.detach().clone() for p in flat(opt)]))
            cfg = smoke_cfg(**{"train.precision": "fp32", "model.mask_ratio": 0.5, "train.warmup_epochs": 0.0,
                               "train.epochs": 4.0, "train.batch_size": batch, "train.accum_iter": accum})
            try:
                result = train(cfg, tmp_path / f"accum{accum}", videos=videos, progress=False,
                               on_metrics=lambda m, step: lrs.append((step, m["train.lr"])))
            finally:
                pre.remove()
                post.remove()
            runs[accum] = grads[0], params[0], lrs, result.steps
    finally:
        torch.use_deterministic_algorithms(False)
    (g1, p1, lr1, steps1), (g2, p2, lr2, steps2) = runs[1], runs[2]
    # one lr per optimizer step: the same cosine over 4 steps, starting at the peak (no warmup), so step 1 moves
    assert steps1 == steps2 == 4 and lr1 == lr2 and [s for s, _ in lr1] == [1, 2, 3, 4] and lr1[0][1] > lr1[-1][1] > 0
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(g1, g2))  # the accumulated gradient
    assert max((a - b).abs().max().item() for a, b in zip(p1, p2)) < 1e-5  # the parameters after one step


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
    assert not issubclass(NonFiniteLoss, UserError)  # a failed run, not bad input (exit 1, not 2)
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


def _study_train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.cli", "train", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


def test_a_diverging_run_is_one_line_and_exit_1(tmp_path):
    env = {**os.environ, "STUDY_STATE_DIR": str(tmp_path / "state")}
    proc = _study_train("--budget", "smoke", "--set", "train.blr=1e12", "--set", "train.epochs=4", "--out",
                        str(tmp_path / "run"), env=env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training stopped: the loss is nan at step")
    assert "Traceback" not in proc.stderr


def test_resume_with_another_config_changes_nothing_in_the_folder(tmp_path):
    env = {**os.environ, "STUDY_STATE_DIR": str(tmp_path / "state")}
    run = tmp_path / "run"
    assert _study_train("--budget", "smoke", "--set", "train.epochs=2", "--out", str(run), env=env).returncode == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()}
    proc = _study_train("--budget", "smoke", "--set", "train.epochs=2", "--set", "model.mask_ratio=0.5", "--resume",
                        "--out", str(run), env=env)
    assert proc.returncode == 2 and "model.mask_ratio" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()} == before


def _root_can_write_anyway(folder: Path) -> bool:
    """As root, chmod 555 does not stop writes: that case cannot show the refusal."""
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_out_onto_a_file_or_into_proc_is_one_line_and_exit_2(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    for out in (a_file, a_file / "run", Path("/proc/study-test-run")):
        proc = _study_train("--budget", "smoke", "--out", str(out))
        assert proc.returncode == 2, (out, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and str(out) in proc.stderr and "Traceback" not in proc.stderr
    assert a_file.read_text() == "mine" and not Path("/proc/study-test-run").exists()


def test_out_in_a_read_only_folder_is_one_line_and_exit_2(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if _root_can_write_anyway(read_only):
            pytest.skip("running as root: a read-only folder is writable")
        for out in (read_only, read_only / "run"):
            proc = _study_train("--budget", "smoke", "--out", str(out))
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert "cannot" in proc.stderr and "Traceback" not in proc.stderr
        assert not list(read_only.iterdir())
    finally:
        read_only.chmod(0o755)


@pytest.mark.parametrize("flag, message", [
    (["--set", "train.epochs=nan"], "train.epochs = nan is not a finite number"),
    (["--set", "train.epochs=inf"], "train.epochs = inf is not a finite number"),
    (["--set", "model.mask_ratio=nan"], "model.mask_ratio = nan is not a finite number"),
    (["--budget", "smoke", "--set", "model.mask_ratio=0.99"], "model.img_size = 64 / model.patch_size = 8"),
    (["--budget", "smoke", "--set", "model.mask_strategy=tube"], "model.mask_ratio_f1 (0.0) must equal"),
    (["--set", "train.epochs=-1"], "train.epochs"),
    (["--set", "model.nope=1"], "unknown config key 'model.nope'"),
    (["--set", "data.augmentation=blur"], "data.augmentation"),
    (["--set", "train.batch_size=abc"], "train.batch_size must be int"),
    (["--budget", "huge"], "--budget"),
    (["--budget", "smoke", "--set", "data.root=/no/such/videos"], "data.root"),
])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, flag, message):
    out = tmp_path / "run"
    proc = _study_train(*flag, "--out", str(out))
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
