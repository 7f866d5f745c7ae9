"""The table in the paper's style (one factor's settings as rows, the benchmarks as columns) and its three writers.

`build_table` turns a study's runs into a `Table` of already-formatted cells; `to_markdown`, `to_latex` and `to_html`
only lay those cells out, so the three files always say the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from analysis.paper import NOT_REPORTED, paper_entry
from analysis.runs import baseline_summary, cell_summary
from analysis.stats import METHOD_NOTE, difference
from study.metrics import LABELS, LOWER_IS_BETTER
from study.studies import StudySpec

# The paper's columns (Table 1 / Table 2), in its order: DAVIS J&F / J / F, VIP mIoU, JHMDB PCK@0.1 / PCK@0.2.
COLUMNS = {k: LABELS[k] for k in ("davis.jf_mean", "davis.j_mean", "davis.f_mean", "vip.miou", "jhmdb.pck_0.1",
                                   "jhmdb.pck_0.2")}
PAPER_NOTE = ("paper: the published number for that setting (ViT-S/16, 400 epochs, Kinetics-400, unless marked); "
              "[P] read from the paper, [S] quoted by a later paper; \"not reported\" where the paper gives none.")


@dataclass
class TableCell:
    text: str
    bold: bool = False


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[TableCell]]  # the study's cells, in its order
    reference_rows: list[list[TableCell]] = field(default_factory=list)  # random init, below a rule
    notes: list[str] = field(default_factory=list)


def shown_metrics(spec: StudySpec, frame: pl.DataFrame) -> list[str]:
    """The paper's columns for the benchmarks this study evaluates (or that any run reported)."""
    measured = {m for m in COLUMNS if frame.height and frame[m].drop_nulls().len()}
    return [m for m in COLUMNS if m.split(".")[0] in spec.evaluations or m in measured]


def factor_name(spec: StudySpec) -> str:
    if spec.axes and not spec.variants:
        return ", ".join(k.rsplit(".", 1)[-1] for k in spec.axes)
    return "setting"


def format_mean_std(mean: float | None, std: float | None) -> str:
    """'58.1 ± 0.4' (one decimal, percent); a single seed has no spread to show: '58.1'."""
    if mean is None:
        return "–"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def _no_result(row: dict) -> str:
    """What a cell without a finished seed shows instead of a number."""
    if row["state"] == "running":
        return "running"
    if row["state"] == "failed":
        return f"failed ({row['n_failed']}/{row['n_expected']} seeds)"
    return "missing"


def _seeds_text(row: dict) -> str:
    extra = [f"{row[k]} {word}" for k, word in (("n_failed", "failed"), ("n_running", "running"), ("n_missing", "missing"))
             if row[k]]
    return f"{row['n']}/{row['n_expected']}" + (f" ({', '.join(extra)})" if extra else "")


def _best(rows: list[dict], metric: str) -> float | None:
    """The best mean of a column, compared at the shown precision so that ties are all bold."""
    means = [round(r[f"{metric}.mean"], 1) for r in rows if r["n"] and r[f"{metric}.mean"] is not None]
    if not means:
        return None
    return min(means) if metric in LOWER_IS_BETTER else max(means)


def build_table(spec: StudySpec, frame: pl.DataFrame, title: str | None = None) -> Table:
    """The study's table from its runs frame (`analysis.runs.runs_frame`)."""
    metrics = shown_metrics(spec, frame)
    summary = cell_summary(frame, spec, metrics).to_dicts()
    baseline = baseline_summary(frame, metrics)
    primary = spec.primary_metric
    papers = {(i, m): paper_entry(spec.name, json.loads(r["cell_key"]) if r["cell_key"] else r["cell"], m, spec)
              for i, r in enumerate(summary) for m in metrics}
    with_paper = [m for m in metrics if any(papers[i, m] for i in range(len(summary)))] or \
                 ([primary] if primary in metrics else [])
    default = next((r for r in summary if r["is_default"]), None)
    has_delta = default is not None

    header = [factor_name(spec)]
    for m in metrics:
        header += [COLUMNS[m]] + ([f"{COLUMNS[m]} paper"] if m in with_paper else [])
    header.append("seeds")
    if has_delta:
        header.append(f"Δ {COLUMNS.get(primary, primary)} vs default [95% CI]")

    best = {m: _best(summary, m) for m in metrics}
    notes = []
    rows = []
    for i, r in enumerate(summary):
        line = [TableCell(r["cell"] + (" (default)" if r["is_default"] else ""))]
        for m in metrics:
            if r["n"]:
                mean = r[f"{m}.mean"]
                line.append(TableCell(format_mean_std(mean, r[f"{m}.std"]),
                                      bold=mean is not None and round(mean, 1) == best[m]))
            else:
                line.append(TableCell(_no_result(r)))
            if m in with_paper:
                line.append(TableCell(papers[i, m].text() if papers[i, m] else NOT_REPORTED))
        line.append(TableCell(_seeds_text(r)))
        if has_delta:
            line.append(TableCell(_delta_text(r, default, primary)))
        rows.append(line)
        if r["failure"] and r["n_failed"]:
            notes.append(f"{r['cell']}: failed: {r['failure']}")

    reference_rows = []
    if baseline:
        line = [TableCell("random init")]
        for m in metrics:
            line.append(TableCell(format_mean_std(baseline[f"{m}.mean"], baseline[f"{m}.std"])))
            if m in with_paper:
                line.append(TableCell(NOT_REPORTED))
        line.append(TableCell(str(baseline["n"])))
        if has_delta:
            line.append(TableCell(_delta_text(baseline, default, primary)))
        reference_rows.append(line)
    elif frame.height and (tried := frame.filter(pl.col("role") == "baseline")).height:
        # the random-init evaluation ran but did not finish: say so rather than drop the row
        state = "running" if tried["status"].is_in(["RUNNING", "SCHEDULED"]).any() else "failed"
        line = [TableCell("random init")]
        for m in metrics:
            line += [TableCell(state)] + ([TableCell(NOT_REPORTED)] if m in with_paper else [])
        line += [TableCell(f"0/{tried.height}")] + ([TableCell("")] if has_delta else [])
        reference_rows.append(line)

    notes = _standard_notes(spec, summary, default, primary, has_delta, bool(baseline)) + notes
    return Table(title=title or spec.title, header=header, rows=rows, reference_rows=reference_rows, notes=notes)


