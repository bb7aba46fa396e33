"""What the optimiser reports through its callback, one event per step and one at the end of each scale.

Plain data (torch only in the annotations), so the command line's progress display can tell the two apart
without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Callback", "Report", "ScaleEnd", "Step", "TileCallback", "TileProgress"]


@dataclass(frozen=True)
class Report:
    """What the optimiser reports through its callback: a `Step`, or a `ScaleEnd` after a scale's last step."""

    scale: int  # index of the scale being optimised (0 for a single-scale run)
    i: int  # Step: its number at this scale, 1-based; ScaleEnd: the steps taken at this scale
    n: int  # steps planned at this scale
    loss: float  # weighted total, the value differentiated
    terms: dict[str, float]  # unweighted: 'content', 'style', 'tv', and 'style/<layer>' per style layer
    seconds: float  # wall time of the step (ScaleEnd: of its forward pass)
    image: Tensor | None  # current image (1, 3, H, W) RGB in [0,1], a detached view: copy before changing it;
    # None in a report rebuilt in another process (a batch or video worker sends no pixels)

    def pixels(self) -> Tensor:
        """The image, for a consumer in the process that made it (a step from another process has none)."""
        if self.image is None:
            raise ValueError("this report carries no pixels: it was made in another process")
        return self.image


@dataclass(frozen=True)
class Step(Report):
    """After one optimiser step (one forward + backward pass). Its loss is measured where the step starts (the
    pass that gives its gradient)."""


@dataclass(frozen=True)
class ScaleEnd(Report):
    """After a scale's last step, no step taken: the loss and terms of the image the scale ends with (one forward
    pass), so the last numbers shown are those of the saved image. `stopped` says why the scale ended before its
    `n` steps ("time": --time-budget, "plateau": --tol), "" when it ran them all; `i` is the steps taken (0 when the
    budget was spent before the first)."""

    stopped: str = ""


Callback = Callable[[Report], None]


@dataclass(frozen=True)
class TileProgress:
    """Inside a scale computed in tiles (--tile), after each tile of a sweep: how far the work in hand is. Sent to
    its own callback (`stylize(on_tile=...)`), not to the step callback: steps in tiles can take minutes, and a
    display wants to show them moving. Plain data, no pixels."""

    scale: int  # index of the scale
    phase: str  # "targets" (the style statistics and normalisers, once per scale) or "step"
    sweep: int  # 1-based: which sweep over the tiles
    sweeps: int  # sweeps in this phase
    tile: int  # tiles done in this sweep
    tiles: int  # tiles per sweep
    seconds: float  # since this phase began

    @property
    def fraction(self) -> float:
        """The share of this phase's tile visits done."""
        return ((self.sweep - 1) * self.tiles + self.tile) / (self.sweeps * self.tiles)

    def eta(self) -> float:
        """Seconds left in this phase, from the measured time per tile visit so far."""
        f = self.fraction
        return self.seconds * (1 - f) / f if f > 0 else float("nan")


TileCallback = Callable[[TileProgress], None]
