"""Stand-in encoders whose features are known, and `study eval` run in-process, for end-to-end tests with exact
answers.

- `OracleEncoder`: patch size 1; the features of a frame are the one-hot of its ground-truth labels. It recognises the
  frame it is given among the data set's frames (per-channel standardised pixels, so it is blind to the protocol's
  mean/std), so a runner that feeds the wrong frame, in the wrong order or at the wrong size gets wrong labels.
- `StaticEncoder`: features depend on the position only (a fixed random table), as if every frame were frame 0: the
  propagation must then return frame 0's labels for every frame.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from study import cli


def standardised(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> per-channel zero mean, unit variance."""
    flat = x.reshape(3, -1).double()
    return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-9)).reshape(x.shape)


class OracleEncoder(torch.nn.Module):
    patch_size = 1

    def __init__(self, frames: list, labels: list[np.ndarray], n_labels: int):
        """frames: image paths; labels: their (H, W) label maps (ids < n_labels)."""
        super().__init__()
        self.bank = [(standardised(torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float()),
                      torch.from_numpy(lab.astype(np.int64))) for p, lab in zip(frames, labels)]
        self.n_labels = n_labels
        self.seen: list[int] = []

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        out = []
        for frame in frames:
            x = standardised(frame)
            dist = [float(((x - ref) ** 2).mean()) if ref.shape == x.shape else np.inf for ref, _ in self.bank]
            best = int(np.argmin(dist))
            assert dist[best] < 1e-6, f"the encoder was given a frame it does not know (distance {dist[best]})"
            self.seen.append(best)
            out.append(torch.nn.functional.one_hot(self.bank[best][1], self.n_labels).float())
        return torch.stack(out)                                                   # (B, H, W, n_labels)


class StaticEncoder(torch.nn.Module):
    def __init__(self, patch_size: int, dim: int = 16):
        super().__init__()
        self.patch_size, self.dim = patch_size, dim

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        h, w = frames.shape[-2] // self.patch_size, frames.shape[-1] // self.patch_size
        table = torch.randn(h, w, self.dim, generator=torch.Generator().manual_seed(0))
        return table.expand(len(frames), -1, -1, -1)


def study_eval(monkeypatch, capsys, encoder, *args, loads: list | None = None):
    """`study eval ARGS` in-process at the smoke budget with `encoder` as the loaded checkpoint: (exit code, out, err).
    `loads` collects one entry per checkpoint load."""
    import study.model

    monkeypatch.setenv("STUDY_BUDGET", "smoke")
    if encoder is not None:
        def load(*a, **k):
            if loads is not None:
                loads.append(a)
            return encoder
        monkeypatch.setattr(study.model, "load_encoder", load)
    monkeypatch.setattr(sys, "argv", ["study", "eval", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err
