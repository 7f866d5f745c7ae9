"""Label propagation: golden outputs of DINO's and CRW's loops, windowed == dense, behaviour on hand-made features."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from study.evaluate.dense import DensePropagation
from study.evaluate.propagate import LabelPropagation, PropagationParams, propagate_video
from study.evaluate.protocols import preset

FIX = Path(__file__).parent / "fixtures"


def load(name):
    d = FIX / name
    return (torch.from_numpy(np.load(d / "features.npy")), torch.from_numpy(np.load(d / "first_labels.npy")),
            json.loads((d / "params.json").read_text()))


def run(engine, feats, labels, params):
    prop = engine(params, feats[0], labels)
    return np.stack([labels.numpy()] + [prop.step(f).numpy() for f in feats[1:]])


@pytest.mark.parametrize("engine", [LabelPropagation, DensePropagation])
def test_golden_dino(engine):
    feats, labels, p = load("propagation-dino")
    params = PropagationParams("dino", queue=p["n_last_frames"], neighborhood=p["size_mask_neighborhood"],
                               topk=p["topk"], temperature=p["temperature"])
    expected = np.load(FIX / "propagation-dino/expected_soft_labels.npy")
    np.testing.assert_allclose(run(engine, feats, labels, params), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("engine", [LabelPropagation, DensePropagation])
@pytest.mark.parametrize("radius,file", [(3.0, "expected_soft_labels.npy"), (3.5, "expected_soft_labels_radius3.5.npy")])
def test_golden_crw(engine, radius, file):
    feats, labels, p = load("propagation-crw")
    params = PropagationParams("crw", queue=p["videoLen"], neighborhood=radius, topk=p["topk"],
                               temperature=p["temperature"])
    out = run(engine, feats, labels, params)
    np.testing.assert_allclose(out, np.load(FIX / "propagation-crw" / file), atol=1e-5, rtol=0)
    assert (out[0] == labels.numpy()).all()


@pytest.mark.parametrize("params", [PropagationParams("dino", 3, 2, 4, 0.1), PropagationParams("crw", 3, 2.5, 6, 0.07),
                                    PropagationParams("dino", 2, 0, 3, 0.1)])
@pytest.mark.parametrize("tile", [3, 8])
def test_windowed_equals_dense(params, tile):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 11, 13, 16, generator=g)
    labels = torch.softmax(torch.randn(3, 11, 13, generator=g), 0)
    win = propagate_video(feats, labels, params, tile=tile).numpy()
    np.testing.assert_allclose(win, run(DensePropagation, feats, labels, params), atol=1e-6, rtol=0)


def test_oracle_features_reproduce_moving_objects():
    """Features = a code per object plus a position code: propagation follows two squares moving 1 cell per frame."""
    from study.evaluate.davis_metrics import boundary_f, region_iou

    h, w, T = 24, 32, 12
    ids = np.zeros((T, h, w), np.int64)
    for t in range(T):
        ids[t, 4:10, 3 + t:9 + t] = 1
        ids[t, 14:20, 25 - t:30 - t] = 2
    codes = torch.eye(3) * 4
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([torch.sin(ii / 3), torch.cos(ii / 3), torch.sin(jj / 3), torch.cos(jj / 3)], -1) * 0.3
    feats = torch.cat([codes[torch.from_numpy(ids)], pos.expand(T, h, w, 4)], -1)
    first = torch.nn.functional.one_hot(torch.from_numpy(ids[0]), 3).permute(2, 0, 1).float()
    pred = propagate_video(feats, first, preset("paper", "davis").propagation).argmax(1).numpy()
    scores = [(region_iou(ids[t] == k, pred[t] == k) + boundary_f(ids[t] == k, pred[t] == k, bound_th=1)) / 2
              for t in range(1, T) for k in (1, 2)]
    assert np.mean(scores) >= 0.99


def test_neighbourhood_ignores_a_distant_perfect_match():
    h, w, D = 9, 20, 8
    g = torch.Generator().manual_seed(1)
    base = torch.nn.functional.normalize(torch.randn(h, w, D, generator=g), dim=-1)
    target = base.clone()
    first = base.clone()
    first[4, 2] = 0.8 * base[4, 2] + 0.2 * torch.randn(D, generator=g)   # near copy of the query, nearby
    first[4, 17] = target[4, 2]                                        # perfect match, 15 columns away
    labels = torch.zeros(2, h, w)
    labels[0] = 1
    labels[:, 4, 17] = torch.tensor([0.0, 1.0])                         # only the far match carries label 1
    near = PropagationParams("dino", queue=0, neighborhood=3, topk=1, temperature=0.1)
    assert LabelPropagation(near, first, labels).step(target)[1, 4, 2] == 0
    unrestricted = PropagationParams("dino", queue=0, neighborhood=0, topk=1, temperature=0.1)
    assert LabelPropagation(unrestricted, first, labels).step(target)[1, 4, 2] == 1


def test_topk_one_copies_the_nearest_neighbours_label():
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(2, 7, 9, 12, generator=g)
    labels = torch.softmax(torch.randn(4, 7, 9, generator=g), 0)
    params = PropagationParams("dino", queue=1, neighborhood=2, topk=1, temperature=0.1)
    out = LabelPropagation(params, feats[0], labels).step(feats[1])
    f0 = torch.nn.functional.normalize(feats[0], dim=-1)
    f1 = torch.nn.functional.normalize(feats[1], dim=-1)
    for i in range(7):
        for j in range(9):
            best, arg = -2.0, None
            for a in range(max(0, i - 2), min(7, i + 3)):
                for b in range(max(0, j - 2), min(9, j + 3)):
                    c = float(f1[i, j] @ f0[a, b])
                    if c > best:
                        best, arg = c, (a, b)
            assert torch.equal(out[:, i, j], labels[:, arg[0], arg[1]])


@pytest.mark.parametrize("shape,k", [((3, 5, 4, 6), 7), ((1, 2, 2, 3), 10), ((4, 3, 5, 1), 2)])
def test_joint_topk_equals_topk_over_all_positions(shape, k):
    from study.evaluate.propagate import joint_topk

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(shape, generator=g)
    logits[0, :, 1:] = float("-inf")                                   # a window that drops most of frame 0
    S, n, nr, nc = shape
    vals, s, r, c = joint_topk(logits, k)
    flat = logits.permute(1, 0, 2, 3).reshape(n, -1)
    expected = flat.topk(min(k, flat.shape[1]), dim=1).values
    assert torch.equal(vals, expected)
    assert torch.equal(logits[s, torch.arange(n).view(-1, 1), r, c], vals)   # the indices point at the values


def test_predict_leaves_the_context_and_threads_as_they_were():
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(3, 20, 24, 16, generator=g)
    labels = torch.softmax(torch.randn(2, 20, 24, generator=g), 0)
    params = PropagationParams("dino", queue=2, neighborhood=3, topk=4, temperature=0.1)
    prop = LabelPropagation(params, feats[0], labels, tile=4)
    prop.push_context(feats[1], labels)
    threads = torch.get_num_threads()
    first = prop.predict(feats[2])
    assert torch.equal(prop.predict(feats[2]), first) and prop.n_queued == 1
    assert torch.get_num_threads() == threads
