"""`study run --launcher slurm` against a real SLURM (the one-node cluster `.ci/slurm start` runs on this machine):
a smoke study as a 2-task array job, and a task signalled mid-trial that is requeued and resumes its cell.

Without a SLURM controller these tests skip with the reason, except under CI=true, where that is a failure."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from study.orchestrate.slurm import SlurmOptions, executor_parameters, parse_time
from tests.orchestrate_helpers import TWO_CELLS, make_experiments, study_cli

STUDY = "two"
# the same two cells with trials long enough to be signalled mid-training (a checkpoint every 20 of 1,500 steps)
LONG_CELLS = TWO_CELLS + '[base]\n"train.epochs" = 1000.0\n"train.checkpoint_every" = 20\n'
pytestmark = pytest.mark.xdist_group("slurm")  # the cluster has 2 CPUs: one SLURM test at a time


def slurm_missing() -> str | None:
    """Why no SLURM job can run here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo, sbatch) on PATH; `bash .ci/slurm start` installs and starts a one-node cluster"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo got no answer from slurmctld in 10 s; `bash .ci/slurm start`"
    if not any(s.strip().rstrip("*") in ("idle", "mixed", "allocated") for s in out.stdout.split()):
        return f"no SLURM node up ({(out.stdout or out.stderr).strip() or 'sinfo says nothing'}); `bash .ci/slurm start`"
    return None


@pytest.fixture
def slurm():
    import os

    reason = slurm_missing()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI needs the SLURM cluster of .ci/slurm: {reason}")
    if reason:
        pytest.skip(reason)


def submit(tmp: Path, study_text: str = TWO_CELLS) -> str:
    """`study run two --launcher slurm --workers 2` on CPU workers; -> the job id it printed. It must return at once."""
    make_experiments(tmp, {STUDY: study_text})
    t0 = time.monotonic()
    r = study_cli(tmp, "run", STUDY, "--budget", "smoke", "--launcher", "slurm", "--workers", "2",
                  "--gpus-per-worker", "0", "--time", "20", "--shared-state", str(tmp / "state"), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - t0 < 90  # submits and returns; it does not wait for the workers
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("submitted SLURM job"))
    return line.split()[3].rstrip(":")


