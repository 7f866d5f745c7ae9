"""Which label-propagation protocol a run was evaluated with, its values, and whether the paper's numbers apply to it.

The protocol is a preset (`eval.protocol`: paper, dino, crw) that `eval.topk`, `eval.queue`, `eval.neighborhood` and
`eval.temperature` may override; a run's params (strings, as MLflow keeps them) say both. The values the propagation
really used are in the run's `eval/<dataset>/summary.json` artifact, which the evaluation writes beside its scores.
The paper's numbers were obtained with its own protocol, so they are shown only beside rows evaluated with `paper`
and no override: the evaluation pipeline alone moves DAVIS J&F by 1-3 points.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from study.config import EvalConfig

PAPER = "paper"
# The keys that change a preset, each with the default that means "keep the preset's value".
OVERRIDE_KEYS = {f"eval.{f.name}": f.default for f in dataclasses.fields(EvalConfig)
                 if f.name in ("topk", "queue", "neighborhood", "temperature")}
NOT_RECORDED = "not recorded"
# How the propagation's own parameter names read in a setup table (others are shown as name=value).
VALUE_WORDS = {"topk": "top-k {}", "queue": "context {} frames", "neighborhood": "neighbourhood {}",
               "temperature": "temperature {}", "context": "{} context", "minmax_norm": "min-max norm {}"}


def overrides_of(params: dict[str, Any]) -> list[str]:
    """The preset overrides a run was evaluated with, as 'eval.topk=5'."""
    out = []
    for key, keep in OVERRIDE_KEYS.items():
        if key in params and not _same_number(params[key], keep):
            out.append(f"{key}={params[key]}")
    return out


def _same_number(text: Any, value: float) -> bool:
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return False


def protocol_label(params: dict[str, Any]) -> str:
    """'paper', 'dino', 'paper + eval.topk=5', or 'not recorded' for a run without eval params."""
    name = params.get("eval.protocol")
    if not name:
        return NOT_RECORDED
    extra = overrides_of(params)
    return name + (" + " + ", ".join(extra) if extra else "")


def paper_reason(labels: list[str]) -> str | None:
    """None when every run of a row was evaluated with the paper's protocol unchanged; else why its paper number is
    not shown, e.g. 'n/a: dino protocol'."""
    if not labels:
        return None
    others = sorted({lb for lb in labels if lb != PAPER})
    if not others:
        return None
    if others == [NOT_RECORDED]:
        return "n/a: protocol not recorded"
    return "n/a: " + "; ".join(lb if lb.startswith(PAPER) else f"{lb} protocol" for lb in others if lb != NOT_RECORDED)


def recorded_values(artifact_dir: str | None, dataset: str) -> dict[str, Any] | None:
    """The propagation parameters the evaluation used (from `eval/<dataset>/summary.json`), or None if not readable."""
    if not artifact_dir:
        return None
    path = Path(artifact_dir) / "eval" / dataset / "summary.json"
    try:
        params = json.loads(path.read_text()).get("params")
    except (OSError, ValueError, AttributeError):
        return None
    return params if isinstance(params, dict) else None


def values_text(values: dict[str, Any] | None, short_side: Any) -> str:
    """'top-k 7, context 20 frames, neighbourhood 20, temperature 0.1, frames at short side 480 px'."""
    parts = []
    for k, v in (values or {}).items():
        parts.append(VALUE_WORDS[k].format(v) if k in VALUE_WORDS else f"{k} {v}")
    if short_side not in (None, ""):
        parts.append(f"frames at short side {short_side} px")
    if values is None:
        parts.insert(0, "preset values not recorded")
    return ", ".join(parts)
