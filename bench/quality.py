"""Quality against the published neural-style outputs: distances under both poolings, time, side-by-side sheets.

    python bench/quality.py --label defaults [--pairs starry,shipwreck,starry-oc,shipwreck-oc]
                            [--every 10] [--out /tmp/quality] [-- extra `stylelab run` flags]

For each pair with a published reference in ../shared/data/reference/ (Tübingen x The Starry Night, x The
Shipwreck, and the original-colour versions, run with `--color keep-luminance`), runs `stylelab run` as a user
would (a fresh process: start-up, weights and inputs included), with `--save-every`, and scores every snapshot
of the last scale, the output and the reference with the independent evaluator (bench/_evaluator.py, which does
not import stylelab) under max AND average pooling: content distance at relu4_2, Gram and sliced-W2 distances
over relu1_1..relu5_1, each normalised so the content image scores content 0, style 1; and a measure of style that
is not VGG19, the style-vector distance (bench/_evaluator.py's StyleVector, needs stylelab[fast]; content image 1).

Time: seconds since launch (a snapshot's file time minus the moment the process was started), and the same in
"bare passes": one VGG19 forward to relu5_1 + input-gradient backward at the output's size, timed in this
process before and after the runs (median of 5 each, the mean of the two), so both share the machine's load.

Writes OUT/LABEL_PAIR.png (outputs), OUT/sheet_LABEL_PAIR.png (content | stylelab | reference, then crops at
2x of flat regions and thin structures), OUT/strip_LABEL_PAIR.jpg (the top row, small), OUT/LABEL.json, and
prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evaluator import Net, Reference, StyleVector, load_rgb

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STYLELAB = [sys.executable, "-m", "stylelab"]
PAIRS = {  # name -> (content, style, reference, extra flags)
    "starry": ("content/tubingen.jpg", "styles/starry_night.jpg", "reference/tubingen_starry.png", []),
    "shipwreck": ("content/tubingen.jpg", "styles/shipwreck.jpg", "reference/tubingen_shipwreck.png", []),
    "starry-oc": ("content/tubingen.jpg", "styles/starry_night.jpg", "reference/original_color/tubingen_starry.png",
                  ["--color", "keep-luminance"]),
    "shipwreck-oc": ("content/tubingen.jpg", "styles/shipwreck.jpg",
                     "reference/original_color/tubingen_shipwreck.png", ["--color", "keep-luminance"]),
}
# Crops (left, top, right, bottom) of the 512x384 Tübingen frame: flat regions and thin straight structures.
CROPS = {"sky": (150, 8, 262, 92), "water": (96, 292, 208, 376), "spire": (300, 50, 412, 134),
         "windows": (392, 140, 504, 224)}


def run_pair(pair: str, label: str, out: Path, every: int, flags: list[str]) -> dict:
    content, style, _, extra = PAIRS[pair]
    output = out / f"{label}_{pair}.png"
    for old in out.glob(f"{label}_{pair}*.png"):
        old.unlink()
    cmd = [*STYLELAB, "run", str(DATA / content), str(DATA / style), "-o", str(output), "-q",
           "--save-every", str(every), *extra, *flags]
    launch = time.time()
    subprocess.run(cmd, check=True)
    total = output.stat().st_mtime - launch
    # OUT_stepNNNN.png (one scale) or OUT_sK_stepNNNN.png (scale K): keep the last scale's, at the output's size
    snaps = [(re.fullmatch(rf"{re.escape(output.stem)}(?:_s(\d+))?_step(\d+)", p.stem), p)
             for p in out.glob(f"{output.stem}_*step*.png")]
    snaps = [(int(m[1] or 0), int(m[2]), p) for m, p in snaps if m]
    last = max((k for k, _, _ in snaps), default=0)
    frames = sorted((i, p.stat().st_mtime - launch, p) for k, i, p in snaps if k == last)
    return {"cmd": " ".join(cmd[2:]), "output": output, "seconds": total, "snapshots": frames}


def bare_pass_seconds(net: Net, hw: tuple[int, int], reps: int = 5) -> float:
    x = torch.rand(1, 3, *hw).contiguous()
    times = []
    for _ in range(reps + 1):
        leaf = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        f = net.features(leaf, ("relu5_1",), inplace=True)["relu5_1"]
        torch.autograd.grad(f.sum(), leaf)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def sheet(content: Path, ours: Path, ref: Path, path: Path, label: str) -> None:
    images = [("content", Image.open(content).convert("RGB").resize((512, 384), Image.BICUBIC)),
              (f"stylelab ({label})", Image.open(ours).convert("RGB")), ("published", Image.open(ref).convert("RGB"))]
    w, h = 512, 384
    crop_w, crop_h = 224, 168
    rows = len(CROPS)
    canvas = Image.new("RGB", (3 * w, 18 + h + rows * (crop_h + 18)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (name, im) in enumerate(images):
        canvas.paste(im.resize((w, h)), (k * w, 18))
        draw.text((k * w + 4, 3), name, fill="black")
    y = 18 + h
    for name, box in CROPS.items():
        for k, (_, im) in enumerate(images):
            crop = im.resize((w, h)).crop(box).resize((crop_w, crop_h), Image.NEAREST)
            canvas.paste(crop, (k * w + 4, y + 16))
        draw.text((4, y + 2), f"{name} {box} at 2x", fill="black")
        y += crop_h + 18
    canvas.save(path)


def strip(content: Path, ours: Path, ref: Path, path: Path, w: int = 384, h: int = 288) -> None:
    """content | stylelab | published, side by side at w x h each: the small picture for the README."""
    canvas = Image.new("RGB", (3 * w + 8, h), "white")
    for k, im in enumerate((content, ours, ref)):
        canvas.paste(Image.open(im).convert("RGB").resize((w, h), Image.LANCZOS), (k * (w + 4), 0))
    canvas.save(path, quality=90)


def main() -> None:
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True)
    p.add_argument("--pairs", default="starry,shipwreck")
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--out", default="/tmp/quality")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nets = {"max": Net.load("max"), "avg": Net.load("avg")}
    vectors = StyleVector()
    before = bare_pass_seconds(nets["avg"], (384, 512))  # before and after the runs: the load may change
    runs = {pair: run_pair(pair, args.label, out, args.every, flags) for pair in args.pairs.split(",")}
    after = bare_pass_seconds(nets["avg"], (384, 512))
    pass_s = (before + after) / 2
    report: dict = {"label": args.label, "flags": flags, "bare_pass_s": pass_s, "bare_pass_before_after_s":
                    [before, after], "pairs": {}}
    print(f"## {args.label}: `stylelab run C S -o OUT {' '.join(flags)}`\n")
    print(f"bare VGG19 pass at 512x384 (forward to relu5_1 + input-gradient backward): {pass_s:.3f} s "
          f"(before the runs {before:.3f} s, after {after:.3f} s)\n")
    for pair, run in runs.items():
        content, style, ref, _ = PAIRS[pair]
        refs = {k: Reference.build(net, DATA / content, DATA / style, (384, 512)) for k, net in nets.items()}

        def score(path: Path, refs=refs, content=content, style=style) -> dict:
            rgb = load_rgb(path, size=(384, 512))
            vector = vectors.distance(path, DATA / content, DATA / style)
            return {**{k: refs[k].all_distances(nets[k], rgb) for k in nets}, "style_vector": vector}

        rows = [(f"step {i}", t, score(path)) for i, t, path in run["snapshots"]]
        rows.append(("output", run["seconds"], score(run["output"])))
        rows.append(("published", float("nan"), score(DATA / ref)))
        sheet(DATA / content, run["output"], DATA / ref, out / f"sheet_{args.label}_{pair}.png", args.label)
        strip(DATA / content, run["output"], DATA / ref, out / f"strip_{args.label}_{pair}.jpg")
        print(f"### {pair} (total {run['seconds']:.1f} s = {run['seconds'] / pass_s:.0f} bare passes)\n")
        print("| image | s since launch | passes | max: content | max: gram | max: sw2 | avg: content | avg: gram "
              "| avg: sw2 | style vector |\n|---|---|---|---|---|---|---|---|---|---|")
        for name, t, d in rows:
            cells = " | ".join(f"{d[k][m]:.3f}" for k in ("max", "avg") for m in ("content", "gram", "sw2"))
            print(f"| {name} | {t:.1f} | {t / pass_s:.0f} | {cells} | {d['style_vector']:.3f} |")
        ours, pub = rows[-2][2], rows[-1][2]
        wins = {f"{k}:{m}": (ours[k][m] <= pub[k][m]) for k in nets for m in ("content", "gram", "sw2")}
        missed = ", ".join(k for k, v in wins.items() if not v)
        print(f"\nat least as good as published on: {sum(wins.values())}/6"
              + (f" (missed: {missed})" if missed else "") + "\n", flush=True)
        report["pairs"][pair] = {"cmd": run["cmd"], "seconds": run["seconds"], "passes": run["seconds"] / pass_s,
                                 "rows": [{"image": n, "seconds": t, **d} for n, t, d in rows], "wins": wins}
    (out / f"{args.label}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