def _delta_text(row: dict, default: dict, metric: str) -> str:
    if row is default:
        return "—"
    diff = difference(row.get(f"{metric}.values") or [], default.get(f"{metric}.values") or [],
                      higher_is_better=metric not in LOWER_IS_BETTER)
    return diff.text()


def _standard_notes(spec: StudySpec, summary: list[dict], default: dict | None, primary: str, has_delta: bool,
                    has_baseline: bool) -> list[str]:
    notes = ["mean ± std over seeds (std with ddof=1; a single seed shows its value alone); bold: the best mean of "
             "each column.", PAPER_NOTE]
    if has_delta:
        if (default is not None and default["n"] < 2) or all(r["n"] < 2 for r in summary if r is not default):
            notes.append("Differences are untested: a 95% interval needs at least two seeds in the row and in the "
                         f"default row; run more seeds (`study run {spec.name} --seeds 3`).")
        notes.append(METHOD_NOTE)
    if has_baseline:
        notes.append("random init: the untrained encoder evaluated with the same protocol, to show what training bought.")
    return notes


# ---------------------------------------------------------------- writers
def to_markdown(table: Table) -> str:
    def cell(c: TableCell) -> str:
        text = c.text.replace("|", "\\|")
        return f"**{text}**" if c.bold else text

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    out = [line(table.header), line(["---"] + ["---:"] * (len(table.header) - 1))]
    out += [line([cell(c) for c in row]) for row in table.rows + table.reference_rows]
    return "\n".join(out) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "—": "---", "–": "--"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs tabular, ready to `\\input` inside the reader's own table environment. Written by hand: great-tables'
    `as_latex()` drops cell styles (no bold best) and emits a raw '±', and polars has no LaTeX writer."""
    def line(row: list[TableCell]) -> str:
        cells = [rf"\textbf{{{latex_escape(c.text)}}}" if c.bold else latex_escape(c.text) for c in row]
        return " & ".join(cells) + r" \\"

    cols = "l" + "r" * (len(table.header) - 1)
    out = [f"% {latex_escape(table.title)}: generated by `study report`; needs \\usepackage{{booktabs}}",
           rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    out += [line(row) for row in table.rows]
    if table.reference_rows:
        out.append(r"\midrule")
        out += [line(row) for row in table.reference_rows]
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {latex_escape(n)}" for n in table.notes]
    return "\n".join(out) + "\n"


def to_html(table: Table) -> str:
    """A styled HTML table (great-tables), with the bold best cells and the notes as source notes."""
    from great_tables import GT, loc, style

    all_rows = table.rows + table.reference_rows
    names = [f"c{i}" for i in range(len(table.header))]  # great-tables wants unique, plain column names
    frame = pl.DataFrame([[c.text for c in row] for row in all_rows], schema=names, orient="row")
    gt = GT(frame).tab_header(title=table.title).cols_label(**dict(zip(names, table.header)))
    for j, name in enumerate(names):
        bold_rows = [i for i, row in enumerate(all_rows) if row[j].bold]
        if bold_rows:
            gt = gt.tab_style(style.text(weight="bold"), loc.body(columns=name, rows=bold_rows))
    if table.reference_rows:
        gt = gt.tab_style(style.text(style="italic"), loc.body(rows=list(range(len(table.rows), len(all_rows)))))
    for note in table.notes:
        gt = gt.tab_source_note(note)
    return gt.as_raw_html()
