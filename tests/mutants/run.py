"""`make mutants`: a short, curated mutation run over the core modules.

Each mutant in mutants.toml is one bug a person could write (file, the exact original snippet, its replacement, the
tests that must kill it, one line saying what it models). Every mutant is applied alone to a scratch copy of the tree
(git's tracked and untracked-but-not-ignored files: never the working tree, so Ctrl-C or a crash cannot leave a mutant
behind), its named tests run (`pytest -x -n 0`, with a per-mutant timeout), and a table says what happened:
killed (a test failed), survived (all passed), timeout (counted as killed), error (pytest exited otherwise, e.g. the
mutant broke an import: a bad mutant). First the named tests run once unmutated (a test failing there would "kill"
every mutant naming it). Exit 1 on a survivor, an error, a failing baseline, or a snippet that no longer matches its
file exactly once, so the table cannot rot silently.

Why our own runner instead of mutmut 3: mutmut mutates every operator, constant and argument of the files it is given,
most of them equivalent or trivially killed, and a survivor does not say which test was meant to catch it. A curated
table of realistic bugs, each tied to the tests that guard against it, runs in minutes on two cores and says which
test guards what.

    python tests/mutants/run.py                  # every mutant (what `make mutants` runs)
    python tests/mutants/run.py --only loss-norm-pix-no-sqrt --verbose
    python tests/mutants/run.py --jobs 2         # two mutants at a time, each in its own scratch copy
    python tests/mutants/run.py --list
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIVE: set[subprocess.Popen] = set()  # the pytest processes running now, ended on Ctrl-C
STOPPING = threading.Event()          # set on Ctrl-C: the runs killed then are not reported
TABLE = Path(__file__).with_name("mutants.toml")
PYTEST = ["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "0"]
# Trees that are never part of the scratch copy when the checkout is not a git repository (mirrors .gitignore).
UNCOPIED = (".git", ".venv", ".study", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "mlruns",
            "*.pt", "*.pth", "*.ckpt", "local.toml")


@dataclass(frozen=True)
class Mutant:
    id: str
    area: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    bug: str


@dataclass
class Outcome:
    mutant: Mutant
    status: str          # killed | survived | timeout | error
    seconds: float
    detail: str = ""     # the test that killed it, or what went wrong
    output: str = ""     # pytest's output (printed with --verbose)


def load_table(path: Path = TABLE) -> tuple[list[Mutant], float]:
    """The mutants and the per-mutant timeout (seconds) from mutants.toml; a malformed entry raises ValueError."""
    data = tomllib.loads(path.read_text())
    fields = set(Mutant.__dataclass_fields__)
    mutants = []
    for i, entry in enumerate(data.get("mutant", [])):
        if set(entry) != fields:
            raise ValueError(f"{path.name}: mutant #{i + 1} ({entry.get('id', '?')}) has keys {sorted(entry)}, "
                             f"expected {sorted(fields)}")
        mutants.append(Mutant(**{**entry, "tests": tuple(entry["tests"])}))
    ids = [m.id for m in mutants]
    if dupes := sorted({i for i in ids if ids.count(i) > 1}):
        raise ValueError(f"{path.name}: duplicate mutant ids {dupes}")
    return mutants, float(data.get("timeout", 300))


def problems(m: Mutant, root: Path = REPO) -> list[str]:
    """Why a mutant cannot be applied as written: its file, its snippet (exactly once), its named tests."""
    out = []
    src = root / m.file
    if not src.is_file():
        return [f"{m.id}: {m.file} does not exist"]
    n = src.read_text().count(m.original)
    if n != 1:
        out.append(f"{m.id}: the original snippet occurs {n} times in {m.file} (must be exactly once)")
    if m.original == m.replacement:
        out.append(f"{m.id}: the replacement equals the original")
    if not m.tests:
        out.append(f"{m.id}: no tests named")
    for node in m.tests:
        path, *names = node.split("::")
        name = re.sub(r"\[.*\]$", "", names[-1]) if names else ""  # Class::test_x[param] -> test_x
        test_file = root / path
        if not test_file.is_file():
            out.append(f"{m.id}: test file {path} does not exist")
        elif name and not re.search(rf"^\s*def {re.escape(name)}\(", test_file.read_text(), re.M):
            out.append(f"{m.id}: {path} has no test {name}")
    return out


def tracked_files(root: Path) -> list[str] | None:
    """What a clone plus the uncommitted work holds: git's tracked and untracked-but-not-ignored files."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [f for f in out.decode().split("\0") if f and (root / f).is_file()]


def scratch_copy(root: Path, into: Path) -> Path:
    files = tracked_files(root)
    if files is None:
        shutil.copytree(root, into, ignore=shutil.ignore_patterns(*UNCOPIED))
        return into
    for f in files:
        (into / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, into / f)
    return into


def child_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.update(PYTHONPATH=os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               # no .pyc in the scratch tree: a mutant and its restore can have the same size and mtime second, and a
               # stale bytecode file would then run the mutant's code in the next mutant's tests
               PYTHONDONTWRITEBYTECODE="1", MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1")
    return env


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str, float]:
    """(pytest's exit code or None on timeout, its output, seconds). The tests run in their own process group, so a
    timeout or Ctrl-C also ends what they started."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *PYTEST, *tests], cwd=tree, env=child_env(tree), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    LIVE.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        end(proc)
        out, _ = proc.communicate()
        return None, out, time.perf_counter() - t0
    except BaseException:  # Ctrl-C while waiting: the run is in its own session and would outlive us
        end(proc)
        proc.wait()
        raise
    finally:
        LIVE.discard(proc)


def end(proc: subprocess.Popen) -> None:
    """Kill a pytest run and everything it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ")[0]
    return ""


