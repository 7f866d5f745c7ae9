"""Shared by the orchestration tests: a tiny study in a tmp experiments folder, and a fake trial that behaves like
study.trial.run_trial where the scheduler can see it (checkpoints in its run folder and resumes from them, logs through
the hooks, fails on demand) but takes a fraction of a second. Run as a module it is `study run` with that trial."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_STUDY = """title = "tiny"
question = "a test study"
seeds = 2
[axes]
"model.mask_ratio" = [0.5, 0.75, 0.9]
[default]
"model.mask_ratio" = 0.9
"""


TWO_CELLS = """title = "two cells"
question = "a real smoke study: two mask ratios, one seed"
seeds = 1
[axes]
"model.mask_ratio" = [0.75, 0.9]
[default]
"model.mask_ratio" = 0.9
"""


def make_experiments(tmp: Path, studies: dict[str, str] | None = None) -> Path:
    exp = tmp / "experiments"
    (exp / "studies").mkdir(parents=True)
    shutil.copytree(REPO / "experiments" / "budgets", exp / "budgets")
    for name, text in (studies or {"tiny": TINY_STUDY}).items():
        (exp / "studies" / f"{name}.toml").write_text(text)
    return exp


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "STUDY_EXPERIMENTS": str(tmp / "experiments"), "STUDY_STATE_DIR": str(tmp / "state"),
            "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": "", **extra}


def _phase(state: Path, phase: str) -> None:
    """One line per step and per evaluation in state/phases.log: where the fault-injection test aims its kills."""
    with open(state / "phases.log", "a") as f:
        f.write(f"{phase} {os.getpid()} {time.time()}\n")


def fake_trial(cfg, run_dir: Path, hooks) -> dict[str, float]:
    """FAKE_STEPS steps of FAKE_STEP_S seconds, a checkpoint after each, then an evaluation of FAKE_EVAL_S seconds
    (redone from the start when interrupted, as the real one); J&F = 100 x mask_ratio + seed."""
    state = run_dir.parents[2]
    steps, pause = int(os.environ.get("FAKE_STEPS", "3")), float(os.environ.get("FAKE_STEP_S", "0.01"))
    ckpt = run_dir / "ckpt.json"
    start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    with open(state / "calls.log", "a") as f:
        f.write(json.dumps({"mask_ratio": cfg.model.mask_ratio, "seed": cfg.train.seed, "start": start,
                            "blr": cfg.train.blr, "temperature": cfg.eval.temperature,
                            "pid": os.getpid(), "t": time.time()}) + "\n")
    if (state / f"fail-{cfg.model.mask_ratio}").exists():
        raise RuntimeError(f"boom at mask ratio {cfg.model.mask_ratio}")
    (run_dir / "config.toml").write_text(f"mask_ratio = {cfg.model.mask_ratio}\n")
    hooks.log_artifact(run_dir / "config.toml")
    for step in range(start + 1, steps + 1):
        time.sleep(pause)
        hooks.log_metrics({"train.loss": 1.0 / step, "train.lr": 1e-3}, step)
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step}))
        tmp.replace(ckpt)
        _phase(state, "train")
    if float(os.environ.get("FAKE_EVAL_S", "0")):
        _phase(state, "eval")
        time.sleep(float(os.environ["FAKE_EVAL_S"]))
    metrics = {"davis.jf_mean": 100 * cfg.model.mask_ratio + cfg.train.seed, "train.steps": float(steps),
               "train.resumed_from": float(start)}
    hooks.log_metrics(metrics, steps)
    return metrics


def fake_baseline(cfg, out_dir: Path, hooks) -> dict[str, float]:
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"davis.jf_mean": 10.0}
    hooks.log_metrics(metrics, 0)
    return metrics


def run_fake(tmp: Path, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """`study run` with the fake trial, in a subprocess (as a user would, so several workers are real processes)."""
    return subprocess.run([sys.executable, "-m", "tests.orchestrate_helpers", *args], cwd=REPO, env=env_for(tmp, **env),
                          capture_output=True, text=True, timeout=timeout)


def study_cli(tmp: Path, *args: str, timeout: float = 400, **env: str) -> subprocess.CompletedProcess:
    """The real `study` CLI in a subprocess, its state and experiments under tmp."""
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env_for(tmp, **env),
                          capture_output=True, text=True, timeout=timeout)


def calls(tmp: Path) -> list[dict]:
    path = tmp / "state" / "calls.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _main(argv: list[str]) -> None:
    """argv: NAME [--workers N] [--retry-failed] [--storage URL] [--seeds K] [--cells A,B] [--set KEY=VALUE ...]
    [--dry-run]"""
    from study.errors import UserError
    from study.orchestrate import run_command
    from tests.orchestrate_helpers import fake_baseline, fake_trial  # by module name, not __main__, for the workers

    name, opts = argv[0], argv[1:]
    get = lambda flag, default=None: opts[opts.index(flag) + 1] if flag in opts else default  # noqa: E731
    sets = [opts[i + 1] for i, o in enumerate(opts) if o == "--set"]
    try:
        run_command(name, budget="smoke", workers=int(get("--workers", 1)), storage=get("--storage"),
                    seeds=int(get("--seeds")) if get("--seeds") else None, retry_failed="--retry-failed" in opts,
                    overrides=sets, dry_run="--dry-run" in opts, trial_fn=fake_trial, baseline_fn=fake_baseline,
                    cells=get("--cells"))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    _main(sys.argv[1:])
