"""Command line: flags -> Config, a progress bar, files and exit codes. `main(argv) -> int`.

Exit codes: 0 success, 2 bad input or settings (one-line message, no traceback, no output file), 1 a run that
failed (diverged, out of memory), 130 interrupted.

torch is imported when work starts, not with this module: `--version`, `--help`, usage errors and missing files
answer at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import StylelabError
from .args import Parser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser; each command module adds its own (`register`), the heavy ones import nothing yet."""
    from . import batch, compare, explain, run, serve, video

    parser = Parser(prog="stylelab", description="Neural style transfer: style as a distribution of features.")
    parser.add_argument("--version", action="version", version=f"stylelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run.register(sub)  # run, texture, replay
    compare.register(sub)
    explain.register(sub)
    batch.register(sub)
    video.add_video(sub)
    serve.register(sub)  # the web app (stylelab[web])
    return parser


# Options whose values may start with '-' ('--frames -3:2'): argparse would take such a value for another option
# and answer "expected one argument"; joined as '--frames=-3:2' the value reaches the option's own check.
_DASH_VALUES = ("--frames",)


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _DASH_VALUES and re.fullmatch(r"-[\d:]*", arg) and arg != "--":
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(_join_dash_values(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("stylelab: interrupted; no output written", file=sys.stderr)
        return 130
    from . import batch, compare, explain, run, serve, video

    commands = {"run": run.run, "texture": run.run_texture, "replay": run.run_replay, "compare": compare.run_compare,
                "explain": explain.run, "batch": batch.run, "video": video.run_video, "serve": serve.run}
    try:
        return commands[args.command](args)
    except StylelabError as exc:  # a run that failed (diverged, a checkpoint not written) is exit 1, bad input 2
        print(f"stylelab: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return exc.exit_code
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        from ..engine import memory

        if not memory.is_out_of_memory(exc):
            raise
        print("stylelab: error: out of memory; try a smaller --size, --low-memory or --scales", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stylelab: interrupted; no output written", file=sys.stderr)
        return 130
