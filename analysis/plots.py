"""The report's pictures, drawn with seaborn on `matplotlib.figure.Figure` objects (no pyplot, so no backend to pick and
no global state at import; seaborn 0.13 wants pandas, so frames go in via `.to_pandas()`).

Each function returns the PNG as bytes, or None when there is nothing to draw; the report writes the files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.figure import Figure
from PIL import Image

DPI = 120


def metric_vs_factor(frame: pl.DataFrame, cells: list[str], metric: str, label: str, factor: str,
                     baseline: float | None = None) -> bytes | None:
    """The metric per cell: one point per seed, the mean with a ±1 std bar, cells in the study's order on x, and the
    random-init value as a dashed line. `frame` is `runs_frame(...)`; only finished trials are drawn."""
    done = frame.filter((pl.col("role") == "trial") & (pl.col("status") == "FINISHED") & pl.col(metric).is_not_null()
                        & pl.col("cell").is_in(cells))
    if not done.height:
        return None
    data = done.select(pl.col("cell"), pl.col("seed").cast(pl.String).fill_null("?"), pl.col(metric).alias(label))
    seeds = sorted(set(data["seed"].to_list()), key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0))
    data = data.to_pandas()
    fig = Figure(figsize=(max(4.5, 1.1 * len(cells) + 2), 3.6), layout="tight")
    ax = fig.subplots()
    sns.stripplot(data=data, x="cell", y=label, order=cells, hue="seed", hue_order=seeds, ax=ax, size=6, alpha=0.7, jitter=0.08,
                  palette="crest")
    sns.pointplot(data=data, x="cell", y=label, order=cells, ax=ax, errorbar="sd", color="black", markers="D",
                  linestyles="none", capsize=0.15, label="mean ± std")
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="tab:red", lw=1.2, label="random init")
    ax.set_xlabel(factor)
    ax.set_ylabel(f"{label} (%)")
    ax.legend(fontsize=8, loc="best", title="seed", title_fontsize=8)
    if len(cells) > 4 and max(len(c) for c in cells) > 6:
        ax.tick_params(axis="x", labelrotation=30)
    return _png(fig)


def loss_curves(losses: pl.DataFrame, cells: list[str]) -> bytes | None:
    """Training loss against step per cell, the mean over seeds with a ±1 std band (`analysis.runs.loss_frame`)."""
    data = losses.filter(pl.col("cell").is_in(cells))
    if not data.height:
        return None
    order = [c for c in cells if c in set(data["cell"].to_list())]
    fig = Figure(figsize=(6, 3.6), layout="tight")
    ax = fig.subplots()
    sns.lineplot(data=data.to_pandas(), x="step", y="loss", hue="cell", hue_order=order, errorbar="sd", ax=ax,
                 palette="viridis")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (normalized-pixel MSE)")
    ax.legend(fontsize=8, title=None)
    return _png(fig)


def first_contact_sheet(artifact_dirs: list[str], dataset: str = "davis") -> Path | None:
    """The first `eval/<dataset>/contact_*.png` among a cell's runs, or None."""
    for d in artifact_dirs:
        sheets = sorted(Path(d).glob(f"eval/{dataset}/contact_*.png")) if d else []
        if sheets:
            return sheets[0]
    return None


def propagation_strip(panels: list[tuple[str, Path | None]]) -> bytes | None:
    """Contact sheets of propagated masks stacked top to bottom, each under its own title (which cell, which sequence).
    The sheets are placed pixel for pixel (figimage, no resampling), so their frame numbers and row names stay legible."""
    panels = [(label, Path(p)) for label, p in panels if p is not None and Path(p).is_file()]
    if not panels:
        return None
    images = [np.asarray(Image.open(p).convert("RGB")) for _, p in panels]
    title, pad = 28, 8  # pixels above each sheet for its title, and below it
    width = max(im.shape[1] for im in images) + 2 * pad
    height = sum(im.shape[0] + title + pad for im in images)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    top = 0
    for (label, _), im in zip(panels, images):
        fig.text(pad / width, 1 - (top + title * 0.7) / height, label, fontsize=10, va="baseline")
        top += title
        fig.figimage(im, xo=pad, yo=height - top - im.shape[0], origin="upper")
        top += im.shape[0] + pad
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
