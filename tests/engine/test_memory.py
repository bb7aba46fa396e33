"""Memory before work (stylelab.engine.memory): the estimate's shape, the free memory, out-of-memory errors told
apart from others. The command's refusal before anything heavy and OOM -> exit 1: tests/cli/test_memory.py.

Whether the estimate matches real runs is a benchmark (bench/memory.py, docs/benchmarks.md "Memory"), not a test.
"""

from __future__ import annotations

import pytest

from stylelab.config import Config
from stylelab.engine import memory

HW = (384, 512)  # content (H, W)
STYLE = [(512, 512)]


def est(**changes) -> int:
    return memory.estimate(Config(**changes), HW, STYLE).bytes


def test_estimate_grows_with_size_and_about_with_the_pixel_count():
    sizes = [128, 256, 512, 1024, 2048]
    values = [est(size=s) for s in sizes]
    assert values == sorted(values) and len(set(values)) == len(values)
    variable = [v - memory.CPU_BASELINE for v in values]
    assert 3 < variable[-1] / variable[-2] < 5  # twice the long edge, four times the pixels


def test_estimate_grows_with_lbfgs_history_up_to_the_steps_taken():
    short = est(size=512, steps=4, lbfgs_history=5)
    long = est(size=512, steps=200, lbfgs_history=50)
    assert long > est(size=512, steps=200, lbfgs_history=5) > short
    assert est(size=512, steps=4, lbfgs_history=50) == short  # 4 steps store at most 4 pairs


def test_low_memory_adam_and_cheaper_losses_need_less():
    base = est(size=512)
    assert est(size=512, low_memory=True) < base
    assert est(size=512, optimizer="adam") < base
    assert est(size=512, style_loss="gram") < base  # the default mix adds sliced W2's sorted projections
    assert est(size=512, style_loss="mmd-gaussian(features=4096)") > est(size=512, style_loss="mmd-gaussian")


def test_peak_is_at_the_finest_scale():
    e = memory.estimate(Config(size=1024), HW, STYLE)
    assert e.scale == len(Config(size=1024).schedule()) - 1 and e.hw == (768, 1024)


def test_texture_estimate_from_its_shape():
    e = memory.estimate(Config(size=256, init="noise", content_weight=0.0), None, STYLE, shape=(192, 256))
    assert e.hw == (192, 256) and e.bytes > memory.CPU_BASELINE


def test_available_memory_is_known_here():
    free = memory.available("cpu")
    assert free is None or free > 0
    if free is not None:
        assert memory.largest_fitting_size(Config(size=8192), memory.estimate(Config(size=8192), HW, STYLE),
                                           free) is not None


@pytest.mark.parametrize("exc, oom", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:116] data. DefaultCPUAllocator: can't allocate memory: you tried "
                  "to allocate 120795955200 bytes. Error code 12 (Cannot allocate memory)"), True),
    (MemoryError(), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("view size is not compatible with input tensor's size and stride"), False),
    (ValueError("can't allocate memory"), False),
])
def test_out_of_memory_is_recognised(exc, oom):
    assert memory.is_out_of_memory(exc) is oom


def test_tiles_hold_one_window_and_image_sized_vectors():
    whole = est(size=4096, style_loss="gram", optimizer="adam")
    tiled = est(size=4096, style_loss="gram", optimizer="adam", tile=512)
    assert tiled < whole / 5
    assert est(size=4096, style_loss="gram", optimizer="adam", tile=256) < tiled  # smaller windows
    assert est(size=4096, style_loss="gram", tile=512) > tiled  # L-BFGS's history is image-sized
    # a scale no larger than one tile runs whole
    assert est(size=512, style_loss="gram", tile=512) == est(size=512, style_loss="gram")
