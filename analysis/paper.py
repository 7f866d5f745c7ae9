"""What the paper says, from analysis/paper_values.toml: its reference numbers, the table letters we can source, and the
direction it found (or implies) for a factor. Which cell of which study each belongs to."""

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
# The paper's tables a study may name: Table 1 (ViT-S/16 and ViT-S/8) read from the paper, and Table 2(d), known from a
# later paper to be the mask-ratio ablation. Other letters of the ablation tables are not known here.
SOURCED_TABLES = frozenset({"1", "2d"})


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


@dataclass(frozen=True)
class Direction:
    """The paper's finding for one factor: `better` beats `worse` on `metric` (`implied`: by its choice of default)."""
    factor: str
    better: dict[str, Any]
    worse: dict[str, Any]
    varies: tuple[str, ...]
    metric: str
    source: str
    implied: bool
    claim: str  # completes "the paper ...", with its source tag


@functools.cache
def _values() -> dict[str, Any]:
    with VALUES_FILE.open("rb") as f:
        return tomllib.load(f)


def references() -> tuple[dict[str, Any], ...]:
    return tuple(_values()["reference"])


@functools.cache
def directions() -> tuple[Direction, ...]:
    return tuple(Direction(d["factor"], d["better"], d["worse"], tuple(d["varies"]), d["metric"], d["source"],
                           bool(d["implied"]), d["claim"]) for d in _values()["direction"])


def paper_table(spec: StudySpec) -> str:
    """'Table 2d' when the study names a table of the paper we can source, else ''."""
    return f"Table {spec.table}" if spec.table in SOURCED_TABLES else ""


@functools.cache
def _recipe() -> dict[str, Any]:
    """The paper's recipe as flat run-config keys: the config defaults, where every run starts."""
    return RunConfig().flat()


def cell_config(spec: StudySpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The cell's values of the run-config keys at the paper's recipe: the recipe, then the study's base, then the cell.
    Budgets are left out on purpose: the reference is about the factor's setting, not the run's size."""
    return {**_recipe(), **spec.base, **overrides}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _matches(config: dict[str, Any], match: dict[str, Any]) -> bool:
    """Every key of `match` has that value in `config`; a list in `match` means any of its values."""
    def one(k: str, want: Any) -> bool:
        if k not in config:
            return False
        if isinstance(want, list) and not isinstance(config[k], (list, tuple)):
            return any(_same(config[k], w) for w in want)
        return _same(config[k], want)
    return all(one(k, v) for k, v in match.items())


def _cell_overrides(spec: StudySpec, cell: str | dict[str, Any]) -> dict[str, Any] | None:
    if not isinstance(cell, str):
        return cell
    found = [c for c in spec.cells() if c.label == cell]
    return found[0].overrides if found else None


def paper_entry(study: str, cell: str | dict[str, Any], metric: str, spec: StudySpec | None = None) -> PaperValue | None:
    """The reference number for one cell (by label or by its overrides) and metric, or None: not reported."""
    spec = spec or load_study(study)
    if spec.is_search:
        return None  # a search's trials are not settings the paper ran
    overrides = _cell_overrides(spec, cell)
    if overrides is None:
        return None
    config = cell_config(spec, overrides)
    for ref in references():
        if "studies" in ref and study not in ref["studies"]:
            continue
        if _matches(config, ref["match"]):
            if metric not in ref["values"]:
                return None
            return PaperValue(float(ref["values"][metric]), ref["source"], ref["name"], int(ref["epochs"]))
    return None


def paper_value(study: str, cell: str | dict[str, Any], metric: str,
                spec: StudySpec | None = None) -> tuple[float, str] | None:
    """(value, source tag 'P' or 'S') of the paper's number for this cell and metric, or None when not reported."""
    entry = paper_entry(study, cell, metric, spec)
    return (entry.value, entry.source) if entry else None


def paper_direction(spec: StudySpec, row: dict[str, Any], default: dict[str, Any],
                    metric: str) -> tuple[Direction, bool] | None:
    """The paper's direction for comparing a row with the default row (both given by their overrides) on `metric`:
    (direction, True when the paper expects the row to beat the default), or None: no paper direction."""
    a, b = cell_config(spec, row), cell_config(spec, default)
    differ = {k for k in a.keys() | b.keys() if not _same(a.get(k), b.get(k))}
    if not differ:
        return None
    for d in directions():
        if d.metric != metric or not differ <= set(d.varies):
            continue
        for x, y, row_better in ((a, b, True), (b, a, False)):
            if _matches(x, d.better) and not _matches(y, d.better) and _matches(y, d.worse):
                return d, row_better
    return None
