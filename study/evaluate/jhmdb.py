"""JHMDB keypoint propagation (CRW protocol): reader, joint heatmaps, top-3 keypoints, PCK.

    <root>/Rename_Images/<class>/<video>/00001.png ...       frames (320x240)
    <root>/joint_positions/<class>/<video>/joint_positions.mat  'pos_img' (2, 15, T), 1-based pixels, row 0 = x
    <root>/splits/<class>_test_split1.txt (optional)          '<video>.avi 2' marks a test video (split 1)
Conventions follow ajabri/videowalk `data/jhmdb.py`, `test_utils.process_pose` and `eval/eval_pck.py` exactly; the
golden `jhmdb-pck` fixture checks them (tests/test_eval_jhmdb_vip.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch

from study.errors import UserError
from study.evaluate.frames import encode, image_size, load_frame, progress_bar
from study.evaluate.names import plain_name
from study.evaluate.propagate import LabelPropagation
from study.evaluate.sheets import contact_sheet, draw_points, sheet_frames
from study.palette import davis_palette

JOINTS = ("neck", "belly", "head", "right_shoulder", "left_shoulder", "right_hip", "left_hip", "right_elbow",
          "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist", "right_ankle", "left_ankle")
SIGMA = 0.5


@dataclass
class JhmdbVideo:
    name: str            # <class>/<video>
    frames: list[Path]
    joints: Path         # joint_positions.mat


def list_videos(root: Path) -> list[JhmdbVideo]:
    """Split-1 test videos when splits/ exists, else every video that has both frames and joints."""
    root = Path(root)
    images, joints = root / "Rename_Images", root / "joint_positions"
    for path in (root, images, joints):
        if not path.is_dir():
            raise UserError(f"{path} is missing; a JHMDB root holds Rename_Images/<class>/<video>/ and "
                            "joint_positions/<class>/<video>/joint_positions.mat")
    test = None
    if (root / "splits").is_dir():
        test = {plain_name(line.split()[0].rsplit(".", 1)[0], f, "video name")
                for f in sorted((root / "splits").glob("*_test_split1.txt"))
                for line in f.read_text().splitlines() if line.split()[1:] == ["2"]}
    videos = []
    for mat in sorted(joints.glob("*/*/joint_positions.mat")):
        cls, name = mat.parent.parent.name, mat.parent.name
        if test is not None and name not in test:
            continue
        frames = sorted((images / cls / name).glob("*.png"), key=lambda p: int(p.stem))
        if not frames:
            raise UserError(f"{images / cls / name}: video '{cls}/{name}' has no frames (*.png)")
        videos.append(JhmdbVideo(f"{cls}/{name}", frames, mat))
    if not videos:
        raise UserError(f"{joints}: no joint_positions.mat found (or none in the split-1 test lists)")
    return videos


def read_joints(path: Path) -> np.ndarray:
    """'pos_img' of a joint_positions.mat: (2, 15, T) float64, 1-based pixel coordinates."""
    try:
        pos = scipy.io.loadmat(path)["pos_img"].astype(np.float64)
    except (KeyError, ValueError, OSError) as e:
        raise UserError(f"{path}: not a JHMDB joint_positions.mat with 'pos_img' ({type(e).__name__})") from None
    if pos.ndim != 3 or pos.shape[:2] != (2, len(JOINTS)):
        raise UserError(f"{path}: 'pos_img' has shape {pos.shape}; (2, 15, T) is expected")
    return pos


def _draw_gaussian(heat: np.ndarray, x: float, y: float, sigma: float) -> None:
    """CRW's draw_labelmap_np: a (6 sigma + 1)-wide unnormalized Gaussian (peak 1) whose top-left corner is
    int(pt - 3 sigma), written over `heat` (gh, gw); nothing when it lies wholly outside."""
    ul = [int(x - 3 * sigma), int(y - 3 * sigma)]
    br = [int(x + 3 * sigma + 1), int(y + 3 * sigma + 1)]
    if ul[0] >= heat.shape[1] or ul[1] >= heat.shape[0] or br[0] < 0 or br[1] < 0:
        return
    size = 6 * sigma + 1
    gx = np.arange(0, size, 1, float)
    gy = gx[:, None]
    c = size // 2
    g = np.exp(-((gx - c) ** 2 + (gy - c) ** 2) / (2 * sigma ** 2))
    g_x = max(0, -ul[0]), min(br[0], heat.shape[1]) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], heat.shape[0]) - ul[1]
    i_x = max(0, ul[0]), min(br[0], heat.shape[1])
    i_y = max(0, ul[1]), min(br[1], heat.shape[0])
    heat[i_y[0]:i_y[1], i_x[0]:i_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]


def joint_heatmaps(joints_grid: np.ndarray, grid: tuple[int, int], sigma: float = SIGMA) -> torch.Tensor:
    """joints (2, 15) in 0-based feature-grid units -> (16, gh, gw): channel 0 = background (1 where no joint's
    heat reaches), channels 1..15 = one Gaussian per joint."""
    gh, gw = grid
    heat = np.zeros((len(JOINTS), gh, gw))
    for j in range(len(JOINTS)):
        _draw_gaussian(heat[j], joints_grid[0, j], joints_grid[1, j], sigma)
    background = (heat.sum(0) == 0)[None].astype(np.float64)
    return torch.from_numpy(np.concatenate([background, heat])).float()


def keypoints_from_heatmaps(soft: torch.Tensor, topk: int = 3) -> np.ndarray:
    """CRW's process_pose: soft (16, gh, gw) -> (2, 15) grid coordinates (x, y), each the value-weighted mean of the
    joint's top-k cells (CRW 3, CropMAE 5); -1 for a joint whose map is all zero."""
    heat = soft[1:].flatten(1).T                                        # (gh*gw, 15)
    k = min(heat.shape[0], topk)
    vals, ids = heat.topk(k, dim=0)
    vals = vals / vals.sum(0, keepdim=True)
    gw = soft.shape[-1]
    xx, yy = ids % gw, ids // gw
    coords = torch.stack([(xx * vals).sum(0), (yy * vals).sum(0)])      # (2, 15)
    coords[:, heat.sum(0) == 0] = -1
    return coords.numpy().astype(np.float32)


