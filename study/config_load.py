"""Building a RunConfig from its layers, later wins: the dataclass defaults (the paper's recipe, study/config.py) <- a
budget (experiments/budgets/<name>.toml) <- the user's paths (experiments/local.toml or $STUDY_LOCAL_CONFIG) <- a study's
base, budget table and cell <- `--config FILE` <- `--set key=value`. Every layer is checked key by key as it is applied.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from study.config import BUDGETS, RunConfig, apply_overrides, flatten
from study.errors import UserError


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` flags -> {key: value}; values are TOML (numbers, true, [4, 48], "text"), bare words are strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set {item!r}: write key=value, e.g. --set model.mask_ratio=0.9")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def read_toml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{what}: {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{what}: {path} is not valid TOML ({e})") from None


def experiments_dir() -> Path:
    """Where budgets/ and studies/ live: $STUDY_EXPERIMENTS, else experiments/ of this checkout."""
    env = os.environ.get("STUDY_EXPERIMENTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "experiments"


def default_budget() -> str:
    """`cpu` unless a GPU is present; checked without importing torch when possible."""
    if os.environ.get("STUDY_BUDGET"):
        return os.environ["STUDY_BUDGET"]
    try:
        import torch  # noqa: PLC0415 - only callers that run work get here

        return "paper" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def local_overrides() -> dict[str, Any]:
    """The user's own paths (data.root, eval.*_root): experiments/local.toml (untracked) or $STUDY_LOCAL_CONFIG."""
    path = Path(os.environ.get("STUDY_LOCAL_CONFIG") or experiments_dir() / "local.toml")
    return flatten(read_toml(path, "local config")) if path.is_file() else {}


def load_config(budget: str | None = None, config_file: str | Path | None = None,
                overrides: dict[str, Any] | None = None, layers: list[tuple[str, dict[str, Any]]] | None = None) -> RunConfig:
    """Build a RunConfig: the recipe (RunConfig()) <- budget <- local paths <- `layers` (a study's base, its override
    for this budget, the cell: `StudySpec.layers`) <- config_file <- overrides (--set)."""
    budget = budget or default_budget()
    if budget not in BUDGETS:
        raise UserError(f"--budget {budget!r} is unknown; choose one of {', '.join(BUDGETS)}")
    cfg = RunConfig()
    budget_file = experiments_dir() / "budgets" / f"{budget}.toml"
    apply_overrides(cfg, flatten(read_toml(budget_file, f"budget {budget}")), source=str(budget_file))
    apply_overrides(cfg, local_overrides(), source="local config")
    for source, layer in layers or []:
        apply_overrides(cfg, layer, source=source)
    if config_file:
        apply_overrides(cfg, flatten(read_toml(Path(config_file), "--config")), source=str(config_file))
    apply_overrides(cfg, overrides or {}, source="--set")
    return cfg
