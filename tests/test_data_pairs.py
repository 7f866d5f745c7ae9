"""Frame pairs: gap bounds, repeated sampling, paired crop/flip, determinism, epochs and resume."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import study.data.dataset as dataset_module
from study.data.dataset import EpochSampler, FramePairDataset, collate_pairs, make_loader
from study.data.pairs import effective_epochs, gap_range, sample_gap_pair, steps_per_effective_epoch, steps_per_pass
from study.data.synth_videos import write_mp4
from study.errors import UserError


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 120), lo=st.integers(1, 60), extra=st.integers(0, 60), seed=st.integers(0, 2**32 - 1))
def test_gap_bounds_and_frame_order(n, lo, extra, seed):
    hi = lo + extra
    t1, t2 = sample_gap_pair(n, lo, hi, np.random.default_rng(seed))
    assert 0 <= t1 < t2 < n
    if lo <= n - 1:
        assert lo <= t2 - t1 <= min(hi, n - 1)
    else:  # too short for the smallest gap: the largest possible one
        assert (t1, t2) == (0, n - 1)


def test_gap_is_uniform_and_fixed_gap():
    rng = np.random.default_rng(0)
    gaps = [np.subtract(*sample_gap_pair(100, 4, 8, rng)[::-1]) for _ in range(5000)]
    counts = np.bincount(gaps, minlength=9)[4:]
    assert counts.min() > 850 and sorted(set(gaps)) == [4, 5, 6, 7, 8]
    assert all(t2 - t1 == 7 for t1, t2 in (sample_gap_pair(50, 7, 7, rng) for _ in range(100)))


def test_gap_fps_rescales():
    assert gap_range([4, 48], 30.0, 30.0) == (4, 48)
    assert gap_range([4, 48], 30.0, 15.0) == (2, 24)
    assert gap_range([4, 48], 30.0, 60.0) == (8, 96)
    assert gap_range([4, 48], 0.0, 15.0) == (4, 48)


def test_effective_epochs_in_one_place():
    assert effective_epochs(200, 2) == 400
    assert steps_per_pass(12, 2, 8) == 3  # 8 pairs = 4 videos a step
    assert steps_per_effective_epoch(12, 2, 8) == 1.5
    with pytest.raises(UserError, match="train.batch_size = 7.*data.repeated_sampling = 2"):
        steps_per_pass(12, 2, 7)
    with pytest.raises(UserError, match="fewer than one batch"):
        steps_per_pass(3, 2, 8)


def _pattern(h: int = 64, w: int = 96) -> np.ndarray:
    """A frame where every crop and flip shows: a left-to-right ramp in red, a vertical wave in green, a checker in blue."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([40 + 160 * x / w, 128 + 80 * np.sin(y / 5.0), 60 + 120 * ((x // 8 + y // 8) % 2)], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def static_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "static.mp4"
    write_mp4(path, [_pattern()] * 20, crf=0)  # the same frame 20 times: paired crops must give f1 == f2 exactly
    return path


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(6):
        paths.append(folder / f"v{i}.mp4")
        write_mp4(paths[-1], [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(16)])
    return paths


@pytest.mark.parametrize("augmentation", ["none", "crop", "crop_flip", "crop_flip_color"])
def test_same_crop_flip_and_jitter_on_both_frames(static_video, augmentation):
    ds = FramePairDataset([static_video], 32, [1, 10], 0.0, 4, augmentation, [0.3, 1.0], seed=3)
    for i in range(4):
        f1, f2 = ds[(i, 0)]
        assert f1.shape == f2.shape == (4, 3, 32, 32) and f1.dtype == torch.float32
        assert torch.equal(f1, f2)
        if augmentation != "none":  # r pairs, each with its own crop
            assert not torch.equal(f1[0], f1[1])


