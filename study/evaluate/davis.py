"""DAVIS-2017 in its published layout: reading sequences, writing results, scoring a results folder.

    <root>/JPEGImages/480p/<seq>/00000.jpg
    <root>/Annotations/480p/<seq>/00000.png     palette ('P') PNG: pixel value = object id, 255 = void
    <root>/ImageSets/2017/val.txt               one sequence name per line
Results: <results>/<seq>/<frame>.png, palette PNGs of the annotation's size (what the official scorer reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.errors import UserError
from study.evaluate import davis_metrics
from study.evaluate.frames import image_size, progress_bar, propagate_video
from study.evaluate.names import plain_name
from study.evaluate.sheets import contact_sheet, overlay_mask, sheet_frames
from study.palette import davis_palette, read_id_png, write_palette_png

RESOLUTION = "480p"


def read_annotation(path: Path) -> np.ndarray:
    """A palette PNG -> (H, W) uint8 object ids. An RGB (or other) PNG is a user error: ids would be colours."""
    return read_id_png(path, ("P", "L"), "a palette ('P' mode) PNG whose pixel values are object ids is expected "
                                         "(convert it with PIL: Image.quantize or putpalette)")


def object_ids(name: str, annotations: list[np.ndarray]) -> int:
    """The number of objects N of a sequence, checked: frame 0 holds exactly the ids 1..N (0 = background, 255 = void)
    and no later frame holds another. Why: the official scorer counts objects up to the largest id, so ids 201-204
    would make 204 objects, 200 of them empty in both masks and so scored perfect, and inflate J&F."""
    first = set(np.unique(annotations[0]).tolist()) - {0, davis_metrics.VOID}
    n = len(first)
    later = set().union(*(np.unique(a).tolist() for a in annotations[1:])) - first - {0, davis_metrics.VOID}
    if first != set(range(1, n + 1)) or later:
        shown = sorted(first) + [f"{i} (after frame 0)" for i in sorted(later)]
        raise UserError(f"sequence '{name}': annotation ids {', '.join(map(str, shown))}; object ids must be 1..N, each "
                        "present in the first frame (0 = background, 255 = void): renumber the masks")
    return n


def check_sequence(seq: "DavisSequence") -> None:
    """Before any work: every annotation readable, one size for all of them and for every frame, object ids 1..N."""
    masks = [read_annotation(p) for p in seq.annotations]
    size = masks[0].shape
    for path, mask in zip(seq.annotations, masks):
        if mask.shape != size:
            raise UserError(f"{path}: annotation is {mask.shape[1]}x{mask.shape[0]} but {seq.annotations[0].name} is "
                            f"{size[1]}x{size[0]}; every mask of sequence '{seq.name}' must have one size")
    for path in seq.frames:
        if image_size(path) != size:
            h, w = image_size(path)
            raise UserError(f"{path}: frame is {w}x{h} but the annotations of sequence '{seq.name}' are "
                            f"{size[1]}x{size[0]}; frames and masks must have the same size")
    object_ids(seq.name, masks)


@dataclass
class DavisSequence:
    name: str
    frames: list[Path]        # JPEGs in order (empty when only scoring)
    annotations: list[Path]   # PNGs in order; frame ids are their stems

    @property
    def frame_ids(self) -> list[str]:
        return [p.stem for p in self.annotations]


def list_sequences(root: Path, subset: str = "val", need_frames: bool = True) -> list[DavisSequence]:
    """The sequences of ImageSets/2017/<subset>.txt, each with its frames and annotations, checked."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"DAVIS root {root} does not exist; pass --root with the folder holding JPEGImages/ and Annotations/")
    ann_dir = root / "Annotations" / RESOLUTION
    img_dir = root / "JPEGImages" / RESOLUTION
    imageset = root / "ImageSets" / "2017" / f"{subset}.txt"
    for path in (ann_dir, imageset) + ((img_dir,) if need_frames else ()):
        if not path.exists():
            raise UserError(f"{path} is missing; a DAVIS-2017 root holds JPEGImages/480p/, Annotations/480p/ and "
                            f"ImageSets/2017/{subset}.txt")
    names = [plain_name(line.strip(), imageset, "sequence name") for line in imageset.read_text().splitlines()
             if line.strip()]
    if not names:
        raise UserError(f"{imageset} lists no sequences; write one sequence name per line")
    sequences = []
    for name in names:
        annotations = sorted((ann_dir / name).glob("*.png"))
        frames = sorted((img_dir / name).glob("*.jpg")) if need_frames else []
        if not annotations:
            raise UserError(f"{ann_dir / name}: sequence '{name}' has no annotation PNGs; each sequence needs at least "
                            "the first frame's mask (00000.png)")
        if need_frames and not frames:
            raise UserError(f"{img_dir / name}: sequence '{name}' has no frames (*.jpg)")
        sequences.append(DavisSequence(name, frames, annotations))
    return sequences


