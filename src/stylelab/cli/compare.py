"""`stylelab compare`: one run per style loss, a labelled grid and the cross-evaluation table."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from ..config import ConfigError
from ..engine.events import Report, ScaleEnd
from ..files import check_not_an_input, write_text_atomic
from ..flags import add_config_flags as add_settings
from ..flags import add_inputs, config_from_args
from ..flags import source as _source
from ..image import save_image
from ..losses.spec import ALL_LOSSES
from .progress import StepBar
from .run import job_inputs, output_path

__all__ = ["register", "run_compare"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add `compare`."""
    cmp = sub.add_parser(
        "compare", help="one run per style loss, a labelled grid and a cross-evaluation table",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Stylise CONTENT once per style loss with the same settings, then measure every output under "
        "every loss (normalised: the content image scores 1 on each style loss, 0 on content).",
    )
    add_inputs(cmp)
    cmp.add_argument("--losses", default="all",
                     help=f"'all' or a comma list of loss specs; all = {','.join(ALL_LOSSES)}")
    cmp.add_argument("-o", "--output", required=True, help="grid image of the outputs")
    cmp.add_argument("--csv", default=None, help="also write the table as CSV")
    add_settings(cmp)
    cmp.add_argument("--overwrite", action="store_true", help="allow the grid to replace one of the input files")
    cmp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run_compare(args: argparse.Namespace) -> int:
    from ..analysis.compare import compare, grid, split_specs, table

    config = config_from_args(args)
    try:
        specs = split_specs(args.losses)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    output = output_path(args.output)
    if not args.overwrite:
        check_not_an_input(output, job_inputs({"content": _source(args.content),
                                                "styles": [_source(x) for x in args.styles]}, config))
    csv_path = Path(args.csv) if args.csv else None
    if csv_path is not None and (not csv_path.parent.is_dir() or csv_path.is_dir()):
        raise ConfigError(f"cannot write the CSV table to {csv_path}")

    def progress(spec: str):
        if args.quiet:
            return None
        plan = config.schedule()
        bar = StepBar(sum(steps for _, steps in plan), label=spec, tv=config.tv_weight > 0, leave=False)

        def on_step(step: Report) -> None:
            bar.show(step)
            if isinstance(step, ScaleEnd) and step.scale == len(plan) - 1:  # the run ends with the last scale
                bar.close()
        return on_step

    rows = compare(args.content, args.styles, specs, config, progress)
    save_image(grid(rows), output)
    lines = table(rows)
    widths = [max(len(line[k]) for line in lines) for k in range(len(lines[0]))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
    if csv_path is not None:
        text = io.StringIO()
        csv.writer(text).writerows(lines)
        write_text_atomic(csv_path, text.getvalue())
    return 0
