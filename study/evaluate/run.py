"""One evaluation of an encoder on one dataset: propagate, write results, score. What a training trial calls."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from study.errors import UserError
from study.evaluate import davis, jhmdb, vip
from study.evaluate.davis_metrics import VOID
from study.evaluate.frames import contact_sheet, encode, eval_size, labels_to_grid, load_frame, soft_to_ids
from study.evaluate.propagate import LabelPropagation, params_from_config

JHMDB_SIDE = 320     # CRW resizes JHMDB frames to 320x320 (40x40 grid at stride 8); scaled with short_side / 480
SHEET_FRAMES = 4


def _progress(total: int, what: str):
    """A rich progress bar on a terminal, nothing otherwise (trials run in workers whose output is a log)."""
    from rich.progress import Progress

    progress = Progress(disable=not sys.stderr.isatty(), transient=True)
    return progress, progress.add_task(what, total=total)


def _sheet_ids(n: int) -> list[int]:
    return sorted({round(i * (n - 1) / (SHEET_FRAMES - 1)) for i in range(SHEET_FRAMES)}) if n > 1 else [0]


def _propagate_video(encoder, frames: list[Path], first_ids: np.ndarray, values: list[int], params, short_side: int,
                     device: str, bf16: bool):
    """Yields (t, original rgb, predicted ids at the original size, soft labels (C, h, w)) for every frame; frame 0's
    prediction is the given labels at patch resolution pushed through the same output path."""
    patch = encoder.patch_size
    with Image.open(frames[0]) as im:
        size = eval_size(im.height, im.width, short_side, patch)
    for t, path in enumerate(frames):
        x, rgb = load_frame(path, size)
        feats = encode(encoder, x, device, bf16)
        if t == 0:
            soft = labels_to_grid(first_ids, feats.shape[:2], values)
            prop = LabelPropagation(params, feats, soft)
        else:
            soft = prop.step(feats)
        ids = soft_to_ids(soft, patch, rgb.shape[:2], params.minmax_norm, values)
        yield t, rgb, ids, soft


def _davis(encoder, root: Path, params, eval_cfg, out: Path, device: str, bf16: bool) -> tuple[dict, list, list]:
    sequences = davis.list_sequences(root)
    results = out / "results"
    progress, task = _progress(sum(len(s.frames) for s in sequences), "DAVIS propagation")
    with progress:
        for seq in sequences:
            first = davis.read_annotation(seq.annotations[0])
            first = np.where(first == VOID, 0, first).astype(np.uint8)   # void scores as background
            values = list(range(int(first.max()) + 1))
            (results / seq.name).mkdir(parents=True, exist_ok=True)
            shown, masks = [], []
            for t, rgb, ids, _ in _propagate_video(encoder, seq.frames, first, values, params, eval_cfg.short_side,
                                                   device, bf16):
                davis.write_annotation(results / seq.name / f"{seq.frames[t].stem}.png", first if t == 0 else ids)
                if t in _sheet_ids(len(seq.frames)):
                    shown.append(rgb), masks.append(first if t == 0 else ids)
                progress.advance(task)
            contact_sheet(out / "sheets" / f"contact_{seq.name}.png", shown, masks, davis.davis_palette())
    summary, objects, seqs = davis.score_results(root, results)
    pct = {"jf_mean": summary["J&F-Mean"], "j_mean": summary["J-Mean"], "f_mean": summary["F-Mean"],
           "j_recall": summary["J-Recall"], "f_recall": summary["F-Recall"], "j_decay": summary["J-Decay"],
           "f_decay": summary["F-Decay"]}
    return {k: 100 * v for k, v in pct.items()}, objects, seqs


def _jhmdb(encoder, root: Path, params, eval_cfg, out: Path, device: str, bf16: bool) -> tuple[dict, list, list]:
    videos = jhmdb.list_videos(root)
    patch = encoder.patch_size
    side = max(patch, JHMDB_SIDE * eval_cfg.short_side // 480 // patch * patch)
    gts, preds, grids, sizes, rows = [], [], [], [], []
    (out / "keypoints").mkdir(parents=True, exist_ok=True)
    progress, task = _progress(sum(len(v.frames) for v in videos), "JHMDB propagation")
    with progress:
        for video in videos:
            pos = jhmdb.read_joints(video.joints)
            n = min(pos.shape[2], len(video.frames))
            with Image.open(video.frames[0]) as im:
                width, height = im.size
            grid = (side // patch, side // patch)
            joints0 = np.stack([(pos[0, :, 0] - 1) * grid[1] / width, (pos[1, :, 0] - 1) * grid[0] / height])
            coords = np.zeros((2, len(jhmdb.JOINTS), n), np.float32)
            prop = None
            for t, path in enumerate(video.frames[:n]):
                x, _ = load_frame(path, (side, side))
                feats = encode(encoder, x, device, bf16)
                if t == 0:
                    soft = jhmdb.joint_heatmaps(joints0, feats.shape[:2])
                    prop = LabelPropagation(params, feats, soft)
                else:
                    soft = prop.step(feats)
                coords[:, :, t] = jhmdb.keypoints_from_heatmaps(soft)
                progress.advance(task)
            gts.append(pos[:, :, :n]), preds.append(coords), grids.append(grid), sizes.append((height, width))
            pixels = np.where(coords[:1] < 0, -1, coords * np.array([width / grid[1], height / grid[0]],
                                                                     np.float32).reshape(2, 1, 1))
            name = video.name.replace("/", "__")
            np.save(out / "keypoints" / f"{name}.npy", pixels.astype(np.float32))
            one = jhmdb.pck([pos[:, :, :n]], [coords], [grid], [(height, width)]) if n > 1 else {}
            rows.append({"video": video.name, "frames": n, "pck_0.1": one.get("pck@0.1", float("nan")),
                         "pck_0.2": one.get("pck@0.2", float("nan"))})
    res = jhmdb.pck(gts, preds, grids, sizes)
    joints = [{"joint": j, "pck_0.1": a, "pck_0.2": b}
              for j, a, b in zip(jhmdb.JOINTS, res["per_joint@0.1"], res["per_joint@0.2"])]
    return {"pck_0.1": res["pck@0.1"], "pck_0.2": res["pck@0.2"]}, joints, rows


def _vip(encoder, root: Path, params, eval_cfg, out: Path, device: str, bf16: bool) -> tuple[dict, list, list]:
    videos = vip.list_videos(root)
    results = out / "results"
    gray = [v for i in range(256) for v in (i * 11 % 256, i * 47 % 256, i * 89 % 256)]  # distinct sheet colours
    progress, task = _progress(sum(len(v.frames) for v in videos), "VIP propagation")
    with progress:
        for video in videos:
            first = vip.read_categories(video.annotations[0])
            values = sorted(int(v) for v in np.unique(first) if v < vip.N_CLASSES)
            (results / video.name).mkdir(parents=True, exist_ok=True)
            shown, masks = [], []
            for t, rgb, ids, _ in _propagate_video(encoder, video.frames, first, values, params, eval_cfg.short_side,
                                                   device, bf16):
                path = results / video.name / f"{video.frames[t].stem}.png"
                Image.fromarray(ids, mode="L").save(path.with_name(path.name + ".tmp"), format="PNG")
                path.with_name(path.name + ".tmp").replace(path)
                if t in _sheet_ids(len(video.frames)):
                    shown.append(rgb), masks.append(ids)
                progress.advance(task)
            contact_sheet(out / "sheets" / f"contact_{video.name}.png", shown, masks, gray)
    res, _ = vip.score_folder(Path(root) / "VIP_Fine" / "Annotations" / "Category_ids", results)
    classes = [{"class": c, "iou": float(i), "accuracy": float(a)}
               for c, i, a in zip(vip.CLASSES, res["class_iou"], res["class_acc"])]
    return {"miou": 100 * res["miou"]}, classes, [{"video": v.name, "frames": len(v.frames)} for v in videos]


RUNNERS = {"davis": _davis, "jhmdb": _jhmdb, "vip": _vip}
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
