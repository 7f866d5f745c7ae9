"""`study eval davis|jhmdb|vip`: load an encoder, propagate, print the numbers and where they went."""

from __future__ import annotations

from pathlib import Path

from study.config import EVAL_DATASETS, PROTOCOLS, state_dir
from study.config_load import load_config, parse_set
from study.errors import UserError
from study.metrics import LABELS, METRICS


def eval_command(dataset: str, checkpoint: str, root: str | None, protocol: str, overrides: list[str],
                 out: str | None) -> dict[str, float]:
    if dataset not in EVAL_DATASETS:
        raise UserError(f"dataset {dataset!r} is unknown; choose one of {', '.join(EVAL_DATASETS)}")
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol!r} is unknown; choose one of {', '.join(PROTOCOLS)}")
    cfg = load_config(overrides={**parse_set(overrides), "eval.protocol": protocol})

    from study.evaluate.protocols import resolve
    from study.evaluate.run import check_out

    resolved = resolve(cfg.eval, dataset)                       # bad protocol overrides fail before any work
    if out:
        out_dir = Path(out)
    elif checkpoint == "random":
        out_dir = state_dir(cfg) / f"eval-random-{dataset}"
    else:
        out_dir = Path(checkpoint).resolve().parent / f"eval-{dataset}"
    out_dir = check_out(out_dir)                                # so is a bad --out
    if root:
        root_path = Path(root)
    else:
        from study.data.default_sets import dataset_root

        root_path = dataset_root(cfg, dataset)
    if not root_path.is_dir():
        raise UserError(f"--root {root_path} does not exist; pass the {dataset} dataset folder")

    from study.evaluate.run import evaluate_dataset
    from study.model import load_encoder

    import torch

    encoder = load_encoder(checkpoint, cfg.model, seed=cfg.train.seed)
    if torch.cuda.is_available() and isinstance(encoder, torch.nn.Module):
        encoder = encoder.cuda()          # frames are encoded where the weights are; propagation stays on the CPU
    summary = evaluate_dataset(encoder, dataset, root_path, cfg.eval, out_dir)

    from rich.console import Console
    from rich.table import Table

    p = resolved.propagation
    table = Table(title=f"{dataset} label propagation, {checkpoint} (percent)",
                  caption=f"protocol {protocol}: top-k {p.topk}, context {p.queue}, neighbourhood {p.neighborhood:g}, "
                          f"temperature {p.temperature:g}; frames {resolved.describe()['frames']}")
    for key in METRICS[dataset]:
        table.add_column(LABELS[f"{dataset}.{key}"], justify="right")
    table.add_row(*(f"{summary[k]:.2f}" for k in METRICS[dataset]))
    console = Console()
    console.print(table)
    console.print(f"results, tables (percent), summary.json and contact sheets in {out_dir}")
    return summary
