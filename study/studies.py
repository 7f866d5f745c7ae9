"""Study files: experiments/studies/<name>.toml -> StudySpec (the question, the cells, the seeds, the metric).

A study is either a grid (the product of its `axes`, times its `variants`) or an Optuna `search` over ranges.
Every axis value is checked against the run config here, before anything is created in either store.
No torch, no optuna, no mlflow: the CLI, the scheduler and the report all read studies through this module.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.config import BUDGETS, RunConfig, apply_overrides, flatten
from study.config_load import experiments_dir, parse_set, read_toml
from study.errors import UserError
from study.metrics import ALL_METRICS, METRICS

NAME = re.compile(r"[A-Za-z0-9_-]+")  # a study name is a file name in experiments/studies/, never a path
# A study run's name in both stores (the Optuna study and the MLflow experiment): "mask_ratio [cpu]", then its --set
# values when it has any ("mask_ratio [cpu] train.blr=0.01"), so two configs never mix under one name.
STORED_NAME = re.compile(r"^(?P<study>[A-Za-z0-9_-]+) \[(?P<budget>[^\]]+)\](?: (?P<overrides>.+))?$")

TOP_KEYS = {"title", "question", "table", "primary_metric", "direction", "seeds", "evaluations", "base", "budgets", "axes",
            "default", "variants", "search", "pruning", "notes"}


@dataclass(frozen=True)
class Cell:
    """One point of the grid: the run-config keys it sets, and how the report names it."""
    label: str
    overrides: dict[str, Any]
    is_default: bool = False

    @property
    def key(self) -> str:
        """A stable identity for the cell (the same across processes and machines)."""
        return json.dumps(self.overrides, sort_keys=True)


@dataclass(frozen=True)
class SearchParam:
    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass
class StudySpec:
    name: str
    title: str
    question: str
    table: str = ""
    primary_metric: str = "davis.jf_mean"
    direction: str = "maximize"
    seeds: list[int] = field(default_factory=lambda: [0])
    evaluations: list[str] = field(default_factory=lambda: ["davis"])
    base: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)  # [budgets.<name>]: sizes this study needs there
    axes: dict[str, list[Any]] = field(default_factory=dict)
    default: dict[str, Any] = field(default_factory=dict)
    variants: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    search: list[SearchParam] = field(default_factory=list)
    search_trials: int = 0
    pruning: bool = False
    path: Path | None = None
    only: tuple[str, ...] = ()      # `study run --cells`: run these cells of the grid only (labels); empty: all

    @property
    def is_search(self) -> bool:
        return bool(self.search)

    @property
    def factor_keys(self) -> list[str]:
        """The run-config keys this study varies (what a budget must never set)."""
        keys = list(self.axes)
        for _, overrides, _ in self.variants:
            keys += [k for k in overrides if k not in keys]
        return keys + [p.key for p in self.search if p.key not in keys]

    def cells(self) -> list[Cell]:
        """The grid: variants (or one empty variant) x the product of the axes, in file order."""
        variants = self.variants or [("", {}, False)]
        names = list(self.axes)
        out = []
        for (vlabel, vset, vdefault), values in itertools.product(variants, itertools.product(*self.axes.values())):
            point = dict(zip(names, values))
            overrides = {**vset, **point}
            parts = ([vlabel] if vlabel else []) + [_axis_label(k, v, len(names)) for k, v in point.items()]
            is_default = (vdefault or not self.variants) and all(self.default.get(k, object()) == v
                                                                 for k, v in point.items()) and bool(point or vdefault)
            out.append(Cell(label=", ".join(parts) or "default", overrides=overrides, is_default=is_default))
        return [c for c in out if c.label in self.only] if self.only else out

    def select(self, labels: list[str] | None) -> "StudySpec":
        """The same study restricted to the cells whose labels are given (`study run --cells`); None or []: all."""
        if not labels:
            return self
        if self.is_search:
            raise UserError(f"--cells: {self.name} is a search; its trials come from the sampler, not a grid")
        known = [c.label for c in self.cells()]
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise UserError(f"--cells {','.join(unknown)}: not a cell of {self.name}; its cells are "
                            f"{' | '.join(known)} (see `study show {self.name}`)")
        return dataclasses.replace(self, only=tuple(labels))

    def split_cells(self, text: str) -> list[str]:
        """`--cells` text -> labels. Labels are comma-separated, but a label may hold a comma itself ('symmetric 0.5,
        f2 loss'), so at each place the longest label of the study that ends at a comma (or the end) is taken; a piece
        that starts no label is returned as it stands, for `select` to name."""
        known = sorted((c.label for c in self.cells()), key=len, reverse=True)
        out, pos = [], 0
        while pos < len(text):
            while pos < len(text) and text[pos] in ", ":
                pos += 1
            match = next((k for k in known if text.startswith(k, pos) and text[pos + len(k):pos + len(k) + 1] in ("", ",")),
                         None)
            piece = match or text[pos:].split(",")[0].strip()
            if piece:
                out.append(piece)
            pos += len(match) if match else len(text[pos:].split(",")[0])
        return out

    def trials(self, seeds: int | None = None) -> list[tuple[Cell, int]]:
        """Every (cell, seed) the study runs: seed is an axis too."""
        seed_list = list(range(seeds)) if seeds else self.seeds
        return [(cell, seed) for cell in self.cells() for seed in seed_list]

    def layers(self, cell: Cell, seed: int, budget: str) -> list[tuple[str, dict[str, Any]]]:
        """The config layers of one trial at a budget, for `config_load.load_config(budget, layers=...)`: the study's base,
        its override for this budget (e.g. a larger frame where a coarse patch would leave no patch visible), the cell."""
        evals = {"eval.datasets": list(self.evaluations)}
        return [(f"study {self.name} [base]", {**evals, **self.base}),
                (f"study {self.name} [budgets.{budget}]", self.budgets.get(budget, {})),
                (f"study {self.name} cell {cell.label}", {**cell.overrides, "train.seed": seed})]


def _axis_label(key: str, value: Any, n_axes: int) -> str:
    shown = json.dumps(value) if isinstance(value, list) else str(value)
    return shown if n_axes == 1 else f"{key.rsplit('.', 1)[-1]}={shown}"


def stored_name(study: str, budget: str, overrides: Sequence[str] = ()) -> str:
    """`overrides` as `canonical_overrides` gives them."""
    return " ".join([f"{study} [{budget}]", *overrides])


def parse_stored_name(name: str) -> tuple[str, str, str] | None:
    """-> (study, budget, the --set values as one string, "" when none), or None for a name that is not ours."""
    m = STORED_NAME.match(name)
    return (m["study"], m["budget"], m["overrides"] or "") if m else None


def canonical_overrides(items: Sequence[str]) -> list[str]:
    """--set flags as the study's identity: "key=value" sorted by key, the last of a repeated key, values written one
    way (1e-2 and 0.01 are the same study)."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
            for k, v in sorted(parse_set(list(items)).items())]


