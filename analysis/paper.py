"""The paper's reference numbers (analysis/paper_values.toml) and which cell of which study they belong to."""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.config import RunConfig
from study.studies import StudySpec, load_study

VALUES_FILE = Path(__file__).with_name("paper_values.toml")
NOT_REPORTED = "not reported"


@dataclass(frozen=True)
class PaperValue:
    value: float
    source: str  # "P" (the paper) or "S" (a secondary source)
    name: str  # where in the paper, e.g. "Table 1, SiamMAE ViT-S/16"
    epochs: int

    def text(self) -> str:
        """'58.1 [S]'; numbers from a different schedule than the ablations say so: '62.0 [P, 2000 ep.]'."""
        extra = f", {self.epochs} ep." if self.epochs != 400 else ""
        return f"{self.value:.1f} [{self.source}{extra}]"


@functools.cache
def references() -> tuple[dict[str, Any], ...]:
    with VALUES_FILE.open("rb") as f:
        return tuple(tomllib.load(f)["reference"])


def cell_config(spec: StudySpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The cell's values of the run-config keys at the paper's recipe: defaults, then the study's base, then the cell.
    Budgets are left out on purpose: the reference is about the factor's setting, not the run's size."""
    return {**RunConfig().flat(), **spec.base, **overrides}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def paper_entry(study: str, cell: str | dict[str, Any], metric: str, spec: StudySpec | None = None) -> PaperValue | None:
    """The reference number for one cell (by label or by its overrides) and metric, or None: not reported."""
    spec = spec or load_study(study)
    if spec.is_search:
        return None  # a search's trials are not settings the paper ran
    if isinstance(cell, str):
        found = [c for c in spec.cells() if c.label == cell]
        if not found:
            return None
        cell = found[0].overrides
    config = cell_config(spec, cell)
    for ref in references():
        if "studies" in ref and study not in ref["studies"]:
            continue
        if all(k in config and _same(config[k], v) for k, v in ref["match"].items()):
            if metric not in ref["values"]:
                return None
            return PaperValue(float(ref["values"][metric]), ref["source"], ref["name"], int(ref["epochs"]))
    return None


def paper_value(study: str, cell: str | dict[str, Any], metric: str,
                spec: StudySpec | None = None) -> tuple[float, str] | None:
    """(value, source tag 'P' or 'S') of the paper's number for this cell and metric, or None when not reported."""
    entry = paper_entry(study, cell, metric, spec)
    return (entry.value, entry.source) if entry else None