def test_flip_is_applied_to_both_frames(static_video):
    def orientation(aug):  # the red ramp rises left to right unless the pair was flipped
        signs = []
        for epoch in range(6):
            f1, f2 = FramePairDataset([static_video], 32, [1, 10], 0.0, 2, aug, [0.5, 1.0], seed=0)[(epoch, 0)]
            assert torch.equal(f1, f2)
            signs += torch.sign(f1[:, 0, :, -4:].mean((1, 2)) - f1[:, 0, :, :4].mean((1, 2))).tolist()
        return set(signs)
    assert orientation("crop") == {1.0}
    assert orientation("crop_flip") == {1.0, -1.0}


def test_one_decode_gives_r_pairs(video_folder, monkeypatch):
    opened = []
    real_open = dataset_module.open_video
    monkeypatch.setattr(dataset_module, "open_video", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    ds = FramePairDataset(video_folder, 24, [2, 6], 0.0, 3, "crop_flip", [0.5, 1.0], seed=0)
    f1, f2 = ds[2]
    assert opened == [video_folder[2]]
    assert f1.shape == f2.shape == (3, 3, 24, 24)
    assert not torch.equal(f1, f2)  # random frames: f2 is another frame
    batch = collate_pairs([ds[0], ds[1]])
    assert batch[0].shape == batch[1].shape == (6, 3, 24, 24)


def test_same_seed_epoch_index_same_tensors(video_folder):
    ds = FramePairDataset(video_folder, 24, [2, 6], 0.0, 2, "crop_flip_color", [0.5, 1.0], seed=5)
    a, b = ds[(3, 1)], ds[(3, 1)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], ds[(4, 1)][0])  # another epoch draws anew
    ds.set_epoch(3)
    assert torch.equal(ds[1][0], a[0])
    other = FramePairDataset(video_folder, 24, [2, 6], 0.0, 2, "crop_flip_color", [0.5, 1.0], seed=6)
    assert not torch.equal(other[(3, 1)][0], a[0])


def test_epoch_sampler_permutes_and_resumes():
    full = list(EpochSampler(10, 3, seed=1, epoch=0, epochs=2))
    assert len(full) == 18  # 3 batches of 3 per pass; the 10th video waits for another pass
    assert [e for e, _ in full] == [0] * 9 + [1] * 9
    assert len({i for _, i in full[:9]}) == 9 and [i for _, i in full[:9]] != [i for _, i in full[9:]]
    resumed = list(EpochSampler(10, 3, seed=1, epoch=0, start_batch=2, epochs=2))
    assert resumed == full[6:]
    assert list(EpochSampler(10, 3, seed=1, epoch=1)) == full[9:]


def test_batches_do_not_depend_on_worker_count(video_folder):
    ds = FramePairDataset(video_folder, 24, [2, 6], 0.0, 2, "crop_flip", [0.5, 1.0], seed=0)
    runs = {w: list(make_loader(ds, 2, num_workers=w, seed=0, epoch=1, start_batch=1, epochs=2)) for w in (0, 2)}
    assert len(runs[0]) == len(runs[2]) == 5
    for (a1, a2), (b1, b2) in zip(runs[0], runs[2]):
        assert a1.shape == (4, 3, 24, 24) and torch.equal(a1, b1) and torch.equal(a2, b2)


def test_the_frame_cache_gives_the_same_pairs_as_decoding(tmp_path):
    from study.data.dataset import FramePairDataset
    from study.data.synth_videos import write_video_set
    from study.data.video import find_videos

    videos = find_videos(write_video_set(tmp_path / "v", n_videos=3, n_frames=12, size=64, seed=1))
    plain = FramePairDataset(videos, 32, [2, 6], 0.0, 2, "crop_flip", [0.5, 1.0], seed=4)
    cached = FramePairDataset(videos, 32, [2, 6], 0.0, 2, "crop_flip", [0.5, 1.0], seed=4, cache_mb=16)
    for epoch in (0, 1):  # epoch 0 fills the cache, epoch 1 reads from it
        for i in range(3):
            a, b = plain[(epoch, i)], cached[(epoch, i)]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(cached._cache) == 3
    small = FramePairDataset(videos, 32, [2, 6], 0.0, 2, "crop_flip", [0.5, 1.0], seed=4, cache_mb=0)
    small[(0, 0)]
    assert not small._cache  # off by default: real data sets do not fit
