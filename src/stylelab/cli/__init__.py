"""Command line: flags -> Config, a progress bar, files and exit codes. `main(argv) -> int`.

Exit codes: 0 success, 2 bad input or settings (one-line message, no traceback, no output file), 1 a run that
failed (diverged, out of memory), 130 interrupted.

torch is imported when work starts, not with this module: `--version`, `--help`, usage errors and missing files
answer at once.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import re
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from typing import TYPE_CHECKING

from PIL import Image
from tqdm import tqdm

from .. import __version__
from . import batch as batchcli
from ..engine import memory
from ..config import (
    INITS,
    Config,
    ConfigError,
)
from ..errors import StylelabError
from ..files import check_not_an_input
from ..flags import add_config_flags as add_settings
from ..flags import config_from_args, parse_texture_size
from ..flags import source as _source
from ..image import check_input_file, check_output_path, is_url, load_alpha, read_image, save_image
from ..losses.spec import ALL_LOSSES
from ..provenance import read_provenance, record

if TYPE_CHECKING:
    from ..engine.checkpoint import Checkpoint
    from ..engine.optimize import Step

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own also prints the usage block)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stylelab", description="Neural style transfer: style as a distribution of features.")
    parser.add_argument("--version", action="version", version=f"stylelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="stylise a content image with one or more style images",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Optimise the pixels of CONTENT so its VGG19 features keep its content and take the style "
        "of STYLE (several styles are blended). Weights are normalised: style loss 1 = the content image.",
    )
    add_inputs(run)
    run.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp, .tif, .bmp)")
    add_settings(run)
    add_outputs(run)

    tex = sub.add_parser(
        "texture", help="synthesise a texture from style image(s), no content image",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Optimise a noise image of --size WxH until its VGG19 feature distribution matches STYLE's. "
        "--tileable makes it tile without seams (sides rounded to multiples of 16 px).",
    )
    tex.add_argument("styles", nargs="+", metavar="style", help="style image(s) (path or URL)")
    tex.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp, .tif, .bmp)")
    add_settings(tex, texture=True)
    add_outputs(tex)

    rep = sub.add_parser(
        "replay", help="rerun the run that made a stylelab PNG, from the settings embedded in it",
        description="Read the settings, inputs and seed stored in IMAGE (a PNG written by stylelab) and run them "
        "again. On the same machine type, stylelab and torch versions, a CPU replay gives the same pixels.",
    )
    rep.add_argument("image", help="a PNG written by stylelab run/texture")
    rep.add_argument("-o", "--output", required=True, help="where to write the new image")
    rep.add_argument("--device", default=None, help="override the device (auto, cpu, cuda, cuda:N, mps)")
    rep.add_argument("--overwrite", action="store_true", help="allow the output to replace an input (IMAGE too)")
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    cmp = sub.add_parser(
        "compare", help="one run per style loss, a labelled grid and a cross-evaluation table",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Stylise CONTENT once per style loss with the same settings, then measure every output under "
        "every loss (normalised: the content image scores 1 on each style loss, 0 on content).",
    )
    add_inputs(cmp)
    cmp.add_argument("--losses", default="all", help=f"'all' or a comma list of loss specs; all = {','.join(ALL_LOSSES)}")
    cmp.add_argument("-o", "--output", required=True, help="grid image of the outputs")
    cmp.add_argument("--csv", default=None, help="also write the table as CSV")
    add_settings(cmp)
    cmp.add_argument("--overwrite", action="store_true", help="allow the grid to replace one of the input files")
    cmp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    from . import explain as explaincli  # `stylelab explain`
    explaincli.register(sub)
    batchcli.register(sub)  # `stylelab batch`: its own module, these flag builders
    from .video import add_video  # `stylelab video` (stylelab.cli.video builds on this module's flag builders)
    add_video(sub)
    from . import serve as servecli  # `stylelab serve`: the web app (stylelab[web])
    servecli.register(sub)
    return parser


def add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("content", help="content image (path or http(s) URL)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (path or URL)")


def add_outputs(p: argparse.ArgumentParser) -> None:
    """Flags about files rather than the image: saving, bit depth, checkpoints, progress."""
    p.add_argument("--bit-depth", type=int, default=8, choices=(8, 16), help="bits per channel (16: PNG, TIFF)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save the image every N steps as OUTPUT_stepNNNN.ext")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="save the optimisation state in DIR (atomically) so --resume can continue a killed run")
    p.add_argument("--checkpoint-every", type=int, default=20, metavar="N", help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the state saved in --checkpoint DIR")
    p.add_argument("--overwrite", action="store_true", help="allow the output to replace one of the input files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    job = {"command": "run", "content": _source(args.content), "styles": [_source(x) for x in args.styles]}
    check_input_files(job)
    return execute(job, config_from_args(args), args)


def run_texture(args: argparse.Namespace) -> int:
    size = parse_texture_size(args.size)
    job = {"command": "texture", "size": list(size), "styles": [_source(x) for x in args.styles]}
    check_input_files(job)
    return execute(job, config_from_args(args, texture_size=size), args)


def check_input_files(job: dict) -> None:
    """Missing or empty input files are reported at once, before the settings are checked (which loads torch)."""
    styles = job["styles"]
    roles = {"content image": job.get("content"),
             **{("style image" if len(styles) == 1 else f"style image {k + 1}"): s for k, s in enumerate(styles)}}
    for role, path in roles.items():
        if isinstance(path, str) and not is_url(path):
            check_input_file(path, role)


def run_replay(args: argparse.Namespace) -> int:
    import torch

    job, config = read_provenance(args.image)
    if args.device is not None:
        config = dataclasses.replace(config, device=args.device)
    if not args.overwrite:
        check_not_an_input(args.output, {"replayed image": _source(args.image)})
    args = argparse.Namespace(output=args.output, quiet=args.quiet, bit_depth=job.get("bit_depth", 8),
                              save_every=0, checkpoint=None, checkpoint_every=20, resume=False,
                              overwrite=args.overwrite)
    if not args.quiet and (job.get("stylelab") != __version__ or job.get("torch") != torch.__version__):
        print(f"stylelab: note: made with stylelab {job.get('stylelab')} / torch {job.get('torch')}, replaying "
              f"with {__version__} / {torch.__version__}: pixels may differ", file=sys.stderr)
    # The CPU's sums are ordered by thread, so the same run with another thread count differs by a few levels.
    if config.device != "cuda" and job.get("threads", torch.get_num_threads()) != torch.get_num_threads():
        torch.set_num_threads(job["threads"])
    return execute(job, config, args)


def execute(job: dict, config: Config, args: argparse.Namespace) -> int:
    """Run a `run` or `texture` job with a progress bar, checkpoints and snapshots; save it with provenance."""
    from ..engine.optimize import stylize, synthesize

    output = output_path(args.output)
    checkpoint = check_run_flags(job, config, args, output)
    progress = Progress(config, args, output)
    start = time.perf_counter()
    try:
        if job["command"] == "texture":
            w, h = job["size"]
            need = check_memory(config, None, job["styles"], shape=(h, w))
            image = synthesize(job["styles"], (w, h), config, progress.on_step, checkpoint)
            alpha = None
        else:
            content = read_image(job["content"], "content image")  # read (or downloaded) once, all 16 bits
            need = check_memory(config, content.size[::-1], job["styles"])
            image = stylize(content, job["styles"], config, progress.on_step, checkpoint)
            alpha = load_alpha(content)
    finally:
        progress.close()
    meta = record({**job, "bit_depth": args.bit_depth}, config)
    save_image(image, output, bit_depth=args.bit_depth, alpha=alpha, metadata=meta)
    if not args.quiet:
        seconds = progress.seconds
        per_step = statistics.median(seconds) if seconds else float("nan")
        print(f"wrote {output} ({image.width}x{image.height}) in {time.perf_counter() - start:.1f} s, "
              f"{len(seconds)} steps, median {per_step:.3f} s/step, peak memory about {need}", file=sys.stderr)
    return 0


def check_run_flags(job: dict, config: Config, args: argparse.Namespace, output: Path) -> Checkpoint | None:
    """The output and checkpoint flags checked before any work; the run's checkpoint, if any."""
    if not args.overwrite:
        check_not_an_input(output, job_inputs(job, config))
    if args.bit_depth == 16 and output.suffix.lower() not in (".png", ".tif", ".tiff"):
        raise ConfigError("--bit-depth 16 needs a .png or .tif output")
    if args.save_every and args.save_every < 0:
        raise ConfigError(f"--save-every must be >= 0, got {args.save_every}")
    if args.resume and not args.checkpoint:
        raise ConfigError("--resume needs --checkpoint DIR")
    if args.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if not args.checkpoint:
        return None
    from ..engine.checkpoint import Checkpoint

    checkpoint = Checkpoint(Path(args.checkpoint), args.checkpoint_every, args.resume)
    if checkpoint.resume and not checkpoint.path.is_file():
        raise ConfigError(f"nothing to resume: no checkpoint in {checkpoint.folder}")
    checkpoint.check_writable()  # before any work, not at the first save
    return checkpoint


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


