"""`stylelab video INPUT STYLE [STYLE...] -o OUTPUT`: the command line of stylelab.video.

Registered by cli.build_parser (`add_video`) and dispatched by cli.main (`run_video`); the run flags are cli's own
(`add_settings`, `config_from_args`). Finished frames are kept as PNGs in OUTPUT.frames/ (each written
atomically; named frame_000000.png on, counting input frames as `--frames` does) next to the output, with the
run's settings and a job store (stylelab.jobs.store: one row per frame, its
sha256, seconds and losses; `stylelab batch --status OUTPUT.frames` reads it). A killed run continues at the next
frame when started again with the same settings: the frames from the first one on whose file is missing or
changed are done again (each frame starts from the one before). The folder is removed once the output is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError, config_to_dict
from ..engine.events import Report, Step
from ..files import check_not_an_input, write_text_atomic
from ..flags import add_config_flags as add_settings
from ..flags import config_from_args
from ..flags import source as _source
from ..video.defaults import DEFAULT_TEMPORAL_WEIGHT, FLOW_PRESETS

if TYPE_CHECKING:
    from torch import Tensor

    from ..jobs.store import Store

__all__ = ["SETTINGS_FILE", "WORK_SUFFIX", "add_video", "run_video", "save_frame"]

WORK_SUFFIX = ".frames"  # OUTPUT.frames/: the frames finished so far
SETTINGS_FILE = "settings.json"


def add_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video", help="stylise a video with temporal consistency (Ruder et al. 2016)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Stylise INPUT frame by frame: the first frame as `stylelab run` does, each next one from the "
        "previous stylised frame warped by the optical flow, with a temporal loss that keeps consistent pixels as "
        "they were (no flicker). Needs stylelab[video]. A killed run continues where it stopped when rerun with "
        "the same settings (finished frames are kept in OUTPUT.frames/).",
    )
    p.add_argument("input", help="video file (mp4, mov, webm, gif, ...) or a folder or glob of frames")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (path or URL)")
    p.add_argument("-o", "--output", required=True,
                   help="an .mp4 or .mov file (H.264, the input's frame rate and audio), or a folder for PNG frames")
    add_settings(p)
    p.add_argument("--temporal-weight", type=float, default=DEFAULT_TEMPORAL_WEIGHT,
                   help="weight of the temporal loss (mean squared change of consistent pixels); 0 = independent")
    p.add_argument("--frame-steps", type=int, default=None,
                   help="optimiser steps for each frame after the first (default: --steps // 4)")
    p.add_argument("--frames", default=None, metavar="A:B", help="only frames A to B-1 of the input, from 0")
    p.add_argument("--fps", type=float, default=None,
                   help="resample to this frame rate (a folder of frames: its rate, default 24)")
    p.add_argument("--long-term", action="store_true", help="also keep consistency with frames t-2 and t-4")
    p.add_argument("--flow", default="medium", choices=FLOW_PRESETS, help="DIS optical flow preset")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="on Ray (pip install 'stylelab[ray]'): the flows in parallel tasks, then the clip in "
                   "consecutive chunks stylised in parallel; no ADDRESS starts a local Ray, 'auto' joins RAY_ADDRESS")
    p.add_argument("--chunks", type=int, default=None,
                   help="with --ray: how many chunks (default: the cluster's CPUs)")
    p.add_argument("--overlap", type=int, default=2,
                   help="with --ray: frames each chunk stylises before its own as a warm-up (not kept)")
    p.add_argument("--overwrite", action="store_true", help="allow the output to replace the input video")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def run_video(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from ..engine.optimize import load_inputs
    from ..image import to_tensor
    from ..jobs.store import Store, file_sha256
    from ..video.io import frame_name, output_kind, parse_frames, read_video, write_frames, write_video  # needs av
    from ..video.temporal import check_video_config, default_frame_steps, stylize_video
    from .progress import StepBar

    if not args.overwrite:  # before anything is read: the output must never replace an input
        check_not_an_input(args.output, {"input video": args.input,
                                         **{f"style image {k + 1}": s for k, s in enumerate(args.styles)}})
    config = config_from_args(args)
    check_video_config(config, args.temporal_weight, args.frame_steps)
    if args.ray is not None:
        from ..jobs.executors import _ray
        from ..video.ray import chunk_plan

        _ray()  # the extra is installed
        chunk_plan(1, 1 if args.chunks is None else args.chunks, args.overlap)  # valid chunks and overlap
    elif args.chunks is not None or args.overlap != 2:
        raise ConfigError("--chunks and --overlap need --ray")
    output = Path(args.output)
    kind = output_kind(output)
    frames = parse_frames(args.frames) if args.frames else None
    first = (frames[0] or 0) if frames and args.fps is None else 0  # file names count input frames, as --frames
    _, styles = load_inputs(None, args.styles)  # bad style images fail here, before any file is made
    config.blend_weights(len(styles))
    clip = read_video(args.input, frames=frames, fps=args.fps, size=config.size)
    frame_steps = args.frame_steps or default_frame_steps(config)
    settings = {"input": _source(args.input), "styles": [_source(s) for s in args.styles],
                "config": {k: v for k, v in config_to_dict(config).items() if k != "device"},
                "temporal_weight": args.temporal_weight, "frame_steps": frame_steps, "long_term": args.long_term,
                "frames": args.frames, "fps": args.fps, "flow": args.flow, "count": len(clip.frames),
                "numbering": first}  # frame_name(first + t); folders of older versions counted from 1
    work = output.with_name(output.name + WORK_SUFFIX)
    _work_folder(work, settings)
    n = len(clip.frames)
    with Store(work) as store:
        def name(t: int) -> str:
            return frame_name(first + t)

        kept = _kept_frames(store, settings, n, name)

        def done(t: int) -> str | None:
            return str(work / name(t)) if t < kept else None

        bar = tqdm(total=n, initial=kept, disable=args.quiet, unit="frame", dynamic_ncols=True, file=sys.stderr,
                   position=0)
        steps = StepBar(0, quiet=args.quiet, position=1, leave=False)  # the steps of the frame being made
        seconds: list[float] = []

        def on_step(t: int, step: Report) -> None:
            if step.i == 1 and isinstance(step, Step):
                steps.restart(step.n, f"frame {first + t}")
            steps.show(step)

        start = time.perf_counter()
        if args.ray is None:
            produced = stylize_video(clip.frames, styles, config, temporal_weight=args.temporal_weight,
                                     frame_steps=frame_steps, long_term=args.long_term, callback=on_step,
                                     done=done, flow_preset=args.flow)
        else:
            from ..video.ray import stylize_video_ray

            before = None if not kept else to_tensor(str(work / name(kept - 1)), "stylised frame")
            produced = stylize_video_ray(clip.frames, styles, config, chunks=args.chunks, overlap=args.overlap,
                                         start=kept, previous=before,
                                         address=None if args.ray == "local" else args.ray,
                                         temporal_weight=args.temporal_weight, frame_steps=frame_steps,
                                         long_term=args.long_term, flow_preset=args.flow)
        try:
            for frame in produced:
                if frame.resumed:
                    continue
                key = name(frame.index)
                store.start(key)
                t0 = time.perf_counter()
                path = save_frame(frame.image, work / key)
                encode = time.perf_counter() - t0
                # "targets": the frame's time outside its steps (optical flow, warping, content targets)
                times = {"steps": frame.step_seconds, "targets": frame.seconds - frame.step_seconds,
                         "encode": encode, "total": frame.seconds + encode}
                store.finish(key, file_sha256(path) or "", times, {} if frame.loss is None else {"loss": frame.loss},
                             frame.steps)
                seconds.append(frame.seconds)
                bar.set_postfix_str(f"frame {frame.index + 1} loss {frame.loss:.4g} {frame.seconds:.1f}s")
                bar.update(1)
        finally:
            steps.close()
            bar.close()
    arrays = (np.asarray(Image.open(work / name(t)).convert("RGB")) for t in range(n))  # one at a time
    if kind == "video":
        write_video(arrays, output, clip.fps, audio=clip)
    else:
        write_frames(arrays, output, first)
    shutil.rmtree(work, ignore_errors=True)
    if not args.quiet:
        per = statistics.median(seconds) if seconds else float("nan")
        audio = ", audio kept" if clip.has_audio and kind == "video" else ""
        print(f"wrote {output} ({n} frames at {float(clip.fps):g} fps{audio}) "
              f"in {time.perf_counter() - start:.1f} s, median {per:.2f} s/frame"
              + (f", {kept} frames resumed" if kept else ""), file=sys.stderr)
    return 0


def save_frame(image: Tensor, path: Path) -> Path:
    """One finished frame, written atomically (a kill never leaves half a frame)."""
    from ..image import save_image

    return save_image(image, path)


def _kept_frames(store: Store, settings: dict, n: int, frame_name: Callable[[int], str]) -> int:
    """Register the clip's frames in the store; returns how many leading frames are done with their file intact
    (from the first missing or changed one on, every frame is done again: each starts from the one before)."""
    from ..jobs.store import file_sha256

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    keys = [frame_name(t) for t in range(n)]
    new = not any(store.counts().values())
    _, skipped = store.plan([(key, {"frame": t}, digest) for t, key in enumerate(keys)])
    if new:  # a work folder made before the job store (same settings): its leading frames are taken as done
        for key in keys:
            sha = file_sha256(store.folder / key)
            if sha is None:
                break
            store.finish(key, sha, {}, {}, 0)
            skipped.append(key)
    done = set(skipped)
    return next((t for t, key in enumerate(keys) if key not in done), n)


def _work_folder(work: Path, settings: dict) -> None:
    """Create OUTPUT.frames/ with the run's settings, or check a kept one holds frames of the same run."""
    record = work / SETTINGS_FILE
    text = json.dumps(settings, sort_keys=True)
    if work.exists():
        try:
            same = work.is_dir() and json.loads(record.read_text()) == json.loads(text)
        except (OSError, ValueError):
            same = False
        if not same:
            raise ConfigError(f"{work} holds frames of a run with other settings; delete it to start over")
        return
    work.mkdir()
    write_text_atomic(record, text)
