"""What a report may claim: the sentence at the top, the verdict against the paper, the random-init check, no bold best
when training is not shown to help. Hand-made runs whose intervals are known (worked out in the comments)."""

import math

import pytest
from scipy import stats as scipy_stats

from analysis.findings import headline_sentence, study_findings
from analysis.runs import runs_frame
from analysis.tables import build_table, to_markdown
from study.studies import load_study
from tests.analysis_helpers import davis, record

MASK_CLAIM = ("the paper, which implies by choosing 0.95 as its default after its mask-ratio ablation, Table 2(d) "
              "[P: the choice; the direction is implied, no numbers known]")


def mask_ratio(cells: dict[str, list[float]], baseline: list[float] | None = None):
    """mask_ratio runs: {cell: DAVIS J&F per seed}, J and F set 1 below and above; random init when given."""
    recs = [record("mask_ratio", cell, seed, metrics=davis(v, v - 1, v + 1), trial=10 * i + seed)
            for i, (cell, values) in enumerate(cells.items()) for seed, v in enumerate(values)]
    recs += [record("mask_ratio", "random init", s, role="baseline", metrics=davis(v, v - 1, v + 1))
             for s, v in enumerate(baseline or [])]
    return study_findings(load_study("mask_ratio"), runs_frame(recs), "cpu")


def test_resolved_as_the_paper_implies():
    # 0.5 - 0.95: -5.0, variances 1 and 1 over 3 seeds: se^2 = 2/3, df = 4, half = t(0.975, 4) * sqrt(2/3) = 2.267
    f = mask_ratio({"0.5": [55.0, 56.0, 57.0], "0.95": [60.0, 61.0, 62.0]})
    row = f.rows[0]
    assert (row.diff["davis.jf_mean"].low, row.diff["davis.jf_mean"].high) == pytest.approx((-7.267, -2.733), abs=1e-3)
    assert row.agreement["davis.jf_mean"] == "agree"
    assert f.headline == ("Over 3 seeds per cell, 0.95 beats 0.5 by 5.0 DAVIS J&F points (95% CI [+2.7, +7.3]), as "
                          "the paper implies by choosing 0.95 as its default after its mask-ratio ablation, Table 2(d) "
                          "[P: the choice; the direction is implied, no numbers known].")


def test_resolved_against_the_paper():
    f = mask_ratio({"0.5": [65.0, 66.0, 67.0], "0.95": [60.0, 61.0, 62.0]})
    assert f.rows[0].agreement["davis.jf_mean"] == "disagree"
    assert f.headline.startswith("Over 3 seeds per cell, 0.5 beats 0.95 by 5.0 DAVIS J&F points (95% CI [+2.7, +7.3]), "
                                 "the opposite of the paper's direction (the paper implies by choosing 0.95")


def test_unresolved_says_it_cannot_tell_them_apart():
    # the measurement: 0.95 at 39.1 / 36.4 / 35.9 and 0.5 at 37.3 / 36.2 / 36.2: -0.6, 95% CI [-4.3, +3.2]
    f = mask_ratio({"0.5": [37.3, 36.2, 36.2], "0.95": [39.1, 36.4, 35.9]})
    assert f.rows[0].agreement["davis.jf_mean"] == "unresolved"
    assert f.headline == ("Over 3 seeds per cell, the study cannot tell 0.5 from 0.95: the difference -0.6 has a 95% "
                          f"interval [-4.3, +3.2]; so for 0.5 the study neither confirms nor contradicts {MASK_CLAIM}.")
    for word in ("rose", "trend", "better", "best"):
        assert word not in f.headline


def test_one_seed_is_untested():
    f = mask_ratio({"0.5": [55.0], "0.9": [57.0], "0.95": [60.0]}, baseline=[40.0])
    assert [r.agreement.get("davis.jf_mean") for r in f.rows] == ["untested", "", "untested", None]
    assert f.headline == "Over 1 seed per cell, 0.5 or 0.9 against 0.95 are untested (one seed: no interval)."
    assert f.training == "untested"
    assert f.training_text == ("Untested: with one seed per cell there is no interval against the random-init encoder "
                               "(DAVIS J&F 40.0); the cells score 55.0 to 60.0.")
    assert not f.may_bold_best
    assert "**" not in to_markdown(build_table(f))


def one_draw_half_width(values):
    """A single random-init run taken to share the cell's variance: t(0.975, n-1) * s * sqrt(1/n + 1)."""
    n, m = len(values), sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return scipy_stats.t.ppf(0.975, n - 1) * s * math.sqrt(1 / n + 1)


