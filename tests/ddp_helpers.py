"""Run under torchrun by tests/test_ddp.py: `train` on every rank, each rank in its own folder (RUN_DIR/rank<r>), so a
test sees what each rank wrote and which ranks called on_metrics; every rank stops after step STOP (a crash there).

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.ddp_helpers RUN_DIR STOP '<--set json>'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(run_dir: Path, stop: int, overrides: dict) -> None:
    from study.config_load import load_config
    from study.train.engine import train

    rank = int(os.environ["RANK"])
    calls: list[int] = []
    out = run_dir / f"rank{rank}"

    def stop_at(model, step: int, epoch: float) -> bool:
        if step == stop:
            (run_dir / f"metrics-rank{rank}.json").write_text(json.dumps(calls))
            sys.exit(3)
        return False

    train(load_config("smoke", overrides=overrides), out, progress=False, periodic=(1, stop_at),
          on_metrics=lambda metrics, step: calls.append(step))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))
