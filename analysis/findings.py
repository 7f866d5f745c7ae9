"""What a study's numbers show, and only that: each row against the default row (95% Welch interval) and against the
paper's direction, the trained cells against the random-init encoder, and the one-sentence finding at the top.

Words follow the intervals: a difference is named ("beats", "below") only when its 95% interval excludes 0; otherwise
the report says the two cannot be told apart, and with one seed that the comparison is untested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from analysis.paper import NOT_REPORTED, Direction, PaperValue, paper_direction, paper_entry
from analysis.protocol import paper_reason
from analysis.runs import baseline_summary, cell_summary
from analysis.stats import Difference, against_baseline, difference
from study.metrics import LABELS, LOWER_IS_BETTER
from study.studies import StudySpec

# The paper's table columns, in its order (Table 1): DAVIS J&F / J / F, VIP mIoU, JHMDB PCK@0.1 / PCK@0.2.
PAPER_COLUMNS = ("davis.jf_mean", "davis.j_mean", "davis.f_mean", "vip.miou", "jhmdb.pck_0.1", "jhmdb.pck_0.2")
NO_DIRECTION = "no paper direction"


@dataclass
class Row:
    """One row of a study's table: a cell (or the random-init encoder) with everything the report says about it."""
    summary: dict[str, Any]  # the cell_summary / baseline_summary row
    role: str  # trial | baseline
    paper: dict[str, PaperValue | None] = field(default_factory=dict)  # the paper's number for this setting
    paper_reason: str | None = None  # why it is not shown beside this row (another protocol), or None
    diff: dict[str, Difference] = field(default_factory=dict)  # vs the default row
    direction: dict[str, tuple[Direction, bool] | None] = field(default_factory=dict)
    agreement: dict[str, str] = field(default_factory=dict)  # agree | disagree | unresolved | untested | no paper ...
    vs_random: Difference | None = None  # the primary metric against random init

    def paper_shown(self, metric: str) -> PaperValue | None:
        return None if self.paper_reason else self.paper.get(metric)

    def paper_text(self, metric: str) -> str:
        """'58.1 [S]', 'not reported', or why not here: 'n/a: dino protocol'."""
        if self.paper.get(metric) is None:
            return NOT_REPORTED
        return self.paper_reason or self.paper[metric].text()

    @property
    def label(self) -> str:
        return self.summary["cell"]

    def mean(self, metric: str) -> float | None:
        return self.summary.get(f"{metric}.mean")

    def values(self, metric: str) -> list[float]:
        return self.summary.get(f"{metric}.values") or []


@dataclass
class Findings:
    spec: StudySpec
    budget: str
    metrics: list[str]
    rows: list[Row]
    baseline: Row | None
    default: Row | None
    training: str  # beats | below | unresolved | untested | no baseline | nothing finished
    training_text: str
    headline: str
    tried_baseline: tuple[str, int] | None = None  # (running | failed, runs) when random init ran but did not finish

    @property
    def primary(self) -> str:
        return self.spec.primary_metric

    @property
    def may_bold_best(self) -> bool:
        """A best row is a finding only when training is shown to help at all."""
        return self.training == "beats"

    def resolved_best(self, metric: str) -> float | None:
        """The best mean of a column at the shown precision (ties are all best), or None when the best is not a
        finding: training not shown to beat random init, or a best row whose lead is not resolved (a row other than
        the default must beat the default row by its 95% interval; the default row must be resolved above every
        other row)."""
        done = [r for r in self.rows if r.summary["n"] and r.mean(metric) is not None]
        if not self.may_bold_best or not done or self.default is None:
            return None
        best = (max if higher_is_better(metric) else min)(round(r.mean(metric), 1) for r in done)
        for r in (r for r in done if round(r.mean(metric), 1) == best):
            others = [o for o in done if o is not self.default] if r is self.default else [r]
            if not all(o.diff.get(metric) and o.diff[metric].resolved and
                       _won(o.diff[metric], metric) == (r is not self.default) for o in others):
                return None
        return best


def shown_metrics(spec: StudySpec, frame: pl.DataFrame) -> list[str]:
    """A column per paper metric that any run reported, and always the study's primary metric."""
    measured = {m for m in PAPER_COLUMNS if frame.height and frame[m].drop_nulls().len()}
    return [m for m in PAPER_COLUMNS if m in measured or m == spec.primary_metric]


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def agreement(diff: Difference, direction: tuple[Direction, bool] | None, metric: str) -> str:
    """agree / disagree / unresolved against the paper's direction; untested without an interval."""
    if diff.delta is None:
        return ""
    if direction is None:
        return NO_DIRECTION
    if diff.low is None:
        return "untested"
    if not diff.resolved:
        return "unresolved"
    row_won = (diff.low > 0) == higher_is_better(metric)
    return "agree" if row_won == direction[1] else "disagree"


