"""`study train`: one run from the command line, no Optuna, no MLflow."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from study.config import load_config, parse_set, state_dir, to_toml
from study.errors import UserError


def train_command(config: str | None, budget: str | None, overrides: list[str], out: str | None, resume: bool) -> None:
    cfg = load_config(budget, config_file=config, overrides=parse_set(overrides))
    if budget == "paper" and not cfg.data.root:
        raise UserError("the paper budget trains on real video: set data.root in experiments/local.toml "
                        "(or --set data.root=/path/to/kinetics/train)")
    runs = state_dir(cfg) / "runs" / "train"
    if out:
        run_dir = Path(out)
    elif resume:
        previous = sorted(runs.glob("*/checkpoint.pt"), key=lambda p: p.stat().st_mtime)
        if not previous:
            raise UserError(f"--resume: no earlier run with a checkpoint under {runs}; give the run folder with --out")
        run_dir = previous[-1].parent
    else:
        run_dir = runs / time.strftime("%Y%m%d-%H%M%S")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file; give a folder")
    if resume and not (run_dir / "checkpoint.pt").exists():
        raise UserError(f"--resume: {run_dir} has no checkpoint.pt; drop --resume to start a new run there")

    from study.train.engine import train  # torch and timm load here, not at `study --help`

    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(cfg))
    resuming = (run_dir / "checkpoint.pt").exists()
    print(f"run folder: {run_dir}" + (" (resuming from its checkpoint)" if resuming else ""))
    try:
        result = train(cfg, run_dir, resume=True)
    except UserError:
        if created and not (run_dir / "checkpoint.pt").exists():  # a run that never stepped leaves nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    losses = result.losses
    if result.skipped_videos:
        print(f"skipped {len(result.skipped_videos)} unreadable video(s): {', '.join(result.skipped_videos[:5])}")
    if losses:
        k = max(1, min(10, len(losses) // 10))
        print(f"done: {result.steps} steps in {result.wall_s:.1f}s, loss {sum(losses[:k]) / k:.4f} -> "
              f"{sum(losses[-k:]) / k:.4f} (mean of the first and last {k} steps)")
    print(f"checkpoint: {run_dir / 'checkpoint.pt'}")
    if (run_dir / "recon.png").exists():
        print(f"reconstructions: {run_dir / 'recon.png'}")
