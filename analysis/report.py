"""`study report NAME` and `study report table2`: runs -> report.md, table.tex, table.html and the PNGs.

Everything is written into a temporary folder beside the target and renamed over the old report at the end, so a
reader never sees half a report. MLflow is reached only through `study.tracking` (imported when a report is made).
"""

from __future__ import annotations

import html
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from analysis import plots
from analysis.runs import baseline_summary, cell_summary, loss_frame, runs_frame
from analysis.tables import COLUMNS, Table, build_table, factor_name, to_html, to_latex, to_markdown
from study.config import experiments_dir
from study.errors import UserError
from study.studies import StudySpec, load_study


@dataclass
class StudyPart:
    """One study's share of a report: its table, setup lines and pictures (file names relative to the report)."""
    spec: StudySpec
    budget: str
    table: Table
    setup: list[tuple[str, str]]
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name)


def reports_dir() -> Path:
    return experiments_dir().parent / "reports"


def report_command(name: str, budget: str | None = None, tracking_uri: str | None = None,
                   out: str | None = None) -> Path:
    """Write the report for one study (or every finished study for name == 'table2'); returns the report folder."""
    from study import tracking

    out_dir = Path(out) if out else reports_dir() / name
    if name == "table2":
        pairs = [(s, b) for s, b in tracking.studies_with_runs(tracking_uri) if budget is None or b == budget]
        parts, skipped = [], []
        for study, b in pairs:
            try:
                spec = load_study(study)
            except UserError as e:  # an experiment whose study file is gone: say so, keep the rest
                skipped.append(f"{study} [{b}]: {e}")
                continue
            parts.append((spec, b, tracking.fetch_study_runs(study, b, tracking_uri)))
        parts = [p for p in parts if _has_finished(p[2])]
        if not parts:
            where = f" at budget {budget}" if budget else ""
            raise UserError(f"no study has finished runs{where}; run `study run NAME` first (see `study list`)")
        parts.sort(key=lambda p: (table2_rank(p[0]), p[0].table, p[0].name, p[1]))
        with _atomic_dir(out_dir) as tmp:
            write_table2([(spec, b, recs) for spec, b, recs in parts], tmp, skipped)
    else:
        spec = load_study(name)
        records = tracking.fetch_study_runs(name, budget, tracking_uri)
        if not _has_finished(records):
            b = f" [{budget}]" if budget else ""
            flag = f" --budget {budget}" if budget else ""
            raise UserError(f"no finished runs for study {name}{b}; run `study run {name}{flag}` first")
        with _atomic_dir(out_dir) as tmp:
            write_study_report(spec, records, tmp)
    print(f"report: {out_dir / 'report.md'}")
    return out_dir


def table2_rank(spec: StudySpec) -> int:
    """Table 2's own sub-tables (2a, 2b, ...) first, then studies of other tables (Table 1's patch size), then the rest."""
    return 0 if spec.table.startswith("2") else 1 if spec.table else 2


def _has_finished(records: list[dict]) -> bool:
    return any(r.get("role") == "trial" and r.get("status") == "FINISHED" for r in records)