def score_results(root: Path, results: Path, subset: str = "val") -> tuple[dict[str, float], list[dict], list[dict]]:
    """Score a results folder against the GT: (summary as fractions, rows per object, rows per sequence).

    Same conventions as davis2017-evaluation (see davis_metrics); a missing result PNG is a user error."""
    per_object: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seq_rows = []
    for seq in list_sequences(root, subset, need_frames=False):
        masks = [read_annotation(p) for p in seq.annotations]
        if len({m.shape for m in masks}) > 1:
            raise UserError(f"{seq.annotations[0].parent}: the annotations of sequence '{seq.name}' differ in size")
        object_ids(seq.name, masks)
        gt = np.stack(masks)
        pred = []
        for fid in seq.frame_ids:
            path = Path(results) / seq.name / f"{fid}.png"
            if not path.is_file():
                raise UserError(f"result {path} is missing; every annotated frame needs a result PNG")
            pred.append(read_annotation(path))
        pred = np.stack(pred)
        if pred.shape != gt.shape:
            raise UserError(f"{Path(results) / seq.name}: result size {pred.shape[1:]} != annotation size {gt.shape[1:]}")
        try:
            j, f = davis_metrics.score_sequence(gt, pred)
        except ValueError as e:
            raise UserError(f"{Path(results) / seq.name}: {e}") from None
        for k in range(len(j)):
            per_object[f"{seq.name}_{k + 1}"] = (j[k], f[k])
        jm, fm = (float(j.mean()), float(f.mean())) if j.size else (float("nan"), float("nan"))
        seq_rows.append({"sequence": seq.name, "objects": len(j), "frames": len(gt), "J&F-Mean": (jm + fm) / 2,
                         "J-Mean": jm, "F-Mean": fm})
    summary, object_rows = davis_metrics.summarize(per_object)
    return summary, object_rows, seq_rows


def run(encoder, root: Path, protocol, out: Path, device: str, bf16: bool) -> tuple[dict, list, list]:
    """Propagate every sequence's first-frame mask, write palette PNGs and contact sheets, score: (summary in percent,
    rows per object, rows per sequence; the rows in percent too)."""
    sequences = list_sequences(root)
    for seq in sequences:
        check_sequence(seq)
    results = out / "results"
    colours = np.array(davis_palette(), np.uint8).reshape(-1, 3)
    progress, task = progress_bar(sum(len(s.frames) for s in sequences), "DAVIS propagation")
    with progress:
        for seq in sequences:
            first = read_annotation(seq.annotations[0])
            first = np.where(first == davis_metrics.VOID, 0, first).astype(np.uint8)   # void scores as background
            values = list(range(int(first.max()) + 1))
            gt_paths = {p.stem: p for p in seq.annotations}
            (results / seq.name).mkdir(parents=True, exist_ok=True)
            shown = sheet_frames(len(seq.frames))
            pred_row, gt_row = [], []
            for t, rgb, ids, _ in propagate_video(encoder, seq.frames, first, values, protocol, first.shape, device,
                                                   bf16):
                stem = seq.frames[t].stem
                write_palette_png(results / seq.name / f"{stem}.png", first if t == 0 else ids)
                if t in shown:
                    pred_row.append(overlay_mask(rgb, first if t == 0 else ids, colours))
                    gt = read_annotation(gt_paths[stem]) if stem in gt_paths else None
                    gt_row.append(None if gt is None else overlay_mask(rgb, np.where(gt == davis_metrics.VOID, 0, gt),
                                                                       colours))
                progress.advance(task)
            contact_sheet(out / "sheets" / f"contact_{seq.name}.png", shown,
                          [("prediction", pred_row), ("ground truth", gt_row)])
    summary, objects, seqs = score_results(root, results)
    pct = {"jf_mean": summary["J&F-Mean"], "j_mean": summary["J-Mean"], "f_mean": summary["F-Mean"],
           "j_recall": summary["J-Recall"], "f_recall": summary["F-Recall"], "j_decay": summary["J-Decay"],
           "f_decay": summary["F-Decay"]}
    return {k: 100 * v for k, v in pct.items()}, [_percent(r, "object") for r in objects], \
        [_percent(r, "sequence", "objects", "frames") for r in seqs]


def _percent(row: dict, *keep: str) -> dict:
    """An official-CSV row (fractions, 'J-Mean') -> the written row: kept columns, then 'j_mean_pct' = 100 x value."""
    out = {k: row[k] for k in keep}
    out.update({k.lower().replace("&", "").replace("-", "_") + "_pct": 100 * v for k, v in row.items() if k not in keep})
    return out