def pck(gts: list[np.ndarray], preds: list[np.ndarray], grids: list[tuple[int, int]], sizes: list[tuple[int, int]],
        thresholds=(0.1, 0.2)) -> dict:
    """PCK as CRW's eval_pck.py, in percent.

    gts: per video 'pos_img' (2, 15, T), 1-based; preds: (2, 15, T) float32 grid coordinates, frame 0 included,
    x < 0 = missing; grids: (gh, gw) of each video's feature grid; sizes: (height, width) of its frames.
    Pixel = grid / grid size * image size (no half-cell offset, float32); frame 0 and missing joints are skipped;
    normalizer = 0.6 * diagonal of the box of that frame's GT joints whose prediction is not missing; a joint is
    correct when distance / normalizer <= threshold; result = unweighted mean of the 15 per-joint PCKs."""
    dists: list[list[float]] = [[] for _ in JOINTS]
    for gt, pred, (gh, gw), (height, width) in zip(gts, preds, grids, sizes):
        gt = gt - 1
        pred = np.array(pred, dtype=np.float32)
        visible = ~(pred[0] < 0)                                             # (15, T), checked before scaling
        pred[0] = pred[0] / float(gw) * width
        pred[1] = pred[1] / float(gh) * height
        for k in range(1, gt.shape[2]):
            vis = visible[:, k]
            if not vis.any():
                continue
            lo = gt[:, vis, k].min(1)
            hi = gt[:, vis, k].max(1)
            box = 0.6 * np.linalg.norm(hi - lo)
            for j in np.flatnonzero(vis):
                d = np.linalg.norm(pred[:, j, k].astype(np.float64) - gt[:, j, k])
                dists[j].append(d / box)
    out = {"distances": [np.array(d) for d in dists]}
    for thr in thresholds:
        per_joint = np.array([100.0 * np.count_nonzero(np.array(d) <= thr) / len(d) for d in dists])
        out[f"per_joint@{thr}"] = per_joint
        out[f"pck@{thr}"] = float(np.mean(per_joint))
    return out


def run(encoder, root: Path, protocol, out: Path, device: str, bf16: bool) -> tuple[dict, list, list]:
    """Propagate each video's first-frame joints, write keypoints (.npy, pixels) and contact sheets, score:
    ({pck_0.1, pck_0.2} in percent, rows per joint, rows per video; the rows in percent too)."""
    videos = list_videos(root)
    patch = encoder.patch_size
    gts, preds, grids, sizes, rows = [], [], [], [], []
    (out / "keypoints").mkdir(parents=True, exist_ok=True)
    colours = np.array(davis_palette(), np.uint8).reshape(-1, 3)
    progress, task = progress_bar(sum(len(v.frames) for v in videos), "JHMDB propagation")
    with progress:
        for video in videos:
            pos = read_joints(video.joints)
            n = min(pos.shape[2], len(video.frames))
            height, width = image_size(video.frames[0])
            frame_hw = protocol.frame_hw(height, width, patch)
            grid = (frame_hw[0] // patch, frame_hw[1] // patch)
            joints0 = np.stack([(pos[0, :, 0] - 1) * grid[1] / width, (pos[1, :, 0] - 1) * grid[0] / height])
            coords = np.zeros((2, len(JOINTS), n), np.float32)
            shown, images = sheet_frames(n), []
            for t, path in enumerate(video.frames[:n]):
                x, rgb = load_frame(path, frame_hw, protocol)
                feats = encode(encoder, x, device, bf16)
                if t == 0:
                    soft = joint_heatmaps(joints0, feats.shape[:2])
                    prop = LabelPropagation(protocol.propagation, feats, soft)
                else:
                    soft = prop.step(feats)
                coords[:, :, t] = keypoints_from_heatmaps(soft, protocol.keypoint_topk)
                if t in shown:
                    images.append(rgb)
                progress.advance(task)
            gts.append(pos[:, :, :n]), preds.append(coords), grids.append(grid), sizes.append((height, width))
            pixels = np.where(coords[:1] < 0, -1, coords * np.array([width / grid[1], height / grid[0]],
                                                                     np.float32).reshape(2, 1, 1))
            name = video.name.replace("/", "__")
            np.save(out / "keypoints" / f"{name}.npy", pixels.astype(np.float32))
            contact_sheet(out / "sheets" / f"contact_{name}.png", shown,
                          [("prediction", [draw_points(im, pixels[:, :, t], colours) for t, im in zip(shown, images)]),
                           ("ground truth", [draw_points(im, pos[:, :, t] - 1, colours) for t, im in zip(shown, images)])])
            one = pck([pos[:, :, :n]], [coords], [grid], [(height, width)]) if n > 1 else {}
            rows.append({"video": video.name, "frames": n, "pck_0.1_pct": one.get("pck@0.1", float("nan")),
                         "pck_0.2_pct": one.get("pck@0.2", float("nan"))})
    res = pck(gts, preds, grids, sizes)
    joints = [{"joint": j, "pck_0.1_pct": a, "pck_0.2_pct": b}
              for j, a, b in zip(JOINTS, res["per_joint@0.1"], res["per_joint@0.2"])]
    return {"pck_0.1": res["pck@0.1"], "pck_0.2": res["pck@0.2"]}, joints, rows
