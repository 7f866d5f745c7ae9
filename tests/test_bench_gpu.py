"""`study bench gpu`: one line and exit 2 without a GPU; its path imports nothing the bare GPU machine lacks (MLflow,
Optuna, polars, submitit), and the pieces it shares with the CPU benches (generated 224 px videos, the loader) run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run with mlflow, optuna, polars, SQLAlchemy and submitit made unimportable, as on the GPU machine.
BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "optuna", "polars", "submitit", "sqlalchemy"):
            raise ImportError(f"{name} is not installed on the GPU machine")
sys.meta_path.insert(0, Block())
"""


def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "STUDY_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "study.cli", "bench", "gpu", "--out", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: study bench gpu needs a CUDA GPU") and len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_its_path_runs_without_mlflow_optuna_or_polars(tmp_path):
    code = BLOCKED + f"""
import study.cli, study.bench.gpu as g
from study.bench.data import pairs_per_second
from study.bench.model import matmul_peak
from study.config_load import load_config
from study.data.dataset import FramePairDataset
from study.model import build_model
from study.model.flops import pair_flops
from study.train.engine import build_optimizer, train
import torch
paths = g.training_videos(__import__("pathlib").Path({str(tmp_path / 'v')!r}), 2, 12)
cfg = load_config("paper")
d = cfg.data
ds = FramePairDataset(paths, 224, d.frame_gap, d.gap_fps, 2, d.augmentation, d.crop_scale, seed=0)
rate = pairs_per_second(ds, 1, 0, 0.5)
assert len(paths) == 2 and rate > 0, (paths, rate)
assert matmul_peak(torch.bfloat16, n=128, seconds=0.1) > 0
print("ok", len(paths), pair_flops(build_model(cfg.model))["forward_backward"] > 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STUDY_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "ok 2 True"
