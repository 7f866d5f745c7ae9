"""Training progress for people: a rich bar (step, effective epoch, loss, lr, pairs/s, ETA) on a terminal, plain lines
otherwise (CI logs, worker processes), so logs stay readable without escape codes."""

from __future__ import annotations

import sys
import time


class TrainProgress:
    def __init__(self, total: int, *, enabled: bool = True, start: int = 0, plain_every_s: float = 10.0) -> None:
        self.total, self.enabled, self.rate = total, enabled, 0.0
        self.fields = {"epoch": 0.0, "loss": float("nan"), "lr": 0.0}
        self._bar = None
        self._plain_every, self._last_plain = plain_every_s, 0.0
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
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
            print(f"step {step}/{self.total}  epoch {f['epoch']:.2f}  loss {f['loss']:.4f}  lr {f['lr']:.2e}  "
                  f"{self.rate:.1f} pairs/s", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
