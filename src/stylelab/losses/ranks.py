"""Row-wise sorting for the 1-D transport losses (histogram, sliced Wasserstein), fast on the CPU.

Those losses sort every row of a (K, M) matrix every step, M up to the pixel count of the first layer (196,608 at
512x384). torch's CPU sort is the bottleneck there: on 2 cores it takes 0.48 s for (64, 196608), while NumPy's
vectorised sort orders the same rows in 0.13 s with two threads (docs/benchmarks.md, "Cost"). So on the CPU the
rows go to NumPy (a view, no copy for float32), split over torch's thread count; elsewhere torch sorts them.

Only the order is needed for the loss: Σ_j (sort(p)_j − q_j)² = Σ_i (p_i − q_rank(i))², and the right-hand form
differentiates through p alone (the ranks are locally constant), so no gradient passes through a sort.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["argsort_rows", "sort_rows", "sorted_match"]

_MIN_NUMPY = 1 << 15  # below this many elements a thread hand-off costs more than it saves


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="stylelab-sort")


def _numpy_rows(x: Tensor, op: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """op (rows (k, M) float32 -> (k, M)) on x's rows, the rows split over torch's thread count."""
    a = x.detach().to(torch.float32).contiguous().numpy()
    threads = min(torch.get_num_threads(), a.shape[0])
    if threads < 2:
        return torch.from_numpy(op(a))
    parts = np.array_split(a, threads)
    return torch.from_numpy(np.concatenate(list(_pool(threads).map(op, parts))))


def _on_numpy(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.is_floating_point() and x.numel() >= _MIN_NUMPY and x.dim() == 2


def argsort_rows(x: Tensor) -> Tensor:
    """Indices (K, M) int64 that sort each row of x (K, M) ascending (ties in any order); no gradient."""
    if _on_numpy(x):
        return _numpy_rows(x, lambda a: np.argsort(a, axis=1)).to(torch.int64)
    return x.detach().argsort(dim=1)


def sort_rows(x: Tensor) -> Tensor:
    """Each row of x (K, M) sorted ascending, in x's dtype; no gradient (for targets)."""
    if _on_numpy(x):
        return _numpy_rows(x, lambda a: np.sort(a, axis=1)).to(device=x.device, dtype=x.dtype)
    return x.detach().sort(dim=1).values


def sorted_match(p: Tensor, q: Tensor) -> Tensor:
    """mean over rows and columns of (sort(p) − q)², for q (K, M) sorted rows, computed as (p − q[rank(p)])²:
    the same value (up to summation order) and the same gradient 2(p − q[rank(p)]) / (K·M)."""
    matched = torch.empty_like(q).scatter_(1, argsort_rows(p).to(q.device), q)
    return ((p - matched) ** 2).mean()