def test_trained_cells_beat_random_init_and_the_best_is_bold():
    f = mask_ratio({"0.5": [55.0, 56.0, 57.0], "0.95": [60.0, 61.0, 62.0]}, baseline=[40.0])
    # 0.5: +16.0 +- 4.968 (t(0.975, 2) = 4.303, s = 1, sqrt(4/3))
    d = f.rows[0].vs_random
    assert (d.low, d.high) == pytest.approx((16.0 - one_draw_half_width([55, 56, 57]), 16.0 + 4.9683), abs=1e-3)
    assert f.training == "beats" and f.may_bold_best
    assert f.training_text == ("Yes: every trained cell beats the random-init encoder (DAVIS J&F 40.0); each 95% "
                               "interval of the difference lies above 0 (smallest gain 16.0 points).")
    assert "| 0.95 (default) | **61.0 ± 1.0** |" in to_markdown(build_table(f))


def test_cells_below_random_init_are_said_first_and_nothing_is_bold():
    # 0.5: 56 - 70 = -14.0 +- 4.968 -> below; 0.95: 61 - 70 = -9.0 +- 4.968 -> below
    f = mask_ratio({"0.5": [55.0, 56.0, 57.0], "0.95": [60.0, 61.0, 62.0]}, baseline=[70.0])
    assert f.training == "below" and not f.may_bold_best
    assert f.training_text == ("No: against the random-init encoder (DAVIS J&F 70.0), 2 of 2 trained cells do worse "
                               "than it (0.5: -14.0 [-19.0, -9.0]; 0.95: -9.0 [-14.0, -4.0]). Differences between the "
                               "cells say little about the factor while training is not shown to beat random init.")
    table = build_table(f)
    assert "**" not in to_markdown(table)
    assert any(n.startswith("mean ± std over seeds") and "nothing is bold" in n for n in table.notes)


def test_unresolved_against_random_init_and_welch_with_several_baselines():
    # with two random-init runs the comparison is Welch's: 0.95 (60, 61, 62) vs (61.5, 62.5): -1.0, interval includes
    # 0; 0.5 (55, 56, 57): -6.0 with the same standard error sqrt(1/3 + 1/4), so resolved below
    f = mask_ratio({"0.5": [55.0, 56.0, 57.0], "0.95": [60.0, 61.0, 62.0]}, baseline=[61.5, 62.5])
    assert f.rows[3].vs_random.verdict == "not significant"
    assert f.rows[0].vs_random.verdict == "worse"
    assert f.training == "below"
    assert f.training_text.startswith("No: against the random-init encoder (DAVIS J&F 62.0), 1 of 2 trained cells do "
                                      "worse than it (0.5: -6.0 [")
    assert "1 of 2 trained cells cannot be told apart from it (0.95: -1.0 [" in f.training_text


def test_no_random_init_means_no_claim_about_training():
    f = mask_ratio({"0.5": [55.0, 56.0, 57.0], "0.95": [60.0, 61.0, 62.0]})
    assert f.training == "no baseline" and not f.may_bold_best
    assert "cannot say whether training helped" in f.training_text


def test_decoder_verdicts_follow_the_sourced_direction_only():
    recs = [record("decoder", cell, s, metrics=davis(v, v, v), trial=10 * i + s)
            for i, (cell, vals) in enumerate({"joint": [40.0, 41.0, 42.0], "cross-self": [50.0, 51.0, 52.0],
                                              "cross": [45.0, 46.0, 47.0]}.items()) for s, v in enumerate(vals)]
    f = study_findings(load_study("decoder"), runs_frame(recs), "cpu")
    verdicts = {r.label: r.agreement.get("davis.jf_mean") for r in f.rows}
    assert verdicts == {"joint": "no paper direction", "cross-self": None, "cross": "agree"}
    assert f.headline.startswith("Over 3 seeds per cell, cross-self beats joint by 10.0 DAVIS J&F points (95% CI [")
    assert "; cross-self beats cross by 5.0 DAVIS J&F points (95% CI [+2.7, +7.3]), as the paper found the cross-self " \
           "decoder better than cross-attention only (58.1 vs 52.2 DAVIS J&F at 400 epochs [S])." in f.headline


def test_a_search_and_a_missing_default_say_there_is_no_comparison():
    assert headline_sentence(load_study("lr_temperature"), [], None) == ("A search over train.blr, eval.temperature: its trials are listed, "
                                                 "and no difference between them is tested.")
    f = mask_ratio({"0.5": [55.0, 56.0]})
    assert f.headline == ("No comparison: the default row has no finished seed, and every difference in DAVIS J&F is "
                          "measured against it.")


def test_some_cells_above_random_init_and_one_at_its_level():
    """The factor took one cell down to random init's level while the other learned: that is the factor's doing, so
    the sentence lists both and adds no caveat that training was not shown to help."""
    f = mask_ratio({"0.5": [39.0, 41.0, 43.0], "0.95": [60.0, 61.0, 62.0]}, baseline=[40.0])
    assert f.training == "unresolved" and not f.may_bold_best
    assert f.training_text.startswith("Not for every cell: against the random-init encoder (DAVIS J&F 40.0), 1 of 2 "
                                      "trained cells cannot be told apart from it (0.5: +1.0 [")
    assert "1 of 2 trained cells beat it (0.95: +21.0 [" in f.training_text
    assert f.training_text.endswith(").") and "say little" not in f.training_text
