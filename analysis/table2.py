"""`study report table2`: the laptop-scale counterpart of the paper's Table 2, over every study with finished runs.

One table puts each study's rows beside the paper: the paper's value, ours, the 95% interval against the study's
default row and agree / disagree / unresolved against the paper's direction, with the budget and the propagation
protocol that made each study. Each study's own section follows, as in its own report.
"""

from __future__ import annotations

from analysis import provenance
from analysis.findings import Findings
from analysis.paper import paper_table
from analysis.report import StudyPart, budget_of, has_finished, html_page, markdown_part, study_part
from analysis.table_csv import to_csv
from analysis.tables import format_mean_std, to_html, to_latex
from study.errors import UserError
from study.metrics import LABELS
from study.studies import StudySpec, load_study

TITLE = "Table 2 at laptop scale: SiamMAE ablations"


def table2_rank(spec: StudySpec) -> int:
    """Studies of the paper's Table 2 first, then studies of other tables (Table 1's patch size), then the rest."""
    table = paper_table(spec)
    return 0 if table.startswith("Table 2") else 1 if table else 2


def gather(budget: str | None, tracking_uri: str | None) -> tuple[list[tuple[StudySpec, list[dict], dict | None]],
                                                                   list[str]]:
    """(spec, records, parent run) of every study with finished runs (at `budget`), in table order; and the skipped."""
    from study import tracking

    found, skipped = [], []
    for study, b in tracking.studies_with_runs(tracking_uri):
        if budget is not None and b != budget:
            continue
        try:
            spec = load_study(study)
        except UserError as e:  # an experiment whose study file is gone: say so, keep the rest
            skipped.append(f"{study} [{b}]: {e}")
            continue
        records = tracking.fetch_study_runs(study, b, tracking_uri)
        if has_finished(records):
            found.append((spec, records, tracking.fetch_parent_run(study, b, tracking_uri)))
    if not found:
        where = f" at budget {budget}" if budget else ""
        raise UserError(f"no study has finished runs{where}; run `study run NAME` first (see `study list`)")
    found.sort(key=lambda x: (table2_rank(x[0]), x[0].name, budget_of(x[1])))
    return found, skipped


def comparison_lines(parts: list[tuple[str, StudyPart]]) -> list[str]:
    """The summary table: one row per cell of every study, on each study's primary metric."""
    out = ["| study | budget, protocol | setting | metric | paper | ours (mean ± std, n) | Δ vs default [95% CI] "
           "| vs paper |", "| --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for letter, part in parts:
        f = part.findings
        m = f.primary
        protocols = sorted({p for r in f.rows for p in r.summary["protocols"]})
        made = f"`{f.budget}`, " + (", ".join(f"`{p}`" for p in protocols) or "?")
        for r in f.rows + ([f.baseline] if f.baseline else []):
            s = r.summary
            ours = (f"{format_mean_std(r.mean(m), s[f'{m}.std'])} (n={s['n']})" if s["n"] else
                    f"no finished seed ({s['state']})")
            d = r.diff.get(m)
            delta = "—" if r is f.default else (d.text() if d else "")
            verdict = "" if r.role == "baseline" else "—" if r is f.default else r.agreement.get(m, "")
            label = r.label + (" (default)" if s.get("is_default") else "")
            out.append(f"| {letter} {part.spec.title} | {made} | {label} | {LABELS[m]} | {r.paper_text(m)} | {ours} "
                       f"| {delta} | {verdict} |")
    return out + [""]


def table2_files(budget: str | None, tracking_uri: str | None, command: str) -> dict[str, str | bytes]:
    found, skipped = gather(budget, tracking_uri)
    parts: list[tuple[str, StudyPart]] = []
    for i, (spec, records, parent) in enumerate(found):
        letter = f"({chr(ord('a') + i)})"
        b = budget_of(records)
        table = paper_table(spec)
        title = f"{letter} {spec.title} [{b}" + (f", the paper's {table}" if table else "") + "]"
        parts.append((letter, study_part(spec, records, parent, prefix=f"{spec.name}_{b}_", title=title)))
    md = [f"# {TITLE}", "",
          "Made by `study report table2`: one section per study with finished runs. The paper's ablations train "
          "ViT-S/16 for 400 epochs on Kinetics-400 and evaluate on DAVIS-2017; each study here states the budget and "
          "the propagation protocol that made it, and compares directions, not levels, unless it ran the paper's "
          "budget. Sub-table letters (a), (b), ... are ours.", "",
          "## Against the paper", ""] + comparison_lines(parts)
    md += _finding_lines(parts)
    files: dict[str, str | bytes] = {}
    tex, htmls = [], []
    for letter, part in parts:
        md += [f"## {part.table.title}", ""] + markdown_part(part, "###")
        md += ["### Provenance", ""] + [f"- {k}: {v}" for k, v in part.provenance] + [""]
        tex += [to_latex(part.table), r"\bigskip", ""]
        htmls.append(to_html(part.table))
        files.update(part.files)
    if skipped:
        md += ["## Skipped", ""] + [f"- {s}" for s in skipped] + [""]
    md += ["## Provenance of this document", ""] + [f"- {k}: {v}" for k, v in provenance.report_lines(command)] + [""]
    findings: list[Findings] = [p.findings for _, p in parts]
    return {**files, "report.md": "\n".join(md), "table.csv": to_csv(findings), "table.tex": "\n".join(tex),
            "table.html": html_page(TITLE, htmls)}


def _finding_lines(parts: list[tuple[str, StudyPart]]) -> list[str]:
    out = []
    for letter, part in parts:
        f = part.findings
        out.append(f"- **{letter} {part.spec.title}** [{f.budget}]. Does training help? {f.training_text} "
                   f"Finding: {f.headline}")
    return out + [""]
