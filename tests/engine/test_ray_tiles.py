"""Tiled steps on Ray actors (stylelab.engine.ray_tiles): the pixels of the same tiled run in this process at the
same thread count, for the default mix (moments, transport histograms, small layers, content) and a texture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import stylelab
from stylelab import Config
from stylelab.engine.events import TileProgress
from stylelab.errors import StylelabError

ray = pytest.importorskip("ray")
from stylelab.engine.ray_tiles import RayTiles  # noqa: E402  (after the skip: it needs the extra)


@pytest.fixture(scope="module")
def one_thread():
    """The local run and the driver of the Ray run on one thread, as each actor: the same sums in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
    torch.set_num_threads(threads)


def test_two_actors_give_the_pixels_of_the_local_tiled_run(one_thread, content_image, style_image):
    """Two scales (the first in one piece in the driver, the second in 64-px tiles on two actors), three Adam
    steps of the default mix: every pixel as in the local run; and every tile of every sweep is heard."""
    config = Config(size=192, scales=((64, 2), (192, 3)), optimizer="adam", tile=64, seed=5)
    local = np.asarray(stylelab.stylize(content_image, style_image, config))
    events: list[TileProgress] = []
    with RayTiles(config, actors=2, threads=1) as runner:
        remote = np.asarray(stylelab.stylize(content_image, style_image, config, on_tile=events.append,
                                             tile_runner=runner))
    assert remote.shape == local.shape == (128, 192, 3)
    assert np.array_equal(remote, local)
    assert not np.array_equal(local, np.asarray(stylelab.stylize(
        content_image, style_image, dataclasses.replace(config, scales=((64, 2), (192, 2))))))  # the test can fail
    steps = [(e.scale, e.sweep, e.tile) for e in events if e.phase == "step"]
    assert steps == [(1, s, t) for _ in range(3) for s in (1, 2, 3) for t in range(1, 7)]  # 3 x 2 tiles


def test_a_texture_on_one_actor(one_thread, style_image):
    config = Config(size=144, steps=2, optimizer="adam", multiscale=False, tile=64, style_loss="gram", seed=2,
                    init="noise")
    local = np.asarray(stylelab.synthesize(style_image, (144, 80), config))
    with RayTiles(config, actors=1) as runner:
        remote = np.asarray(stylelab.synthesize(style_image, (144, 80), config, tile_runner=runner))
    assert np.array_equal(remote, local)


def test_an_actor_that_cannot_build_its_network_is_one_line(one_thread, tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(StylelabError, match=r"^a Ray actor could not build VGG19: cannot read VGG19 weights") as info:
        RayTiles(Config(weights=str(bad)), actors=1)
    assert "\n" not in str(info.value)