def run_mutant(m: Mutant, tree: Path, timeout: float) -> Outcome:
    """Apply m to the scratch tree, run its tests, restore the file whatever happens."""
    src = tree / m.file
    original = src.read_text()
    src.write_text(original.replace(m.original, m.replacement, 1))
    try:
        code, out, secs = run_tests(tree, m.tests, timeout)
    finally:
        src.write_text(original)
    if code is None:
        return Outcome(m, "timeout", secs, f"no result in {timeout:.0f} s (counted as killed)", out)
    if code == 0:
        return Outcome(m, "survived", secs, "every named test passed", out)
    if code == 1:
        return Outcome(m, "killed", secs, first_failure(out), out)
    tail = "\n".join(out.strip().splitlines()[-15:])
    return Outcome(m, "error", secs, f"pytest exit {code} (not a test failure):\n{tail}", out)


def check_import(tree: Path) -> None:
    """The tests must import the scratch copy, not an installed checkout, or every mutant would survive."""
    out = subprocess.run([sys.executable, "-c", "import study, analysis; print(study.__file__); print(analysis.__file__)"],
                         cwd=tree, env=child_env(tree), capture_output=True, text=True, check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(tree.resolve()) for p in out):
        sys.exit(f"error: the tests would import {out}, not the scratch copy {tree}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once, each in its own scratch copy")
    ap.add_argument("--list", action="store_true", help="print the table and exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip running the named tests on the unmutated tree")
    ap.add_argument("--verbose", action="store_true", help="print the end of each mutant's pytest output")
    args = ap.parse_args(argv)
    mutants, timeout = load_table()
    if args.only:
        unknown = set(args.only) - {m.id for m in mutants}
        if unknown:
            sys.exit(f"error: no mutant named {', '.join(sorted(unknown))}; see --list")
        mutants = [m for m in mutants if m.id in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.id:32} {m.area:12} {m.file}: {m.bug}")
        return 0
    bad = [p for m in mutants for p in problems(m)]
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="study-mutants-") as tmp:
        try:
            outcomes = run_all(mutants, timeout, Path(tmp), args)
        except KeyboardInterrupt:  # the runs are in their own sessions (for the timeout), so end them here
            STOPPING.set()
            for proc in list(LIVE):
                end(proc)
            print("\ninterrupted: the working tree was never touched; the scratch copies are removed", file=sys.stderr)
            return 130
    if outcomes is None:
        return 1
    return report(outcomes, time.perf_counter() - t_start)


def run_all(mutants: list[Mutant], timeout: float, tmp: Path, args) -> list[Outcome] | None:
    """The baseline, then every mutant, `args.jobs` at a time in their own scratch copies; None if the baseline fails."""
    jobs = max(1, min(args.jobs, len(mutants)))
    trees: queue.SimpleQueue[Path] = queue.SimpleQueue()
    for i in range(jobs):
        trees.put(scratch_copy(REPO, tmp / f"tree{i}"))
    first = trees.get()
    check_import(first)
    if not args.no_baseline:  # a test that fails unmutated would "kill" every mutant naming it
        union = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        code, out, secs = run_tests(first, union, timeout * 2)
        print(f"baseline: {len(union)} test ids on the unmutated tree, {secs:.0f} s", flush=True)
        if code != 0:
            print(out[-4000:], file=sys.stderr)
            print("error: the named tests do not pass on the unmutated tree", file=sys.stderr)
            return None
    trees.put(first)
    lock = threading.Lock()
    width = max(len(m.id) for m in mutants)

    def one(m: Mutant) -> Outcome:
        tree = trees.get()
        try:
            res = run_mutant(m, tree, timeout)
        finally:
            trees.put(tree)
        if STOPPING.is_set():
            return res
        with lock:
            first_line = res.detail.splitlines()[0] if res.detail else ""
            print(f"{res.status:8} {res.seconds:6.1f}s  {m.id:{width}}  {first_line}", flush=True)
            if args.verbose:
                print("    " + "\n    ".join(res.output.strip().splitlines()[-25:]), flush=True)
        return res

    pool = ThreadPoolExecutor(jobs)
    try:
        return list(pool.map(one, mutants))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def report(outcomes: list[Outcome], total: float) -> int:
    width = max(len(o.mutant.id) for o in outcomes)
    print(f"\n{'mutant':{width}}  {'area':12} {'result':8} {'time':>6}  bug")
    for o in outcomes:
        print(f"{o.mutant.id:{width}}  {o.mutant.area:12} {o.status:8} {o.seconds:5.1f}s  {o.mutant.bug}")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("killed", "timeout", "survived", "error")}
    print(f"\n{len(outcomes)} mutants: {counts['killed']} killed, {counts['timeout']} timed out (killed), "
          f"{counts['survived']} survived, {counts['error']} errors; {total:.0f} s")
    for o in outcomes:
        if o.status in ("survived", "error"):
            print(f"\n{o.status.upper()}: {o.mutant.id} ({o.mutant.file}): {o.mutant.bug}\n  tests: "
                  f"{' '.join(o.mutant.tests)}\n  {o.detail}", file=sys.stderr)
    return 0 if counts["survived"] == counts["error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
