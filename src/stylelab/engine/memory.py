"""How much memory a run needs, before it starts, and how much the machine has.

    estimate(config, content_hw, style_hws, shape) -> Estimate     (bytes at the peak, and at which scale)
    available(device) -> bytes or None                             (CPU: MemAvailable; CUDA: free device memory)

The model counts what one optimiser step keeps alive at the largest scale of the schedule, in float32 values
per output pixel, from the network's structure:

* activations: one tensor per conv up to the deepest layer used (the ReLUs run in place), each pool's output
  (max pooling also keeps int64 indices), the input; `--low-memory` keeps only the segment boundaries and the
  requested layers, plus one block recomputed during the backward pass;
* the style losses: what each keeps for its backward pass per feature value (sorted projections and their
  int64 indices for the sliced Wasserstein distance, the random-feature cosines for the RFF MMD, ...);
* the optimiser: L-BFGS keeps 2 image-sized vectors per history entry actually used (min(history, steps)) and
  about 4 more; Adam 3;
* the style targets (statistics of the style images, kept for the whole scale) and the target pass itself;
* on the CPU, a fixed baseline: the interpreter, torch and the VGG19 weights.

A scale computed in tiles (`--tile`, stylelab.engine.tiles) keeps the activations and the losses' values of one
window (the tile and its margins) instead of the whole image's, and image-sized only: the optimiser's vectors,
the image and its gradient, the content targets at their layer and the style images.

The values counted are multiplied by one factor for what autograd and the allocator add (gradients of the
largest layers, workspace, fragmentation), fitted with the baseline on the measured peak RSS at 256 and 512 px
and checked at 1024 px (bench/memory.py, docs/benchmarks.md "Memory"); the CUDA figures are not measured.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import MIN_TILE, Config
from ..layers import LAYER_NAMES, TILE_GRID, channels, pools_before, tile_margin
from ..losses.spec import STYLE_SAMPLE

__all__ = [
    "CPU_BASELINE",
    "CUDA_BASELINE",
    "FLOAT",
    "LOSS_VALUES",
    "OVERHEAD",
    "Estimate",
    "activation_values",
    "advice",
    "available",
    "estimate",
    "fitting_tile",
    "format_bytes",
    "is_out_of_memory",
    "largest_fitting_size",
    "loss_values",
    "optimizer_vectors",
]

FLOAT = 4  # bytes; statistics are float32 whatever the precision
# Calibrated on peak RSS (bench/memory.py, CPU, torch 2.x): interpreter + torch + VGG19 weights, and the factor
# for what autograd and the allocator add to the values counted below.
CPU_BASELINE = 600 * 2**20
OVERHEAD = 1.28
CUDA_BASELINE = 200 * 2**20  # the VGG19 weights on the device and cuDNN workspace (not measured)
# Values kept for the backward pass per feature value of a style layer, by loss (structure, see the module doc).
LOSS_VALUES = {
    "gram": 0.0,  # the (C, C) product only; the features themselves are the activations
    "mmd-linear": 0.0,
    "bn": 1.0,  # centred copy
    "w2": 1.0,  # centred copy
    "mmd-poly": 0.0,  # degree 2; other degrees sample a fixed number of positions (below)
    "sliced-wasserstein": 4.0,  # projections, sorted values, int64 indices (2 values)
    "histogram": 4.0,  # sorted values, int64 indices, the difference
    "mmd-gaussian": 0.0,  # rff: per random feature (below); sampled: fixed
    "nn": 3.0,  # the per-position targets, and the two unit-normalised copies of the cosine
    "remd": 1.0,  # centred copy (covariance); the sampled distances are fixed in size
}


@dataclass(frozen=True)
class Estimate:
    """Peak memory of a run, in bytes, and where it happens."""

    bytes: int
    scale: int  # index of the scale at the peak (the largest, in practice)
    hw: tuple[int, int]  # output (H, W) at that scale
    device: str  # 'cpu' or 'cuda' (what the baseline counts)

    def __str__(self) -> str:
        return format_bytes(self.bytes)


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def estimate(
    config: Config, content_hw: tuple[int, int] | None, style_hws: Sequence[tuple[int, int] | None],
    shape: tuple[int, int] | None = None, device: str = "cpu",
) -> Estimate:
    """Peak memory of `config` for a content image of (H, W) `content_hw` (or a texture of (H, W) `shape`) and
    style images of (H, W) `style_hws` (None entries: unknown, taken as square)."""
    full = content_hw if content_hw is not None else shape
    if full is None:
        raise ValueError("give the content image's size or the texture's shape")
    plan = config.schedule()
    best: Estimate | None = None
    for k, (size, steps) in enumerate(plan):
        hw = _fit(full, size, 16 if config.tileable else 1)
        styles = [_fit(s or (size, size), _style_edge(config, size), 1) for s in style_hws] or [(size, size)]
        per_scale = _scale_bytes(config, hw, styles, steps, content=content_hw is not None)
        if best is None or per_scale > best.bytes:
            best = Estimate(int(per_scale), k, hw, device)
    assert best is not None
    base = CUDA_BASELINE if device == "cuda" else CPU_BASELINE
    return Estimate(best.bytes + base, best.scale, best.hw, device)


def _scale_bytes(config: Config, hw: tuple[int, int], styles: Sequence[tuple[int, int]], steps: int,
                 content: bool) -> float:
    n = hw[0] * hw[1]
    layers = [*config.style_layers, *(config.content_layers if content else ())]
    deepest = max(layers, key=LAYER_NAMES.index)
    per_px = activation_values(deepest, config.pooling, config.low_memory, set(layers))
    per_px += loss_values(config, config.style_layers)
    if config.tile and max(hw) > config.tile:
        # One window at a time; image-sized: the optimiser's vectors, the image and its gradient, the content
        # targets; the style images (3 values a pixel), whose moments are summed in tiles too, and the transport
        # losses' style samples (features, and sliced W2's sorted projections) at up to STYLE_SAMPLE positions.
        side = config.tile + 2 * tile_margin(tuple(layers))
        window = min(side, hw[0]) * min(side, hw[1])
        whole = 3 * optimizer_vectors(config, steps) + 3 * 2 + (_feature_values("relu4_2") if content else 0)
        style_px = sum(h * w for h, w in styles)
        samples = 0.0
        for term in config.style_loss_terms():
            if term.name in ("sliced-wasserstein", "histogram"):
                copies = 2 if term.name == "sliced-wasserstein" else 1
                samples += sum(copies * _channels(layer) * min(STYLE_SAMPLE, style_px * _feature_values(layer)
                                                                / _channels(layer)) for layer in config.style_layers)
        return OVERHEAD * FLOAT * (per_px * window + whole * n + 3 * style_px + samples)
    per_px += 3 * optimizer_vectors(config, steps)
    # Targets, kept for the whole scale: per style layer, the blended style statistics (sample-based losses keep
    # the pooled style features, at most the largest style image's size) and the content features.
    style_px = max(h * w for h, w in styles)
    kept = style_px * _target_values(config) + (n * _feature_values("relu4_2") if content else 0)
    # The target pass (no gradients): each style image's requested layers, then the reference at the output size.
    targets_pass = style_px * sum(_feature_values(layer) for layer in config.style_layers) * len(styles)
    return OVERHEAD * FLOAT * (per_px * n + kept + 0.5 * targets_pass)


def activation_values(deepest: str, pooling: str, low_memory: bool = False,
                      wanted: frozenset[str] | set[str] = frozenset()) -> float:
    """float32 values per input pixel that one forward pass keeps for the backward pass, up to `deepest`."""
    total, boundaries, largest_block = 3.0, 3.0, 0.0  # the preprocessed input
    block_values = 0.0
    for name in LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1]:
        v = _feature_values(name)
        if name.startswith("conv"):
            total += v
            block_values += v
            if name.replace("conv", "relu") in wanted or name in wanted:
                boundaries += v
        elif name.startswith("pool"):
            extra = 2 * v if pooling == "max" else (v if pooling == "l2" else 0.0)  # int64 indices / x² kept
            total += v + extra
            block_values += v + extra
            boundaries += v
            largest_block = max(largest_block, block_values)
            block_values = 0.0
    largest_block = max(largest_block, block_values)
    return boundaries + largest_block if low_memory else total


def loss_values(config: Config, layers: Sequence[str]) -> float:
    """Values per output pixel that the style losses keep for their backward pass, summed over the mix."""
    per_px = 0.0
    for term in config.style_loss_terms():
        params = dict(term.params)
        for layer in layers:
            c, v = _channels(layer), _feature_values(layer)
            if term.name == "sliced-wasserstein":
                per_px += LOSS_VALUES[term.name] * v * (_number(params, "directions", 0) or c) / c
            elif term.name == "mmd-gaussian" and params.get("estimator", "rff") == "rff":
                per_px += 2 * v * _number(params, "features", 1024) * _number(params, "scales", 1) / c  # W x + b, cos
            else:
                per_px += LOSS_VALUES.get(term.name, 1.0) * v
    return per_px


def _number(params: Mapping[str, object], key: str, default: float) -> float:
    """A numeric loss parameter (the spec has checked its type), or `default` when it is not given."""
    value = params.get(key, default)
    return float(value) if isinstance(value, (int, float)) else default


def optimizer_vectors(config: Config, steps: int) -> float:
    """Image-sized vectors the optimiser keeps: L-BFGS's used history pairs and its work vectors, Adam's moments."""
    if config.optimizer == "lbfgs":
        return 2 * min(config.lbfgs_history, steps) + 4
    return 3


def _target_values(config: Config) -> float:
    """Values per style pixel kept as style statistics: sample-based losses keep the style's features (and the
    sliced Wasserstein distance their sorted projections); moment losses only (C, C) matrices."""
    per_px = 0.0
    for term in config.style_loss_terms():
        for layer in config.style_layers:
            v = _feature_values(layer)
            if term.name == "sliced-wasserstein":
                per_px += v * (1 + (_number(dict(term.params), "directions", 0) or _channels(layer)) / _channels(layer))
            elif term.name in ("histogram", "mmd-gaussian", "nn", "remd") or (term.name == "mmd-poly" and
                                                               dict(term.params).get("degree", 2) != 2):
                per_px += v
    return per_px


def _channels(name: str) -> int:
    return channels(name)


def _feature_values(name: str) -> float:
    """Values per input pixel of the activation `name`: C / 4**pools."""
    pools = pools_before(name) + (1 if name.startswith("pool") else 0)
    return _channels(name) / 4**pools


def _fit(shape: tuple[int, int], long_edge: int, step: int) -> tuple[int, int]:
    h, w = shape
    f = long_edge / max(h, w)
    return max(step, round(h * f / step) * step), max(step, round(w * f / step) * step)


def _style_edge(config: Config, size: int) -> int:
    base = config.style_size or config.size
    return max(16, round(base * size / config.size * config.style_scale))


# ------------------------------------------------------------------------------------------------ available


def available(device: str = "cpu") -> int | None:
    """Bytes a run may use: free device memory on CUDA, available RAM on the CPU; None if unknown (then no check)."""
    if device.startswith("cuda"):
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError, ValueError):
            return None
        return int(free)
    if device != "cpu":
        return None  # mps: unified memory, not reported
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None
    return None


def fitting_tile(config: Config, free: int, content_hw: tuple[int, int] | None,
                 style_hws: Sequence[tuple[int, int] | None], shape: tuple[int, int] | None = None,
                 device: str = "cpu") -> int | None:
    """The largest --tile (a multiple of 16 px up to 1024) whose run fits in `free` bytes; None when the run's
    losses or settings cannot tile, or no tile fits."""
    from ..config import ConfigError

    for tile in range(1024, MIN_TILE - 1, -4 * TILE_GRID):
        try:
            tiled = dataclasses.replace(config, tile=tile)
        except ConfigError:
            return None
        if estimate(tiled, content_hw, style_hws, shape, device).bytes <= free:
            return tile
    return None


def advice(config: Config, est: Estimate, free: int, tile: int | None = None) -> str:
    """What to change so the run fits: --tile (`tile`: fitting_tile's answer), the largest size that fits,
    --low-memory, fewer scales."""
    tips = [] if tile is None else [f"--tile {tile}"]
    fit = largest_fitting_size(config, est, free)
    if fit is not None:
        tips.append(f"--size {fit}")
    if not config.low_memory:
        tips.append("--low-memory")
    if config.optimizer == "lbfgs" and config.lbfgs_history > 5:
        tips.append("--optimizer adam")
    if len(config.schedule()) == 1 and config.size > 256:
        tips.append(f"--scales {config.size // 2}:{config.steps},{config.size}:{max(1, config.steps // 4)}")
    return ", ".join(tips)


def largest_fitting_size(config: Config, est: Estimate, free: int) -> int | None:
    """Memory grows about with the pixel count: the long edge that scales the peak down to `free`."""
    base = CUDA_BASELINE if est.device == "cuda" else CPU_BASELINE
    if free <= base:
        return None
    f = math.sqrt((free - base) / max(1, est.bytes - base))
    size = int(config.size * f * 0.95) // 16 * 16
    return size if size >= 16 else None


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's out-of-memory errors: CUDA's OutOfMemoryError, and the CPU allocator's plain RuntimeError
    ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ...")."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())
