"""What a trial can report, defined once: `<dataset>.<metric>` names, in the paper's units (percent), with the labels
the paper's tables use. Torch-free, so the study files, the CLI and analysis/ all read it."""

from __future__ import annotations

METRICS: dict[str, tuple[str, ...]] = {
    "davis": ("jf_mean", "j_mean", "f_mean", "j_recall", "f_recall", "j_decay", "f_decay"),
    "jhmdb": ("pck_0.1", "pck_0.2"),
    "vip": ("miou",),
}
ALL_METRICS = tuple(f"{d}.{m}" for d, ms in METRICS.items() for m in ms)
PRIMARY = {"davis": "davis.jf_mean", "jhmdb": "jhmdb.pck_0.1", "vip": "vip.miou"}   # each dataset's headline number
LABELS = {"davis.jf_mean": "DAVIS J&F", "davis.j_mean": "J", "davis.f_mean": "F", "davis.j_recall": "J recall",
          "davis.f_recall": "F recall", "davis.j_decay": "J decay", "davis.f_decay": "F decay", "vip.miou": "VIP mIoU",
          "jhmdb.pck_0.1": "PCK@0.1", "jhmdb.pck_0.2": "PCK@0.2"}
LOWER_IS_BETTER = frozenset({"davis.j_decay", "davis.f_decay"})
