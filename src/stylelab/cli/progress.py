"""The progress display of a run: a bar over every step of the schedule, the loss terms, `--save-every` snapshots,
and a note when `--time-budget` ended the run early."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ..config import Config
from ..engine.events import Report, ScaleEnd, Step, TileProgress
from ..image import save_image

__all__ = ["Progress", "StepBar", "budget_note"]


class StepBar:
    """The one display of optimiser steps, used by run, compare, batch and video: a bar over the steps, its label
    and the size being optimised, then loss, content, style (and tv when it counts) and seconds per step. A
    scale's final report (the output's own loss, no step) updates the numbers without advancing the bar."""

    def __init__(self, total: int, *, quiet: bool = False, label: str = "", tv: bool = False,
                 position: int | None = None, leave: bool = True) -> None:
        self.bar = tqdm(total=total, disable=quiet, unit="step", dynamic_ncols=True, file=sys.stderr,
                        position=position, leave=leave)
        self.label, self.tv = label, tv

    def restart(self, total: int, label: str) -> None:
        """Start over for another job, frame or loss."""
        self.bar.reset(total=total)
        self.label = label

    def show(self, step: Report) -> None:
        self.bar.set_description_str(" ".join(x for x in (self.label, _wxh(step)) if x), refresh=False)
        t = step.terms
        tv = f" tv {t['tv']:.2e}" if self.tv and "tv" in t else ""
        self.bar.set_postfix_str(f"loss {step.loss:.4g} content {t.get('content', 0):.3f} style "
                                 f"{t.get('style', 0):.4f}{tv} {step.seconds:.2f}s/step",
                                 refresh=isinstance(step, ScaleEnd))
        if isinstance(step, Step):
            self.bar.update(1)

    def show_tiles(self, event: TileProgress) -> None:
        """Inside a step (or a scale's targets) computed in tiles: which sweep, tiles done, the time left in it."""
        what = "targets" if event.phase == "targets" else "step"
        self.bar.set_postfix_str(f"{what} in tiles: sweep {event.sweep}/{event.sweeps}, tile {event.tile}/"
                                 f"{event.tiles}, {_duration(event.eta())} left in this {what}")

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan: nothing measured yet
        return "?"
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """The progress bar of a run (created at the first step, so errors in the inputs never show one), the
    `--save-every` snapshots, and the seconds of every step for the summary."""

    def __init__(self, config: Config, args: argparse.Namespace, output: Path) -> None:
        self.total = sum(steps for _, steps in config.schedule())
        self.multi = len(config.schedule()) > 1
        self.tv = config.tv_weight > 0  # the tv term is shown only when it counts
        self.budget = config.time_budget
        self.args, self.output = args, output
        self.bar: StepBar | None = None
        self.seconds: list[float] = []
        self.ends: list[ScaleEnd] = []  # the end of each scale

    def on_step(self, step: Report) -> None:
        if self.bar is None:
            self.bar = StepBar(self.total, quiet=self.args.quiet, tv=self.tv)
        self.bar.show(step)
        if isinstance(step, ScaleEnd):  # the output's loss at the end of a scale, not a step
            self.ends.append(step)
            return
        self.seconds.append(step.seconds)
        every = self.args.save_every
        if every and step.i % every == 0:
            tag = f"_s{step.scale}" if self.multi else ""
            out = self.output
            save_image(step.pixels(), out.with_name(f"{out.stem}{tag}_step{step.i:04d}{out.suffix}"))

    def on_tile(self, event: TileProgress) -> None:
        if self.bar is None:
            self.bar = StepBar(self.total, quiet=self.args.quiet, tv=self.tv)
        self.bar.show_tiles(event)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        note = budget_note(self.ends, self.budget, self.total)
        if note and not self.args.quiet:
            print(f"stylelab: note: {note}", file=sys.stderr)


def budget_note(ends: Sequence[ScaleEnd], budget: float | None, total: int) -> str:
    """A line saying how far --time-budget let the run go ('' when it ran every planned step): a barely
    stylised picture should not be a mystery."""
    if not any(e.stopped == "time" for e in ends):
        return ""
    done = sum(e.i for e in ends)
    parts = []
    for e in ends:
        parts.append(f"{e.i} of {e.n}" + (f" at {_wxh(e)} px" if e.image is not None else ""))
    return (f"the time budget ({budget:g} s) stopped the run after {done} of {total} steps "
            f"({', '.join(parts)}); raise --time-budget or lower --size for a more stylised result")


def _wxh(report: Report) -> str:
    """'WxH' of the report's image, '' when it carries none (made in another process)."""
    return "" if report.image is None else "{1}x{0}".format(*report.image.shape[-2:])
