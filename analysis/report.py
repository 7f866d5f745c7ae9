"""`study report NAME`: runs -> report.md, table.csv, table.tex, table.html and the PNGs in ./reports/NAME/.

Every file is made in memory first, then written one by one, each atomically (a reader sees the old file or the new
one, never half of one); files in the folder that the report does not write (screenshots, notes) are left alone.
MLflow is reached only through `study.tracking` (imported when a report is made).
"""

from __future__ import annotations

import html
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from analysis import plots, provenance
from analysis.findings import Findings, study_findings
from analysis.paper import paper_table
from analysis.protocol import described_values, recorded_values, values_text
from analysis.runs import loss_frame, runs_frame
from analysis.table_csv import to_csv
from analysis.tables import Table, build_table, factor_name, to_html, to_latex, to_markdown
from study.atomic import atomic_path
from study.errors import UserError
from study.metrics import LABELS
from study.studies import StudySpec, load_study


@dataclass
class StudyPart:
    """One study's share of a report: what it found, its table, setup, provenance and pictures (name -> PNG bytes)."""
    findings: Findings
    table: Table
    setup: list[tuple[str, str]]
    provenance: list[tuple[str, str]]
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name)
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def spec(self) -> StudySpec:
        return self.findings.spec

    @property
    def budget(self) -> str:
        return self.findings.budget


def reports_dir() -> Path:
    """Reports go under the working directory, as the state folder does: never into the installed checkout."""
    return Path.cwd() / "reports"


def command_line(name: str, budget: str | None, tracking_uri: str | None, out: str | None,
                 overrides: list[str] = ()) -> str:
    """The `study report` command that makes this report again."""
    args = ["study", "report", name] + [a for s in overrides for a in ("--set", s)]
    for flag, value in (("--budget", budget), ("--tracking-uri", tracking_uri), ("--out", out)):
        if value:
            args += [flag, value]
    return shlex.join(args)


def report_command(name: str, budget: str | None = None, tracking_uri: str | None = None,
                   out: str | None = None, overrides: list[str] | None = None) -> Path:
    """Write the report for one study (or every finished study for name == 'table2'); returns the report folder."""
    from study import tracking

    out_dir = Path(out) if out else reports_dir() / name
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder (default: ./reports/{name}/)")
    from study.studies import canonical_overrides  # a study run with --set values is another study

    sets = canonical_overrides(overrides or [])
    command = command_line(name, budget, tracking_uri, out, sets)
    if name == "table2":
        from analysis.table2 import table2_files

        files = table2_files(budget, tracking_uri, command)
    else:
        spec = load_study(name)
        records = tracking.fetch_study_runs(name, budget, tracking_uri, sets)
        if not has_finished(records):
            b = f" [{budget}]" if budget else ""
            flag = f" --budget {budget}" if budget else ""
            raise UserError(f"no finished runs for study {name}{b}; run `study run {name}{flag}` first")
        parent = tracking.fetch_parent_run(name, budget_of(records), tracking_uri, sets)
        files = study_files(spec, records, parent, command)
    write_files(out_dir, files)
    for line in str(files["report.md"]).splitlines():  # what the study found, on the terminal too
        if line.startswith(SUMMARY_LEADS):
            print(line.replace("**", ""))
    print(f"report: {out_dir / 'report.md'}")
    return out_dir


def has_finished(records: list[dict]) -> bool:
    return any(r.get("role") == "trial" and r.get("status") == "FINISHED" for r in records)


