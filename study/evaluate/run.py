"""One evaluation of an encoder on one dataset: the runner of that dataset (davis.run, jhmdb.run, vip.run) in a temp
folder, then its tables and summary.json. What a training trial and `study eval` call."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from study.errors import UserError
from study.evaluate import davis, jhmdb, vip
from study.evaluate.propagate import params_from_config

RUNNERS = {"davis": davis.run, "jhmdb": jhmdb.run, "vip": vip.run}
TABLE_NAMES = {"davis": ("per_object.csv", "per_sequence.csv"), "jhmdb": ("per_joint.csv", "per_video.csv"),
               "vip": ("per_class.csv", "per_video.csv")}


def evaluate_dataset(encoder, dataset: str, root: Path, eval_cfg, out_dir: Path, device: str = "cpu",
                     bf16: bool = False) -> dict[str, float]:
    """Label propagation of `encoder` on `dataset` ('davis' | 'jhmdb' | 'vip') at `root`; results into `out_dir`.

    Returns the summary in the paper's units (percent): davis -> jf_mean, j_mean, f_mean, j_recall, f_recall, j_decay,
    f_decay; jhmdb -> pck_0.1, pck_0.2; vip -> miou. Writes result PNGs (DAVIS palette / VIP class ids) or keypoint
    .npy files, two CSV tables, summary.json and a contact sheet per sequence. Built in a temp folder, then renamed."""
    import polars as pl

    if dataset not in RUNNERS:
        raise UserError(f"dataset {dataset!r} is unknown; choose one of {', '.join(RUNNERS)}")
    params = params_from_config(eval_cfg, dataset)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "sheets").mkdir(parents=True)
    was_training = getattr(encoder, "training", False)
    encoder.eval()
    vit = getattr(encoder, "encoder", None)
    if hasattr(vit, "pos_embed_mode"):  # how the encoder places its position embedding on the evaluation grid
        vit.pos_embed_mode = eval_cfg.pos_embed
    try:
        summary, table_a, table_b = RUNNERS[dataset](encoder, Path(root), params, eval_cfg, tmp, device, bf16)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        encoder.train(was_training)
    for name, rows in zip(TABLE_NAMES[dataset], (table_a, table_b)):
        pl.DataFrame(rows).write_csv(tmp / name)
    record = {"dataset": dataset, "root": str(root), "params": dataclasses.asdict(params), "summary": summary}
    (tmp / "summary.json").write_text(json.dumps(record, indent=2, default=str))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.replace(out_dir)
    return summary
