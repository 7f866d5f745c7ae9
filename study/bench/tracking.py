"""`study bench tracking`: what MLflow costs a real smoke trial.

One `run_trial` at the smoke budget, tracked exactly as a worker tracks it (a child run under a parent, batched metrics,
artifacts, system metrics), with every tracking call timed from the outside: the child run's creation, each hook call the
trial makes, the final flush and end. Share = time inside those calls / the trial's wall time (creation to end).
MLflow's system-metrics monitor runs on its own thread; its CPU time is shown beside, not inside, the share.
The store is a fresh SQLite file in a temp folder; the generated data sets are made (and cached) before the clock starts.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
from study.config import state_dir
from study.config_load import load_config
from study.console import console, table as make_table
from study.data.default_sets import dataset_root, ensure_train_set
from study.trial import run_trial


class TimedCalls:
    """Wraps a TrialRun: every call the trial makes through it is counted and timed."""

    def __init__(self, run, seconds: dict[str, float], counts: dict[str, int]):
        self.run, self.seconds, self.counts = run, seconds, counts

    def _timed(self, name: str, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[name] += time.perf_counter() - t0
            self.counts[name] += 1

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._timed("log_metrics", self.run.log_metrics, metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._timed("log_artifact", self.run.log_artifact, path, artifact_path)

    def report_intermediate(self, value: float, step: int) -> bool:
        return False  # Optuna's side, not tracking


def _monitor_cpu_s() -> float:
    """CPU seconds of MLflow's system-metrics thread so far (0 when it is not running)."""
    ids = {t.native_id for t in threading.enumerate() if t.name == "SystemMetricsMonitor"}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def bench_tracking(system_metrics: bool = True, epochs: float | None = None) -> None:
    from study import tracking

    cfg = load_config("smoke")
    if epochs is not None:
        cfg.train.epochs = epochs
    d = cfg.data
    ensure_train_set(state_dir(cfg), d.synth_videos, d.synth_frames, d.synth_size, d.synth_seed)
    dataset_root(cfg, "davis")  # the generated set, made before the clock starts
    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    with tempfile.TemporaryDirectory() as tmp:
        uri = tracking.default_tracking_uri(Path(tmp))
        exp = tracking.ensure_experiment("bench", "smoke", uri, Path(tmp) / "mlartifacts")  # once per study, not timed
        parent = tracking.start_parent_run(exp, uri, {"study.name": "bench"}, state=Path(tmp))
        tags = {"study.name": "bench", "study.budget": "smoke", "study.role": "trial", "study.cell": "default",
                "study.seed": "0", "optuna.trial_number": "0"}
        t_start = time.perf_counter()
        run = tracking.TrialRun(uri, exp, parent, tags, cfg.flat(), system_metrics=system_metrics)
        seconds["start child run"] = time.perf_counter() - t_start
        counts["start child run"] = 1
        metrics = run_trial(cfg, Path(tmp) / "run", TimedCalls(run, seconds, counts))
        monitor_cpu = _monitor_cpu_s()
        t0 = time.perf_counter()
        run.end("FINISHED")
        seconds["flush + end run"] = time.perf_counter() - t0
        counts["flush + end run"] = 1
        wall = time.perf_counter() - t_start
        logged = len(tracking.metric_history(run.run_id, "train.loss", uri))
        tracking.set_run_status(parent, "FINISHED", uri)
    total = sum(seconds.values())
    table = make_table(f"MLflow tracking cost of one smoke trial ({metrics['train.steps']:.0f} steps, "
                       f"system metrics {'on' if system_metrics else 'off'}, SQLite store)",
                       ["call"], ["calls", "seconds", "share of trial wall"])
    for name in seconds:
        table.add_row(name, str(counts[name]), f"{seconds[name]:.3f}", f"{100 * seconds[name] / wall:.2f}%")
    table.add_row("[bold]all tracking calls[/bold]", str(sum(counts.values())), f"{total:.3f}",
                  f"[bold]{100 * total / wall:.2f}%[/bold]")
    con = console()
    con.print(table)
    con.print(f"trial wall {wall:.1f} s (train {metrics['train.wall_s']:.1f} s, eval {metrics['eval.wall_s']:.1f} s); "
              f"tracking {total:.3f} s = {100 * total / wall:.2f}% (target < 2%); {logged} train.loss points logged")
    if system_metrics:
        con.print(f"system-metrics thread (MLflow's monitor, off the trial's thread): {monitor_cpu:.3f} CPU s "
                  f"= {100 * monitor_cpu / wall:.2f}% of the wall time of one core")
