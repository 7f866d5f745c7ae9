"""Which label-propagation protocol a run was evaluated with, its values, and whether the paper's numbers apply to it.

The protocol is a preset (`eval.protocol`: paper, dino, crw) that `eval.topk`, `eval.queue`, `eval.neighborhood`,
`eval.temperature` (and, where the config has them, `eval.pos_embed` and `eval.frame_size`) may override; a run's
params (strings, as MLflow keeps them) say both. `eval.short_side` is the budget's evaluation scale, not an override. The values the propagation
really used are in the run's `eval/<dataset>/summary.json` artifact, which the evaluation writes beside its scores.
The paper's numbers were obtained with its own protocol, so they are shown only beside rows evaluated with `paper`
and no override: the evaluation pipeline alone moves DAVIS J&F by 1-3 points.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

from study.config import EvalConfig

PAPER = "paper"
# The keys that change a preset, each with the default that means "keep the preset's value".
OVERRIDE_KEYS = {f"eval.{f.name}": f.default if f.default is not dataclasses.MISSING else f.default_factory()
                 for f in dataclasses.fields(EvalConfig)
                 if f.name in ("topk", "queue", "neighborhood", "temperature", "pos_embed", "frame_size")}
NOT_RECORDED = "not recorded"
# What a setup table shows of a protocol's values, in this order; the rest of the recorded values (normalisation
# constants, resize conventions) stay in the run's summary.json.
SHOWN = ("context", "queue", "neighborhood", "topk", "temperature", "frames", "first_labels", "pos_embed",
         "keypoint_topk", "norm_mask", "minmax_norm")


def overrides_of(params: dict[str, Any]) -> list[str]:
    """The preset overrides a run was evaluated with, as 'eval.topk=5'."""
    out = []
    for key, keep in OVERRIDE_KEYS.items():
        if key in params and not _same(params[key], keep):
            out.append(f"{key}={params[key]}")
    return out


def _same(text: Any, default: Any) -> bool:
    """Does a logged param (a string) hold the config default?"""
    if isinstance(default, str):
        return str(text) == default
    try:
        value = ast.literal_eval(text) if isinstance(text, str) else text
        return value == default if isinstance(default, list) else float(value) == float(default)
    except (TypeError, ValueError, SyntaxError):
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
    """'crw context, 20 context frames, radius 20, top-7, temperature 0.7, frames exactly 480x880 (aspect ignored)'."""
    if values is None:
        return "values not recorded" + (f"; frames at short side {short_side} px" if short_side not in (None, "") else "")
    parts = [_value_words(key, values[key], values.get("context")) for key in SHOWN if key in values]
    if "frames" not in values and short_side not in (None, ""):
        parts.append(f"frames at short side {short_side} px")
    return ", ".join(p for p in parts if p)


def _value_words(key: str, v: Any, context: Any) -> str:
    if key == "neighborhood":
        if float(v) <= 0:
            return "whole frame"
        return f"radius {v}" if context == "crw" else f"window ±{v}"
    if key in ("norm_mask", "minmax_norm"):
        return "min-max normalised labels" if v else ""
    return {"context": "{} context", "queue": "{} context frames", "topk": "top-{}", "temperature": "temperature {}",
            "frames": "frames {}", "first_labels": "{} first-frame labels", "pos_embed": "{} position embedding",
            "keypoint_topk": "keypoints from the top-{} cells"}[key].format(v)


def described_values(params: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    """The protocol's values worked out from a run's params, when the artifacts cannot be read (a remote store)."""
    try:
        from study.evaluate.protocols import describe  # torch-free by design
    except ImportError:
        return None
    from study.errors import UserError

    try:
        return describe(params, dataset)
    except (UserError, ValueError, SyntaxError, TypeError):  # an older run's params: the report says "not recorded"
        return None
