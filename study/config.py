"""One typed config tree for a run: model / data / train / eval / tracking.

The dataclass defaults below ARE the paper's recipe (ViT-S/16 at 224, batch 2048, 400 effective epochs: the ablation
setting), each field's help saying where its value comes from: [paper] read from the paper, [later] a later source (a
reimplementation or a paper quoting it), [ours] our choice where the paper is silent. There is no second copy: every
entry point (`study train`, trials, `model-info`, `bench model`, the report's reference lookup) starts from `RunConfig()`.
Layers, later wins: the recipe <- a budget (experiments/budgets/<name>.toml: the only place sizes and schedules shrink)
<- the user's paths (experiments/local.toml or $STUDY_LOCAL_CONFIG) <- a study's base <- the study's override for this
budget <- a study cell <- `--config FILE` <- `--set key=value` flags.
Every layer goes through `apply_overrides`, which checks each key, type and range and raises `UserError` with one line;
study/config_load.py builds a config from its layers.
This module imports nothing of the project but errors and metrics: everyone may use it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.errors import UserError
from study.metrics import METRICS

# Encoder presets: name -> (width, depth, heads). tiny/small/base are the ViT sizes of the literature;
# micro and mini are for the smoke and CPU budgets.
ENCODER_PRESETS: dict[str, tuple[int, int, int]] = {
    "micro": (64, 2, 2),
    "mini": (192, 4, 3),
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}
ENCODERS = ("siamese", "joint")
DECODERS = ("cross-self", "cross", "joint")
MASK_STRATEGIES = ("random", "block", "grid", "tube")  # study.model.masking documents each
LOSS_FRAMES = ("f2", "both")
AUGMENTATIONS = ("none", "crop", "crop_flip", "crop_flip_color")
PRECISIONS = ("auto", "fp32", "bf16")
EVAL_DATASETS = tuple(METRICS)
PROTOCOLS = ("paper", "dino", "crw")
BUDGETS = ("smoke", "cpu", "paper")


def _f(default: Any, help: str = "", *, choices: tuple | None = None, lo: float | None = None, hi: float | None = None,
       lo_open: bool = False, hi_open: bool = False) -> Any:
    """A config field with its documentation and its allowed values (checked by `validate`)."""
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    preset: str = _f("small", "encoder size [paper: ViT-S]", choices=tuple(ENCODER_PRESETS))
    patch_size: int = _f(16, "ViT patch size in pixels; must divide img_size [paper: /16 in the ablations, /8 too in "
                         "Table 1]", lo=1)
    img_size: int = _f(224, "training frame size (square) [paper]", lo=8)
    encoder: str = _f("siamese", "siamese: frames encoded separately, shared weights; joint: one pass [paper: siamese]",
                      choices=ENCODERS)
    decoder: str = _f("cross-self", "decoder block design [later: cross-self, 58.1 vs cross 52.2 J&F]", choices=DECODERS)
    decoder_dim: int = _f(512, "decoder width [ours: MAE's default; the paper does not give it]", lo=1)
    decoder_depth: int = _f(8, "decoder blocks [ours: MAE's default]", lo=1)
    decoder_heads: int = _f(16, "decoder attention heads; must divide decoder_dim [ours: MAE's default]", lo=1)
    mask_ratio: float = _f(0.95, "fraction of f2's patches masked [paper]", lo=0.0, hi=1.0, hi_open=True)
    mask_ratio_f1: float = _f(0.0, "fraction of f1's patches masked; 0 = asymmetric masking [paper: f1 is not masked]",
                              lo=0.0, hi=1.0, hi_open=True)
    mask_strategy: str = _f("random", "where the masked patches go; tube = f1 and f2 masked at the same places, needs "
                            "mask_ratio_f1 = mask_ratio [paper: random]", choices=MASK_STRATEGIES)
    loss_frames: str = _f("f2", "which frames' masked patches are predicted: f2, or both (f1's too under symmetric "
                          "masking, through the same decoder with f1 queries, as MAE-ST) [later: f2 only]",
                          choices=LOSS_FRAMES)
    norm_pix_loss: bool = _f(True, "MSE on per-patch normalized pixels [later: MAE's norm_pix_loss]")
    decoder_pos_f1: bool = _f(True, "add decoder position embeddings to f1's memory tokens too [ours: paper silent]")


@dataclass
class DataConfig:
    root: str = _f("", "folder of training videos [paper: Kinetics-400; set it in experiments/local.toml]; empty = the "
                   "generated default set")
    frame_gap: list[int] = _f([4, 48], "[min, max] frames between f1 and f2 [paper: [4, 48] at 30 fps]")
    gap_fps: float = _f(30.0, "frame rate the gap is expressed in; >0 rescales it to each video's fps; 0 = raw frames "
                        "[paper: 30]", lo=0.0)
    repeated_sampling: int = _f(2, "pairs drawn from one decoded video [paper]", lo=1)
    augmentation: str = _f("crop_flip", "augmentation applied identically to f1 and f2 [paper: crop + flip; the shared "
                           "crop: later]", choices=AUGMENTATIONS)
    crop_scale: list[float] = _f([0.5, 1.0], "RandomResizedCrop area range [paper]")
    num_workers: int = _f(-1, "DataLoader workers; -1 = choose from the core count [ours]", lo=-1)
    cache_mb: int = _f(0, "keep decoded frames of a small training set in memory, per loader process; 0 = off [ours]",
                       lo=0)
    synth_videos: int = _f(256, "generated default set: number of videos [ours]", lo=1)
    synth_frames: int = _f(48, "generated default set: frames per video [ours]", lo=2)
    synth_size: int = _f(96, "generated default set: frame size in pixels [ours]", lo=16)
    synth_seed: int = _f(0, "generated default set: seed [ours]")


@dataclass
class TrainConfig:
    epochs: float = _f(400.0, "effective epochs: passes x repeated_sampling, the paper's unit [paper: 400 in the "
                       "ablations, 2000 for Table 1]", lo=0.0, lo_open=True)
    batch_size: int = _f(256, "pairs per step per process [paper: 2048 in all = 256 x accum_iter 8 on one GPU; the split "
                         "is ours]", lo=1)
    accum_iter: int = _f(8, "gradient accumulation steps; effective batch = batch_size x accum_iter x world size [ours: "
                         "8 reaches the paper's 2048 on one GPU]", lo=1)
    blr: float = _f(1.5e-4, "base learning rate; lr = blr x effective batch / 256 [paper: 1.5e-4; the scaling rule is "
                    "MAE's]", lo=0.0, lo_open=True)
    min_lr: float = _f(0.0, "floor of the cosine schedule [ours: MAE's default]", lo=0.0)
    warmup_epochs: float = _f(40.0, "linear warmup, in effective epochs [paper]", lo=0.0)
    weight_decay: float = _f(0.05, "AdamW weight decay on every parameter with 2+ dimensions, as MAE's add_weight_decay "
                             "[paper]", lo=0.0)
    seed: int = _f(0, "seed for init, masking, sampling and augmentation [ours]")
    precision: str = _f("auto", "auto = bf16 autocast on CUDA and on CPUs with bf16 units [ours]", choices=PRECISIONS)
    compile: bool = _f(False, "torch.compile the model [ours]")
    checkpoint_every: int = _f(1000, "optimizer steps between checkpoints, and one at the end [ours]", lo=1)
    log_every: int = _f(50, "optimizer steps between metric logs [ours]", lo=1)
    recon_pairs: int = _f(4, "pairs shown in the reconstruction picture [ours]", lo=0)


@dataclass
class EvalConfig:
    datasets: list[str] = _f(["davis", "vip", "jhmdb"], "label-propagation benchmarks to run after training [paper: "
                             "DAVIS J&F, VIP mIoU, JHMDB PCK, Table 1]")
    davis_root: str = _f("", "DAVIS-2017 root; empty = the generated default set")
    jhmdb_root: str = _f("", "JHMDB root; empty = the generated default set")
    vip_root: str = _f("", "VIP root; empty = the generated default set")
    protocol: str = _f("paper", "evaluation protocol (study/evaluate/protocols.py): paper = CropMAE's (CRW's loop "
                       "around a ViT, the one that reproduced the paper's numbers), dino, crw", choices=PROTOCOLS)
    topk: int = _f(0, "override the protocol's top-k (0 = protocol)", lo=0)
    queue: int = _f(-1, "override the protocol's context length (-1 = protocol)", lo=-1)
    neighborhood: float = _f(-1.0, "override the protocol's neighbourhood (-1 = protocol; 0 = whole frame)", lo=-1.0)
    temperature: float = _f(0.0, "override the protocol's temperature (0 = protocol)", lo=0.0)
    short_side: int = _f(480, "evaluation scale: the protocol's frame sizes are stated at a short side of 480 (paper: "
                         "DAVIS 480x880); other values scale them (192: 192x352)", lo=8)
    frame_size: list[int] = _f([], "one exact evaluation frame size [height, width] for every video, instead of the "
                               "protocol's rule ([] = the rule at eval.short_side)", lo=8)
    pos_embed: str = _f("", "position embedding at the evaluation grid ('' = the protocol's): bicubic resizes the "
                        "training grid's table (DINO), interpolate samples its sin-cos at the new cell centres, extend "
                        "uses integer positions", choices=("", "bicubic", "interpolate", "extend"))
    every_epochs: float = _f(0.0, "intermediate evaluation every this many effective epochs (0 = only at the end)", lo=0.0)
    synth_sequences: int = _f(4, "generated DAVIS set (when davis_root is empty): sequences", lo=1)
    synth_frames: int = _f(24, "generated DAVIS set: frames per sequence", lo=2)
    synth_seed: int = _f(0, "generated evaluation sets: seed (another seed = another set, same distribution)")


@dataclass
class TrackingConfig:
    state_dir: str = _f(".study", "local state: Optuna storage, MLflow store, run folders, generated data")
    tracking_uri: str = _f("", "MLflow tracking URI; empty = sqlite in state_dir")
    export_encoder: bool = _f(True, "log the timm-exported encoder as an artifact")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """{'model.preset': 'small', ...}: what MLflow logs as params."""
        return {f"{s}.{k}": v for s, d in self.to_dict().items() for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        cfg = cls()
        apply_overrides(cfg, flatten(d), source="checkpoint config")
        return cfg


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'preset': 'x'}} -> {'model.preset': 'x'}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def known_keys() -> list[str]:
    return list(RunConfig().flat())


def _field(cfg: RunConfig, key: str, source: str) -> tuple[Any, dataclasses.Field]:
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise UserError(f"{source}: unknown config key '{key}'; keys look like model.mask_ratio, sections are {', '.join(SECTIONS)}")
    sub = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(sub)}
    if name not in fields:
        raise UserError(f"{source}: unknown config key '{key}'; keys of [{section}]: {', '.join(fields)}")
    return sub, fields[name]


def _coerce(key: str, value: Any, f: dataclasses.Field, source: str) -> Any:
    """Check `value` against the field's declared type; ints are accepted for floats."""
    tp = typing.get_type_hints(type_of_section(key))[f.name]
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{source}: {key} must be a list of {item.__name__}, e.g. {f.default_factory()!r}; got {value!r}")
        return [_coerce_scalar(key, v, item, source) for v in value]
    return _coerce_scalar(key, value, tp, source)


