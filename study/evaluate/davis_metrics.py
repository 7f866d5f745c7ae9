"""DAVIS-2017 semi-supervised metrics: J (region IoU), F (boundary F-measure), per-object Mean / Recall / Decay.

Written from the definitions of davisvideochallenge/davis2017-evaluation (the official scorer) so that the numbers equal
its own to 1e-6 (tests/test_eval_davis_metrics.py checks the golden `davis-mini` fixture):
- the first and last frame of a sequence are not scored;
- objects are the ids 1..max(first GT frame); 255 (void) counts as background. The official scorer at the fixture's
  commit (ac7c43fc) builds its void mask from the already binarized masks, so the mask is always empty and void pixels
  score as background; we reproduce that, since every published DAVIS number was computed so;
- J = |P & G| / |P | G|, 1 when the union is empty;
- F: 1-pixel boundaries by `seg2bmap`, matched within a disk of radius ceil(0.008 * image diagonal); both empty -> 1;
- Decay = mean of the first bin minus mean of the last of 4 overlapping bins (the official rounding of linspace);
- J&F-Mean = (mean over all objects of J-Mean + mean over all objects of F-Mean) / 2.
The official code dilates with OpenCV; we count matches with a k-d tree over boundary pixels instead (same sets: a pixel
is matched iff some boundary pixel lies within Euclidean distance <= radius, which is what a disk dilation means), and
it avoids a 17x17 dilation of every full frame. No library ships these metrics outside that repo (which is not on PyPI).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

VOID = 255
BOUND_TH = 0.008


def region_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """J of one binary mask pair (H, W): intersection over union, 1.0 when the union is empty."""
    inter = np.count_nonzero(gt & pred)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else inter / union


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundary of a binary mask (H, W): a pixel differs from its east, south or south-east neighbour.

    The last row compares only with the east neighbour, the last column only with the south one, and the bottom-right
    pixel is never a boundary (the official convention, inherited from Martin et al.'s seg2bmap)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def bound_pixels(shape: tuple[int, int], bound_th: float = BOUND_TH) -> float:
    """Match radius in pixels: ceil(0.008 * sqrt(H^2 + W^2)) (8 at 854x480); values >= 1 are taken as pixels."""
    return bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape))


def _matched(points: np.ndarray, other: np.ndarray, radius: float) -> int:
    """How many of `points` (N, 2) lie within `radius` (<=) of some point of `other` (M, 2)."""
    dist, _ = cKDTree(other).query(points, k=1, distance_upper_bound=radius + 0.5)
    return int(np.count_nonzero(dist <= radius))


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """F of one binary mask pair (H, W): boundary precision/recall within the match radius, harmonic mean."""
    radius = bound_pixels(gt.shape, bound_th)
    gt_pts = np.argwhere(seg2bmap(gt))  # (n_gt, 2) row, col
    pred_pts = np.argwhere(seg2bmap(pred))
    n_gt, n_pred = len(gt_pts), len(pred_pts)
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = _matched(pred_pts, gt_pts, radius) / n_pred
        recall = _matched(gt_pts, pred_pts, radius) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def mean_recall_decay(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, Recall (fraction > 0.5) and Decay of one object's per-frame values, as the official `db_statistics`.

    Decay bins: ids = round(linspace(1, n, 5)) - 1, bin i = values[ids[i] : ids[i+1] + 1] (neighbouring bins share an
    end frame); Decay = mean(bin 0) - mean(bin 3)."""
    per_frame = np.asarray(per_frame, dtype=np.float64)
    mean = float(np.nanmean(per_frame))
    recall = float(np.nanmean(per_frame > 0.5))
    ids = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(int)
    bins = [per_frame[ids[i]:ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def score_sequence(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame J and F of one sequence.

    gt, pred: (T, H, W) integer id maps (gt may hold 255 = void, scored as background). Returns j, f of shape (n_objects, T - 2): the first and
    last frames are not scored. Objects are 1..max id of the first GT frame; a predicted id above that is an error."""
    if gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    gt = np.where(gt == VOID, 0, gt)
    n_objects = int(gt[0].max())
    gt, pred = gt[1:-1], pred[1:-1]
    if pred.size and int(pred.max()) > n_objects:
        raise ValueError(f"the prediction holds object id {int(pred.max())} but the sequence has {n_objects} objects")
    j = np.zeros((n_objects, len(gt)))
    f = np.zeros((n_objects, len(gt)))
    for obj in range(1, n_objects + 1):
        for t in range(len(gt)):
            g, p = gt[t] == obj, pred[t] == obj
            j[obj - 1, t] = region_iou(g, p)
            f[obj - 1, t] = boundary_f(g, p)
    return j, f


def summarize(per_object: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, float], list[dict]]:
    """{'<seq>_<id>': (j (T-2,), f (T-2,))} -> (summary as fractions, one row per object).

    Summary keys follow the official CSV: 'J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay';
    every value is a mean over objects (not sequences)."""
    rows = []
    for name, (j, f) in per_object.items():
        jm, jr, jd = mean_recall_decay(j)
        fm, fr, fd = mean_recall_decay(f)
        rows.append({"object": name, "J-Mean": jm, "J-Recall": jr, "J-Decay": jd,
                     "F-Mean": fm, "F-Recall": fr, "F-Decay": fd})
    summary = {k: float(np.mean([r[k] for r in rows])) for k in
               ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")}
    summary = {"J&F-Mean": (summary["J-Mean"] + summary["F-Mean"]) / 2, **summary}
    return summary, rows
