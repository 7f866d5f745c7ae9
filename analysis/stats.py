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


@dataclass(frozen=True)
class Difference:
    """A row's mean minus the default row's mean, and what can be said about it."""
    delta: float | None
    low: float | None = None
    high: float | None = None
    df: float | None = None
    verdict: str = ""  # better | worse | not significant | untested (1 seed) | untested (no spread) | default | ""

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
    if low > 0 or high < 0:
        verdict = "better" if (low > 0) == higher_is_better else "worse"
    else:
        verdict = "not significant"
    return Difference(delta, low, high, df, verdict)


def _spread(values: list[float]) -> float:
    return max(values) - min(values)
