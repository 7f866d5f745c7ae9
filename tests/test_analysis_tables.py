"""The paper-style table: exact Markdown for a fixture of runs, LaTeX structure, HTML, the per-cell summary, the
paper's reference values."""

import re

import polars as pl
import pytest

from analysis.findings import study_findings
from analysis.runs import cell_summary, runs_frame
from analysis.tables import build_table, latex_escape, to_html, to_latex, to_markdown
from study.studies import load_study
from tests.analysis_helpers import decoder_records, mask_ratio_records, record, davis

MASK_RATIO_TABLE = """\
| mask_ratio | DAVIS J&F | DAVIS J&F paper | J | J paper | F | F paper | seeds | Δ DAVIS J&F vs default [95% CI] | vs paper |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| 0.5 | failed (2/2 seeds) | not reported | failed (2/2 seeds) | not reported | failed (2/2 seeds) | not reported | 0/2 (2 failed) |  |  |
| 0.75 | **56.2 ± 0.3** | not reported | **54.3 ± 0.4** | not reported | **58.1 ± 0.1** | not reported | 2/2 | +3.9 [+2.1, +5.7] better | disagree |
| 0.9 | missing | not reported | missing | not reported | missing | not reported | 0/2 (2 missing) |  |  |
| 0.95 (default) | 52.3 ± 0.4 | 58.1 [S] | 50.5 ± 0.7 | 56.6 [S] | 54.1 ± 0.1 | 59.6 [S] | 2/2 | — | — |
| random init | 44.4 | not reported | 43.0 | not reported | 45.8 | not reported | 1 | -7.9 [-14.5, -1.3] worse |  |
"""

DECODER_TABLE = """\
| decoder | DAVIS J&F | DAVIS J&F paper | J | J paper | F | F paper | seeds | Δ DAVIS J&F vs default [95% CI] | vs paper |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| joint | running | not reported | running | not reported | running | not reported | 0/2 (1 running, 1 missing) |  |  |
| cross-self (default) | 50.5 ± 0.7 | 58.1 [S] | 49.5 ± 0.7 | 56.6 [S] | 51.5 ± 0.7 | 59.6 [S] | 2/2 | — | — |
| cross | 45.0 | 52.2 [S] | 44.0 | not reported | 46.0 | not reported | 1/2 (1 failed) | -5.5, untested (1 seed) | untested |
"""


def table_of(study, records, title=None):
    return build_table(study_findings(load_study(study), runs_frame(records), "cpu"), title=title)


def mask_ratio_table():
    return table_of("mask_ratio", mask_ratio_records())


def test_markdown_table_exact():
    """Hand-checked: 0.75 = mean(56.0, 56.4) = 56.2, std sqrt(0.08) = 0.28; its Welch interval vs the default
    (52.3 ± 0.42) excludes 0, so it is marked better, and disagrees with the paper's implied direction (0.95 beats the
    other ratios); 0.5 failed on both seeds, 0.9 never ran. Random init (one run, 44.4) against the default row:
    -7.9 ± t(0.975, 1) * 0.424 * sqrt(1/2 + 1) = -7.9 ± 6.6. Every finished cell beats random init, so bold is allowed."""
    assert to_markdown(mask_ratio_table()) == MASK_RATIO_TABLE


def test_markdown_table_running_partial_and_untested():
    """No random init here, so nothing is bold: the report cannot say that training helped."""
    table = table_of("decoder", decoder_records())
    assert to_markdown(table) == DECODER_TABLE
    assert any("untested" in n and "study run decoder --seeds 3" in n for n in table.notes)
    assert "cross: failed: worker killed" in table.notes


def test_one_seed_study_says_untested():
    recs = [record("encoder", "siamese", 0, metrics=davis(50.0, 49.0, 51.0)),
            record("encoder", "joint", 0, metrics=davis(47.0, 46.0, 48.0))]
    table = table_of("encoder", recs)
    md = to_markdown(table)
    assert "| joint | 47.0 | not reported | 46.0 |" in md
    assert "-3.0, untested (1 seed)" in md
    assert any(n.startswith("Differences are untested") for n in table.notes)


