"""`study run --dry-run`: the cells, each one's config as a diff from the budget's base, and what it will cost."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from study.config import RunConfig, load_config, parse_set
from study.orchestrate.queue import Slot
from study.studies import StudySpec

# Training pairs/s at each budget, measured on this 2-core machine (ViT-S/16 + cross-self decoder 512/8/16, bf16,
# for paper; the mini model at 64 px for cpu; a smoke study run for smoke). Used only for --dry-run's estimate.
MEASURED_PAIRS_PER_S = {"smoke": 120.0, "cpu": 190.0, "paper": 4.9}

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov"}


def pairs_per_trial(cfg: RunConfig) -> int:
    """Effective epochs x videos: each effective epoch samples every video once (PAPER.md, MAE-ST's definition)."""
    if cfg.data.root:
        n = sum(1 for p in Path(cfg.data.root).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    else:
        n = cfg.data.synth_videos
    return round(cfg.train.epochs * n)


def print_plan(spec: StudySpec, budget: str, configs: list[tuple[Slot, RunConfig]], overrides: list[str],
               workers: int) -> None:
    from study.model.flops import pair_flops

    base = load_config(budget, overrides=parse_set(overrides)).flat()
    rate = MEASURED_PAIRS_PER_S[budget]
    table = Table(title=escape(f"{spec.name} [{budget}]: {len(configs)} runs (dry run, nothing started)"))
    for col in ("role", "cell", "seed", f"config vs {budget} base", "pairs", "train TFLOP", "est. minutes"):
        table.add_column(col)
    total_s = 0.0
    for slot, cfg in configs:
        diff = {k: v for k, v in cfg.flat().items() if base.get(k) != v and k != "train.seed"}
        if slot.role == "baseline":
            pairs, flop, minutes = 0, 0.0, ""
        else:
            pairs = pairs_per_trial(cfg)
            flop = pair_flops(cfg)["forward_backward"] * pairs / 1e12
            total_s += pairs / rate
            minutes = f"{pairs / rate / 60:.1f}"
        table.add_row(slot.role, slot.cell.label, str(slot.seed), ", ".join(f"{k}={v}" for k, v in diff.items()),
                      str(pairs), f"{flop:.4f}", minutes)
    con = Console()
    con.print(table)
    if spec.is_search:
        con.print(f"plus {spec.search_trials} TPE trials over {', '.join(p.key for p in spec.search)}")
    con.print(f"training time at {rate} pairs/s (measured on this 2-core machine at the {budget} budget): "
              f"{total_s / 60:.1f} min in all, {total_s / 60 / workers:.1f} min with {workers} worker(s); "
              "evaluation time not included")
