"""Video reading: the real clips decode, finding videos, bad files are skipped and counted, never fatal."""

from pathlib import Path

import numpy as np
import pytest

from study.data.dataset import FramePairDataset, make_loader
from study.data.synth_videos import write_mp4
from study.data.video import find_videos, read_frames, real_clips, scan_videos, video_info
from study.errors import UserError


def test_real_clips_decode_with_expected_lengths():
    clips = {p.name: p for p in real_clips()}
    assert sorted(clips) == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
    expected = {"bigbuckbunny.mp4": (132, (720, 1280)), "bikes.mp4": (250, (272, 640)),
                "carphone_pristine.mp4": (120, (144, 176))}
    for name, (n, hw) in expected.items():
        count, fps = video_info(clips[name])
        assert count == n and fps > 0
        frames = read_frames(clips[name], [0, n - 1])
        assert frames.shape == (2, *hw, 3) and frames.dtype == np.uint8 and frames.std() > 5  # real content, not blank
    small = read_frames(clips["bikes.mp4"], [3], size=(68, 160))  # decode-time resize
    assert small.shape == (1, 68, 160, 3)


def test_find_videos_recursive_sorted_and_errors(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    for rel in ["b/c/z.mp4", "a.MKV", "b/x.webm", "b/y.avi", "notes.txt"]:
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["a.MKV", "b/c/z.mp4", "b/x.webm", "b/y.avi"]
    with pytest.raises(UserError, match="data.root"):
        find_videos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="data.root.*no video files"):
        find_videos(tmp_path / "empty")


def _good_video(path: Path, n: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_mp4(path, [rng.integers(0, 255, (40, 64, 3), dtype=np.uint8) for _ in range(n)])
    return path


def test_bad_videos_are_skipped_and_counted(tmp_path):
    good = [_good_video(tmp_path / f"good{i}.mp4", seed=i) for i in range(3)]
    data = good[0].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    _good_video(tmp_path / "one_frame.mp4", n=1)  # too short for a pair

    ok, bad = scan_videos(find_videos(tmp_path))
    assert {p.name for p, _, _ in ok} == {"good0.mp4", "good1.mp4", "good2.mp4"}
    assert {p.name for p in bad} == {"truncated.mp4", "random.mp4", "empty.mp4", "one_frame.mp4"}

    videos = find_videos(tmp_path)
    videos.remove(tmp_path / "one_frame.mp4")
    ds = FramePairDataset(videos, 32, [1, 4], 0.0, 2, "crop_flip", [0.5, 1.0], seed=0)
    loader = make_loader(ds, videos_per_batch=1, num_workers=0, seed=0, epoch=0)
    batches = list(loader)
    assert len(batches) == 3 and all(f1.shape == (2, 3, 32, 32) for f1, _ in batches)
    assert len(ds.skipped) == 3


def test_no_readable_video_is_a_user_error(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"not a video at all")
    with pytest.raises(UserError, match="none of the 2 videos"):
        FramePairDataset(find_videos(tmp_path), 32, [1, 4], 0.0, 2, "crop", [0.5, 1.0], seed=0)


def test_only_decoding_failures_count_as_unreadable(tmp_path, monkeypatch):
    """An error that is not the file's (a bug in the pipeline, decord failing on a width) must surface, not be skipped
    as an 'unreadable video'."""
    import study.data.dataset as dataset
    from study.data.video import VideoDecodeError

    good = [_good_video(tmp_path / f"good{i}.mp4", seed=i) for i in range(2)]
    ds = FramePairDataset(good, 32, [1, 4], 0.0, 1, "crop", [0.5, 1.0], seed=0)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the augmentation")
    monkeypatch.setattr(dataset, "paired_augment", broken)
    with pytest.raises(RuntimeError, match="a bug in the augmentation"):
        ds[0]
    assert ds.skipped == []

    rng = np.random.default_rng(0)
    write_mp4(tmp_path / "w48.mp4", [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(3)])
    with pytest.raises(UserError, match="w48.mp4: decord cannot copy frames of this width"):
        read_frames(tmp_path / "w48.mp4", [0, 1])
    (tmp_path / "cut.mp4").write_bytes(good[0].read_bytes()[:300])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        read_frames(tmp_path / "cut.mp4", [0])


@pytest.mark.parametrize("raised,expected", [
    (RuntimeError("Error reading /x.mp4..."), "VideoDecodeError"),
    (RuntimeError("std::bad_alloc"), "RuntimeError"),
])
def test_decord_errors_are_classified_by_what_they_say(monkeypatch, raised, expected):
    import decord

    from study.data.video import VideoDecodeError, open_video

    def failing(*args, **kwargs):
        raise raised
    monkeypatch.setattr(decord, "VideoReader", failing)
    with pytest.raises((VideoDecodeError, RuntimeError)) as info:
        open_video("/x.mp4")
    assert type(info.value).__name__ == expected