def budget_of(records: list[dict]) -> str:
    return next((r["budget"] for r in records if r.get("budget")), "?")


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    """Each file atomically, report.md last (so that the pictures it links exist when it appears); nothing else in
    the folder is touched."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == "report.md"):
        content = files[name]
        with atomic_path(folder / name) as tmp:
            if isinstance(content, bytes):
                tmp.write_bytes(content)
            else:
                tmp.write_text(content, encoding="utf-8")


# ---------------------------------------------------------------- one study
def study_part(spec: StudySpec, records: list[dict], parent: dict | None, prefix: str = "",
               title: str | None = None) -> StudyPart:
    """Findings, table, setup, provenance and plots of one study; the plots are named `<prefix><name>.png`."""
    frame = runs_frame(records)
    f = study_findings(spec, frame, budget_of(records))
    part = StudyPart(f, build_table(f, title=title), setup_lines(f, records, frame),
                     provenance.run_lines(parent) + [("runs", provenance.runs_period(records))])
    primary, label = f.primary, LABELS[f.primary]
    cells = [r.label for r in f.rows]
    baseline = f.baseline.mean(primary) if f.baseline else None
    png = plots.metric_vs_factor(frame, cells, primary, label, factor_name(spec), baseline=baseline)
    _add(part, png, f"{prefix}metric.png",
         f"{label} per {factor_name(spec)}: each seed, mean ± std, random init dashed")
    png = plots.loss_curves(loss_frame(records), cells)
    _add(part, png, f"{prefix}loss.png", "training loss per cell (mean over seeds, ±1 std band)")
    panels = _extreme_cells(f)
    png = plots.propagation_strip(panels)
    _add(part, png, f"{prefix}propagation.png",
         "DAVIS label propagation of the cells with the highest and the lowest mean: each panel is the contact sheet "
         "the evaluation drew for one sequence (of the first seed that has one)")
    return part


def _add(part: StudyPart, png: bytes | None, name: str, caption: str) -> None:
    if png:
        part.files[name] = png
        part.images.append((caption, name))


def _extreme_cells(f: Findings) -> list[tuple[str, Path | None]]:
    """The highest- and lowest-mean cells (named by their mean, not as best and worst: that needs an interval)."""
    metric, label = f.primary, LABELS[f.primary]
    done = [r for r in f.rows if r.summary["n"] and r.mean(metric) is not None]
    done.sort(key=lambda r: r.mean(metric), reverse=True)
    chosen = [("highest mean", done[0])] + ([("lowest mean", done[-1])] if len(done) > 1 else []) if done else []
    out = []
    for word, r in chosen:
        sheet = plots.first_contact_sheet(r.summary["artifact_dirs"])
        seq = f", sequence {sheet.stem.removeprefix('contact_')}" if sheet else ""
        n = r.summary["n"]
        out.append((f"{word}: {r.label} ({label} {r.mean(metric):.1f} over {n} seed{'s' if n > 1 else ''}{seq})",
                    sheet))
    return out


def setup_lines(f: Findings, records: list[dict], frame: pl.DataFrame) -> list[tuple[str, str]]:
    """What the runs were: read from a finished trial's logged config (params are strings in MLflow)."""
    spec = f.spec
    done = [r for r in records if r.get("role") == "trial" and r.get("status") == "FINISHED"]
    first = (done or records)[0]
    p = first.get("params") or {}
    g = lambda k: p.get(k, "?")  # noqa: E731
    root = p.get("data.root") or ""
    data = (f"videos in {root}" if root else
            f"the generated default set ({g('data.synth_videos')} videos, {g('data.synth_frames')} frames, "
            f"{g('data.synth_size')} px)")
    trials = frame.filter(pl.col("role") == "trial")
    seeds = sorted({r["seed"] for r in records if r.get("role") == "trial" and r.get("seed") is not None})
    datasets = list(dict.fromkeys([*spec.evaluations, *(m.split(".")[0] for m in f.metrics)]))
    protocols = sorted(set(trials.filter(pl.col("status") == "FINISHED")["protocol"].to_list()))
    evaluation = [f"label propagation, protocol {', '.join(f'`{x}`' for x in protocols) or '?'}"]
    for d in datasets:
        where = p.get(f"eval.{d}_root") or "generated set"
        values = recorded_values(first.get("artifact_dir"), d) or described_values(p, d)
        values = values_text(values, p.get("eval.short_side"))
        evaluation.append(f"{d} ({where}): {values}")
    budget = f.budget
    return [
        ("budget", f"`{budget}`" + (" (the paper's recipe)" if budget == "paper" else
                                    " (a reduced schedule: compare directions with the paper, not levels)")),
        ("varied", ", ".join(f"`{k}`" for k in spec.factor_keys)),
        ("model", f"ViT-{g('model.preset')}/{g('model.patch_size')} at {g('model.img_size')} px, "
                  f"{g('model.encoder')} encoder, {g('model.decoder')} decoder ({g('model.decoder_dim')}-d, "
                  f"{g('model.decoder_depth')} blocks)"),
        ("data", f"{data}; pairs {g('data.frame_gap')} frames apart, repeated sampling {g('data.repeated_sampling')}"),
        ("schedule", f"{g('train.epochs')} effective epochs, batch {g('train.batch_size')} x {g('train.accum_iter')} "
                     f"accumulation, base lr {g('train.blr')}"),
        ("seeds", f"{', '.join(map(str, seeds)) or '-'} (study file: {len(spec.seeds)} per cell)"),
        ("evaluation", "; ".join(evaluation)),
        ("runs", f"trials: {_count_text(trials)}"
                 + f"; random init: {_count_text(frame.filter(pl.col('role') == 'baseline'))}"),
    ]


def _count_text(runs: pl.DataFrame) -> str:
    counts = runs.group_by("status").len().sort("status").iter_rows()
    return ", ".join(f"{n} {s.lower()}" for s, n in counts) or "not evaluated"


def _kv_table(head: str, lines: list[tuple[str, str]]) -> list[str]:
    return [f"| {head} | |", "| --- | --- |"] + [f"| {k} | {v.replace('|', '/')} |" for k, v in lines] + [""]


SUMMARY_LEADS = ("**Does training help?**", "**Finding.**")


def summary_lines(f: Findings) -> list[str]:
    """The top of a study's section: does training help at all, then what the study found."""
    return [f"{SUMMARY_LEADS[0]} {f.training_text}", "", f"{SUMMARY_LEADS[1]} {f.headline}", ""]


def markdown_part(part: StudyPart, sub: str) -> list[str]:
    """Summary, question, results (table, notes, pictures) and setup; `sub` is the subsections' heading level."""
    out = summary_lines(part.findings)
    if part.spec.question:
        out += [f"**Question.** {part.spec.question}", ""]
    out += [f"{sub} Results", "", to_markdown(part.table)]
    out += [f"- {n}" for n in part.table.notes] + [""]
    for caption, name in part.images:
        out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    out += [f"{sub} Setup", ""] + _kv_table("setup", part.setup)
    return out


def study_files(spec: StudySpec, records: list[dict], parent: dict | None, command: str) -> dict[str, str | bytes]:
    part = study_part(spec, records, parent)
    table = paper_table(spec)
    md = [f"# {spec.title}" + (f" (the paper's {table})" if table else ""), "",
          f"From the MLflow runs of `{spec.name} [{part.budget}]`, budget **{part.budget}**.", ""]
    md += markdown_part(part, "##")
    md += ["## Provenance", ""] + _kv_table("provenance", provenance.report_lines(command)
                                            + [("budget", f"`{part.budget}`")] + part.provenance)
    return {**part.files, "report.md": "\n".join(md), "table.csv": to_csv([part.findings]),
            "table.tex": to_latex(part.table), "table.html": html_page(spec.title, [to_html(part.table)])}


def html_page(title: str, fragments: list[str]) -> str:
    body = "\n<hr>\n".join(fragments)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>\n"
            f"<body style=\"font-family: sans-serif\">\n{body}\n</body></html>\n")
