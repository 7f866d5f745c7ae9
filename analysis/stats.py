"""Is a difference to the default row real? Welch's t interval over seeds.

Seeds per cell are few (1-5), so a bootstrap would have almost nothing to resample; Welch's t interval (unequal variances,
Welch-Satterthwaite degrees of freedom) is the standard small-sample answer. scipy computes it
(`ttest_ind(equal_var=False).confidence_interval`). With one seed on either side there is no variance estimate: untested.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95
METHOD_NOTE = ("Δ vs default: difference of the means over seeds, with a 95% Welch t interval (unequal variances, "
               "Welch-Satterthwaite degrees of freedom); a row is marked better or worse only when the interval "
               "excludes 0. With one seed on either side the difference is untested.")

ONE_DRAW_NOTE = ("random init was evaluated once: its interval against a cell takes that one value as a draw with the "
                 "cell's own seed-to-seed spread (Student's t, n - 1 degrees of freedom, standard error s·sqrt(1/n + 1)).")


@dataclass(frozen=True)
class Difference:
    """A row's mean minus the default row's mean, and what can be said about it."""
    delta: float | None
    low: float | None = None
    high: float | None = None
    df: float | None = None
    verdict: str = ""  # better | worse | not significant | untested (1 seed) | untested (no spread) | default | ""

    @property
    def resolved(self) -> bool:
        """The interval excludes 0."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    def negated(self) -> "Difference":
        """The same comparison seen from the other side (b - a instead of a - b)."""
        flip = {"better": "worse", "worse": "better"}
        return Difference(None if self.delta is None else -self.delta, None if self.high is None else -self.high,
                          None if self.low is None else -self.low, self.df, flip.get(self.verdict, self.verdict))

    def text(self) -> str:
        """'+1.3 [-0.4, +3.0]', '+3.6 [+0.7, +6.5] better', '+1.3, untested (1 seed)', '(default)' or '' when there is nothing to compare."""
        if self.verdict == "default":
            return "(default)"
        if self.delta is None:
            return ""
        if self.low is None:
            return f"{self.delta:+.1f}, {self.verdict}"
        mark = f" {self.verdict}" if self.verdict in ("better", "worse") else ""
        return f"{self.delta:+.1f} [{self.low:+.1f}, {self.high:+.1f}]{mark}"


def welch_interval(values: list[float], reference: list[float], level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean(values) - mean(reference), low, high, Welch-Satterthwaite df) of the `level` interval. Needs n >= 2 each."""
    if len(values) < 2 or len(reference) < 2:
        raise ValueError("Welch's interval needs at least two values on each side")
    res = stats.ttest_ind(values, reference, equal_var=False)
    ci = res.confidence_interval(confidence_level=level)
    delta = sum(values) / len(values) - sum(reference) / len(reference)
    return delta, float(ci.low), float(ci.high), float(res.df)


def difference(values: list[float], reference: list[float], *, higher_is_better: bool = True,
               level: float = LEVEL) -> Difference:
    """Compare one row's per-seed values with the default row's."""
    if not values or not reference:
        return Difference(None)
    delta = sum(values) / len(values) - sum(reference) / len(reference)
    if len(values) < 2 or len(reference) < 2:
        return Difference(delta, verdict="untested (1 seed)")
    if _spread(values) == 0.0 and _spread(reference) == 0.0:
        return Difference(delta, verdict="untested (no spread)")  # the t statistic is undefined
    delta, low, high, df = welch_interval(values, reference, level)
    return Difference(delta, low, high, df, _verdict(low, high, higher_is_better))


def one_draw_interval(values: list[float], single: float, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean(values) - single, low, high, df) when the reference was measured once: a single draw has no spread of its
    own, so it is taken to share the values' variance (Student's t, df = n - 1, standard error s * sqrt(1/n + 1)).
    Written out because scipy's pooled t-test needs two values on each side. Needs n >= 2."""
    n = len(values)
    if n < 2:
        raise ValueError("an interval needs at least two values")
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd * (1 / n + 1) ** 0.5
    delta = mean - single
    return delta, delta - half, delta + half, float(n - 1)


def against_baseline(values: list[float], baseline: list[float], *, higher_is_better: bool = True,
                     level: float = LEVEL) -> Difference:
    """A trained row against the random-init row: Welch when the baseline ran at least twice, else one_draw_interval."""
    if len(baseline) != 1 or len(values) < 2:
        return difference(values, baseline, higher_is_better=higher_is_better, level=level)
    if _spread(values) == 0.0:
        return Difference(sum(values) / len(values) - baseline[0], verdict="untested (no spread)")
    delta, low, high, df = one_draw_interval(values, baseline[0], level)
    return Difference(delta, low, high, df, _verdict(low, high, higher_is_better))


def _verdict(low: float, high: float, higher_is_better: bool) -> str:
    if low > 0 or high < 0:
        return "better" if (low > 0) == higher_is_better else "worse"
    return "not significant"


def _spread(values: list[float]) -> float:
    return max(values) - min(values)
