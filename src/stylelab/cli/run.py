"""`stylelab run`, `texture` and `replay`: a picture from the command line, its progress, its file and its
provenance."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from .. import __version__
from ..config import INITS, Config, ConfigError
from ..engine import memory
from ..engine.provenance import read_provenance, record
from ..files import check_not_an_input, same_file
from ..flags import add_config_flags as add_settings
from ..flags import add_outputs, add_run_arguments, config_from_args, parse_texture_size
from ..flags import source as _source
from ..image import (
    ImageError,
    Picture,
    check_input_file,
    check_output_path,
    is_url,
    load_alpha,
    read_image,
    save_image,
    to_tensor,
)
from .progress import Progress

if TYPE_CHECKING:
    from torch import Tensor

    from ..engine.checkpoint import Checkpoint
    from ..engine.ray_tiles import RayTiles

__all__ = ["register", "run", "run_replay", "run_texture"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run`, `texture` and `replay`."""
    run = sub.add_parser(
        "run",
        help="stylise a content image with one or more style images",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Optimise the pixels of CONTENT so its VGG19 features keep its content and take the style "
        "of STYLE (several styles are blended). Weights are normalised: style loss 1 = the content image.",
    )
    add_run_arguments(run)
    add_ray_flags(run)

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
    add_ray_flags(tex)

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


def add_ray_flags(p: argparse.ArgumentParser) -> None:
    """--ray and its actors: where a tiled run's tiles are computed (not a setting: the pixels are the same)."""
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="compute the tiles of the tiled scales (--tile) on Ray actors (pip install 'stylelab[ray]'): "
                   "no ADDRESS starts a local Ray, 'auto' joins RAY_ADDRESS or the cluster of `ray start`. The "
                   "pixels are those of the same run here with --ray-threads torch threads")
    p.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="with --ray: how many actors, each with VGG19 (default: the cluster's CPUs // --ray-threads)")
    p.add_argument("--ray-threads", type=int, default=1, metavar="T",
                   help="with --ray: torch threads per actor, and in this process for the rest of the run")


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
    for role, path in job_inputs(job).items():
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
    # The CPU's sums are ordered by thread, so the same run with another thread count differs by a few levels:
    # replay with the recorded count (and give the process its own back afterwards).
    threads = torch.get_num_threads()
    torch.set_num_threads(job.get("threads", threads))
    try:
        return execute(job, config, args)
    finally:
        torch.set_num_threads(threads)


def execute(job: dict, config: Config, args: argparse.Namespace) -> int:
    """Run a `run` or `texture` job with a progress bar, checkpoints and snapshots (and `run`'s --preview first);
    save it with provenance."""
    from ..engine.optimize import load_inputs, stylize, synthesize

    output = output_path(args.output)
    checkpoint = check_run_flags(job, config, args, output)
    ray = getattr(args, "ray", None)
    if ray is not None:
        check_ray_flags(args)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        progress = Progress(config, args, output)
        stack.callback(progress.close)
        if job["command"] == "texture":
            w, h = job["size"]
            need, config = check_memory(config, None, job["styles"], shape=(h, w), quiet=args.quiet)
            runner = None if ray is None else stack.enter_context(ray_runner(config, need, args))
            image = synthesize(job["styles"], (w, h), config, progress.on_step, checkpoint, on_tile=progress.on_tile,
                               tile_runner=runner)
            alpha = None
        else:
            content = read_image(job["content"], "content image")  # read (or downloaded) once, all 16 bits
            need, config = check_memory(config, content.size[::-1], job["styles"], quiet=args.quiet)
            runner = None if ray is None else stack.enter_context(ray_runner(config, need, args))
            styles = load_inputs(None, job["styles"])[1]  # read (or downloaded) once, for --preview and the run
            if getattr(args, "preview", None) is not None:
                write_preview(Path(args.preview), content, styles, config, args.quiet)
            image = stylize(content, styles, config, progress.on_step, checkpoint, on_tile=progress.on_tile,
                            tile_runner=runner)
            alpha = load_alpha(content)
        # recorded with the thread count the run used (replay runs with it): --ray-threads with --ray
        meta = record({**job, "bit_depth": args.bit_depth}, config)
    save_image(image, output, bit_depth=args.bit_depth, alpha=alpha, metadata=meta)
    if not args.quiet:
        seconds = progress.seconds
        per_step = statistics.median(seconds) if seconds else float("nan")
        print(f"wrote {output} ({image.width}x{image.height}) in {time.perf_counter() - start:.1f} s, "
              f"{len(seconds)} steps, median {per_step:.3f} s/step, peak memory about {need}", file=sys.stderr)
    return 0


def check_ray_flags(args: argparse.Namespace) -> None:
    """--ray's flags, before any work: numbers that make sense, and the extra installed."""
    from ..engine.ray_tiles import ray_module

    if args.ray_actors is not None and args.ray_actors < 1:
        raise ConfigError(f"--ray-actors must be >= 1, got {args.ray_actors}")
    if args.ray_threads < 1:
        raise ConfigError(f"--ray-threads must be >= 1, got {args.ray_threads}")
    ray_module()