def wait_for(job_id: str, state: Path, timeout: float = 400, until=None) -> None:
    """Until the job has left SLURM's queue (or `until()` is true); on timeout cancel it and show the workers' logs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if until is not None and until():
            return
        live = subprocess.run(["squeue", "-h", "-r", "-j", job_id, "-o", "%i %T"], capture_output=True, text=True)
        if until is None and not live.stdout.strip():
            return
        time.sleep(2)
    subprocess.run(["scancel", job_id])
    logs = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted(state.glob("slurm/*/*.out")))
    pytest.fail(f"SLURM job {job_id} did not finish in {timeout:.0f} s\n{logs}")


def runs(tmp: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'state' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"{STUDY} [smoke]")
    return client.search_runs([exp.experiment_id])


def check_every_cell_once(tmp: Path) -> dict[str, object]:
    """One FINISHED parent; exactly one FINISHED child run per cell and no other; Optuna agrees. -> cell: run."""
    all_runs = runs(tmp)
    parents = [r for r in all_runs if r.data.tags.get("study.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in all_runs if r is not parents[0]]
    assert Counter((r.data.tags["study.cell"], r.info.status) for r in children) == {
        ("random init", "FINISHED"): 1, ("0.75", "FINISHED"): 1, ("0.9", "FINISHED"): 1}
    assert all("davis.jf_mean" in r.data.metrics for r in children)
    import optuna

    study = optuna.load_study(study_name=f"{STUDY} [smoke]", storage=f"sqlite:///{tmp / 'state' / 'optuna.db'}")
    done = Counter(t.user_attrs["cell"] for t in study.get_trials() if t.state.name == "COMPLETE")
    assert done == {"random init": 1, "0.75": 1, "0.9": 1}
    return {r.data.tags["study.cell"]: r for r in children}


@pytest.mark.slow
def test_a_smoke_study_runs_as_a_slurm_array_job(slurm, tmp_path):
    job_id = submit(tmp_path)
    wait_for(job_id, tmp_path / "state")
    check_every_cell_once(tmp_path)
    status = study_cli(tmp_path, "status", STUDY, "--budget", "smoke")
    assert status.returncode == 0, status.stderr
    assert f"SLURM job {job_id}" in status.stdout
    assert status.stdout.count("completed") == 2, status.stdout  # both array tasks, as scontrol reports them
    import optuna

    study = optuna.load_study(study_name=f"{STUDY} [smoke]", storage=f"sqlite:///{tmp_path / 'state' / 'optuna.db'}")
    assert study.user_attrs["slurm_jobs"] == [job_id]
    assert {k for k in study.user_attrs if k.startswith("slurm_task:")} == {f"slurm_task:{job_id}_0",
                                                                            f"slurm_task:{job_id}_1"}


@pytest.mark.slow
def test_a_signalled_task_is_requeued_and_its_cell_resumes_from_the_checkpoint(slurm, tmp_path):
    """USR2 is what SLURM sends before a task's time limit (sbatch --signal, set by submitit) and what submitit's
    preemption handling acts on: submitit checkpoints the worker and requeues the task."""
    job_id = submit(tmp_path, LONG_CELLS)
    state = tmp_path / "state"

    def checkpointed() -> Path | None:
        for ckpt in state.glob("runs/*/*/checkpoint.pt"):
            lock = ckpt.parent / ".lock"
            if lock.exists() and ckpt.stat().st_size > 0:
                return ckpt.parent
        return None

    wait_for(job_id, state, timeout=300, until=checkpointed)
    import optuna

    study = optuna.load_study(study_name=f"{STUDY} [smoke]", storage=f"sqlite:///{state / 'optuna.db'}")
    run_dir = str(checkpointed())
    trial = next(t for t in study.get_trials() if t.state.name == "RUNNING" and t.user_attrs.get("run_dir") == run_dir)
    who = (trial.user_attrs["host"], trial.user_attrs["pid"])
    task = next(k.removeprefix("slurm_task:") for k, v in study.user_attrs.items()
                if k.startswith("slurm_task:") and (v["host"], v["pid"]) == who)
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    wait_for(job_id, state, timeout=500)
    cells = check_every_cell_once(tmp_path)
    resumed = cells[trial.user_attrs["cell"]]
    assert resumed.data.metrics["train.resumed_from"] > 0  # the resumed trial started from the checkpoint
    assert resumed.data.metrics["train.resumed_from"] % 20 == 0
    info = subprocess.run(["scontrol", "-o", "show", "job", task], capture_output=True, text=True).stdout
    assert "Restarts=1" in info, info  # submitit requeued the signalled task
    # marked interrupted by the signalled worker itself as it exited (not later, by a heartbeat or lock check)
    interrupted = {t.number: t.user_attrs["interrupted"] for t in study.get_trials() if "interrupted" in t.user_attrs}
    assert interrupted == {trial.number: "SLURM task signalled"}


def test_flags_map_onto_submitit_parameters():
    p = executor_parameters(SlurmOptions(workers=4, gpus_per_worker=2, partition="gpu", time="1-12:00:00",
                                         account="lab", slurm_set=["cpus_per_task=10", "mem=64G", "reservation=x"]),
                            "study-mask_ratio")
    assert p == {"job_name": "study-mask_ratio", "time": 36 * 60, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 10,
                 "array_parallelism": 4, "stderr_to_stdout": True, "gpus_per_node": 2, "partition": "gpu",
                 "account": "lab", "mem": "64G", "additional_parameters": {"reservation": "x"}}
    assert SlurmOptions(gpus_per_worker=2).procs_per_trial == 2
    assert SlurmOptions(gpus_per_worker=0, procs_per_worker=2).procs_per_trial == 2
    assert [parse_time(t) for t in ("90", "2:30", "12:00:00", "1-00", "0-0:0:1")] == [90, 3, 720, 1440, 1]


@pytest.mark.parametrize("args, message", [
    ([], "--launcher slurm with the local SQLite default of --storage and --tracking-uri"),
    (["--storage", "postgresql://db/x", "--tracking-uri", "http://mlflow:5000", "--time", "soon"], "--time 'soon'"),
    (["--shared-state", "S", "--slurm-set", "nodes=2"], "--slurm-set nodes"),
    (["--shared-state", "S", "--slurm-set", "cpus"], "--slurm-set 'cpus': write KEY=VALUE"),
])
def test_bad_slurm_launches_are_refused_in_one_line_before_anything_is_written(tmp_path, args, message):
    make_experiments(tmp_path, {STUDY: TWO_CELLS})
    args = [str(tmp_path / "shared") if a == "S" else a for a in args]
    r = study_cli(tmp_path, "run", STUDY, "--budget", "smoke", "--launcher", "slurm", *args, timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state").exists() and not (tmp_path / "shared").exists()


def test_slurm_flags_without_the_slurm_launcher_are_refused(tmp_path):
    make_experiments(tmp_path, {STUDY: TWO_CELLS})
    r = study_cli(tmp_path, "run", STUDY, "--budget", "smoke", "--partition", "gpu", timeout=60)
    assert r.returncode == 2 and "--partition is an option of --launcher slurm" in r.stderr
    assert not (tmp_path / "state").exists()


def test_sbatch_refusing_the_job_is_one_line(slurm, tmp_path):
    make_experiments(tmp_path, {STUDY: TWO_CELLS})
    r = study_cli(tmp_path, "run", STUDY, "--budget", "smoke", "--launcher", "slurm", "--gpus-per-worker", "0",
                  "--partition", "no_such_partition", "--shared-state", str(tmp_path / "state"), timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: sbatch refused the job:") and "partition" in r.stderr.lower()
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_worker_submitit_pickles_carries_the_job():
    """submitit pickles the worker for the nodes: it must carry only plain values."""
    import cloudpickle

    from study.orchestrate.slurm import SlurmWorker
    from study.orchestrate.worker import Job

    w = SlurmWorker(Job("two", "smoke", "sqlite:///x", "sqlite:///y", "1", "r", "/s"), 2)
    back = cloudpickle.loads(cloudpickle.dumps(w))
    assert back.job == w.job and back.procs_per_trial == 2