def study_findings(spec: StudySpec, frame: pl.DataFrame, budget: str) -> Findings:
    metrics = shown_metrics(spec, frame)
    summary = cell_summary(frame, spec, metrics).to_dicts()
    rows = [Row(s, "trial") for s in summary]
    base = baseline_summary(frame, metrics)
    baseline = Row(base, "baseline") if base else None
    default = next((r for r in rows if r.summary["is_default"]), None)
    for r in rows:
        overrides = json.loads(r.summary["cell_key"]) if r.summary["cell_key"] else r.label
        r.paper_reason = paper_reason(r.summary["protocols"])
        for m in metrics:
            r.paper[m] = paper_entry(spec.name, overrides, m, spec)
            if default is None or r is default:
                continue
            r.diff[m] = difference(r.values(m), default.values(m), higher_is_better=higher_is_better(m))
            if isinstance(overrides, dict) and default.summary["cell_key"] and not spec.is_search:
                r.direction[m] = paper_direction(spec, overrides, json.loads(default.summary["cell_key"]), m)
            else:
                r.direction[m] = None
            r.agreement[m] = agreement(r.diff[m], r.direction[m], m)
        if baseline and r.summary["n"]:
            r.vs_random = against_baseline(r.values(spec.primary_metric), baseline.values(spec.primary_metric),
                                           higher_is_better=higher_is_better(spec.primary_metric))
    if baseline:
        for m in metrics:  # random init against the default row: the default row's test against it, turned round
            if default is not None and default.summary["n"]:
                baseline.diff[m] = against_baseline(default.values(m), baseline.values(m),
                                                    higher_is_better=higher_is_better(m)).negated()
    training, training_text = training_check(spec, rows, baseline)
    tried = frame.filter(pl.col("role") == "baseline") if frame.height else frame
    tried_baseline = None
    if baseline is None and tried.height:
        running = tried["status"].is_in(["RUNNING", "SCHEDULED"]).any()
        tried_baseline = ("running" if running else "failed", tried.height)
    return Findings(spec, budget, metrics, rows, baseline, default, training, training_text,
                    headline_sentence(spec, rows, default), tried_baseline)


# ---------------------------------------------------------------- the sentences
def _num(x: float) -> str:
    return f"{x:.1f}"


def _interval(d: Difference, sign: float = 1.0) -> str:
    lo, hi = sorted((sign * d.low, sign * d.high))
    return f"[{lo:+.1f}, {hi:+.1f}]"


def _seeds_phrase(rows: list[Row]) -> str:
    ns = sorted({r.summary["n"] for r in rows if r.summary["n"]})
    if not ns:
        return "no finished seed"
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return f"{n} seed{'s' if ns[-1] > 1 else ''} per cell"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def training_check(spec: StudySpec, rows: list[Row], baseline: Row | None) -> tuple[str, str]:
    """Do the trained cells beat the random-init encoder on the primary metric? (status, one sentence)."""
    metric, label = spec.primary_metric, LABELS[spec.primary_metric]
    done = [r for r in rows if r.summary["n"] and r.mean(metric) is not None]
    if not done:
        return "nothing finished", "No trained cell has finished yet."
    if baseline is None or baseline.mean(metric) is None:
        return "no baseline", ("The random-init encoder was not evaluated, so this report cannot say whether training "
                               "helped at all.")
    ref = f"the random-init encoder ({label} {_num(baseline.mean(metric))})"
    below = [r for r in done if r.vs_random.resolved and not _won(r.vs_random, metric)]
    above = [r for r in done if r.vs_random.resolved and _won(r.vs_random, metric)]
    untested = [r for r in done if r.vs_random.low is None]
    unresolved = [r for r in done if r not in below and r not in above and r not in untested]
    n = len(done)
    if len(above) == n:
        return "beats", (f"Yes: every trained cell beats {ref}; each 95% interval of the difference lies above 0 "
                         f"(smallest gain {min(abs(r.vs_random.delta) for r in done):.1f} points).")
    if len(untested) == n:
        means = [r.mean(metric) for r in done]
        return "untested", (f"Untested: with one seed per cell there is no interval against {ref}; the cells score "
                            f"{_num(min(means))} to {_num(max(means))}.")

    def listed(rows: list[Row]) -> str:
        return "; ".join(f"{r.label}: {r.vs_random.delta:+.1f} {_interval(r.vs_random)}" for r in rows)

    parts = [f"{len(below)} of {n} trained cells do worse than it ({listed(below)})" if below else "",
             f"{len(unresolved)} of {n} trained cells cannot be told apart from it ({listed(unresolved)})" if unresolved else "",
             f"{len(untested)} of {n} trained cells are untested (one seed)" if untested else "",
             f"{len(above)} of {n} trained cells beat it ({listed(above)})" if above else ""]
    lead = "Not for every cell" if above else "No" if below else "Not shown"
    # With no cell above random init the factor's rows compare encoders that learned nothing shown; with some above,
    # a cell at random init's level is what the factor did, and says so by its row.
    caveat = "" if above else (" Differences between the cells say little about the factor while training is not "
                               "shown to beat random init.")
    return ("below" if below else "unresolved"), (
        f"{lead}: against {ref}, " + "; ".join(p for p in parts if p) + "." + caveat)


