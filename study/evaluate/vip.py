"""VIP human-part propagation: reader and mIoU from one confusion matrix (CRW's eval_vip.py conventions).

    <root>/VIP_Fine/Images/videos<N>/<frame>.jpg
    <root>/VIP_Fine/Annotations/Category_ids/videos<N>/<frame>.png   mode 'L', class ids 0..19 (255 = ignored)
    <root>/VIP_Fine/lists/val_videos.txt (optional)                   the videos to evaluate
One 20x20 matrix over all frames of all videos (rows = GT, columns = prediction); GT outside [0, 20) is ignored;
mIoU = nanmean of the 20 per-class IoUs (a class absent from both GT and prediction is NaN and dropped). The golden
`vip-miou` fixture checks all of it (tests/test_eval_jhmdb_vip.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from study.atomic import atomic_path
from study.errors import UserError
from study.evaluate.frames import image_size, progress_bar, propagate_video
from study.evaluate.names import plain_name
from study.evaluate.sheets import contact_sheet, overlay_mask, sheet_frames
from study.palette import read_id_png

N_CLASSES = 20
CLASSES = ("background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks", "pants", "gloves",
           "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm", "right-leg", "left-leg", "right-shoe",
           "left-shoe")


@dataclass
class VipVideo:
    name: str
    frames: list[Path]
    annotations: list[Path]


def list_videos(root: Path) -> list[VipVideo]:
    """The videos of lists/val_videos.txt (or every folder under Images/), each with frames and annotations."""
    fine = Path(root) / "VIP_Fine"
    images, anns = fine / "Images", fine / "Annotations" / "Category_ids"
    for path in (Path(root), images, anns):
        if not path.is_dir():
            raise UserError(f"{path} is missing; a VIP root holds VIP_Fine/Images/ and VIP_Fine/Annotations/Category_ids/")
    listing = fine / "lists" / "val_videos.txt"
    if listing.is_file():
        names = [plain_name(n.strip(), listing, "video name") for n in listing.read_text().splitlines() if n.strip()]
    else:
        names = sorted(p.name for p in images.iterdir() if p.is_dir())
    videos = []
    for name in names:
        frames = sorted((images / name).glob("*.jpg"))
        annotations = sorted((anns / name).glob("*.png"))
        if not frames:
            raise UserError(f"{images / name}: video '{name}' has no frames (*.jpg)")
        if not annotations:
            raise UserError(f"{anns / name}: video '{name}' has no annotation PNGs")
        videos.append(VipVideo(name, frames, annotations))
    if not videos:
        raise UserError(f"{images}: no videos found")
    return videos


def read_categories(path: Path) -> np.ndarray:
    """A category PNG ('L' or 'P': values are class ids) -> (H, W) uint8. RGB is refused: values would be colours."""
    return read_id_png(path, ("L", "P"), "a single-channel ('L' mode) PNG of class ids is expected")


def confusion(gt: np.ndarray, pred: np.ndarray, n: int = N_CLASSES) -> np.ndarray:
    """hist[gt, pred] over the pixels whose GT is in [0, n); like CRW's fast_hist, predictions are not range-checked."""
    keep = (gt >= 0) & (gt < n)
    return np.bincount(n * gt[keep].astype(int) + pred[keep].astype(int), minlength=n * n).reshape(n, n)


def scores(hist: np.ndarray) -> dict:
    """Pixel accuracy, mean class accuracy, mIoU, fwIoU (fractions) and the per-class values, from one matrix."""
    hist = hist.astype(np.float64)
    diag, rows, cols, total = np.diag(hist), hist.sum(1), hist.sum(0), hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag / rows
        iou = diag / (rows + cols - diag)
    present = rows > 0
    return {"pixel_acc": diag.sum() / total, "mean_acc": float(np.nanmean(acc)), "miou": float(np.nanmean(iou)),
            "fwiou": float(((rows[present] / total) * iou[present]).sum()), "class_acc": acc, "class_iou": iou}


def read_prediction(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A predicted class PNG -> (H, W) at the GT size (NEAREST), as eval_vip.py reads it (an RGB one: its red channel)."""
    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            im = im.getchannel("R")
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.NEAREST)
        return np.array(im)


def score_folder(gt_dir: Path, pred_dir: Path) -> tuple[dict, np.ndarray]:
    """eval_vip.py on folders: every PNG in every sub-folder of pred_dir against the same path under gt_dir."""
    hist = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    for pred_path in sorted(Path(pred_dir).glob("*/*.png")):
        gt_path = Path(gt_dir) / pred_path.parent.name / pred_path.name
        if not gt_path.is_file():
            raise UserError(f"{gt_path} is missing: every prediction needs its ground truth")
        gt = read_categories(gt_path)
        hist += confusion(gt, read_prediction(pred_path, gt.shape))
    return scores(hist), hist


def sheet_colours() -> np.ndarray:
    """(256, 3) distinct colours for the part classes in contact sheets."""
    return np.array([(i * 11 % 256, i * 47 % 256, i * 89 % 256) for i in range(256)], np.uint8)


def run(encoder, root: Path, protocol, out: Path, device: str, bf16: bool) -> tuple[dict, list, list]:
    """Propagate each video's first-frame parts, write class-id PNGs and contact sheets, score: ({miou} in percent,
    rows per class, rows per video; the rows in percent too)."""
    videos = list_videos(root)
    results = out / "results"
    colours = sheet_colours()
    video_rows = []
    progress, task = progress_bar(sum(len(v.frames) for v in videos), "VIP propagation")
    with progress:
        for video in videos:
            first = read_categories(video.annotations[0])
            if image_size(video.frames[0]) != first.shape:
                raise UserError(f"{video.annotations[0]}: annotation size {first.shape[1]}x{first.shape[0]} differs "
                                f"from its frame {video.frames[0].name}; frames and annotations must have one size")
            values = sorted(int(v) for v in np.unique(first) if v < N_CLASSES)
            gt_paths = {p.stem: p for p in video.annotations}
            (results / video.name).mkdir(parents=True, exist_ok=True)
            shown, pred_row, gt_row = sheet_frames(len(video.frames)), [], []
            hist = np.zeros((N_CLASSES, N_CLASSES), np.int64)
            for t, rgb, ids, _ in propagate_video(encoder, video.frames, first, values, protocol, first.shape, device,
                                                   bf16):
                stem = video.frames[t].stem
                with atomic_path(results / video.name / f"{stem}.png") as tmp:
                    Image.fromarray(ids, mode="L").save(tmp, format="PNG")
                gt = read_categories(gt_paths[stem]) if stem in gt_paths else None
                if gt is not None:
                    hist += confusion(gt, read_prediction(results / video.name / f"{stem}.png", gt.shape))
                if t in shown:
                    pred_row.append(overlay_mask(rgb, ids, colours))
                    gt_row.append(None if gt is None else overlay_mask(rgb, np.where(gt < N_CLASSES, gt, 0), colours))
                progress.advance(task)
            contact_sheet(out / "sheets" / f"contact_{video.name}.png", shown,
                          [("prediction", pred_row), ("ground truth", gt_row)])
            video_rows.append({"video": video.name, "frames": len(video.frames), "miou_pct": 100 * scores(hist)["miou"]})
    res, _ = score_folder(Path(root) / "VIP_Fine" / "Annotations" / "Category_ids", results)
    classes = [{"class": c, "iou_pct": 100 * float(i), "accuracy_pct": 100 * float(a)}
               for c, i, a in zip(CLASSES, res["class_iou"], res["class_acc"])]
    return {"miou": 100 * res["miou"]}, classes, video_rows