def check_memory(config: Config, content_hw: tuple[int, int] | None, styles: Sequence[str],
                 shape: tuple[int, int] | None = None) -> memory.Estimate:
    """The run's peak-memory estimate; a ConfigError with advice when it exceeds what the device has free."""
    from ..engine.optimize import pick_device

    device = pick_device(config.device).type
    est = memory.estimate(config, content_hw, [_image_hw(s) for s in styles], shape=shape, device=device)
    free = memory.available(device)
    if free is not None and est.bytes > free:
        h, w = est.hw
        where = "free on the GPU" if device == "cuda" else "available"
        tips = memory.advice(config, est, free)
        raise ConfigError(f"this run needs about {est} at {w}x{h} px but only {memory.format_bytes(free)} is "
                          f"{where}; try {tips or 'a smaller --size'}")
    return est


def _image_hw(source: str) -> tuple[int, int] | None:
    """(H, W) from a local image's header (no decoding), None for URLs or unreadable files (read properly later)."""
    if is_url(source):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only the header is read here
            with Image.open(source) as im:
                return im.size[1], im.size[0]
    except Exception:
        return None


def output_path(path: str | Path) -> Path:
    """`check_output_path`, after a clearer word for an existing folder given as -o."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"-o {p} is an existing directory; give a file name in it, e.g. {p / 'out.png'}")
    return check_output_path(p)


def job_inputs(job: dict, config: Config) -> dict[str, str]:
    """The local files a job reads, by role: content, styles, init image, masks (URLs left out)."""
    inputs = {"content image": job.get("content")}
    styles = job.get("styles", [])
    inputs.update({("style image" if len(styles) == 1 else f"style image {k + 1}"): s for k, s in enumerate(styles)})
    if config.init not in INITS:
        inputs["init image"] = config.init
    for k, r in enumerate(config.masks):
        inputs[f"mask {k + 1}"], inputs[f"style mask {k + 1}"] = r.content_mask, r.style_mask
    return {role: str(p) for role, p in inputs.items() if isinstance(p, str) and not is_url(p)}


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
        bar = tqdm(total=sum(steps for _, steps in plan), desc=spec, unit="step", dynamic_ncols=True,
                   file=sys.stderr, leave=False)

        def on_step(step: Step) -> None:
            if step.final:  # the output's own loss after a scale's last step; the run ends with the last scale's
                bar.set_postfix_str(f"style {step.terms['style']:.4f}")
                if step.scale == len(plan) - 1:
                    bar.close()
                return
            bar.set_postfix_str(f"style {step.terms['style']:.4f} {step.seconds:.2f}s/step", refresh=False)
            bar.update(1)
        return on_step

    rows = compare(args.content, args.styles, specs, config, progress)
    save_image(grid(rows), output)
    lines = table(rows)
    widths = [max(len(line[k]) for line in lines) for k in range(len(lines[0]))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
    if csv_path is not None:
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerows(lines)
    return 0


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
    try:
        from . import explain as explaincli
        from .video import run_video
        commands = {"run": run, "texture": run_texture, "replay": run_replay, "compare": run_compare,
                    "explain": explaincli.run, "batch": batchcli.run, "video": run_video}
        if args.command == "serve":
            from . import serve as servecli
            return servecli.run(args)
        return commands[args.command](args)
    except StylelabError as exc:  # a run that failed (diverged, a checkpoint not written) is exit 1, bad input 2
        print(f"stylelab: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return exc.exit_code
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not memory.is_out_of_memory(exc):
            raise
        print("stylelab: error: out of memory; try a smaller --size, --low-memory or --scales", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stylelab: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
