"""`study eval davis|jhmdb|vip`: load an encoder, propagate, print and save the numbers."""

from __future__ import annotations

import json
from pathlib import Path

from study.config import EVAL_DATASETS, PROTOCOLS, load_config, parse_set, state_dir
from study.errors import UserError
from study.metrics import METRICS



def eval_command(dataset: str, checkpoint: str, root: str | None, protocol: str, overrides: list[str],
                 out: str | None) -> dict[str, float]:
    if dataset not in EVAL_DATASETS:
        raise UserError(f"dataset {dataset!r} is unknown; choose one of {', '.join(EVAL_DATASETS)}")
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol!r} is unknown; choose one of {', '.join(PROTOCOLS)}")
    cfg = load_config(overrides={**parse_set(overrides), "eval.protocol": protocol})
    if root:
        root_path = Path(root)
    else:
        from study.data.default_sets import dataset_root

        root_path = dataset_root(cfg, dataset)
    if not root_path.is_dir():
        raise UserError(f"--root {root_path} does not exist; pass the {dataset} dataset folder")

    from study.evaluate.run import evaluate_dataset
    from study.model import load_encoder

    encoder = load_encoder(checkpoint, cfg.model, seed=cfg.train.seed)
    if out:
        out_dir = Path(out)
    elif checkpoint == "random":
        out_dir = state_dir(cfg) / f"eval-random-{dataset}"
    else:
        out_dir = Path(checkpoint).resolve().parent / f"eval-{dataset}"
    summary = evaluate_dataset(encoder, dataset, root_path, cfg.eval, out_dir)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{dataset} label propagation ({protocol}), {checkpoint}")
    for key in METRICS[dataset]:
        table.add_column(key, justify="right")
    table.add_row(*(f"{summary[k]:.2f}" for k in METRICS[dataset]))
    Console().print(table)
    Console().print(f"results, tables, summary.json and contact sheets in {out_dir}")
    print(json.dumps(summary))
    return summary
