"""The progress display of a run: a bar over every step of the schedule, the loss terms, `--save-every` snapshots,
and a note when `--time-budget` ended the run early."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from ..config import Config
from ..image import save_image

if TYPE_CHECKING:
    from ..engine.optimize import Step

__all__ = ["Progress", "budget_note"]


class Progress:
    """The progress bar of a run (created at the first step, so errors in the inputs never show one), the
    `--save-every` snapshots, and the seconds of every step for the summary."""

    def __init__(self, config: Config, args: argparse.Namespace, output: Path) -> None:
        self.total = sum(steps for _, steps in config.schedule())
        self.multi = len(config.schedule()) > 1
        self.tv = config.tv_weight > 0  # the tv term is shown only when it counts
        self.budget = config.time_budget
        self.args, self.output = args, output
        self.bar: tqdm | None = None
        self.seconds: list[float] = []
        self.ends: list[Step] = []  # the final report of each scale

    def on_step(self, step: Step) -> None:
        if self.bar is None:
            self.bar = tqdm(total=self.total, disable=self.args.quiet, unit="step", dynamic_ncols=True,
                            file=sys.stderr)
        if not step.final:  # the final report of a scale is the output's loss, not a step
            self.seconds.append(step.seconds)
        t = step.terms
        h, w = step.image.shape[-2:]
        self.bar.set_description_str(f"{w}x{h}" if self.multi else "", refresh=False)
        tv = f"tv {t['tv']:.2e} " if self.tv else ""
        self.bar.set_postfix_str(
            f"loss {step.loss:.4g} content {t['content']:.3f} style {t['style']:.4f} {tv}"
            f"{step.seconds:.2f}s/step", refresh=not step.final)
        if step.final:
            self.ends.append(step)
            return
        self.bar.update(1)
        every = self.args.save_every
        if every and step.i % every == 0:
            tag = f"_s{step.scale}" if self.multi else ""
            out = self.output
            save_image(step.image, out.with_name(f"{out.stem}{tag}_step{step.i:04d}{out.suffix}"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        note = budget_note(self.ends, self.budget, self.total)
        if note and not self.args.quiet:
            print(f"stylelab: note: {note}", file=sys.stderr)


def budget_note(ends: Sequence[Step], budget: float | None, total: int) -> str:
    """A line saying how far --time-budget let the run go ('' when it ran every planned step): a barely
    stylised picture should not be a mystery."""
    if not any(e.stopped == "time" for e in ends):
        return ""
    done = sum(e.i for e in ends)
    parts = []
    for e in ends:
        h, w = e.image.shape[-2:]
        parts.append(f"{e.i} of {e.n} at {w}x{h} px")
    return (f"the time budget ({budget:g} s) stopped the run after {done} of {total} steps "
            f"({', '.join(parts)}); raise --time-budget or lower --size for a more stylised result")
