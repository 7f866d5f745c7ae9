"""DDP rehearsed on the CPU: torchrun with 2 gloo processes steps exactly as one process with the same global batch,
only rank 0 writes, a resumed DDP run continues exactly, and a study's trial can train on 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.train.state import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ddp")]

# Smoke model, fp32, 6 optimizer steps of a global batch of 8 pairs (4 videos x repeated sampling 2); mask ratio 0.75 so
# f2 keeps visible patches and the masking RNG matters; a checkpoint every 3 steps.
RECIPE = {"train.precision": "fp32", "train.epochs": 4.0, "train.checkpoint_every": 3, "train.log_every": 1,
          "train.recon_pairs": 1, "model.mask_ratio": 0.75, "data.repeated_sampling": 2}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def sets(**extra) -> list[str]:
    return [a for k, v in {**RECIPE, **extra}.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def run(cmd: list[str], tmp: Path, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "STUDY_STATE_DIR": str(tmp / "state"), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300)


def comparable(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every parameter but the attention key biases: softmax ignores a shift shared by all keys, so their gradient is
    zero in exact arithmetic and pure rounding noise in floats, which AdamW normalizes into steps of up to lr."""
    out = {}
    for name, t in params.items():
        if name.endswith("qkv.bias"):
            d = t.shape[0] // 3
            out[name + "[q]"], out[name + "[v]"] = t[:d], t[2 * d:]
        elif name.endswith(".kv.bias"):
            out[name + "[v]"] = t[t.shape[0] // 2:]
        else:
            out[name] = t
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted: 2 processes x 4 pairs under torchrun, and 1 process x 8 pairs (the same global batch)."""
    tmp = tmp_path_factory.mktemp("ddp")
    two = run([*TORCHRUN, "-m", "study.train", "--budget", "smoke", *sets(**{"train.batch_size": 4}),
               "--out", str(tmp / "two")], tmp)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run([sys.executable, "-m", "study.train", "--budget", "smoke", *sets(**{"train.batch_size": 8}),
               "--out", str(tmp / "one")], tmp)
    assert one.returncode == 0, one.stderr[-3000:]
    # and a crashed one: every rank in its own folder, all stopping after step 3 (tests.ddp_helpers)
    crashed = run([*TORCHRUN, "-m", "tests.ddp_helpers", str(tmp / "per-rank"), "3",
                   json.dumps({**RECIPE, "train.batch_size": 4})], tmp)
    return {"tmp": tmp, "two": tmp / "two", "one": tmp / "one", "two_stdout": two.stdout, "per_rank": tmp / "per-rank",
            "crashed_rc": crashed.returncode}


def test_two_processes_step_as_one_process_with_the_same_global_batch(runs):
    two, one = load_checkpoint(runs["two"] / "checkpoint.pt"), load_checkpoint(runs["one"] / "checkpoint.pt")
    assert int(two["step"]) == int(one["step"]) == 6 and int(two["world_size"]) == 2
    # Same batches and masks: the per-step losses (the global batch's mean, all-reduced) agree to float32 rounding
    # (~1e-7); a rank reading other videos or drawing other masks changes them by ~3e-3 from the first step on.
    assert two["losses"].tolist() == pytest.approx(one["losses"].tolist(), rel=1e-6, abs=0)
    # Parameters: the gradient all-reduce and the half-size matmuls sum in another order than one process does, which
    # leaves ~1e-7 differences after 6 AdamW steps (measured max 1.2e-7); per-rank seeds moved them by 3e-3. 1e-5
    # is 80x the rounding and 300x below that bug.
    a, b = comparable(two["model"]), comparable(one["model"])
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst


def test_only_rank_0_prints_logs_and_checkpoints(runs):
    out = runs["two_stdout"]
    assert out.count("run folder:") == 1 and out.count("done: 6 steps") == 1, out
    per_rank = runs["per_rank"]
    assert runs["crashed_rc"] != 0  # every rank stopped itself after step 3
    assert json.loads((per_rank / "metrics-rank0.json").read_text()) == [1, 2, 3]
    assert json.loads((per_rank / "metrics-rank1.json").read_text()) == []
    assert int(load_checkpoint(per_rank / "rank0" / "checkpoint.pt")["step"]) == 3
    assert not any((per_rank / "rank1").iterdir())  # rank 1 wrote nothing into its folder


def test_a_resumed_ddp_run_continues_exactly(runs):
    """Rank 0's step-3 checkpoint of the crashed run, resumed under torchrun, ends where the uninterrupted run
    ended: the same losses and the same parameters, bit for bit (same process count, same reduction order)."""
    tmp = runs["tmp"]
    crashed = runs["per_rank"] / "rank0"
    assert int(load_checkpoint(crashed / "checkpoint.pt")["step"]) == 3
    resumed = tmp / "resumed"
    shutil.copytree(crashed, resumed)
    proc = run([*TORCHRUN, "-m", "study.train", "--budget", "smoke", *sets(**{"train.batch_size": 4}),
                "--out", str(resumed)], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from its checkpoint" in proc.stdout
    done, full = load_checkpoint(resumed / "checkpoint.pt"), load_checkpoint(runs["two"] / "checkpoint.pt")
    assert done["losses"].tolist() == full["losses"].tolist()
    assert all(torch.equal(done["model"][k], full["model"][k]) for k in full["model"])


def test_resuming_with_another_process_count_is_refused_in_one_line(runs, tmp_path):
    shutil.copytree(runs["two"], tmp_path / "run")
    proc = run([sys.executable, "-m", "study.train", "--budget", "smoke", *sets(**{"train.batch_size": 4}),
                "--out", str(tmp_path / "run")], runs["tmp"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "written by 2 process(es)" in proc.stderr


def test_torchrun_without_out_is_refused_in_one_line(tmp_path):
    proc = run([sys.executable, "-m", "study.train", "--budget", "smoke"], tmp_path, WORLD_SIZE="2", RANK="0")
    assert proc.returncode == 2 and "give the run folder with --out" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "runs").exists()


def test_a_study_trial_trains_on_two_processes_and_the_worker_evaluates_and_logs(tmp_path):
    """`study run --procs-per-worker 2`: each trial's training runs under torchrun in a subprocess on its run folder
    (the effective batch kept: 2 processes x 4 pairs), its metrics reach MLflow, the worker evaluates."""
    from collections import Counter

    from mlflow.tracking import MlflowClient

    from tests.orchestrate_helpers import TWO_CELLS, make_experiments, study_cli

    make_experiments(tmp_path, {"two": TWO_CELLS + '[base]\n"train.epochs" = 4.0\n'})
    r = study_cli(tmp_path, "run", "two", "--budget", "smoke", "--procs-per-worker", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("two [smoke]").experiment_id])
    trials = [x for x in runs if x.data.tags.get("study.role") == "trial"]
    assert Counter(x.info.status for x in trials) == {"FINISHED": 2}
    for run in trials:
        assert "davis.jf_mean" in run.data.metrics  # evaluated by the worker after torchrun ended
        rdir = Path(run.data.tags["study.run_dir"])
        state = load_checkpoint(rdir / "checkpoint.pt")
        assert int(state["world_size"]) == 2 and int(state["config"]["train"]["batch_size"]) == 4
        # rank 0's logged losses (every train.log_every = 5 steps, and the last) reached the worker's MLflow run
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train.loss")}
        steps = len(state["losses"])
        assert logged == pytest.approx({k: state["losses"][k - 1].item() for k in (5, steps)}) and steps == 6


def test_a_user_error_in_the_ddp_subprocess_comes_back_as_its_one_line(tmp_path):
    from study.config_load import load_config
    from study.errors import UserError
    from study.train.ddp import train_in_subprocess

    cfg = load_config("smoke", overrides={"data.root": str(tmp_path / "no-such-videos"), "train.accum_iter": 2})
    with pytest.raises(UserError, match="no-such-videos") as err:
        train_in_subprocess(cfg, tmp_path / "run", 2)
    assert "\n" not in str(err.value) and not (tmp_path / "run" / "checkpoint.pt").exists()