def studies_dir() -> Path:
    return experiments_dir() / "studies"


def study_names() -> list[str]:
    return sorted(p.stem for p in studies_dir().glob("*.toml"))


def load_study(name: str) -> StudySpec:
    """Read and check experiments/studies/<name>.toml; any problem -> one-line UserError."""
    if not NAME.fullmatch(name):
        raise UserError(f"study name {name!r}: use letters, digits, '_' and '-' only (the name of a file "
                        f"experiments/studies/NAME.toml), e.g. mask_ratio")
    path = studies_dir() / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(study_names()) or "none"
        raise UserError(f"no study named {name!r}; known studies: {known} (files in {studies_dir()})")
    return parse_study(name, read_toml(path, f"study {name}"), path)


def parse_study(name: str, raw: dict[str, Any], path: Path | None = None) -> StudySpec:
    where = f"study {name} ({path or 'inline'})"
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(TOP_KEYS))}")
    spec = StudySpec(name=name, title=_get(raw, "title", str, name, where), question=_get(raw, "question", str, "", where),
                     table=_get(raw, "table", str, "", where), path=path,
                     primary_metric=_get(raw, "primary_metric", str, "davis.jf_mean", where),
                     direction=_get(raw, "direction", str, "maximize", where),
                     evaluations=_get(raw, "evaluations", list, ["davis"], where),
                     pruning=_get(raw, "pruning", bool, False, where))
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        spec.seeds = list(range(seeds))
    elif isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds):
        spec.seeds = seeds
    else:
        raise UserError(f"{where}: seeds must be a positive count or a non-empty list of integers, got {seeds!r}")
    if spec.direction not in ("maximize", "minimize"):
        raise UserError(f"{where}: direction must be 'maximize' or 'minimize', got {spec.direction!r}")
    for ev in spec.evaluations:
        if ev not in METRICS:
            raise UserError(f"{where}: evaluations has {ev!r}; choose from {', '.join(METRICS)}")
    if spec.primary_metric not in ALL_METRICS:
        raise UserError(f"{where}: primary_metric {spec.primary_metric!r} is unknown; choose one of {', '.join(ALL_METRICS)}")
    if spec.primary_metric.split(".")[0] not in spec.evaluations:
        raise UserError(f"{where}: primary_metric {spec.primary_metric} needs '{spec.primary_metric.split('.')[0]}' in evaluations")
    spec.base = _table(raw, "base", where)
    budgets = raw.get("budgets", {})
    if not isinstance(budgets, dict) or not all(isinstance(v, dict) for v in budgets.values()):
        raise UserError(f"{where}: [budgets] must hold tables like [budgets.cpu] of run-config keys")
    for name, table in budgets.items():
        if name not in BUDGETS:
            raise UserError(f"{where}: [budgets.{name}]: no such budget; budgets are {', '.join(BUDGETS)}")
        spec.budgets[name] = flatten(table)
    spec.default = _table(raw, "default", where)
    spec.axes = _table(raw, "axes", where)
    for key, values in spec.axes.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: axis {key!r} must be a non-empty list of values, got {values!r}")
    for i, v in enumerate(raw.get("variants", [])):
        if not isinstance(v, dict) or not isinstance(v.get("set"), dict) or not isinstance(v.get("label", ""), str):
            raise UserError(f"{where}: variants[{i}] must be a table with label = \"...\" and set = {{ key = value }}")
        spec.variants.append((v.get("label", f"variant {i}"), flatten(v["set"]), bool(v.get("default", False))))
    _parse_search(spec, raw.get("search"), where)
    if not spec.axes and not spec.variants and not spec.search:
        raise UserError(f"{where}: a study needs [axes], [[variants]] or [search]; it has none")
    for name, table in spec.budgets.items():
        factor = next((k for k in table if k in spec.factor_keys), None)
        if factor:
            raise UserError(f"{where}: [budgets.{name}] sets {factor}, a factor this study varies; a budget sets sizes "
                            "and schedules only")
    _check_against_config(spec, where)
    return spec