def _won(d: Difference, metric: str) -> bool:
    return (d.low > 0) == higher_is_better(metric)


def headline_sentence(spec: StudySpec, rows: list[Row], default: Row | None) -> str:
    """One sentence on what the study found on its primary metric, each claim backed by its 95% interval."""
    metric, label = spec.primary_metric, LABELS[spec.primary_metric]
    if default is None:
        if spec.is_search:
            return (f"A search over {', '.join(p.key for p in spec.search)}: its trials are listed, and no difference "
                    f"between them is tested.")
        return "No comparison: the study names no default cell to measure differences against."
    if not default.summary["n"]:
        return (f"No comparison: the default row has no finished seed, and every difference in {label} is measured "
                f"against it.")
    others = [r for r in rows if r is not default and r.summary["n"] and metric in r.diff and r.diff[metric].delta is not None]
    if not others:
        return f"No comparison: only the default row ({default.label}) has finished."
    name = default.label
    won, lost, unresolved, untested = [], [], [], []
    for r in others:
        d = r.diff[metric]
        if d.low is None:
            untested.append(r)
        elif not d.resolved:
            unresolved.append(r)
        elif _won(d, metric):
            won.append(r)
        else:
            lost.append(r)
    clauses = []
    for r in lost:  # the default beats this row: say it from the default's side
        d = r.diff[metric]
        clauses.append(f"{name} beats {r.label} by {abs(d.delta):.1f} {label} points (95% CI {_interval(d, -1.0)})"
                       + _paper_clause(r, metric))
    for r in won:
        d = r.diff[metric]
        clauses.append(f"{r.label} beats {name} by {abs(d.delta):.1f} {label} points (95% CI {_interval(d)})"
                       + _paper_clause(r, metric))
    if unresolved:
        if len(unresolved) == 1:
            d = unresolved[0].diff[metric]
            what = f"the difference {d.delta:+.1f} has a 95% interval {_interval(d)}"
        else:
            what = ("the differences " + ", ".join(f"{r.diff[metric].delta:+.1f} {_interval(r.diff[metric])}"
                                                   for r in unresolved) + " all have 95% intervals that include 0")
        clauses.append(f"the study cannot tell {_join([r.label for r in unresolved])} from {name}: {what}")
        for direction, labels in _by_direction(unresolved, metric):
            clauses.append(f"so for {_join(labels)} the study neither confirms nor contradicts the paper, which {direction.claim}")
    if untested:
        clauses.append(f"{_join([r.label for r in untested])} against {name} "
                       f"{'is' if len(untested) == 1 else 'are'} untested (one seed: no interval)")
    return f"Over {_seeds_phrase(rows)}, " + "; ".join(clauses) + "."


def _by_direction(rows: list[Row], metric: str) -> list[tuple[Direction, list[str]]]:
    groups: dict[str, tuple[Direction, list[str]]] = {}
    for r in rows:
        if r.direction.get(metric):
            d = r.direction[metric][0]
            groups.setdefault(d.factor, (d, []))[1].append(r.label)
    return list(groups.values())


def _paper_clause(row: Row, metric: str) -> str:
    """', as the paper ...' or ', the opposite of the paper's direction (...)' for a resolved difference."""
    verdict, direction = row.agreement.get(metric), row.direction.get(metric)
    if direction is None:
        return ""
    if verdict == "agree":
        return f", as the paper {direction[0].claim}"
    if verdict == "disagree":
        return f", the opposite of the paper's direction (the paper {direction[0].claim})"
    return ""
