"""Tiled steps on Ray actors (optional extra stylelab[ray]): `stylelab run --ray`, or
`stylize(..., tile_runner=RayTiles(config))`.

Each actor holds VGG19, built from the run's weights as the driver's is, and runs a sweep's work (the same
functions LocalTiles runs: stylelab.engine.tiles) on the windows it is sent. The driver keeps the image, the
optimiser and the whole image's statistics; it sends each tile its window's pixels and its share of the sweep's
image-sized inputs (the content targets under its core, the small layers' gradients there) and gets small results
back (moments, row ranges, histograms, the window's gradient), which it adds up in the tiles' order. So with as
many torch threads per actor as in the driver, a run on Ray has the pixels of the same run in this process.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..config import Config, ConfigError
from ..errors import StylelabError
from .tiles import Tile, Work, run_window

__all__ = ["RayTiles", "joined_ray", "ray_module"]

IN_FLIGHT = 2  # tiles sent ahead per actor: one to work on, one waiting, so an actor never idles on a round trip


def ray_module() -> Any:
    """The `ray` module, or a ConfigError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the optional extra: pip install 'stylelab[ray]'") from None
    return ray


def joined_ray(address: str | None = None, init_kwargs: dict | None = None) -> Any:
    """`ray`, started or joined: None starts a local Ray (or keeps the one this process already joined), 'auto'
    joins RAY_ADDRESS or the cluster of `ray start`, else a cluster's address; a one-line StylelabError if not."""
    ray = ray_module()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
        except Exception as exc:
            raise StylelabError(f"cannot start or join Ray at {address or 'a new local cluster'}: "
                                + " ".join(str(exc).split())) from None
    return ray


class _TileActor:
    """VGG19 in its own process, with `threads` torch threads; runs a sweep's work on one window at a time."""

    def __init__(self, weights: str | None, pooling: str, threads: int, low_memory: bool) -> None:
        from .optimize import build_model

        torch.set_num_threads(threads)
        self.model = build_model(weights, pooling, torch.device("cpu"))
        self.model.low_memory = low_memory

    def net(self, window: Tensor, layers: set[str]) -> dict[str, Tensor]:
        return run_window(self.model, window, layers, contextlib.nullcontext)

    def run(self, work: Work, window: Tensor, tile: Tile, extra: Any) -> Any:
        return _compact(work(self.net, window, tile, extra))

    def threads(self) -> int:
        return torch.get_num_threads()


def _compact(value: Any, device: torch.device | None = None) -> Any:
    """Tensors in nested dicts, tuples and lists copied into storages of their own (a view would travel with its
    whole storage: a window's activations, the whole content targets), on `device` if given."""
    if isinstance(value, Tensor):
        value = value.detach()
        if device is not None and value.device != device:
            return value.to(device)
        return value.clone(memory_format=torch.contiguous_format)
    if isinstance(value, dict):
        return {k: _compact(v, device) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_compact(v, device) for v in value)
    return value


class RayTiles:
    """A TileRunner on Ray actors. `address`: None starts a local Ray (or uses the one this process joined), 'auto'
    joins RAY_ADDRESS or the cluster of `ray start`, else a cluster's address. `actors`: how many (default: the
    cluster's CPUs // `threads`), each with `threads` torch threads and as many CPUs reserved. The actors run on
    the CPU; the driver may hold the image on another device."""

    def __init__(self, config: Config, address: str | None = None, actors: int | None = None, threads: int = 1,
                 init_kwargs: dict | None = None) -> None:
        if threads < 1:
            raise ConfigError(f"--ray-threads must be >= 1, got {threads}")
        if actors is not None and actors < 1:
            raise ConfigError(f"--ray-actors must be >= 1, got {actors}")
        ray = self.ray = joined_ray(address, init_kwargs)
        total = int(ray.cluster_resources().get("CPU", 1))
        count = actors or max(1, total // threads)
        actor = ray.remote(num_cpus=threads, max_restarts=0)(_TileActor)
        self.actors = [actor.remote(config.weights, config.pooling, threads, config.low_memory)
                       for _ in range(count)]
        # each has built its network, or the error is here, before any work
        self._get([a.threads.remote() for a in self.actors], "a Ray actor could not build VGG19")

    def _get(self, refs: Any, what: str = "a tile's work failed on Ray") -> Any:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayError as exc:
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            # the remote exception's last line, without its class: "pkg.module.SomeError: message"
            reason = re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1]) if lines else type(exc).__name__
            raise StylelabError(f"{what}: {reason}") from None

    def map(self, work: Work, image: Tensor, tiles: Sequence[Tile],
            extra: Callable[[Tile], Any] | None = None) -> Iterator[Any]:
        shared = self.ray.put(work)  # once per sweep, not once per tile
        waiting: deque = deque()
        queue = iter(enumerate(tiles))

        def send(k: int, t: Tile) -> None:
            actor = self.actors[k % len(self.actors)]  # in turn: each actor's tiles come back in their order
            window = _compact(t.pixels(image), torch.device("cpu"))
            share = None if extra is None else _compact(extra(t), torch.device("cpu"))
            waiting.append(actor.run.remote(shared, window, t, share))

        for k, t in itertools.islice(queue, IN_FLIGHT * len(self.actors)):
            send(k, t)
        while waiting:
            result = self._get(waiting.popleft())
            nxt = next(queue, None)
            if nxt is not None:
                send(*nxt)
            yield _compact(result, image.device) if image.device.type != "cpu" else result

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def __enter__(self) -> RayTiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
