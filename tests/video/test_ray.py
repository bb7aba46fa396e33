"""stylelab video on Ray (stylelab.video.ray): the chunk plan, the chunks on a local Ray giving the frames an
in-process run of the same frames gives, and `stylelab video --ray` end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import die_after_saving, make_clip, moving_frames

from stylelab import Config, samples
from stylelab.cli import main
from stylelab.config import ConfigError
from stylelab.image import to_tensor
from stylelab.video.ray import chunk_plan


def test_chunk_plan():
    assert chunk_plan(10, 3, 2) == [(0, 0, 3), (1, 3, 7), (5, 7, 10)]
    assert chunk_plan(10, 2, 1, start=4) == [(3, 4, 7), (6, 7, 10)]
    assert chunk_plan(2, 5, 0) == [(0, 0, 1), (1, 1, 2)]  # never more chunks than frames
    assert chunk_plan(5, 1, 3) == [(0, 0, 5)]
    for chunks, overlap in ((0, 1), (2, -1)):
        with pytest.raises(ConfigError):
            chunk_plan(5, chunks, overlap)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray of 2 CPUs, and the video extra (tests needing it skip without Ray, PyAV or OpenCV)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_chunks_give_the_frames_of_in_process_runs_of_the_same_frames(cluster):
    from stylelab.video.ray import stylize_video_ray
    from stylelab.video.temporal import stylize_video

    frames = moving_frames(6, 48, 36)
    style = to_tensor(samples.swirls(48, 48, seed=1))
    config = Config(size=48, steps=4, device="cpu")
    kwargs = {"frame_steps": 2, "temporal_weight": 100.0}
    got = list(stylize_video_ray(frames, [style], config, chunks=2, overlap=1, **kwargs))
    assert [f.index for f in got] == [0, 1, 2, 3, 4, 5]
    assert all(f.image.shape == (1, 3, 36, 48) for f in got)
    assert [f.steps for f in got] == [4, 2, 2, 2, 2, 2]  # own frames only: frame 3's chunk warmed up on frame 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a chunk's task
    try:
        first = [f.image for f in stylize_video(frames[:3], [style], config, **kwargs)]  # chunk 1: frames 0-2
        second = [f.image for f in stylize_video(frames[2:], [style], config, **kwargs)][1:]  # 2 warms up 3-5
    finally:
        torch.set_num_threads(threads)
    for expected, frame in zip(first + second, got):
        assert torch.allclose(frame.image, expected, atol=2e-3), frame.index
    # the chunks are not the sequential run: frame 3 starts afresh (from its warm-up), not from frame 2
    sequential = [f.image for f in stylize_video(frames, [style], config, **kwargs)]
    assert (sequential[3] - got[3].image).abs().mean() > 1e-3


def test_cli_video_on_ray(cluster, tmp_path):
    from stylelab.video.io import read_video

    src = make_clip(tmp_path / "in.mp4", n=4)
    style = tmp_path / "style.png"
    samples.swirls(64, 64, seed=1).save(style)
    out = tmp_path / "out.mp4"
    fast = ["--size", "64", "--steps", "3", "--frame-steps", "2", "-q"]
    assert main(["video", str(src), str(style), "-o", str(out), *fast, "--ray", "--chunks", "2",
                 "--overlap", "1"]) == 0
    clip = read_video(out)
    assert len(clip.frames) == 4 and clip.frames[0].shape == (48, 64, 3) and clip.has_audio
    assert np.asarray(clip.frames).std() > 5  # painted frames, not blank
    assert main(["video", str(src), str(style), "-o", str(tmp_path / "b.mp4"), *fast, "--chunks", "2"]) == 2


def test_cli_resume_on_ray_goes_on_from_the_kept_frames(cluster, tmp_path, monkeypatch):
    import stylelab.cli.video as videocli
    import stylelab.video.ray as videoray
    from stylelab.video.io import read_video

    src = make_clip(tmp_path / "in.mp4", n=5)
    style = tmp_path / "style.png"
    samples.swirls(64, 64, seed=1).save(style)
    out = tmp_path / "out.mp4"
    fast = ["--size", "64", "--steps", "3", "--frame-steps", "2", "-q"]
    saved, real = die_after_saving(monkeypatch, 2)
    assert main(["video", str(src), str(style), "-o", str(out), *fast]) == 130
    kept = [np.asarray(to_tensor(str(p))) for p in saved]
    monkeypatch.setattr(videocli, "save_frame", real)
    seen = []
    original = videoray.stylize_video_ray  # the CLI imports it when it runs, so it gets the spy
    monkeypatch.setattr(videoray, "stylize_video_ray",
                        lambda *a, **k: seen.append((k["start"], k["previous"] is not None)) or original(*a, **k))
    assert main(["video", str(src), str(style), "-o", str(out), *fast, "--ray", "--chunks", "2"]) == 0
    assert seen == [(2, True)]  # frames 1-2 kept, the rest on Ray going on from frame 2
    frames = read_video(out).frames
    assert len(frames) == 5
    for k in (0, 1):  # the kept frames are in the output as they were (up to the H.264 encode)
        assert np.abs(frames[k].astype(float) / 255 - kept[k][0].transpose(1, 2, 0)).mean() < 0.05
