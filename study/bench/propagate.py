"""`study bench propagate` and `study bench davis-metrics`: what windowed propagation buys over the dense reference
(study.evaluate.dense), and how fast the DAVIS metrics score."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from study.evaluate.dense import DensePropagation
from study.evaluate.propagate import LabelPropagation, PropagationParams
from study.evaluate.protocols import preset


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms (torch's CPU allocator has no peak counter)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def gib(self) -> float:
        return (self.peak - self.base) / 2**30


def _run(engine_cls, params, feats, labels, targets: int) -> tuple[list[torch.Tensor], float, float]:
    """Fill the context with frames 0..queue, then time `targets` steps: (outputs, frames/s, peak GiB above the
    start). Each step pushes the video's own labels, not the prediction, so that both engines always see the same
    context and a single near-tie cannot make their later frames drift apart."""
    n = params.queue + 1
    with PeakRSS() as mem:
        prop = engine_cls(params, feats[0], labels[0])
        for f, lab in zip(feats[1:n], labels[1:n]):
            prop.push_context(f, lab)
        outs = []
        start = time.perf_counter()
        for f, lab in zip(feats[n:n + targets], labels[n:n + targets]):
            outs.append(prop.predict(f))
            prop.push_context(f, lab)
        elapsed = time.perf_counter() - start
    return outs, targets / elapsed, mem.gib


def _near_ties(params, feats, step: int, positions: torch.Tensor, tol: float = 1e-4) -> int:
    """How many of the query `positions` (m, 2) of target `step` have their k-th and (k+1)-th largest affinity
    (cos / T, over their windows in the whole context) within `tol`: there, float rounding in a different GEMM
    order may legitimately swap which neighbour is kept."""
    h, w, _ = feats[0].shape
    n = params.queue + 1
    context = [feats[0]] + feats[1 + step:n + step]                       # the first frame + the queue
    ki, kj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ties = 0
    for i, j in positions.tolist():
        q = F.normalize(feats[n + step][i, j], dim=-1) / params.temperature
        keep = params.keeps(ki - i, kj - j)
        logits = []
        for slot, f in enumerate(context):
            a = F.normalize(f, dim=-1) @ q                                          # (h, w)
            unrestricted = params.context == "crw" and slot == 0
            logits.append(a.flatten() if unrestricted else a[keep])
        top = torch.cat(logits).topk(params.topk + 1).values
        ties += bool(top[-2] - top[-1] < tol)
    return ties


def _compare(params, feats, win: list, ref: list) -> tuple[float, int]:
    """(max |windowed - dense| away from near-ties, number of queries decided by a near-tie); asserts that every
    query that differs by more than 1e-5 is a near-tie."""
    worst, ties = 0.0, 0
    for step, (a, b) in enumerate(zip(win, ref)):
        diff = (a - b).abs().amax(0)                                              # (h, w)
        differing = (diff > 1e-5).nonzero()
        n_ties = _near_ties(params, feats, step, differing)
        assert n_ties == len(differing), f"windowed and dense propagation disagree by {float(diff.max())} " \
                                         f"at {len(differing) - n_ties} queries that are not near-ties"
        ties += n_ties
        worst = max(worst, float(diff[diff <= 1e-5].max()))
    return worst, ties


def _random_video(h: int, w: int, n: int, dim: int = 384, channels: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(h, w, dim, generator=g) for _ in range(n)]
    labels = [torch.softmax(3 * torch.randn(channels, h, w, generator=g), 0) for _ in range(n)]
    return feats, labels


def _speed_table(protocol, label: str, frames: int):
    """Both engines on DAVIS's 854x480 frames at the protocol's size, ViT-S/16 and ViT-S/8 grids."""
    from study.console import table as make_table

    params = protocol.propagation
    table = make_table(f"{label}: queue {params.queue}, window {params.neighborhood:g}, top-k {params.topk}; "
                       f"{frames} target frames after a full context, {torch.get_num_threads()} threads",
                       ["grid", "engine"], ["frames/s", "peak GiB", "speed-up", "max |diff|", "near-ties"])
    grids = {name: tuple(s // patch for s in protocol.frame_hw(480, 854, patch)) for name, patch in
             (("ViT-S/16", 16), ("ViT-S/8", 8))}
    for name, (h, w) in grids.items():
        feats, labels = _random_video(h, w, params.queue + 1 + frames)
        win, win_fps, win_mem = _run(LabelPropagation, params, feats, labels, frames)
        ref, ref_fps, ref_mem = _run(DensePropagation, params, feats, labels, frames)
        diff, ties = _compare(params, feats, win, ref)
        table.add_row(f"{name} {h}x{w}", "windowed", f"{win_fps:.2f}", f"{win_mem:.2f}", f"{win_fps / ref_fps:.1f}x",
                      f"{diff:.1e}", f"{ties} of {frames * h * w}")
        table.add_row("", "dense", f"{ref_fps:.2f}", f"{ref_mem:.2f}", "1.0x", "", "")
    return table


def bench_propagate(frames: int = 6) -> None:
    """Windowed vs dense on DAVIS-size grids of ViT-S/16 and ViT-S/8: the paper protocol (CropMAE: 480x880, long
    memory + 20 frames, radius 20, top-7) and DINO's (480x832, queue 7, window 12, top-5)."""
    from study.console import console as make_console, table as make_table

    console = make_console()
    torch.manual_seed(0)
    for label, protocol in (("paper (CropMAE, DAVIS)", preset("paper", "davis")), ("dino", preset("dino"))):
        console.print(_speed_table(protocol, label, frames))
    console.print("Windowing pays where the window is small next to the grid. At ViT-S/16 (30x55) a radius of 20 "
                  "covers nearly the whole grid, so there the windowed engine does nearly the dense work in smaller "
                  "pieces and gains little; that is expected. max |diff| is taken away from near-ties: queries whose "
                  "k-th and (k+1)-th affinities are within 1e-4, where a different GEMM order may keep the other "
                  "neighbour (each one checked).")

    grow = make_table("windowed, ViT-S/8 grid (60x104): peak memory (context store included) as the queue grows", [],
                      ["queue", "frames/s", "peak GiB (incl. context store)", "context store GiB"])
    for queue in (5, 10, 20):
        p = PropagationParams("dino", queue=queue, neighborhood=20, topk=7, temperature=0.1)
        feats, labels = _random_video(60, 104, queue + 1 + 2, seed=1)
        _, fps, mem = _run(LabelPropagation, p, feats, labels, 2)
        store = (queue + 1) * 60 * 104 * (384 + 5) * 4 / 2**30     # features + labels of every context slot
        grow.add_row(str(queue), f"{fps:.2f}", f"{mem:.2f}", f"{store:.2f}")
    console.print(grow)


def bench_davis_metrics(frames: int = 50) -> None:
    """Frames/s of J and F scoring at 854x480 with 3 objects (first and last frames excluded, as in scoring)."""
    from rich.console import Console

    from study.evaluate.davis_metrics import score_sequence

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:480, :854]
    gt = np.zeros((frames + 2, 480, 854), np.uint8)
    pred = np.zeros_like(gt)
    for t in range(frames + 2):
        for obj, (cy, cx, r) in enumerate([(200, 300, 90), (260, 560, 120), (120, 700, 60)], start=1):
            gt[t][(yy - cy - t) ** 2 + (xx - cx - 2 * t) ** 2 < r * r] = obj
            jitter = rng.integers(-6, 7, 2)
            pred[t][(yy - cy - t - jitter[0]) ** 2 + (xx - cx - 2 * t - jitter[1]) ** 2 < (r - 4) ** 2] = obj
    start = time.perf_counter()
    j, f = score_sequence(gt, pred)
    elapsed = time.perf_counter() - start
    Console().print(f"DAVIS J&F scoring at 854x480, 3 objects: {frames / elapsed:.1f} frames/s "
                    f"({frames} frames in {elapsed:.2f} s; J-Mean {j.mean():.3f}, F-Mean {f.mean():.3f})")