def _get(raw: dict, key: str, tp: type, default: Any, where: str) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, tp):
        raise UserError(f"{where}: {key} must be {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _table(raw: dict, key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"{where}: [{key}] must be a table of run-config keys")
    return flatten(value)


def _parse_search(spec: StudySpec, search: Any, where: str) -> None:
    if search is None:
        return
    if not isinstance(search, dict) or not isinstance(search.get("params"), dict) or not search["params"]:
        raise UserError(f"{where}: [search] needs trials = N and [search.params.\"key\"] tables with low and high")
    spec.search_trials = search.get("trials", 0)
    if not isinstance(spec.search_trials, int) or spec.search_trials < 1:
        raise UserError(f"{where}: search.trials must be a positive integer")
    for key, p in search["params"].items():
        if not isinstance(p, dict) or "low" not in p or "high" not in p or not p["low"] < p["high"]:
            raise UserError(f"{where}: search.params.{key} needs low < high, e.g. {{ low = 1e-4, high = 1e-2, log = true }}")
        spec.search.append(SearchParam(key, p["low"], p["high"], bool(p.get("log", False)),
                                       isinstance(p["low"], int) and isinstance(p["high"], int)))


def _check_against_config(spec: StudySpec, where: str) -> None:
    """Every key a study sets must exist in the run config and every value must be valid there."""
    checks = [("base", spec.base), ("default", spec.default)] + [(f"budgets.{b}", t) for b, t in spec.budgets.items()]
    checks += [(f"axis {k}", {k: v}) for k, values in spec.axes.items() for v in values]
    checks += [(f"variant {label!r}", s) for label, s, _ in spec.variants]
    checks += [(f"search {p.key}", {p.key: p.low}) for p in spec.search]
    for what, overrides in checks:
        apply_overrides(RunConfig(), overrides, source=f"{where} {what}")
