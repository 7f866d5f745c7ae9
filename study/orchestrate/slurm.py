"""`study run NAME --launcher slurm`: the study's workers as one SLURM array job, submitted through submitit.

Each array task runs the ordinary worker loop (study.orchestrate.worker) against the Optuna storage and MLflow tracking
URI of the submitting command, so N tasks on any nodes share one queue. The submitting command enqueues the cells, submits,
keeps the job id on the Optuna study (user attr `slurm_jobs`) and returns; `study status` shows the job's tasks.

Interruptions:
- SLURM signals a task before its time limit (and, where the cluster is set up so, on preemption) with USR2 (sbatch
  `--signal=USR2@90`, set by submitit). submitit then calls `SlurmWorker.checkpoint` and requeues the task. The trial it
  was running is marked interrupted (its MLflow run KILLED) as the task exits; the requeued task reconciles the queue
  first, so it takes that trial again and resumes the cell from the run folder's last checkpoint.
- A task killed outright (scancel, node failure) leaves its trial RUNNING until its heartbeat goes stale; any later
  worker or `study run` marks it interrupted and resumes it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from study.errors import UserError

try:  # the worker class must be a submitit Checkpointable; `study run --launcher local` does not need submitit
    import submitit.helpers

    _HAS_SUBMITIT = True
except ImportError:
    _HAS_SUBMITIT = False

log = logging.getLogger(__name__)

JOBS_ATTR = "slurm_jobs"          # Optuna study user attr: the array jobs submitted for this study, oldest first
TASK_ATTR = "slurm_task:"         # + task id ("123_1"): {"host", "pid"} of the worker process that task runs
DEFAULT_TIME_MIN = 24 * 60        # sbatch --time when --time is not given (submitit's own default is 5 minutes)
MAX_REQUEUES = 1000               # submitit stops requeueing after this many timeouts (its default, 3, ends long studies)


@dataclass
class SlurmOptions:
    """What `study run --launcher slurm` asks of SLURM; `executor_parameters` maps it onto submitit's parameters."""
    workers: int = 1
    gpus_per_worker: int = 1
    procs_per_worker: int = 1
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    slurm_set: list[str] = field(default_factory=list)

    @property
    def procs_per_trial(self) -> int:
        """Training processes per trial: one per GPU on GPU workers, else --procs-per-worker (CPU DDP)."""
        return self.gpus_per_worker if self.gpus_per_worker > 1 else self.procs_per_worker


def slurm_options(launcher: str, *, workers: int, procs_per_worker: int, gpus_per_worker: int, partition: str | None,
                  time: str | None, account: str | None, slurm_set: list[str]) -> SlurmOptions | None:
    """`study run`'s launcher flags -> SlurmOptions, or None for --launcher local (where SLURM's flags are refused)."""
    if launcher not in ("local", "slurm"):
        raise UserError(f"--launcher {launcher!r}: choose local (this machine) or slurm (a SLURM array job)")
    if gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker {gpus_per_worker}: give 0 (CPU workers) or more")
    if launcher == "local":
        given = [flag for flag, v in (("--partition", partition), ("--time", time), ("--account", account),
                                      ("--slurm-set", slurm_set), ("--gpus-per-worker", gpus_per_worker != 1)) if v]
        if given:
            raise UserError(f"{given[0]} is an option of --launcher slurm; add --launcher slurm or drop it "
                            "(on this machine each worker takes one GPU; --procs-per-worker sets DDP processes)")
        return None
    if gpus_per_worker > 1 and procs_per_worker > 1 and procs_per_worker != gpus_per_worker:
        raise UserError(f"--procs-per-worker {procs_per_worker} with --gpus-per-worker {gpus_per_worker}: a GPU "
                        "worker runs one process per GPU; drop --procs-per-worker")
    return SlurmOptions(workers=workers, gpus_per_worker=gpus_per_worker, procs_per_worker=procs_per_worker,
                        partition=partition, time=time, account=account, slurm_set=list(slurm_set))


