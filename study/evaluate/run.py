"""One evaluation of an encoder on one dataset: the runner of that dataset (davis.run, jhmdb.run, vip.run) in a fresh
temp folder beside the target, then its tables and summary.json, then the folder moved into place. What a training
trial and `study eval` call.

The target is never a folder of the user's: an existing target must be empty or one of ours (its summary.json says
`"written_by": "study eval"`), which is then replaced; anything else is a user error before any work.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from study.errors import UserError
from study.evaluate import davis, jhmdb, vip
from study.evaluate.protocols import resolve

RUNNERS = {"davis": davis.run, "jhmdb": jhmdb.run, "vip": vip.run}
TABLE_NAMES = {"davis": ("per_object.csv", "per_sequence.csv"), "jhmdb": ("per_joint.csv", "per_video.csv"),
               "vip": ("per_class.csv", "per_video.csv")}
MARKER = "study eval"     # summary.json's "written_by": what makes an existing folder ours to replace


LEGACY_KEYS = {"dataset", "root", "params", "summary"}   # summary.json of evaluations written before the marker


def is_ours(folder: Path) -> bool:
    try:
        record = json.loads((folder / "summary.json").read_text())
        return record.get("written_by") == MARKER or LEGACY_KEYS <= set(record)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def check_out(out_dir: Path) -> Path:
    """The target folder, checked before any work: not a file, empty or ours, and its parent writable."""
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise UserError(f"--out {out_dir} is an existing file; give a folder path")
        if any(out_dir.iterdir()) and not is_ours(out_dir):
            raise UserError(f"--out {out_dir} is a non-empty folder that holds no evaluation of ours; choose a new or "
                            "empty folder (nothing there was touched)")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot create its parent folder ({e.strerror}); choose a writable path") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {out_dir}: {parent} is not writable; choose a writable path")
    _temp_beside(out_dir).rmdir()      # a real try (root passes os.access everywhere, /proc refuses the mkdir)
    return out_dir


def _temp_beside(out_dir: Path) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot write in {out_dir.parent} ({e.strerror}); choose a writable "
                        "path") from None


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp folder to out_dir; an existing target (empty or ours, checked again) goes only after the
    new one is complete."""
    out_dir = check_out(out_dir)
    old = None
    if out_dir.exists():
        if any(out_dir.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "previous")
        else:
            out_dir.rmdir()
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def evaluate_dataset(encoder, dataset: str, root: Path, eval_cfg, out_dir: Path, device: str | None = None,
                     bf16: bool = False) -> dict[str, float]:
    """Label propagation of `encoder` on `dataset` ('davis' | 'jhmdb' | 'vip') at `root`; results into `out_dir`.

    Returns the summary in the paper's units (percent): davis -> jf_mean, j_mean, f_mean, j_recall, f_recall, j_decay,
    f_decay; jhmdb -> pck_0.1, pck_0.2; vip -> miou. Writes result PNGs (DAVIS palette / VIP class ids) or keypoint
    .npy files, two CSV tables (percent), summary.json (the resolved protocol as `params`) and a contact sheet per
    video. Frames are encoded on `device` (default: where the encoder's weights are, e.g. the GPU a trial trained
    on); the propagation runs on the CPU."""
    import polars as pl

    if dataset not in RUNNERS:
        raise UserError(f"dataset {dataset!r} is unknown; choose one of {', '.join(RUNNERS)}")
    protocol = resolve(eval_cfg, dataset)
    if device is None:
        weights = next(iter(encoder.parameters()), None) if hasattr(encoder, "parameters") else None
        device = str(weights.device) if weights is not None else "cpu"
    out_dir = check_out(out_dir)
    tmp = _temp_beside(out_dir)
    was_training = getattr(encoder, "training", False)
    encoder.eval()
    vit = getattr(encoder, "encoder", None)
    if hasattr(vit, "pos_embed_mode"):  # how the encoder places its position embedding on the evaluation grid
        vit.pos_embed_mode = protocol.pos_embed
    try:
        (tmp / "sheets").mkdir()
        summary, table_a, table_b = RUNNERS[dataset](encoder, Path(root), protocol, tmp, device, bf16)
        for name, rows in zip(TABLE_NAMES[dataset], (table_a, table_b)):
            pl.DataFrame(rows).write_csv(tmp / name)
        record = {"written_by": MARKER, "dataset": dataset, "root": str(root), "protocol": protocol.name,
                  "params": protocol.describe(), "units": "percent", "summary": summary}
        (tmp / "summary.json").write_text(json.dumps(record, indent=2, default=str))
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        encoder.train(was_training)
    return summary