def test_latex_structure():
    tex = to_latex(mask_ratio_table())
    lines = tex.splitlines()
    assert [ln for ln in lines if ln in (r"\toprule", r"\midrule", r"\bottomrule")] == \
        [r"\toprule", r"\midrule", r"\midrule", r"\bottomrule"]  # header | cells | random init
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    assert spec == "l" + "r" * 9
    body = [ln for ln in lines if ln.endswith(r"\\")]
    assert len(body) == 1 + 4 + 1  # header, four cells, random init
    for ln in body:  # every row has exactly as many cells as the column spec
        assert len(re.findall(r"(?<!\\)&", ln)) == len(spec) - 1
    assert body[0].startswith(r"mask\_ratio & DAVIS J\&F & ")
    assert r"[95\% CI]" in body[0] and r"$\Delta$" in body[0]
    assert r"\textbf{56.2 $\pm$ 0.3}" in tex
    assert "±" not in tex.replace("% ", "")  # pdflatex-safe outside comments too
    assert r"\end{tabular}" in tex


def test_latex_escape():
    assert latex_escape("a_b & c% #1 {x} $") == r"a\_b \& c\% \#1 \{x\} \$"
    assert latex_escape("a\\b") == r"a\textbackslash{}b"


def test_html_has_values_and_bold_best():
    html = to_html(mask_ratio_table())
    assert "56.2 ± 0.3" in html and "failed (2/2 seeds)" in html and "missing" in html and "random init" in html
    assert "font-weight: bold" in html


def test_ties_at_the_shown_precision_are_all_bold():
    """0.5 averages 67.0133 and 0.75 exactly 67.0: both show as 67.0, so both are the best shown, and both beat the
    default (61.0) by a resolved interval, so both are bold (training beats random init at 40.0)."""
    md = to_markdown(table_of("mask_ratio", _records({"0.5": [66.0, 67.0, 68.04], "0.75": [66.0, 67.0, 68.0],
                                                      "0.95": [60.0, 61.0, 62.0]})))
    assert "| 0.5 | **67.0 ± 1.0** |" in md and "| 0.75 | **67.0 ± 1.0** |" in md
    assert "| 0.95 (default) | 61.0 ± 1.0 |" in md


def test_an_unresolved_best_is_not_bold():
    """0.5 has the best mean (61.2) but its interval against the default includes 0: no row is a best."""
    table = table_of("mask_ratio", _records({"0.5": [60.0, 61.0, 62.5], "0.95": [60.0, 61.0, 62.0]}))
    assert "**" not in to_markdown(table)


def test_the_default_is_bold_only_when_resolved_above_every_other_row():
    """0.95 (61.0) is resolved above 0.5 (56.0) but not above 0.75 (60.5): it is not shown to be the best."""
    md = to_markdown(table_of("mask_ratio", _records({"0.5": [55.0, 56.0, 57.0], "0.75": [59.5, 60.5, 61.5],
                                                      "0.95": [60.0, 61.0, 62.0]})))
    assert "**" not in md
    md = to_markdown(table_of("mask_ratio", _records({"0.5": [55.0, 56.0, 57.0], "0.95": [60.0, 61.0, 62.0]})))
    assert "| 0.95 (default) | **61.0 ± 1.0** |" in md


def _records(cells: dict[str, list[float]]) -> list[dict]:
    recs = [record("mask_ratio", cell, seed, metrics=davis(v, v - 1, v + 1), trial=10 * i + seed)
            for i, (cell, values) in enumerate(cells.items()) for seed, v in enumerate(values)]
    return recs + [record("mask_ratio", "random init", 0, role="baseline", metrics=davis(40.0, 39.0, 41.0))]


def test_cell_summary_counts_retries_and_order():
    spec = load_study("mask_ratio")
    recs = mask_ratio_records() + [
        # 0.5 seed 1 was retried and finished: the retry counts, the earlier failure does not
        record("mask_ratio", "0.5", 1, metrics=davis(40.0, 39.0, 41.0), trial=9),
    ]
    s = cell_summary(runs_frame(recs), spec, ["davis.jf_mean"])
    assert s["cell"].to_list() == ["0.5", "0.75", "0.9", "0.95"]
    row = s.row(0, named=True)
    assert (row["n"], row["n_failed"], row["n_missing"], row["state"]) == (1, 1, 0, "partial")
    assert row["davis.jf_mean.std"] is None  # one finished seed: no spread
    assert s.row(2, named=True)["state"] == "missing"
    assert s.row(3, named=True)["davis.jf_mean.std"] == pytest.approx(0.4242640687)
    assert s.row(3, named=True)["is_default"]


