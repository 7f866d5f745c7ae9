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
from PIL import Image

from study.errors import UserError
from study.evaluate import davis_metrics
from study.evaluate.frames import contact_sheet, progress_bar, propagate_video, sheet_frames
from study.palette import davis_palette, write_palette_png

RESOLUTION = "480p"


def read_annotation(path: Path) -> np.ndarray:
    """A palette PNG -> (H, W) uint8 object ids. An RGB (or other) PNG is a user error: ids would be colours."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise UserError(f"{path}: annotation is a {im.mode} image; a palette ('P' mode) PNG whose pixel values are "
                            "object ids is expected (convert it with PIL: Image.quantize or putpalette)")
        return np.array(im)


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
    names = [line.strip() for line in imageset.read_text().splitlines() if line.strip()]
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
        gt = np.stack([read_annotation(p) for p in seq.annotations])
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
        seq_rows.append({"sequence": seq.name, "objects": len(j), "frames": len(gt),
                         "J-Mean": float(j.mean()) if j.size else float("nan"),
                         "F-Mean": float(f.mean()) if f.size else float("nan")})
    summary, object_rows = davis_metrics.summarize(per_object)
    return summary, object_rows, seq_rows


def run(encoder, root: Path, params, eval_cfg, out: Path, device: str, bf16: bool) -> tuple[dict, list, list]:
    """Propagate every sequence's first-frame mask, write palette PNGs and contact sheets, score: (summary in percent,
    rows per object, rows per sequence)."""
    sequences = list_sequences(root)
    results = out / "results"
    progress, task = progress_bar(sum(len(s.frames) for s in sequences), "DAVIS propagation")
    with progress:
        for seq in sequences:
            first = read_annotation(seq.annotations[0])
            first = np.where(first == davis_metrics.VOID, 0, first).astype(np.uint8)   # void scores as background
            values = list(range(int(first.max()) + 1))
            (results / seq.name).mkdir(parents=True, exist_ok=True)
            shown, masks = [], []
            for t, rgb, ids, _ in propagate_video(encoder, seq.frames, first, values, params, eval_cfg.short_side,
                                                   device, bf16):
                write_palette_png(results / seq.name / f"{seq.frames[t].stem}.png", first if t == 0 else ids)
                if t in sheet_frames(len(seq.frames)):
                    shown.append(rgb), masks.append(first if t == 0 else ids)
                progress.advance(task)
            contact_sheet(out / "sheets" / f"contact_{seq.name}.png", shown, masks, davis_palette())
    summary, objects, seqs = score_results(root, results)
    pct = {"jf_mean": summary["J&F-Mean"], "j_mean": summary["J-Mean"], "f_mean": summary["F-Mean"],
           "j_recall": summary["J-Recall"], "f_recall": summary["F-Recall"], "j_decay": summary["J-Decay"],
           "f_decay": summary["F-Decay"]}
    return {k: 100 * v for k, v in pct.items()}, objects, seqs