def _coerce_scalar(key: str, value: Any, tp: type, source: str) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise UserError(f"{source}: {key} must be {tp.__name__}, got {type(value).__name__} {value!r}")
    if tp is float and not math.isfinite(value):  # NaN passes every range comparison: refuse it (and inf) here
        raise UserError(f"{source}: {key} = {value!r} is not a finite number; give a number such as 0.5")
    return value


def type_of_section(key: str) -> type:
    """ModelConfig for 'model.x', DataConfig for 'data.x', ..."""
    return typing.get_type_hints(RunConfig)[key.partition(".")[0]]


def _check_range(key: str, value: Any, f: dataclasses.Field, source: str) -> None:
    m = f.metadata
    for v in value if isinstance(value, list) else [value]:
        if m["choices"] and v not in m["choices"]:
            raise UserError(f"{source}: {key} = {v!r} is not allowed; choose one of {', '.join(map(str, m['choices']))}")
        lo, hi = m["lo"], m["hi"]
        if lo is not None and (v < lo or (m["lo_open"] and v == lo)):
            raise UserError(f"{source}: {key} = {v!r} is out of range; it must be {'>' if m['lo_open'] else '>='} {lo}")
        if hi is not None and (v > hi or (m["hi_open"] and v == hi)):
            raise UserError(f"{source}: {key} = {v!r} is out of range; it must be {'<' if m['hi_open'] else '<='} {hi}")


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any], source: str = "--set") -> RunConfig:
    """Set dotted keys on `cfg` in place, each checked; then the cross-field rules. Returns cfg."""
    for key, value in overrides.items():
        sub, f = _field(cfg, key, source)
        value = _coerce(key, value, f, source)
        _check_range(key, value, f, source)
        setattr(sub, f.name, value)
    validate(cfg, source)
    return cfg