def test_runs_frame_columns_and_empty():
    f = runs_frame(mask_ratio_records())
    assert f.height == 7 and f["duration_s"].to_list()[0] == 90.0
    assert f.schema["davis.jf_mean"] == pl.Float64 and f.schema["seed"] == pl.Int64
    empty = runs_frame([])
    assert empty.height == 0 and "davis.jf_mean" in empty.columns
    s = cell_summary(empty, load_study("mask_ratio"), ["davis.jf_mean"])
    assert s["state"].to_list() == ["missing"] * 4 and s["n_expected"].to_list() == [1] * 4


def test_failed_random_init_is_shown_as_failed():
    recs = [r for r in mask_ratio_records() if r["role"] == "trial"]
    recs.append(record("mask_ratio", "random init", 0, role="baseline", status="FAILED", failure="no eval data"))
    md = to_markdown(table_of("mask_ratio", recs))
    assert md.splitlines()[-1] == ("| random init | failed | not reported | failed | not reported | failed | "
                                   "not reported | 0/1 |  |  |")


def test_paper_numbers_only_beside_rows_evaluated_with_the_paper_protocol():
    recs = [record("decoder", "cross-self", s, metrics=davis(50.0 + s, 49.0, 51.0), trial=s) for s in (0, 1)]
    recs += [record("decoder", "cross", s, metrics=davis(45.0 + s, 44.0, 46.0), trial=2 + s,
                    params={"eval.protocol": "dino"}) for s in (0, 1)]
    recs += [record("decoder", "joint", 0, metrics=davis(40.0, 39.0, 41.0), trial=4, params={"eval.topk": 5})]
    md = to_markdown(table_of("decoder", recs))
    assert "| cross-self (default) | 50.5 ± 0.7 | 58.1 [S] | 49.0 ± 0.0 | 56.6 [S] |" in md
    assert "| cross | 45.5 ± 0.7 | n/a: dino protocol | 44.0 ± 0.0 | not reported |" in md
    assert "| joint | 40.0 | not reported |" in md  # no paper number for joint: nothing to withhold
    # an override of the paper preset withholds the number too, and says which
    recs = [record("decoder", "cross-self", 0, metrics=davis(50.0, 49.0, 51.0), params={"eval.temperature": 0.05})]
    md = to_markdown(table_of("decoder", recs))
    assert "| cross-self (default) | 50.0 | n/a: paper + eval.temperature=0.05 |" in md
    recs = [record("decoder", "cross-self", 0, metrics=davis(50.0, 49.0, 51.0), params={"eval.pos_embed": "extend"})]
    assert "| cross-self (default) | 50.0 | n/a: paper + eval.pos_embed=extend |" in to_markdown(table_of("decoder", recs))


def test_a_column_per_metric_present_in_the_runs():
    full = {**davis(50.0, 49.0, 51.0), "vip.miou": 30.0, "jhmdb.pck_0.1": 40.0, "jhmdb.pck_0.2": 70.0,
            "davis.j_recall": 55.0}
    recs = [record("patch_size", "16", 0, metrics=full), record("patch_size", "8", 0, metrics=davis(52.0, 51.0, 53.0))]
    table = table_of("patch_size", recs)
    assert table.header[:14] == ["patch_size", "DAVIS J&F", "DAVIS J&F paper", "J", "J paper", "F", "F paper",
                                 "VIP mIoU", "VIP mIoU paper", "PCK@0.1", "PCK@0.1 paper", "PCK@0.2", "PCK@0.2 paper",
                                 "seeds"]
    md = to_markdown(table)
    assert "| 16 (default) | 50.0 | 62.0 [P, 2000 ep.] | 49.0 | 60.3 [P, 2000 ep.] | 51.0 | 63.7 [P, 2000 ep.] | " \
           "30.0 | 37.3 [P, 2000 ep.] | 40.0 | 47.0 [P, 2000 ep.] | 70.0 | 76.1 [P, 2000 ep.] | 1/1 |" in md
    assert "| 8 | 52.0 | 71.4 [P, 2000 ep.] | 51.0 | 68.4 [P, 2000 ep.] | 53.0 | 74.5 [P, 2000 ep.] | – | " \
           "45.9 [P, 2000 ep.] | – | 61.9 [P, 2000 ep.] | – | 83.8 [P, 2000 ep.] | 1/1 |" in md
    # a DAVIS-only study shows only DAVIS columns
    assert table_of("mask_ratio", mask_ratio_records()).header[1:7] == ["DAVIS J&F", "DAVIS J&F paper", "J", "J paper",
                                                                        "F", "F paper"]
