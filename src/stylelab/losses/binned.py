"""One-dimensional optimal transport without sorting: each row's ranks read from a histogram of that row.

The 1-D transport losses (sliced W2, histogram) match every row p (M values) of a (K, M) matrix to a target
quantile function Q of that row:

    L = mean over rows of Σ_i w_i (p_i − Q(c_i))²,   c_i = the mass of the row below p_i plus half of w_i

(w_i = 1/M without position weights), and the gradient is 2 w_i (p_i − Q(c_i)): Q(c_i) moves only when the
order of the row changes, so it is locally constant. A sort gives every c_i exactly, at O(M log M) work per
row and step, and how fast a CPU sorts then decides the cost of the whole step. Here each row is cut instead into
B equal bins between its smallest and largest value; one pass adds up the mass in every bin, so the row's
cumulative distribution is exact at the bin edges, and inside a bin a value's level is interpolated, as if the
bin's values were spread evenly over it (a value at fraction f of a bin of n values has on average (n − 1) f of
them below it). The matched value is then one piecewise-linear increasing function of p per row,
Q(c(p)) = offset_j + slope_j t (t = p's position in bins, j = int(t)), read from two small tables: linear work, in
chunks of the matrix that stay in the CPU's cache, with the gradient computed in the same pass.

What it changes against the sort:
* the order *inside* a bin: every value keeps its bin, and its level is off by at most its bin's mass, on
  average far less. On VGG19 features of Tübingen at 512 x 384 against The Starry Night, with B = 1024, the
  gradient differs from the sort's by 0.1-0.5% (relative L2) on the layers of >= 3072 positions and the value by
  < 0.02%; ~1% and 0.07% at 768 positions. tests/losses/test_binned.py holds rows of 4096 heavy-tailed values to
  1.5% and 0.2%.
* ties: many values equal to a row's minimum (a ReLU's zeros) share their levels [0, a) and all move to the
  target's mean over them (a sort hands them those levels in an arbitrary order); the value adds the target's
  variance there, so it is the sort's. The ReLU passes no gradient to its zeros, so the step does not change.
Rows shorter than `EXACT_BELOW` positions, and tensors off the CPU (whose sort is fast), are sorted exactly
(losses.transport decides; `bins=0` sorts everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["BINS", "CHUNK_ELEMENTS", "EXACT_BELOW", "PiecewiseTransport", "QuantileFn", "binned_quantiles", "transport"]

BINS = 1024  # bins per row: the default of the losses' `bins` parameter
EXACT_BELOW = 2048  # rows with fewer positions are sorted (cheap, and a few values per bin would blur their ranks)
CHUNK_ELEMENTS = 1 << 18  # values per chunk of a (K, M) pass: 1 MiB of float32, so a chunk's temporaries stay cached

QuantileFn = Callable[[Tensor], Tensor]  # levels (K, L) in [0, 1] -> the target's values there (K, L)


def _columns(k: int) -> int:
    """Positions per chunk for rows of length k."""
    return max(256, CHUNK_ELEMENTS // k)


class _Grid:
    """B equal bins per row of p (K, M) between the row's min and max (plus one at the max itself, so that no value
    needs clamping), the values and mass in each, and the mass below each bin edge. With `positions` (K, M), each
    value's position in bins (position()) is written there in the same pass (it may be p itself, overwritten).

    Many values equal to the row's minimum are a tie of their own: they hold the levels [0, a) (a = their mass),
    and the rest of the first bin starts at a. `ties` looks for them in every row (a ReLU's channels: its zeros);
    otherwise only a constant row is one tie (projections on random directions tie only by chance).

    The rows may also arrive in pieces (the tiles of an image, PiecewiseTransport): a grid made from the rows' min
    and max (`_Grid.span`), each piece counted with add(), then close()."""

    def __init__(self, p: Tensor, weights: Tensor | None, bins: int, ties: bool,
                 positions: Tensor | None = None) -> None:
        self.span(p.amin(dim=1, keepdim=True), p.amax(dim=1, keepdim=True), bins, ties,
                  weighted=weights is not None)
        if self.finite:
            self.add(p, weights, positions)
        self.close()

    def span(self, low: Tensor, high: Tensor, bins: int, ties: bool, weighted: bool = False) -> None:
        """An empty grid over the rows' range [low, high] (K, 1)."""
        self.bins, self.ties = bins + 1, ties
        self.low, self.high = low, high
        self.finite = bool(torch.isfinite(low).all() and torch.isfinite(high).all())
        # at least a few units of the last place of the row's values: a constant row gets finite slopes
        # (and so its position in bins, p / width − min / width, is good to a quarter bin or better)
        floor = 4 * torch.finfo(low.dtype).eps * (low.abs() + high.abs() + 1)
        self.width = torch.maximum((high - low) / bins, floor)  # (K, 1)
        self.inverse = 1 / self.width
        self.shift = -low * self.inverse
        k = low.shape[0]
        self.counts = low.new_zeros(k, self.bins)
        self.mass = self.counts if not weighted else low.new_zeros(k, self.bins)
        self.m = 0  # values counted per row
        self.tied = low.new_zeros(k, 1)  # values equal to the minimum (with `ties`)
        self.tied_weight = low.new_zeros(k, 1)

    def add(self, p: Tensor, weights: Tensor | None = None, positions: Tensor | None = None) -> None:
        """Count the values of rows p (K, n), a piece of the rows or all of them."""
        one = p.new_ones(1, 1)
        step = _columns(p.shape[0])
        self.m += p.shape[1]
        for s in range(0, p.shape[1], step):
            chunk = p[:, s:s + step]
            at_min = chunk == self.low if self.ties else None  # before `positions` may overwrite the chunk
            t = self.position(chunk, None if positions is None else positions[:, s:s + step])
            idx = t.to(torch.int64)
            self.counts.scatter_add_(1, idx, one.expand(idx.shape))
            w = None if weights is None else weights[:, s:s + step].expand(idx.shape)
            if w is not None:
                self.mass.scatter_add_(1, idx, w)
            if at_min is not None:
                self.tied += at_min.sum(dim=1, keepdim=True)
                if w is not None:
                    self.tied_weight += (w * at_min).sum(dim=1, keepdim=True)

    def close(self) -> None:
        """The levels: the mass below each bin edge, once every value is counted."""
        weighted = self.mass is not self.counts
        # without `ties`, values equal to the minimum count only as all of a constant row
        tied = self.tied if self.ties else (self.high == self.low).to(self.low.dtype) * self.m
        tie = tied > 1  # (K, 1): a row whose minimum is a tie
        self.tie = tie
        self.has_tie = bool(tie.any())
        first = torch.arange(self.bins, device=self.low.device) == 0
        self.count = self.counts - torch.where(tie, tied, 0) * first  # (K, B + 1), the tie not counted in bin 0
        # mass below each edge, in float64 (counts reach millions); the tie's below the first bin's other values
        k = self.low.shape[0]
        below = torch.cat([self.mass.new_zeros(k, 1, dtype=torch.float64), self.mass.double().cumsum(dim=1)], dim=1)
        total = below[:, -1:].clone()
        tie_mass = tied if not weighted else self.tied_weight if self.ties else total
        below[:, :1] = torch.where(tie, tie_mass.double(), 0)
        self.levels = (below / total).to(self.low.dtype)  # (K, B + 2), as fractions of the row's mass

    def position(self, chunk: Tensor, out: Tensor | None = None) -> Tensor:
        """Where each value of a chunk (K, n) of p lies, in bins from the row's minimum: t in [0, B]; its bin is
        int(t) (truncation: -0.25 counts as 0). Into `out` if given (which may be the chunk itself)."""
        if out is None:
            return torch.addcmul(self.shift, chunk, self.inverse)
        return torch.addcmul(self.shift, chunk, self.inverse, out=out)

    def steps(self) -> Tensor:
        """0, 1, ..., B + 1 as a row, in the grid's dtype and device."""
        return torch.arange(self.bins + 1, device=self.low.device, dtype=self.low.dtype)


def _tie_match(target: QuantileFn, share: Tensor, points: int = 1024) -> tuple[Tensor, Tensor]:
    """The mean and variance of the target over the levels [0, share) of a tie (K, 1), by the midpoint rule: all
    tied values move to the mean (the symmetric choice; a sort spreads them over those levels in arbitrary order),
    and the variance is what the sort's value has on top."""
    q = target(share * (torch.arange(points, device=share.device, dtype=share.dtype) + 0.5) / points)  # (K, T)
    mean = q.mean(dim=1, keepdim=True)
    return mean, ((q - mean) ** 2).mean(dim=1, keepdim=True)


class _Match:
    """p − Q(c(p)) = a_j + b_j t for a value at position t in bins (bin j = int(t)) of a closed grid, against the
    target quantile function Q of each row; and the tie's value and its share of the loss."""

    def __init__(self, grid: _Grid, target: QuantileFn, projected: bool) -> None:
        matched = target(grid.levels)  # (K, B + 1): the target at each edge's level
        # A value at fraction f of bin j (n values) has, on average, (n − 1) f of the others below it: its level is
        # L_j + (L_{j+1} − L_j) g with g = (1 − 1/n) f + 1/(2n) (its own mass counts half). Q is linear in a bin, so
        # with t = the value's position in bins (f = t − j):  Q(c(p)) = offset_j + slope_j t, and as
        # p = low + width t:  p − Q(c(p)) = (low − offset_j) + (width − slope_j) t = a_j + b_j t.
        rise = matched[:, 1:] - matched[:, :-1]  # (K, B + 1)
        share = 1 / grid.count.clamp_min(1)
        slope = rise * (1 - share)
        offset = matched[:, :-1] + rise * share / 2 - grid.steps()[:-1] * slope
        self.a, self.b = grid.low - offset, grid.width - slope
        self.tie_value: Tensor | None = None
        self.tie_total = grid.low.new_zeros(())  # Σ over rows of the tie's share x the target's variance there
        if grid.has_tie:
            tie_share = grid.levels[:, :1]
            self.tie_value, tie_variance = _tie_match(target, tie_share)
            self.tie_total = (tie_share * tie_variance).sum()
            if projected:  # only a constant row ties here: all of it moves to the tie's value
                self.a = torch.where(grid.tie, grid.low - self.tie_value, self.a)
                self.b = torch.where(grid.tie, 0, self.b)


class PiecewiseTransport:
    """transport()'s value and gradient for rows that arrive in pieces: the tiles of an image
    (stylelab.engine.tiles), K rows (projections, or channels with `ties`) of M values in all, equally weighted.

        widen(*extent(piece)) for every piece    the rows' min and max, which fix the grid
        merge(counted(piece)) for every piece    the histogram of all rows on that grid
        close(Q)                                 the levels and the match against the target quantile functions Q
        difference(piece)                        p − Q(c(p)) for each value of a piece (no gradient)

    `extent` and `counted` only read this object (after the widening, for `counted`), so a piece can be measured
    and counted where it was computed, another process, and the small results merged here in any order: the
    minima, maxima and counts (whole numbers) come out the same.

    The value is Σ over pieces of Σ difference² / (K M), plus the ties' share (tie_total); its gradient with respect
    to a piece's values is 2 difference / (K M). With the same values in one piece this is transport() exactly."""

    def __init__(self, bins: int, ties: bool) -> None:
        self.bins, self.ties = bins, ties
        self.low: Tensor | None = None
        self.high: Tensor | None = None
        self.grid: _Grid | None = None
        self.match: _Match | None = None

    @staticmethod
    def extent(piece: Tensor) -> tuple[Tensor, Tensor]:
        """Each row's min and max in a piece (K, n)."""
        return piece.amin(dim=1, keepdim=True), piece.amax(dim=1, keepdim=True)

    def widen(self, low: Tensor, high: Tensor) -> None:
        self.low = low if self.low is None else torch.minimum(self.low, low)
        self.high = high if self.high is None else torch.maximum(self.high, high)

    def _empty(self) -> _Grid:
        if self.low is None or self.high is None:
            raise RuntimeError("widen by every piece before counting")
        grid = _Grid.__new__(_Grid)
        grid.span(self.low, self.high, self.bins, self.ties)
        return grid

    def counted(self, piece: Tensor) -> tuple[Tensor, Tensor, int] | None:
        """A piece's histogram on the grid: (counts (K, B + 1), values at the minimum (K, 1), values per row);
        None when the range is not finite (a NaN or infinite value somewhere: difference() is then NaN)."""
        grid = self._empty()
        if not grid.finite:
            return None
        grid.add(piece)
        return grid.counts, grid.tied, grid.m

    def merge(self, counted: tuple[Tensor, Tensor, int] | None) -> None:
        if self.grid is None:
            self.grid = self._empty()
        if counted is not None and self.grid.finite:
            counts, tied, m = counted
            self.grid.counts += counts
            self.grid.tied += tied
            self.grid.m += m

    def close(self, target: QuantileFn) -> None:
        if self.grid is None:
            raise RuntimeError("count every piece before closing")
        self.grid.close()
        if self.grid.finite:
            self.match = _Match(self.grid, target, projected=not self.ties)

    @property
    def m(self) -> int:
        return 0 if self.grid is None else self.grid.m

    @property
    def tie_total(self) -> Tensor:
        """The ties' part of Σ_rows Σ_i (p_i − Q)²: their mass x the target's variance over their levels."""
        assert self.match is not None and self.grid is not None
        return self.match.tie_total * self.grid.m

    def difference(self, piece: Tensor) -> Tensor:
        """p − Q(c(p)) for the values of a piece (K, n); NaN everywhere if a value of any piece was not finite."""
        if self.match is None or self.grid is None:
            return torch.full_like(piece, torch.nan)
        grid, match = self.grid, self.match
        out = torch.empty_like(piece)
        step = _columns(piece.shape[0])
        for s in range(0, piece.shape[1], step):
            chunk = piece[:, s:s + step]
            t = grid.position(chunk)
            idx = t.to(torch.int64)
            diff = torch.addcmul(match.a.gather(1, idx), match.b.gather(1, idx), t)
            if grid.has_tie and self.ties:
                assert match.tie_value is not None
                diff = torch.where(chunk == grid.low, chunk - match.tie_value, diff)
            out[:, s:s + step] = diff
        return out


class _Transport(torch.autograd.Function):
    """transport()'s value; its gradient with respect to x is computed in the forward pass, chunk by chunk, and
    kept for backward (the loss is a scalar, so backward only scales it)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, directions: Tensor | None, target: QuantileFn, weights: Tensor | None,
                bins: int) -> Tensor:
        p = x if directions is None else directions @ x  # (K, M)
        k, m = p.shape
        # Each value's position in bins t, written over the projection (this function's own) or beside the features
        t_all = p if directions is not None else torch.empty_like(p)
        grid = _Grid(p, weights, bins, ties=directions is None, positions=t_all)
        if not grid.finite:  # as a sort would: a NaN or infinite feature makes the value and gradient NaN
            ctx.grad = torch.full_like(x, torch.nan)
            return p.new_tensor(torch.nan)
        match = _Match(grid, target, projected=directions is not None)
        a, b = match.a, match.b
        total = p.new_zeros(())
        if grid.has_tie:
            total += match.tie_total * (1 if weights is not None else m)
        tie_value = match.tie_value
        grad = torch.empty_like(x)
        scale = 2 / k if weights is not None else 2 / (k * m)  # d/dp of Σ_rows Σ_i w_i (p_i − Q)² / K
        back = None if directions is None else directions.t() * scale  # (C, K)
        step = _columns(k)
        for s in range(0, m, step):
            t = t_all[:, s:s + step]
            idx = t.to(torch.int64)
            diff = torch.addcmul(a.gather(1, idx), b.gather(1, idx), t)  # p − Q(c(p)), (K, n)
            if tie_value is not None and directions is None:  # a row's minimum values move to the tie's value
                chunk = x[:, s:s + step]
                diff = torch.where(chunk == grid.low, chunk - tie_value, diff)
            weighted = diff if weights is None else diff * weights[:, s:s + step]
            total += torch.dot(weighted.reshape(-1), diff.reshape(-1))
            if back is None:
                torch.mul(weighted, scale, out=grad[:, s:s + step])
            else:
                torch.mm(back, weighted, out=grad[:, s:s + step])
        ctx.grad = grad
        return total / k if weights is not None else total / (k * m)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple[Tensor | None, ...]:
        grad, ctx.grad = ctx.grad, None  # once: the loss is built anew every step
        return grad.mul_(grad_outputs[0]), None, None, None, None


def transport(x: Tensor, target: QuantileFn, directions: Tensor | None = None, weights: Tensor | None = None,
              bins: int = BINS) -> Tensor:
    """mean over rows of Σ_i w_i (p_i − Q(c_i))² for p = directions @ x (K, M), or x (C, M) itself, against the
    target quantile function Q of each row, with c_i = each value's level read from a B-bin histogram of its row.

    weights: w (M,) >= 0 summing to 1, or None for 1/M each. Differentiable in x only (no double backward).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    p_weights = None if weights is None else weights.to(dtype=x.dtype).unsqueeze(0)
    return _Transport.apply(x, directions, target, p_weights, bins)


def binned_quantiles(p: Tensor, weights: Tensor | None = None, bins: int = BINS, ties: bool = True,
                     points: int = 1024) -> QuantileFn:
    """The quantile function of each row of p (K, N), read from a B-bin histogram of the row (no sort), linear
    between bin edges as if each bin's values were spread evenly over it; tabulated at `points` evenly spaced
    levels and interpolated linearly between them. weights: (N,) > 0; ties: as for the grid (_Grid)."""
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    p = p.detach()
    grid = _Grid(p, None if weights is None else weights.to(dtype=p.dtype).unsqueeze(0), bins, ties)
    k, edges = p.shape[0], grid.bins + 1
    u = (torch.arange(points, device=p.device, dtype=p.dtype) + 0.5) / points  # the table's levels
    # The bin j of each u: the number of edge levels <= u, minus one. Edge level L reaches the table from the first
    # u >= L on, index ceil(L·points − ½): mark those and count them up (linear, where a search would be log).
    first = (grid.levels * points - 0.5).ceil().clamp_(0, points).to(torch.int64)  # (K, B + 2)
    marks = p.new_zeros(k, points + 1).scatter_add_(1, first, p.new_ones(1, 1).expand(k, edges))
    j = (marks[:, :points].cumsum(dim=1).to(torch.int64) - 1).clamp_(0, grid.bins - 1)  # (K, points)
    lo, hi = grid.levels.gather(1, j), grid.levels.gather(1, j + 1)
    frac = ((u - lo) / (hi - lo).clamp_min(torch.finfo(p.dtype).tiny)).clamp_(0, 1)
    table = grid.low + (j + frac) * grid.width  # (K, points): Q at u

    def quantile(c: Tensor) -> Tensor:
        pos = (c * points - 0.5).clamp(0, points - 1).expand(k, -1)
        i = pos.floor().to(torch.int64).clamp_(max=points - 2)
        return torch.lerp(table.gather(1, i), table.gather(1, i + 1), pos - i)

    return quantile
