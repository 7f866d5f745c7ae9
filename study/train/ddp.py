"""A trial's training on several processes (DDP): torchrun in a subprocess of the worker, on the trial's run folder.

The worker stays one process (it holds the Optuna trial, the MLflow run and the heartbeat); only the training runs as
`python -m torch.distributed.run --standalone --nproc_per_node N -m study.train.ddp RUN_DIR`. Every rank reads
RUN_DIR/ddp_config.toml and trains in RUN_DIR, resuming from its checkpoint like any run; rank 0 appends each metrics
call to RUN_DIR/ddp_metrics.jsonl, which the worker forwards to its `on_metrics` while the subprocess runs, and writes
RUN_DIR/ddp_result.json at the end. The worker then loads the final checkpoint and evaluates as after `train`.

Processes share the recipe's effective batch (batch_size x accum_iter x processes stays what the config says), so a
cell trains the same schedule whether it runs on one process or several.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from study.atomic import write_text
from study.config import RunConfig, to_toml
from study.errors import UserError

PROCS_ENV = "STUDY_PROCS_PER_TRIAL"  # set by the launchers (--procs-per-worker, --gpus-per-worker); read by trials
CONFIG, METRICS, RESULT, ERROR = "ddp_config.toml", "ddp_metrics.jsonl", "ddp_result.json", "ddp_error.txt"


def procs_per_trial() -> int:
    """Training processes per trial as the launcher set them (1 = train in the worker's own process)."""
    raw = os.environ.get(PROCS_ENV, "1")
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"{PROCS_ENV}={raw!r}: give a whole number of processes >= 1")
    return int(raw)


def split_batch(cfg: RunConfig, nproc: int) -> RunConfig:
    """The config each of `nproc` processes runs so the effective batch stays the recipe's: accum_iter / nproc when
    it divides, else batch_size / nproc (still a multiple of data.repeated_sampling)."""
    t, r = cfg.train, cfg.data.repeated_sampling
    out = RunConfig.from_dict(cfg.to_dict())
    if t.accum_iter % nproc == 0:
        out.train.accum_iter = t.accum_iter // nproc
    elif t.batch_size % (nproc * r) == 0:
        out.train.batch_size = t.batch_size // nproc
    else:
        raise UserError(f"{nproc} processes per trial divide neither train.accum_iter = {t.accum_iter} nor "
                        f"train.batch_size = {t.batch_size} (in multiples of data.repeated_sampling = {r}); "
                        "set one of them to a multiple of the process count")
    return out


def train_in_subprocess(cfg: RunConfig, run_dir: Path, nproc: int, on_metrics=None, poll_s: float = 0.5):
    """Train `cfg` in `run_dir` on `nproc` processes under torchrun; -> the TrainResult `train` would give.
    A UserError in the subprocess (bad data, non-finite loss) comes back as a UserError with its line."""
    import torch

    from study.model import build_model
    from study.train.engine import NonFiniteLoss, TrainResult
    from study.train.state import CHECKPOINT, load_checkpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / CONFIG, to_toml(split_batch(cfg, nproc)))
    for name in (METRICS, RESULT, ERROR):
        (run_dir / name).unlink(missing_ok=True)
    threads = max(1, torch.get_num_threads() // nproc)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "study.train.ddp", str(run_dir)]
    proc = subprocess.Popen(cmd, env=env)
    forwarded = 0
    try:
        while proc.poll() is None:
            time.sleep(poll_s)
            forwarded = _forward(run_dir / METRICS, forwarded, on_metrics)
        forwarded = _forward(run_dir / METRICS, forwarded, on_metrics)
    finally:
        if proc.poll() is None:  # the worker is stopping (Ctrl-C, requeue): the ranks stop with it
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if proc.returncode != 0:
        if (run_dir / ERROR).exists():  # "<exception class>: <its line>", from rank 0
            kind, _, message = (run_dir / ERROR).read_text().strip().partition(": ")
            raise (NonFiniteLoss if kind == NonFiniteLoss.__name__ else UserError)(message)
        raise RuntimeError(f"torchrun ({nproc} processes) exited with {proc.returncode}; its output is in the worker's log")
    summary = json.loads((run_dir / RESULT).read_text())
    state = load_checkpoint(run_dir / CHECKPOINT)
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    return TrainResult(model=model, steps=int(state["step"]), losses=state["losses"].tolist(), wall_s=summary["wall_s"],
                       skipped_videos=summary["skipped_videos"], resumed_from=summary["resumed_from"], run_dir=run_dir)


def _forward(path: Path, offset: int, on_metrics) -> int:
    """Hand the complete lines after byte `offset` to on_metrics; -> the new offset."""
    if on_metrics is None or not path.exists():
        return offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
    for line in chunk[:end].splitlines():
        record = json.loads(line)
        on_metrics(record["metrics"], record["step"])
    return offset + end


def main(run_dir: Path) -> None:
    """One rank under torchrun: train the run folder's config there; rank 0 reports metrics and the result."""
    from study.train.engine import NonFiniteLoss, train

    cfg = RunConfig.from_dict(tomllib.loads((run_dir / CONFIG).read_text()))
    lead = int(os.environ.get("RANK", 0)) == 0
    sink = open(run_dir / METRICS, "a") if lead else None

    def report(metrics: dict[str, float], step: int) -> None:
        sink.write(json.dumps({"step": step, "metrics": metrics}) + "\n")
        sink.flush()

    try:
        result = train(cfg, run_dir, resume=True, on_metrics=report if lead else None, progress=False)
    except (UserError, NonFiniteLoss) as e:
        if lead:
            write_text(run_dir / ERROR, f"{type(e).__name__}: {e}")
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        if sink:
            sink.close()
    if lead:
        write_text(run_dir / RESULT, json.dumps({"steps": result.steps, "wall_s": result.wall_s,
                                                 "skipped_videos": result.skipped_videos,
                                                 "resumed_from": result.resumed_from}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
