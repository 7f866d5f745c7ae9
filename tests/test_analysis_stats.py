"""Welch's interval, the verdicts, and the one-seed case."""

import math

import pytest
from scipy import stats as scipy_stats

from analysis.stats import Difference, against_baseline, difference, one_draw_interval, welch_interval


def welch_by_hand(a, b, level=0.95):
    """The textbook formula, written out independently of analysis.stats (which asks scipy's ttest_ind)."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    se2 = va / len(a) + vb / len(b)
    df = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    half = scipy_stats.t.ppf(0.5 + level / 2, df) * math.sqrt(se2)
    return ma - mb, ma - mb - half, ma - mb + half, df


def test_welch_interval_matches_the_formula_and_known_values():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]
    # by hand: means 2.5 and 5, variances 5/3 and 20/3, se^2 = 25/12, df = (25/12)^2 / ((5/12)^2/3 + (20/12)^2/3) = 75/17
    delta, low, high, df = welch_interval(a, b)
    assert delta == pytest.approx(-2.5)
    assert df == pytest.approx(75 / 17)
    half = scipy_stats.t.ppf(0.975, 75 / 17) * math.sqrt(25 / 12)
    assert (low, high) == pytest.approx((-2.5 - half, -2.5 + half))
    assert (low, high) == pytest.approx((-6.3642, 1.3642), abs=1e-4)  # t(0.975, 75/17) = 2.6772
    assert welch_interval(a, b) == pytest.approx(welch_by_hand(a, b))


def test_welch_interval_on_the_table_fixture():
    # the 0.75 row against the default row of tests/analysis_helpers.mask_ratio_records
    delta, low, high, df = welch_interval([56.0, 56.4], [52.0, 52.6])
    assert (delta, low, high, df) == pytest.approx(welch_by_hand([56.0, 56.4], [52.0, 52.6]))
    assert df == pytest.approx(0.13 ** 2 / (0.04 ** 2 + 0.09 ** 2))
    assert f"{low:+.1f} {high:+.1f}" == "+2.1 +5.7"


def test_verdicts_need_the_interval_to_exclude_zero():
    assert difference([56.0, 56.4], [52.0, 52.6]).verdict == "better"
    assert difference([52.0, 52.6], [56.0, 56.4]).verdict == "worse"
    assert difference([50.0, 60.0], [52.0, 56.0]).verdict == "not significant"
    # lower is better (e.g. J decay): a lower mean with a clear interval is better
    assert difference([1.0, 1.2], [5.0, 5.3], higher_is_better=False).verdict == "better"


def test_one_seed_is_untested_and_says_so():
    d = difference([55.0], [52.0, 53.0])
    assert d.verdict == "untested (1 seed)" and d.low is None
    assert d.text() == "+2.5, untested (1 seed)"
    assert difference([55.0, 56.0], [52.0]).verdict == "untested (1 seed)"
    with pytest.raises(ValueError):
        welch_interval([1.0], [1.0, 2.0])


def test_texts():
    assert difference([56.0, 56.4], [52.0, 52.6]).text() == "+3.9 [+2.1, +5.7] better"
    assert difference([50.0, 60.0], [52.0, 56.0]).text().endswith("]")
    assert difference([], [52.0, 56.0]).text() == ""
    assert Difference(None, verdict="default").text() == "(default)"
    assert difference([3.0, 3.0], [3.0, 3.0]).verdict == "untested (no spread)"


def test_one_draw_interval_by_hand():
    # values 55, 56, 57 (mean 56, s = 1) against one run at 40: +16 +- t(0.975, 2) * 1 * sqrt(1/3 + 1)
    delta, low, high, df = one_draw_interval([55.0, 56.0, 57.0], 40.0)
    half = 4.302652729749464 * math.sqrt(4 / 3)
    assert (delta, low, high, df) == pytest.approx((16.0, 16.0 - half, 16.0 + half, 2.0))
    with pytest.raises(ValueError):
        one_draw_interval([55.0], 40.0)


def test_against_baseline_picks_welch_or_one_draw():
    assert against_baseline([55.0, 56.0, 57.0], [40.0]).low == pytest.approx(one_draw_interval([55.0, 56.0, 57.0], 40.0)[1])
    two = against_baseline([55.0, 56.0, 57.0], [40.0, 42.0])
    assert (two.low, two.high) == pytest.approx(welch_interval([55.0, 56.0, 57.0], [40.0, 42.0])[1:3])
    assert against_baseline([55.0], [40.0]).verdict == "untested (1 seed)"
    assert against_baseline([55.0, 55.0], [40.0]).verdict == "untested (no spread)"
    turned = against_baseline([55.0, 56.0, 57.0], [60.0]).negated()
    assert (turned.delta, turned.verdict) == (pytest.approx(4.0), "not significant")
    assert difference([56.0, 56.4], [52.0, 52.6]).negated().text() == "-3.9 [-5.7, -2.1] worse"
