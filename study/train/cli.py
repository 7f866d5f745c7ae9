"""`study train`: one run from the command line, no Optuna, no MLflow."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from study.atomic import write_text
from study.config import state_dir, to_toml
from study.config_load import load_config, parse_set
from study.errors import UserError


def train_command(config: str | None, budget: str | None, overrides: list[str], out: str | None, resume: bool) -> None:
    cfg = load_config(budget, config_file=config, overrides=parse_set(overrides))
    if budget == "paper" and not cfg.data.root:
        raise UserError("the paper budget trains on real video: set data.root in experiments/local.toml "
                        "(or --set data.root=/path/to/kinetics/train)")
    runs = state_dir(cfg) / "runs" / "train"
    world, lead = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)) == 0
    if world > 1 and not out:  # a folder named by the clock could differ between the processes
        raise UserError(f"under torchrun ({world} processes) give the run folder with --out, the same for every process")
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

    # torch and timm load here, not at `study --help`
    from study.train.engine import NonFiniteLoss, train
    from study.train.state import CHECKPOINT, check_resumable, load_checkpoint

    ckpt = run_dir / CHECKPOINT
    if ckpt.exists():  # a run of another config is refused before anything in its folder changes
        check_resumable(load_checkpoint(ckpt), cfg, ckpt)
    created = make_run_dir(run_dir)
    resuming = ckpt.exists()
    if lead:  # under torchrun only rank 0 writes and prints; the engine logs and checkpoints on rank 0 too
        try:
            write_text(run_dir / "config.toml", to_toml(cfg))
        except OSError as e:
            _remove(created)
            raise UserError(f"--out {run_dir}: cannot write there ({e.strerror or e}); give a folder you can write to") from None
        print(f"run folder: {run_dir}" + (" (resuming from its checkpoint)" if resuming else "")
              + (f", {world} processes" if world > 1 else ""))
    try:
        result = train(cfg, run_dir, resume=True, progress=lead)
    except (UserError, NonFiniteLoss) as e:
        if lead and not ckpt.exists():  # a run that never checkpointed leaves nothing behind
            _remove(created)
        if isinstance(e, UserError):
            raise
        print(f"error: {e}", file=sys.stderr)  # a failed run, not bad input: exit 1, no traceback
        raise SystemExit(1) from None
    if not lead:
        return
    losses = result.losses
    if result.skipped_videos:
        print(f"skipped {len(result.skipped_videos)} unreadable video(s): {', '.join(result.skipped_videos[:5])}")
    if losses:
        k = max(1, min(10, len(losses) // 10))
        print(f"done: {result.steps} steps in {result.wall_s:.1f}s, loss {sum(losses[:k]) / k:.4f} -> "
              f"{sum(losses[-k:]) / k:.4f} (mean of the first and last {k} steps)")
    print(f"checkpoint: {ckpt}")
    if (run_dir / "recon.png").exists():
        print(f"reconstructions: {run_dir / 'recon.png'}")


def make_run_dir(run_dir: Path) -> Path | None:
    """Create run_dir (and missing parents); -> the topmost folder created, None if it existed. Any OSError (a
    read-only place, /proc, a file in the way) is one line naming --out."""
    missing = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove(missing)
        raise UserError(f"--out {run_dir}: cannot create it ({e.strerror or e}); give a folder you can write to") from None
    return missing


def _remove(created: Path | None) -> None:
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
