"""The table in the paper's style (one factor's settings as rows, the benchmarks as columns) and its three writers.

`build_table` turns a study's runs into a `Table` of already-formatted cells; `to_markdown`, `to_latex` and `to_html`
only lay those cells out, so the three files always say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from analysis.findings import NO_DIRECTION, Findings, Row
from analysis.paper import NOT_REPORTED
from analysis.stats import METHOD_NOTE, ONE_DRAW_NOTE
from study.metrics import LABELS
from study.studies import StudySpec

PAPER_NOTE = ("paper: the published number for that setting (ViT-S/16, 400 epochs, Kinetics-400, unless marked); "
              "[P] read from the paper, [S] quoted by a later paper; \"not reported\" where the paper gives none; shown "
              "only beside rows evaluated with the paper's propagation protocol (\"n/a\" says why not).")
VERDICT_NOTE = ("vs paper: agree / disagree when the row's 95% interval against the default row excludes 0 and the "
                "paper has a direction for that comparison; unresolved when the interval includes 0; untested with "
                "one seed.")


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


def paper_columns(f: Findings) -> list[str]:
    """The metrics that get a paper column: those with a paper number for some row, else the primary metric."""
    return [m for m in f.metrics if any(r.paper.get(m) for r in f.rows)] or \
        ([f.primary] if f.primary in f.metrics else [])


def build_table(f: Findings, title: str | None = None) -> Table:
    """The study's table: per metric ours (mean ± std) and the paper's; seeds; the primary metric's difference to the
    default row with its 95% interval, and the verdict against the paper's direction."""
    spec, metrics, primary = f.spec, f.metrics, f.primary
    with_paper = paper_columns(f)
    has_delta = f.default is not None
    header = [factor_name(spec)]
    for m in metrics:
        header += [LABELS[m]] + ([f"{LABELS[m]} paper"] if m in with_paper else [])
    header.append("seeds")
    if has_delta:
        header += [f"Δ {LABELS[primary]} vs default [95% CI]", "vs paper"]

    best = {m: f.resolved_best(m) for m in metrics}
    notes, rows = [], []
    for r in f.rows:
        s = r.summary
        line = [TableCell(r.label + (" (default)" if s["is_default"] else ""))]
        for m in metrics:
            if s["n"]:
                mean = r.mean(m)
                line.append(TableCell(format_mean_std(mean, s[f"{m}.std"]),
                                      bold=mean is not None and round(mean, 1) == best[m]))
            else:
                line.append(TableCell(_no_result(s)))
            if m in with_paper:
                line.append(TableCell(r.paper_text(m)))
        line.append(TableCell(_seeds_text(s)))
        if has_delta:
            line += [TableCell(_delta_text(r, f, primary)),
                     TableCell("—" if r is f.default else r.agreement.get(primary, ""))]
        rows.append(line)
        if s["failure"] and s["n_failed"]:
            notes.append(f"{r.label}: failed: {s['failure']}")

    reference_rows = []
    if f.baseline:
        line = [TableCell("random init")]
        for m in metrics:
            line.append(TableCell(format_mean_std(f.baseline.mean(m), f.baseline.summary[f"{m}.std"])))
            if m in with_paper:
                line.append(TableCell(NOT_REPORTED))
        line.append(TableCell(str(f.baseline.summary["n"])))
        if has_delta:
            line += [TableCell(_delta_text(f.baseline, f, primary)), TableCell("")]
        reference_rows.append(line)
    elif f.tried_baseline:
        # the random-init evaluation ran but did not finish: say so rather than drop the row
        line = [TableCell("random init")]
        for m in metrics:
            line += [TableCell(f.tried_baseline[0])] + ([TableCell(NOT_REPORTED)] if m in with_paper else [])
        line += [TableCell(f"0/{f.tried_baseline[1]}")] + ([TableCell(""), TableCell("")] if has_delta else [])
        reference_rows.append(line)

    notes = _standard_notes(f, has_delta) + notes
    return Table(title=title or spec.title, header=header, rows=rows, reference_rows=reference_rows, notes=notes)


def _delta_text(row: Row, f: Findings, metric: str) -> str:
    if row is f.default:
        return "—"
    d = row.diff.get(metric)
    return d.text() if d else ""


def _standard_notes(f: Findings, has_delta: bool) -> list[str]:
    bold = ("bold: the best mean of a column, where its lead is resolved (its 95% interval against the default row "
            "excludes 0; for the default row, every other row's does)." if f.may_bold_best else
            "nothing is bold: the trained cells are not shown to beat the random-init encoder, so no row is a best.")
    notes = ["mean ± std over seeds (std with ddof=1; a single seed shows its value alone); " + bold, PAPER_NOTE]
    if has_delta:
        if (f.default is not None and f.default.summary["n"] < 2) or \
                all(r.summary["n"] < 2 for r in f.rows if r is not f.default):
            notes.append("Differences are untested: a 95% interval needs at least two seeds in the row and in the "
                         f"default row; run more seeds (`study run {f.spec.name} --seeds 3`).")
        notes.append(METHOD_NOTE)
        notes.append(VERDICT_NOTE)
        used = {d[0].factor: d[0] for r in f.rows for d in [r.direction.get(f.primary)] if d}
        notes += [f"paper direction ({d.factor}): the paper {d.claim}." for d in used.values()]
        if any(r.agreement.get(f.primary) == NO_DIRECTION for r in f.rows):
            notes.append(f"{NO_DIRECTION}: nothing known from the paper about that comparison.")
    if f.baseline:
        notes.append("random init: the untrained encoder evaluated with the same protocol, to show what training bought.")
        if f.baseline.summary["n"] == 1:
            notes.append(ONE_DRAW_NOTE)
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
