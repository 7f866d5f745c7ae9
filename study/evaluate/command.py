"""`study eval davis|jhmdb|vip`: load an encoder, propagate, print and save the numbers."""

from __future__ import annotations

import json
from pathlib import Path

from study.config import EVAL_DATASETS, PROTOCOLS, load_config, parse_set
from study.errors import UserError

UNITS = {"davis": ("jf_mean", "j_mean", "f_mean", "j_recall", "f_recall", "j_decay", "f_decay"),
         "jhmdb": ("pck_0.1", "pck_0.2"), "vip": ("miou",)}


def default_root(dataset: str, cfg) -> Path:
    """The configured root (eval.<dataset>_root), else the generated set in the state folder (made on first use)."""
    configured = getattr(cfg.eval, f"{dataset}_root")
    if configured:
        return Path(configured)
    from study.data import default_sets

    state = cfg.tracking.state_dir
    if dataset == "davis":
        return default_sets.ensure_davis_set(state, short_side=cfg.eval.short_side)
    return getattr(default_sets, f"ensure_{dataset}_set")(state)


def eval_command(dataset: str, checkpoint: str, root: str | None, protocol: str, overrides: list[str],
                 out: str | None) -> dict[str, float]:
    if dataset not in EVAL_DATASETS:
        raise UserError(f"dataset {dataset!r} is unknown; choose one of {', '.join(EVAL_DATASETS)}")
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol!r} is unknown; choose one of {', '.join(PROTOCOLS)}")
    cfg = load_config(overrides={**parse_set(overrides), "eval.protocol": protocol})
    root_path = Path(root) if root else default_root(dataset, cfg)
    if not root_path.is_dir():
        raise UserError(f"--root {root_path} does not exist; pass the {dataset} dataset folder")

    from study.evaluate.run import evaluate_dataset
    from study.model import load_encoder

    encoder = load_encoder(checkpoint, cfg.model, seed=cfg.train.seed)
    if out:
        out_dir = Path(out)
    elif checkpoint == "random":
        out_dir = Path(cfg.tracking.state_dir) / f"eval-random-{dataset}"
    else:
        out_dir = Path(checkpoint).resolve().parent / f"eval-{dataset}"
    summary = evaluate_dataset(encoder, dataset, root_path, cfg.eval, out_dir)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{dataset} label propagation ({protocol}), {checkpoint}")
    for key in UNITS[dataset]:
        table.add_column(key, justify="right")
    table.add_row(*(f"{summary[k]:.2f}" for k in UNITS[dataset]))
    Console().print(table)
    Console().print(f"results, tables, summary.json and contact sheets in {out_dir}")
    print(json.dumps(summary))
    return summary
