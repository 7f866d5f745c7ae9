"""Training progress for people: a rich bar (step, effective epoch, loss, lr, pairs/s, ETA) on a terminal, plain lines
otherwise (CI logs, worker processes), so logs stay readable without escape codes."""

from __future__ import annotations

import sys
import time

PLAIN_EVERY_S = 30.0  # without a terminal: one line this often (and at the last step)


class TrainProgress:
    def __init__(self, total: int, *, enabled: bool = True, start: int = 0, plain_every_s: float = PLAIN_EVERY_S,
                 label: str = "train", rich: bool | None = None) -> None:
        """`label` names the run on each line (a study's trial: its cell and seed); `rich`: None = on a terminal.
        Several processes drawing rich bars on one terminal overwrite each other: they pass rich=False."""
        self.total, self.enabled, self.rate, self.label = total, enabled, 0.0, label
        self.fields = {"epoch": 0.0, "loss": float("nan"), "lr": 0.0}
        self._bar = None
        self._plain_every, self._last_plain = plain_every_s, 0.0
        self._t0, self._step0 = time.monotonic(), start
        if enabled and (sys.stdout.isatty() if rich is None else rich):
            from rich.markup import escape
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(escape(label)), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("ep {task.fields[epoch]:.2f} loss {task.fields[loss]:.4f} "
                                            "lr {task.fields[lr]:.2e} {task.fields[rate]:.1f} pairs/s"),
                                 TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task("train", total=total, completed=start, rate=0.0, **self.fields)
            self._bar.start()

    def set_rate(self, pairs_per_s: float) -> None:
        self.rate = pairs_per_s

    def update(self, step: int, **fields: float) -> None:
        self.fields.update(fields)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step, rate=self.rate, **self.fields)
            return
        now = time.monotonic()
        if now - self._last_plain >= self._plain_every or step == self.total:
            self._last_plain = now
            f = self.fields
            print(f"{self.label}: step {step}/{self.total}  epoch {f['epoch']:.2f}  loss {f['loss']:.4f}  "
                  f"lr {f['lr']:.2e}  {self.rate:.1f} pairs/s  ETA {self._eta(step, now)}", flush=True)

    def _eta(self, step: int, now: float) -> str:
        if step <= self._step0:
            return "?"
        left = (self.total - step) * (now - self._t0) / (step - self._step0)
        return f"{left / 60:.1f} min" if left >= 60 else f"{left:.0f} s"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
