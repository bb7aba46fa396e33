"""`stylelab explain`: an HTML report of what the style losses see. Flags here, the report in stylelab.explain.

As in every command, -o/--output names what the command writes: here the report folder (--report is an alias);
the image to explain is --image. The old form `--output IMAGE -o DIR` still works, with a warning.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError

__all__ = ["FOLDER_FLAGS", "OLD_FORM_WARNING", "register", "report_and_image", "run"]

FOLDER_FLAGS = ("-o", "--output", "--report")
OLD_FORM_WARNING = "stylelab: warning: --output IMAGE is now --image IMAGE (-o/--output is the report folder)"


class _Folder(argparse.Action):
    """-o/--output/--report: keeps every (spelling, value) given, so the old form (the image after --output, the
    folder after -o) can be told from the new one."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), (option_string, values)])


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `explain` subcommand to the command line's parser."""
    from ..flags import add_config_flags as add_settings
    from ..flags import add_inputs

    exp = sub.add_parser(
        "explain", help="an HTML report of what the style losses see (per layer: how much style the output took, "
        "Gram heatmaps, moments, distances)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write REPORT_DIR/index.html: first, in plain words, how much of the style IMAGE took at each "
        "VGG19 layer (without --image: how content and style differ); then per-layer Gram matrices, channel means "
        "and stds, distances under every loss, and the Gram = MMD identity checked on these images.",
    )
    add_inputs(exp)
    exp.add_argument("--image", default=None, help="the stylised output to explain")
    exp.add_argument(*FOLDER_FLAGS, dest="report", action=_Folder, required=True, metavar="REPORT_DIR",
                     default=None, help="folder for the report (written as REPORT_DIR/index.html)")
    add_settings(exp)
    # --size is None unless given: then explain measures at the --image's own long edge
    # (without --image: at the default size).
    exp.set_defaults(size=None)


def report_and_image(given: Sequence[tuple[str, str]], image: str | None) -> tuple[str, str | None, bool]:
    """(report folder, image to explain, old form?) from the -o/--output/--report values and --image.

    The old form is `--output IMAGE` together with `-o DIR` or `--report DIR` (no --image): --output was the image
    then. Any other repetition of the folder flags is an error."""
    after_output = [value for flag, value in given if flag == "--output"]
    after_others = [value for flag, value in given if flag != "--output"]
    if image is None and len(after_output) == 1 and len(after_others) == 1:
        return after_others[0], after_output[0], True
    if len(given) != 1:
        raise ConfigError("give the report folder once, as -o/--output DIR (the image to explain is --image IMAGE)")
    return given[0][1], image, False


def run(args: argparse.Namespace) -> int:
    from ..analysis.report import explain  # matplotlib is imported only for this command
    from ..config import Config
    from ..flags import config_from_args

    folder, image, old_form = report_and_image(args.report, args.image)
    if old_form:
        print(OLD_FORM_WARNING, file=sys.stderr)
    asked = getattr(args, "size", None)
    config = config_from_args(argparse.Namespace(**{**vars(args), "size": asked or Config.size}))
    report = Path(folder)
    if report.exists() and not report.is_dir():
        raise ConfigError(f"report folder is a file: {report} (the image to explain goes after --image)")
    if not report.parent.is_dir():
        raise ConfigError(f"folder does not exist: {report.parent}")
    size = config.size if asked is not None or args.scales else None  # --scales: its last size is the output's
    path = explain(args.content, args.styles, report, image, config, size)
    print(f"wrote {path}", file=sys.stderr)
    return 0