@contextlib.contextmanager
def ray_runner(config: Config, est: memory.Estimate, args: argparse.Namespace) -> Iterator[RayTiles]:
    """--ray: the actors for a run computed in tiles, and this process on --ray-threads threads meanwhile (the same
    sums as the actors', so the pixels of the same run here with that many threads)."""
    import torch

    from ..engine.ray_tiles import RayTiles

    if not config.tile or max(est.hw) <= config.tile:
        raise ConfigError("--ray computes the tiles of a tiled run, and this one is not tiled: add --tile N (px, a "
                          "multiple of 16 below the output's long edge)")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.ray_threads)
    try:
        with RayTiles(config, None if args.ray == "local" else args.ray, args.ray_actors, args.ray_threads) as runner:
            yield runner
    finally:
        torch.set_num_threads(threads)


def check_run_flags(job: dict, config: Config, args: argparse.Namespace, output: Path) -> Checkpoint | None:
    """The output and checkpoint flags checked before any work; the run's checkpoint, if any."""
    if not args.overwrite:
        check_not_an_input(output, job_inputs(job, config))
    if getattr(args, "preview", None) is not None:  # `run` only
        check_preview(Path(args.preview), output, job_inputs(job, config))
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


def check_preview(path: Path, output: Path, inputs: dict[str, str]) -> None:
    """--preview PATH before any work: an image file that can be written, neither an input nor the output (not
    even with --overwrite), and the optional extra that makes it installed."""
    from ..engine.fast import require

    for role, p in {**inputs, "output": str(output)}.items():
        if same_file(path, p):
            raise ConfigError(f"--preview {path} is also the {role}; choose another file")
    try:
        check_output_path(path)
    except ImageError as exc:
        raise ImageError(f"--preview: {exc}") from None
    require("--preview")


def write_preview(path: Path, content: Picture, styles: list[Tensor], config: Config, quiet: bool) -> None:
    """--preview: the feed-forward stylisation at the output's size, written (atomically) before optimising."""
    from ..engine.fast import FastInitError, preview

    start = time.perf_counter()
    image = preview(to_tensor(content, "content image"), styles, config.blend_weights(len(styles)), config.size)
    if image is None:  # installed (check_preview said so) but not running
        raise FastInitError("--preview: the feed-forward model (stylelab[fast]) failed to run")
    save_image(image, path, alpha=load_alpha(content))
    if not quiet:
        h, w = image.shape[-2:]
        print(f"wrote preview {path} ({w}x{h}) in {time.perf_counter() - start:.1f} s; optimising",
              file=sys.stderr)


def check_memory(config: Config, content_hw: tuple[int, int] | None, styles: Sequence[str],
                 shape: tuple[int, int] | None = None, quiet: bool = False) -> tuple[memory.Estimate, Config]:
    """The run's peak-memory estimate and the config to run. A run that does not fit in what the device has free
    runs in the largest tiles that fit, when its settings can tile and leave the tile automatic (`tile` None);
    otherwise a ConfigError with advice."""
    from ..engine.optimize import pick_device

    device = pick_device(config.device).type
    style_hws = [_image_hw(s) for s in styles]
    est = memory.estimate(config, content_hw, style_hws, shape=shape, device=device)
    free = memory.available(device)
    if free is None or est.bytes <= free:
        return est, config
    h, w = est.hw
    tile = memory.fitting_tile(config, free, content_hw, style_hws, shape, device)
    if tile is not None and config.tile is None:
        tiled = dataclasses.replace(config, tile=tile)
        if not quiet:
            print(f"stylelab: note: this run needs about {est} at {w}x{h} px in one piece, "
                  f"{memory.format_bytes(free)} is available: computing its steps in tiles of {tile} px (the same "
                  "result, slower; --tile 0 refuses instead)", file=sys.stderr)
        return memory.estimate(tiled, content_hw, style_hws, shape=shape, device=device), tiled
    where = "free on the GPU" if device == "cuda" else "available"
    tips = memory.advice(config, est, free, tile)
    raise ConfigError(f"this run needs about {est} at {w}x{h} px but only {memory.format_bytes(free)} is "
                      f"{where}; try {tips or 'a smaller --size'}")


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


def job_inputs(job: dict, config: Config | None = None) -> dict[str, str]:
    """The local files a job reads, by role: content, styles, and with the `config` its init image and masks (URLs
    left out)."""
    inputs = {"content image": job.get("content")}
    styles = job.get("styles", [])
    inputs.update({("style image" if len(styles) == 1 else f"style image {k + 1}"): s for k, s in enumerate(styles)})
    if config is not None:
        if config.init not in INITS:
            inputs["init image"] = config.init
        for k, r in enumerate(config.masks):
            inputs[f"mask {k + 1}"], inputs[f"style mask {k + 1}"] = r.content_mask, r.style_mask
    return {role: str(p) for role, p in inputs.items() if isinstance(p, str) and not is_url(p)}
