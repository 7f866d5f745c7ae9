"""`study bench noise`: how much the primary metric moves from seed to seed at a budget, and why.

Trains `seeds` runs of one cell and evaluates every checkpoint on `eval_sets` generated DAVIS sets (the same generator,
`eval.synth_seed` = 0, 1, ...). The (seed x set) table of J&F is split by a two-way analysis of variance without
replication (y = mean + seed effect + set effect + residual):
- training seed: how much the checkpoint itself moves with the seed (init, data order, masks);
- checkpoint x set: how much one checkpoint's score depends on which sequences it happens to be scored on;
- set offset: a set being easier for every checkpoint (common to all cells of a study, so it cancels in differences).
A study evaluates every trial on one set, so the spread it sees between seeds of a cell is
sqrt(training seed^2 + checkpoint x set^2); the seeds needed to resolve a difference follow from that with Welch's t.
Random-init encoders are evaluated on the same sets, to show what training buys beside the noise.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy import stats


def variance_components(table: np.ndarray) -> dict[str, float]:
    """table (seeds, sets) -> standard deviations of the two-way random-effects model (method of moments, clipped at 0)."""
    n, k = table.shape
    grand = table.mean()
    rows, cols = table.mean(1), table.mean(0)
    resid = table - rows[:, None] - cols[None, :] + grand
    ms_err = (resid ** 2).sum() / max(1, (n - 1) * (k - 1)) if n > 1 and k > 1 else float("nan")
    ms_rows = k * ((rows - grand) ** 2).sum() / (n - 1) if n > 1 else float("nan")
    ms_cols = n * ((cols - grand) ** 2).sum() / (k - 1) if k > 1 else float("nan")
    if k == 1:   # one set: seed and residual cannot be told apart
        return {"mean": float(grand), "seed": float("nan"), "set": float("nan"), "residual": float("nan"),
                "trial": float(table[:, 0].std(ddof=1)) if n > 1 else float("nan")}
    seed = math.sqrt(max(0.0, (ms_rows - ms_err) / k)) if n > 1 else float("nan")
    set_ = math.sqrt(max(0.0, (ms_cols - ms_err) / n))
    residual = math.sqrt(ms_err) if n > 1 else float("nan")
    return {"mean": float(grand), "seed": seed, "set": set_, "residual": residual,
            "trial": math.sqrt(seed ** 2 + residual ** 2) if n > 1 else float("nan")}


def seeds_to_resolve(std: float, delta: float, max_seeds: int = 50) -> int | None:
    """Smallest seeds per cell for which a true difference `delta` between two cells with this per-trial std lies
    outside the 95% Welch interval's half-width (equal variances: df = 2n - 2). None when over max_seeds."""
    if not math.isfinite(std) or std <= 0:
        return 2
    for n in range(2, max_seeds + 1):
        if stats.t.ppf(0.975, 2 * n - 2) * std * math.sqrt(2 / n) < delta:
            return n
    return None


def _job(budget: str, overrides: dict, seed: int, eval_sets: int, out: str, state: str, random_init: bool,
         threads: int = 0) -> dict:
    """One seed: train (resuming from its folder) or build the random init, then evaluate on every set.
    threads: torch's compute threads in this process (`threads_per_worker`)."""
    os.environ["STUDY_STATE_DIR"] = state
    import torch

    if threads:
        torch.set_num_threads(threads)

    from study.config_load import load_config
    from study.data.default_sets import dataset_root
    from study.evaluate.run import evaluate_dataset
    from study.model import build_model
    from study.train.engine import train

    cfg = load_config(budget, overrides={**overrides, "train.seed": seed})
    run_dir = Path(out) / (f"random-seed{seed}" if random_init else f"seed{seed}")
    t0 = time.perf_counter()
    if random_init:
        torch.manual_seed(seed)
        model = build_model(cfg.model)
    else:
        model = train(cfg, run_dir, resume=True, progress=False).model
    train_s = time.perf_counter() - t0
    scores, eval_s = [], []
    for k in range(eval_sets):
        ecfg = load_config(budget, overrides={**overrides, "train.seed": seed, "eval.synth_seed": k})
        t1 = time.perf_counter()
        summary = evaluate_dataset(model, "davis", dataset_root(ecfg, "davis"), ecfg.eval, run_dir / f"eval-set{k}")
        eval_s.append(time.perf_counter() - t1)
        scores.append(summary["jf_mean"])
    return {"seed": seed, "random_init": random_init, "jf": scores, "train_s": train_s, "eval_s": eval_s}


def bench_noise(budget: str, overrides: dict, seeds: int, eval_sets: int, out: Path, workers: int = 1,
                delta: float = 2.0) -> dict:
    from rich.console import Console
    from rich.table import Table

    from study.config import state_dir
    from study.config_load import load_config
    from study.data.default_sets import dataset_root
    from study.orchestrate.worker import threads_per_worker

    cfg = load_config(budget, overrides=overrides)           # every bad key or value stops here, before any work
    state = state_dir(cfg)
    for k in range(eval_sets):                                # the sets, made once before the workers start
        dataset_root(load_config(budget, overrides={**overrides, "eval.synth_seed": k}), "davis")
    threads = threads_per_worker(workers)
    jobs = [(budget, overrides, s, eval_sets, str(out), str(state), r, threads) for r in (False, True) for s in range(seeds)]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_job, *zip(*jobs)))
    else:
        results = [_job(*j) for j in jobs]
    trained = np.array([r["jf"] for r in results if not r["random_init"]])
    random = np.array([r["jf"] for r in results if r["random_init"]])
    comp, comp_random = variance_components(trained), variance_components(random)
    report = {"budget": budget, "overrides": overrides, "seeds": seeds, "eval_sets": eval_sets,
              "sequences_per_set": cfg.eval.synth_sequences, "frames_per_sequence": cfg.eval.synth_frames,
              "protocol": cfg.eval.protocol, "trained": comp, "random_init": comp_random,
              "table": trained.tolist(), "random_table": random.tolist(), "delta": delta,
              "seeds_to_resolve": seeds_to_resolve(comp["trial"], delta),
              "train_s": [r["train_s"] for r in results if not r["random_init"]],
              "eval_s": [float(np.mean(r["eval_s"])) for r in results]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "noise.json").write_text(json.dumps(report, indent=1))

    console = Console()
    table = Table(title=f"DAVIS J&F at the {budget} budget: {seeds} seeds x {eval_sets} generated sets of "
                        f"{cfg.eval.synth_sequences} sequences ({cfg.eval.protocol} protocol)")
    for col in ("encoder", "mean", "training seed sd", "checkpoint x set sd", "set offset sd", "trial sd"):
        table.add_column(col, justify="left" if col == "encoder" else "right", overflow="fold")
    for name, c in (("trained", comp), ("random init", comp_random)):
        table.add_row(name, *(f"{c[key]:.2f}" for key in ("mean", "seed", "residual", "set", "trial")))
    console.print(table)
    n = report["seeds_to_resolve"]
    console.print(f"seeds per cell to resolve a {delta:g}-point difference (95% Welch interval excluding 0, equal "
                  f"spread): {n if n else 'more than 50'}; written to {out / 'noise.json'}")
    return report