class _atomic_dir:
    """A temporary folder beside `target` that replaces `target` on success and vanishes on failure."""

    def __init__(self, target: Path):
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self.tmp.chmod(0o755)
        old = self.target.with_name(f".{self.target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.target.exists():
            self.target.rename(old)
        self.tmp.rename(self.target)
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- one study
def study_part(spec: StudySpec, records: list[dict], folder: Path, prefix: str = "", title: str | None = None) -> StudyPart:
    """Table, setup and plots of one study; the plots are written into `folder` as `<prefix><name>.png`."""
    frame = runs_frame(records)
    budget = next((r["budget"] for r in records if r.get("budget")), "?")
    table = build_table(spec, frame, title=title)
    part = StudyPart(spec, budget, table, setup_lines(spec, records, frame))
    primary, label = spec.primary_metric, COLUMNS.get(spec.primary_metric, spec.primary_metric)
    summary = cell_summary(frame, spec, [primary])
    cells = summary["cell"].to_list()
    baseline = baseline_summary(frame, [primary])
    path = plots.metric_vs_factor(frame, cells, primary, label, factor_name(spec), folder / f"{prefix}metric.png",
                                  baseline=baseline[f"{primary}.mean"] if baseline else None)
    if path:
        part.images.append((f"{label} per {factor_name(spec)}: each seed, mean ± std, random init dashed", path.name))
    path = plots.loss_curves(loss_frame(records), cells, folder / f"{prefix}loss.png")
    if path:
        part.images.append(("training loss per cell (mean over seeds, ±1 std band)", path.name))
    panels = _best_and_worst(summary, primary, spec.direction == "maximize")
    path = plots.propagation_strip(panels, folder / f"{prefix}propagation.png")
    if path:
        part.images.append(("DAVIS label propagation of the best and the worst cell", path.name))
    return part


def _best_and_worst(summary: pl.DataFrame, metric: str, higher_is_better: bool) -> list[tuple[str, Path]]:
    done = summary.filter(pl.col(f"{metric}.mean").is_not_null()).sort(f"{metric}.mean", descending=higher_is_better)
    if not done.height:
        return []
    rows = done.to_dicts()
    chosen = [("best", rows[0])] + ([("worst", rows[-1])] if len(rows) > 1 else [])
    label = COLUMNS.get(metric, metric)
    return [(f"{word}: {r['cell']} ({label} {r[f'{metric}.mean']:.1f})", plots.first_contact_sheet(r["artifact_dirs"]))
            for word, r in chosen]


def setup_lines(spec: StudySpec, records: list[dict], frame: pl.DataFrame) -> list[tuple[str, str]]:
    """What the runs were: read from a finished trial's logged config (params are strings in MLflow)."""
    done = [r for r in records if r.get("role") == "trial" and r.get("status") == "FINISHED"]
    p: dict[str, Any] = (done or records)[0].get("params") or {}
    g = lambda k: p.get(k, "?")  # noqa: E731
    budget = next((r["budget"] for r in records if r.get("budget")), "?")
    root = p.get("data.root") or ""
    data = (f"videos in {root}" if root else
            f"the generated default set ({g('data.synth_videos')} videos, {g('data.synth_frames')} frames, "
            f"{g('data.synth_size')} px)")
    trials = frame.filter(pl.col("role") == "trial")
    seeds = sorted({r["seed"] for r in records if r.get("role") == "trial" and r.get("seed") is not None})
    roots = {d: p.get(f"eval.{d}_root") or "generated" for d in spec.evaluations}
    return [
        ("budget", f"`{budget}`" + (" (the paper's recipe)" if budget == "paper" else
                                    " (a reduced schedule: compare the trend with the paper, not the level)")),
        ("varied", ", ".join(f"`{k}`" for k in spec.factor_keys)),
        ("model", f"ViT-{g('model.preset')}/{g('model.patch_size')} at {g('model.img_size')} px, "
                  f"{g('model.encoder')} encoder, {g('model.decoder')} decoder ({g('model.decoder_dim')}-d, "
                  f"{g('model.decoder_depth')} blocks)"),
        ("data", f"{data}; pairs {g('data.frame_gap')} frames apart, repeated sampling {g('data.repeated_sampling')}"),
        ("schedule", f"{g('train.epochs')} effective epochs, batch {g('train.batch_size')} x {g('train.accum_iter')} "
                     f"accumulation, base lr {g('train.blr')}"),
        ("seeds", f"{', '.join(map(str, seeds)) or '-'} (study file: {len(spec.seeds)} per cell)"),
        ("evaluation", f"label propagation, protocol `{g('eval.protocol')}`, short side {g('eval.short_side')} px; "
                       + ", ".join(f"{d} ({src})" for d, src in roots.items())),
        ("runs", f"trials: {_count_text(trials)}"
                 + f"; random init: {_count_text(frame.filter(pl.col('role') == 'baseline'))}"),
    ]


def _count_text(runs: pl.DataFrame) -> str:
    counts = runs.group_by("status").len().sort("status").iter_rows()
    return ", ".join(f"{n} {s.lower()}" for s, n in counts) or "not evaluated"


def _markdown_part(part: StudyPart, heading: str) -> list[str]:
    out = [heading, "", f"**Question.** {part.spec.question}", ""] if part.spec.question else [heading, ""]
    out += ["| setup | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in part.setup] + [""]
    out += [to_markdown(part.table)]
    out += [f"- {n}" for n in part.table.notes] + [""]
    for caption, name in part.images:
        out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return out


def write_study_report(spec: StudySpec, records: list[dict], folder: Path) -> StudyPart:
    part = study_part(spec, records, folder)
    paper = f" (the paper's Table {spec.table})" if spec.table else ""
    md = [f"# {spec.title}{paper}", "",
          f"Generated by `study report {spec.name}` from the MLflow runs of `{spec.name} [{part.budget}]`. "
          f"Budget: **{part.budget}**.", ""]
    md += _markdown_part(part, "## Results")
    (folder / "report.md").write_text("\n".join(md))
    (folder / "table.tex").write_text(to_latex(part.table))
    (folder / "table.html").write_text(_html_page(spec.title, [to_html(part.table)]))
    return part


# ---------------------------------------------------------------- table2
def write_table2(studies: list[tuple[StudySpec, str, list[dict]]], folder: Path, skipped: list[str] = ()) -> list[StudyPart]:
    """Every study as a sub-table (a), (b), ... in the given (paper) order, in one document."""
    parts, md, tex, html = [], ["# Table 2: SiamMAE ablations", "",
                                "Generated by `study report table2`: one sub-table per study with finished runs, in "
                                "the paper's order. Each sub-table states the budget it ran at.", ""], [], []
    for i, (spec, budget, records) in enumerate(studies):
        letter = f"({chr(ord('a') + i)})"
        paper = f", the paper's Table {spec.table}" if spec.table else ""
        title = f"{letter} {spec.title} [{budget}{paper}]"
        part = study_part(spec, records, folder, prefix=f"{spec.name}_{budget}_", title=title)
        parts.append(part)
        md += _markdown_part(part, f"## {title}")
        tex += [to_latex(part.table), r"\bigskip", ""]
        html.append(to_html(part.table))
    if skipped:
        md += ["## Skipped", ""] + [f"- {s}" for s in skipped] + [""]
    (folder / "report.md").write_text("\n".join(md))
    (folder / "table.tex").write_text("\n".join(tex))
    (folder / "table.html").write_text(_html_page("Table 2: SiamMAE ablations", html))
    return parts


def _html_page(title: str, fragments: list[str]) -> str:
    body = "\n<hr>\n".join(fragments)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>\n"
            f"<body style=\"font-family: sans-serif\">\n{body}\n</body></html>\n")
