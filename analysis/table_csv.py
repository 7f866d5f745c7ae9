"""table.csv: the report's table as data, one row per (study, cell, metric), the numbers unrounded.

Columns: study, budget, cell, role (trial | baseline), is_default, protocol, metric, label, mean, std, n, delta (vs
the default row), ci_low, ci_high (its 95% Welch interval), paper_value, paper_source (P | S), paper_setting,
paper_note (why no paper value is given beside this row), vs_paper (agree | disagree | unresolved | untested |
no paper direction | default).
"""

from __future__ import annotations

import polars as pl

from analysis.findings import Findings, Row
from study.metrics import LABELS

SCHEMA = {"study": pl.String, "budget": pl.String, "cell": pl.String, "role": pl.String, "is_default": pl.Boolean,
          "protocol": pl.String, "metric": pl.String, "label": pl.String, "mean": pl.Float64, "std": pl.Float64,
          "n": pl.Int64, "delta": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "paper_value": pl.Float64,
          "paper_source": pl.String, "paper_setting": pl.String, "paper_note": pl.String, "vs_paper": pl.String}


def csv_rows(f: Findings) -> list[dict]:
    out = []
    rows = f.rows + ([f.baseline] if f.baseline else [])
    for r in rows:
        for m in f.metrics:
            out.append(_row(f, r, m))
    return out


def _row(f: Findings, r: Row, m: str) -> dict:
    s, d = r.summary, r.diff.get(m)
    shown = r.paper_shown(m) if r.role == "trial" else None
    entry = r.paper.get(m) if r.role == "trial" else None
    if r is f.default:
        verdict = "default"
    else:
        verdict = r.agreement.get(m, "")
    return {"study": f.spec.name, "budget": f.budget, "cell": r.label, "role": r.role,
            "is_default": bool(s.get("is_default", False)), "protocol": "; ".join(s.get("protocols") or []),
            "metric": m, "label": LABELS[m], "mean": s.get(f"{m}.mean"), "std": s.get(f"{m}.std"), "n": s["n"],
            "delta": d.delta if d else None, "ci_low": d.low if d else None, "ci_high": d.high if d else None,
            "paper_value": shown.value if shown else None, "paper_source": shown.source if shown else None,
            "paper_setting": f"{entry.name} ({entry.epochs} epochs)" if entry else None,
            "paper_note": None if shown else (r.paper_text(m) if r.role == "trial" else "not reported"),
            "vs_paper": verdict}


def to_csv(findings: list[Findings]) -> str:
    return pl.DataFrame([row for f in findings for row in csv_rows(f)], schema=SCHEMA).write_csv()