def validate(cfg: RunConfig, source: str = "config") -> None:
    """Rules that involve more than one key."""
    d = cfg.data
    validate_model(cfg.model, source)
    if len(d.frame_gap) != 2 or not 1 <= d.frame_gap[0] <= d.frame_gap[1]:
        raise UserError(f"{source}: data.frame_gap = {d.frame_gap} must be [min, max] with 1 <= min <= max, e.g. [4, 48]")
    if len(d.crop_scale) != 2 or not 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1:
        raise UserError(f"{source}: data.crop_scale = {d.crop_scale} must be [lo, hi] with 0 < lo <= hi <= 1")
    if len(cfg.eval.frame_size) not in (0, 2):
        raise UserError(f"{source}: eval.frame_size = {cfg.eval.frame_size} must be [height, width], e.g. [480, 880], "
                        "or [] for the protocol's rule")
    for name in cfg.eval.datasets:
        if name not in EVAL_DATASETS:
            raise UserError(f"{source}: eval.datasets has {name!r}; choose from {', '.join(EVAL_DATASETS)}")


def validate_model(m: ModelConfig, source: str = "config") -> None:
    """The model section's cross-key rules: shapes that fit, and masking that leaves something to see and to predict."""
    if m.img_size % m.patch_size:
        raise UserError(f"{source}: model.patch_size = {m.patch_size} does not divide model.img_size = {m.img_size}; "
                        "pick a divisor (e.g. 8 or 16 for 224)")
    if m.preset not in ENCODER_PRESETS:
        raise UserError(f"{source}: model.preset = {m.preset!r} is unknown; choose one of {', '.join(ENCODER_PRESETS)}")
    width, _, heads = ENCODER_PRESETS[m.preset]
    if width % heads:
        raise UserError(f"{source}: the {m.preset} preset's heads ({heads}) do not divide its width ({width})")
    if m.decoder_dim % m.decoder_heads:
        raise UserError(f"{source}: model.decoder_heads = {m.decoder_heads} does not divide model.decoder_dim = "
                        f"{m.decoder_dim}; use a divisor")
    n = (m.img_size // m.patch_size) ** 2
    v1, v2 = visible_patches(m)
    shape = f"model.img_size = {m.img_size} / model.patch_size = {m.patch_size} gives {n} patches"
    if v2 == n:
        raise UserError(f"{source}: model.mask_ratio = {m.mask_ratio} masks none of f2's {n} patches ({shape}), so there "
                        "is nothing to predict; use a ratio that masks at least one patch (e.g. 0.95)")
    if v2 == 0:
        raise UserError(f"{source}: model.mask_ratio = {m.mask_ratio} keeps none of f2's patches visible ({shape}, "
                        f"int({n} x (1 - {m.mask_ratio})) = 0); lower the ratio, use a smaller patch or a larger image")
    if v1 == 0:
        raise UserError(f"{source}: model.mask_ratio_f1 = {m.mask_ratio_f1} keeps none of f1's patches visible ({shape});"
                        " lower the ratio, use a smaller patch or a larger image")
    if m.mask_strategy == "tube" and m.mask_ratio_f1 != m.mask_ratio:
        raise UserError(f"{source}: model.mask_strategy = tube masks f1 and f2 at the same places, so "
                        f"model.mask_ratio_f1 ({m.mask_ratio_f1}) must equal model.mask_ratio ({m.mask_ratio})")
    if m.loss_frames == "both" and v1 < n and not m.decoder_pos_f1:
        raise UserError(f"{source}: model.loss_frames = both predicts f1's masked patches, whose mask tokens need "
                        "their decoder positions: set model.decoder_pos_f1 = true or model.loss_frames = f2")


def keep_count(num_patches: int, mask_ratio: float) -> int:
    """Patches a frame keeps visible at `mask_ratio`: MAE's `len_keep = int(L * (1 - mask_ratio))`."""
    return int(num_patches * (1 - mask_ratio))


def visible_patches(m: ModelConfig) -> tuple[int, int]:
    """(f1, f2) visible patch counts of a model config; f1 keeps every patch under asymmetric masking."""
    n = (m.img_size // m.patch_size) ** 2
    return keep_count(n, m.mask_ratio_f1), keep_count(n, m.mask_ratio)


def to_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML text (what a run folder and MLflow keep)."""
    lines: list[str] = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def state_dir(cfg: RunConfig | None = None) -> Path:
    """Local state (Optuna storage, MLflow store, run folders, generated data): $STUDY_STATE_DIR, else
    tracking.state_dir (default .study/ in the working directory)."""
    env = os.environ.get("STUDY_STATE_DIR")
    return Path(env or (cfg.tracking.state_dir if cfg else TrackingConfig().state_dir)).resolve()