def parse_time(text: str) -> int:
    """sbatch's time formats -> minutes: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise UserError(f"--time {text!r}: give minutes (90) or [days-]hours:minutes:seconds (1-00:00:00, 12:00:00)")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        minutes = days * 1440 + a * 60 + (b or 0) + ((c or 0) + 59) // 60
    elif c is not None:   # H:M:S
        minutes = a * 60 + b + (c + 59) // 60
    elif b is not None:   # M:S
        minutes = a + (b + 59) // 60
    else:
        minutes = a
    if minutes < 1:
        raise UserError(f"--time {text!r} is under a minute; a worker needs at least one")
    return minutes


def _value(raw: str):
    return int(raw) if raw.isdigit() else raw


def executor_parameters(opts: SlurmOptions, job_name: str) -> dict:
    """submitit SlurmExecutor parameters (each becomes an #SBATCH line): one task per worker, `workers` array tasks
    at once, gpus_per_node GPUs each; --slurm-set KEY=VALUE sets any other submitit parameter (cpus_per_task, mem,
    qos, constraint, ...) or, as additional_parameters, any sbatch option submitit does not name."""
    params: dict = {"job_name": job_name, "time": parse_time(opts.time) if opts.time else DEFAULT_TIME_MIN,
                    "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": max(1, opts.procs_per_worker),
                    "array_parallelism": opts.workers, "stderr_to_stdout": True}
    if opts.gpus_per_worker:
        params["gpus_per_node"] = opts.gpus_per_worker
    if opts.partition:
        params["partition"] = opts.partition
    if opts.account:
        params["account"] = opts.account
    from submitit.slurm.slurm import _get_default_parameters  # the names submitit's SlurmExecutor accepts

    known = set(_get_default_parameters())
    extra: dict = {}
    for item in opts.slurm_set:
        key, eq, raw = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not eq or not key:
            raise UserError(f"--slurm-set {item!r}: write KEY=VALUE, e.g. --slurm-set cpus_per_task=10")
        if key in ("time", "timeout_min", "array_parallelism", "ntasks_per_node", "nodes"):
            raise UserError(f"--slurm-set {key}: set by the launcher ({'use --time' if 'time' in key else 'one task per worker'})")
        (params if key in known else extra)[key] = _value(raw.strip())
    if extra:
        params["additional_parameters"] = extra
    return params


def check_shared_state(storage: str | None, tracking_uri: str | None, shared_state: str | None) -> None:
    """Workers on other nodes cannot reach this machine's SQLite files: refuse them unless the user says the state
    folder is on a filesystem every node mounts."""
    local = [flag for flag, url in (("--storage", storage), ("--tracking-uri", tracking_uri))
             if not url or url.startswith(("sqlite", "file"))]
    if local and not shared_state:
        raise UserError(f"--launcher slurm with the local SQLite default of {' and '.join(local)}: workers on other "
                        "nodes cannot share them; give --storage postgresql://... --tracking-uri http://... (see the "
                        "README, 'On a cluster'), or --shared-state DIR on a filesystem every node mounts")


def submit_workers(job, opts: SlurmOptions, state: Path) -> str:
    """Submit `opts.workers` array tasks, each running SlurmWorker(job); -> the array job id. The submitit folder
    (pickles and logs) lives in the state folder, which the nodes must see."""
    import submitit
    from submitit.core.utils import FailedJobError

    if shutil.which("sbatch") is None:
        raise UserError("--launcher slurm: sbatch is not on PATH; run on a SLURM login node (or use --launcher local)")
    executor = submitit.SlurmExecutor(folder=state / "slurm" / "%j", max_num_timeout=MAX_REQUEUES)
    try:
        executor.update_parameters(**executor_parameters(opts, f"study-{job.study}"))
    except ValueError as e:  # an unknown or malformed parameter: submitit names it on its first line
        raise UserError(f"--slurm-set: {str(e).splitlines()[0]}") from None
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr; the error below says it
            jobs = executor.map_array(SlurmWorker(job, opts.procs_per_trial), list(range(opts.workers)))
    except FailedJobError as e:  # sbatch refused: unknown partition or account, more GPUs than a node has, ...
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise UserError(f"sbatch refused the job: {lines[0] if lines else 'no message'}") from None
    return jobs[0].job_id.split("_")[0]


class SlurmWorker(submitit.helpers.Checkpointable if _HAS_SUBMITIT else object):
    """What one array task runs: reconcile the queue (so a requeued task resumes its interrupted trial), then the
    worker loop until nothing is left; the last worker to find the study complete closes its MLflow parent run."""

    def __init__(self, job, procs_per_trial: int = 1):
        self.job, self.procs_per_trial = job, procs_per_trial

    def __call__(self, index: int) -> int:
        import optuna

        from study import tracking
        from study.orchestrate.status import print_status
        from study.orchestrate.storage import open_storage
        from study.orchestrate.worker import worker_loop
        from study.studies import load_study
        from study.train.ddp import PROCS_ENV

        job = self.job
        os.environ[PROCS_ENV] = str(self.procs_per_trial)
        os.environ["STUDY_STATE_DIR"] = job.state
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec, storage = load_study(job.study), open_storage(job.storage)
        study = optuna.load_study(study_name=job.name, storage=storage)
        task = _task_id()
        study.set_user_attr(TASK_ATTR + task, {"host": socket.gethostname(), "pid": os.getpid()})
        print(f"SLURM task {task} (worker {index}) on {socket.gethostname()}, pid {os.getpid()}", flush=True)
        ran = 0
        try:
            while True:  # a trial interrupted elsewhere meanwhile (a requeued or killed task) is queued again here
                self._reconcile(spec, study, storage)
                n = worker_loop(job)
                ran += n
                if n == 0:
                    break
        except BaseException:  # requeue (submitit raises SystemExit from its signal handler), Ctrl-C, a lost database
            self._interrupt_own_trials(study, storage)
            raise
        if all(word in ("done", "pruned") for *_, word in print_status(spec, job.name, storage, seeds=job.seeds)):
            tracking.set_run_status(job.parent_run_id, "FINISHED", job.tracking_uri)
        return ran

    def checkpoint(self, index: int) -> "submitit.helpers.DelayedSubmission":
        """Called by submitit on USR2 (time limit near, or preemption) before it requeues this task: the requeued task
        runs a fresh worker, which resumes the interrupted trial from its run folder's checkpoint."""
        import submitit

        print(f"SLURM task {_task_id()}: signalled; requeueing, the running cell resumes from its checkpoint", flush=True)
        return submitit.helpers.DelayedSubmission(SlurmWorker(self.job, self.procs_per_trial), index)

    def _reconcile(self, spec, study, storage) -> None:
        from study.orchestrate.queue import reconcile
        from study.orchestrate.storage import study_lock

        with study_lock(storage, self.job.name, Path(self.job.state)):
            reconcile(study, spec, self.job.seeds, retry_failed=False)

    def _interrupt_own_trials(self, study, storage) -> None:
        """This process's RUNNING trials -> interrupted (resumed by the next worker), their MLflow runs KILLED."""
        from optuna.trial import TrialState

        from study import tracking

        host, pid, study_id = socket.gethostname(), os.getpid(), storage.get_study_id_from_name(self.job.name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("host") != host or t.user_attrs.get("pid") != pid:
                continue
            try:  # Optuna's public storage API: the trial's id from its study and number
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
                storage.set_trial_user_attr(trial_id, "interrupted", "SLURM task signalled")
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)  # FAIL, no `failure`: interrupted
                if t.user_attrs.get("mlflow_run_id"):
                    tracking.set_run_status(t.user_attrs["mlflow_run_id"], "KILLED", self.job.tracking_uri)
            except Exception:  # the trial's heartbeat stops anyway: it is resumed after the grace period
                log.exception("could not mark trial %d interrupted", t.number)


def _task_id() -> str:
    """'<array job>_<task>' inside an array task, the plain job id otherwise."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "?")


# ---------------------------------------------------------------- `study status`: the job and its tasks
@dataclass
class TaskState:
    task: str
    state: str
    node: str
    restarts: str
    reason: str


def task_states(job_id: str) -> list[TaskState]:
    """The array's tasks as SLURM knows them: `scontrol show job` (live and recently finished tasks), else `sacct`
    (clusters with accounting keep finished jobs longer). Empty when neither knows the job any more."""
    out = _run(["scontrol", "-o", "show", "job", job_id])
    tasks = []
    for line in out.splitlines():
        kv = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobState" not in kv:
            continue
        task = f"{kv.get('ArrayJobId', job_id)}_{kv['ArrayTaskId']}" if kv.get("ArrayTaskId") else kv.get("JobId", job_id)
        node = kv.get("NodeList", "") if kv.get("NodeList") not in (None, "(null)") else ""
        tasks.append(TaskState(task, kv["JobState"], node, kv.get("Restarts", ""), kv.get("Reason", "")))
    if tasks:
        return tasks
    for line in _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,NodeList"]).splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            tasks.append(TaskState(parts[0], parts[1].split()[0] if parts[1] else "", parts[2], "", ""))
    return tasks


def _run(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except subprocess.TimeoutExpired:
        return ""


def print_slurm_jobs(study) -> None:
    """Below `study status`'s table: each SLURM job of the study, its tasks' states and the cell each one runs."""
    from rich.console import Console
    from rich.table import Table

    jobs = study.user_attrs.get(JOBS_ATTR) or []
    if not jobs:
        return
    from optuna.trial import TrialState

    running = {(t.user_attrs.get("host"), t.user_attrs.get("pid")): t
               for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    con = Console()
    if shutil.which("scontrol") is None and shutil.which("sacct") is None:
        con.print(f"SLURM job(s) {', '.join(jobs)}: state unknown here (no scontrol or sacct on this machine)")
        return
    for job_id in jobs:
        tasks = task_states(job_id)
        if not tasks:
            con.print(f"SLURM job {job_id}: no longer known to SLURM (finished)")
            continue
        table = Table(title=f"SLURM job {job_id}")
        for col in ("task", "state", "node", "restarts", "running"):
            table.add_column(col, no_wrap=col == "task")
        for t in tasks:
            who = study.user_attrs.get(TASK_ATTR + t.task) or {}
            trial = running.get((who.get("host"), who.get("pid"))) if t.state == "RUNNING" else None
            doing = f"{trial.user_attrs.get('cell')} seed {trial.user_attrs.get('seed')} (trial {trial.number})" if trial \
                else (t.reason if t.reason not in ("", "None") else "")
            table.add_row(t.task, t.state.lower(), t.node, t.restarts, doing)
        con.print(table)
