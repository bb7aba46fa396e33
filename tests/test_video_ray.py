"""stylelab video on Ray (stylelab.videoray): the chunk plan, the chunks on a local Ray giving the frames an
in-process run of the same frames gives, and `stylelab video --ray` end to end."""

from __future__ import annotations

import pytest

from stylelab.config import ConfigError
from stylelab.videoray import chunk_plan


def test_chunk_plan():
    assert chunk_plan(10, 3, 2) == [(0, 0, 3), (1, 3, 7), (5, 7, 10)]
    assert chunk_plan(10, 2, 1, start=4) == [(3, 4, 7), (6, 7, 10)]
    assert chunk_plan(2, 5, 0) == [(0, 0, 1), (1, 1, 2)]  # never more chunks than frames
    assert chunk_plan(5, 1, 3) == [(0, 0, 5)]
    for chunks, overlap in ((0, 1), (2, -1)):
        with pytest.raises(ConfigError):
            chunk_plan(5, chunks, overlap)


ray = pytest.importorskip("ray")
pytest.importorskip("av")
pytest.importorskip("cv2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from test_video import make_clip, moving_frames  # noqa: E402

from stylelab import Config, samples  # noqa: E402
from stylelab.cli import main  # noqa: E402
from stylelab.image import to_tensor  # noqa: E402
from stylelab.video import stylize_video  # noqa: E402
from stylelab.videoio import read_video  # noqa: E402
from stylelab.videoray import stylize_video_ray  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_chunks_give_the_frames_of_in_process_runs_of_the_same_frames(cluster):
    frames = moving_frames(6, 48, 36)
    style = to_tensor(samples.swirls(48, 48, seed=1))
    config = Config(size=48, steps=4, device="cpu")
    kwargs = {"frame_steps": 2, "temporal_weight": 100.0}
    got = list(stylize_video_ray(frames, [style], config, chunks=2, overlap=1, **kwargs))
    assert [f.index for f in got] == [0, 1, 2, 3, 4, 5]
    assert all(f.image.shape == (1, 3, 36, 48) and f.steps > 0 and f.step_seconds > 0 for f in got)
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
