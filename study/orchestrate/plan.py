"""`study run --dry-run`: the cells, each one's config as a diff from the budget's base, and what it will cost."""

from __future__ import annotations

import math

from rich.markup import escape

from study.config import RunConfig, visible_patches
from study.config_load import load_config, parse_set
from study.console import console, table
from study.orchestrate.queue import Slot
from study.studies import StudySpec, canonical_overrides, stored_name

# Training pairs/s at each budget, measured on this 2-core machine (ViT-S/16 + cross-self decoder 512/8/16, bf16,
# for paper; the mini model at 64 px for cpu; a smoke study run for smoke). Used only for --dry-run's estimate.
MEASURED_PAIRS_PER_S = {"smoke": 120.0, "cpu": 190.0, "paper": 4.9}
# Seconds of one evaluation on one dataset (`trial.evaluate_all`, this 2-core machine, 2026-11-26): smoke 1.1 s, cpu 15 s
# (16 generated DAVIS sequences at short side 128; 24 s with one core while a second trial trains); paper: 24 generated
# frames at short side 480 with ViT-S/16 took 157 s (6.5 s a frame), scaled to DAVIS-2017 val's 1,999 frames.
# For --dry-run and the ETA.
MEASURED_EVAL_S = {"smoke": 1.1, "cpu": 15.0, "paper": 13000.0}


def pairs_per_trial(cfg: RunConfig) -> int:
    """Effective epochs x videos: each effective epoch samples every video once (MAE-ST's definition)."""
    from study.data.video import find_videos

    return round(cfg.train.epochs * (len(find_videos(cfg.data.root)) if cfg.data.root else cfg.data.synth_videos))


def evaluations(cfg: RunConfig, trained: bool) -> int:
    """Evaluation passes of a run: the final one per dataset, plus the intermediate ones of eval.every_epochs."""
    every = cfg.eval.every_epochs
    middle = max(0, math.ceil(cfg.train.epochs / every) - 1) if trained and every > 0 else 0
    return (1 + middle) * len(cfg.eval.datasets)


def print_plan(spec: StudySpec, budget: str, configs: list[tuple[Slot, RunConfig]], overrides: list[str],
               workers: int) -> None:
    from study.model.flops import pair_flops

    base = load_config(budget, overrides=parse_set(overrides)).flat()
    rate, eval_s = MEASURED_PAIRS_PER_S[budget], MEASURED_EVAL_S[budget]
    sets = canonical_overrides(overrides)
    out = table(escape(f"{stored_name(spec.name, budget, sets)}: {len(configs)} runs (dry run, nothing started)"),
                ["role", "cell", "seed", f"config vs {budget} base", "visible patches"],
                ["pairs", "train TFLOP", "est. minutes"])
    total_s = 0.0
    for slot, cfg in configs:
        diff = {k: v for k, v in cfg.flat().items() if base.get(k) != v and k != "train.seed"}
        trained = slot.role != "baseline"
        pairs = pairs_per_trial(cfg) if trained else 0
        flop = pair_flops(cfg)["forward_backward"] * pairs / 1e12
        seconds = pairs / rate + evaluations(cfg, trained) * eval_s
        total_s += seconds
        f1, f2 = visible_patches(cfg.model)  # f1 keeps every patch unless it is masked too
        out.add_row(slot.role, escape(slot.cell.label), str(slot.seed), escape(", ".join(f"{k}={v}" for k, v in diff.items())),
                    f"f1 {f1}, f2 {f2}" if cfg.model.mask_ratio_f1 > 0 else f"f2 {f2}", str(pairs), f"{flop:.4f}",
                    f"{seconds / 60:.1f}")
    con = console()
    con.print(out)
    con.print(escape(f"--set values (part of the study's name): {' '.join(sets)}" if sets else
                     "--set values: none (the study as its file says)"))
    if spec.is_search:
        con.print(f"plus {spec.search_trials} TPE trials over {', '.join(p.key for p in spec.search)}")
    # The rates are a whole machine's: local workers at the CPU budgets share its cores, so they end the study in about
    # the same time as one; the paper budget's workers each hold a GPU and divide it.
    parallel = workers if budget == "paper" else 1
    con.print(f"estimate: training at {rate} pairs/s and {eval_s:.0f} s per evaluation (measured on this 2-core machine "
              f"at the {budget} budget): {total_s / 60:.1f} min in all, {total_s / 60 / parallel:.1f} min with "
              f"{workers} worker(s)" + ("" if parallel == workers else " sharing this machine's cores"))
