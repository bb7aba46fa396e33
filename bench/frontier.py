"""The frontier picture: stylelab's default and a recipe (default: `--preset nnst`) against NNST's published output,
scored by the VGG19 evaluator and the style vector, with their cost in bare passes and a strip to look at.

    .venv/bin/python bench/frontier.py [--pairs nnst,starry,shipwreck] [--size 512] [--recipe "--preset nnst"]
        [--out /tmp/frontier] [--strips docs/images/frontier]

Pairs (from ../shared/data): nnst = NNST's own example (its content C1 and style S4, The Starry Night; its published
512 px output, with and without its colour step, is scored beside ours); starry = Tübingen x The Starry Night;
shipwreck = Tübingen x The Shipwreck of the Minotaur (pairs the recipe was not tuned on). Every image is scored at
its own size against the original files (bench/_evaluator.py): VGG19 content and Gram and sliced W2 distances with
max pooling (content image: content 0, style 1), and the style-vector distance (content image 1; lower = closer).
Each run is `stylelab run` in a fresh process; its CPU time over the CPU time of a bare 512x384 pass timed here
(median of 5, before and after) is its cost in bare passes (bench/passes.py).

Colour profiles: stylelab converts an image that carries an ICC profile to sRGB, as a browser shows it; NNST and
the evaluator read the numbers in the file as sRGB. NNST's style (The Starry Night, S4) is an Adobe RGB (1998) file,
whose numbers read as sRGB are a duller painting than the file shows. So that every image is made from, and scored
against, the same pixels, stylelab is given a copy of each input with its profile dropped (the pixels NNST saw);
`--keep-profiles` gives it the files as they are.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evaluator import Net, Reference, StyleVector, load_rgb
from passes import bare_pass

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NNST = DATA / "reference" / "nnst"
# name -> (content, style, [(label, published output)])
PAIRS = {
    "nnst": (NNST / "content_C1.png", NNST / "style_S4.jpg",
             [("NNST", NNST / "nnst_C1_S4.png"), ("NNST, no colour step", NNST / "nnst_C1_S4_dont_colorize.png")]),
    "starry": (DATA / "content" / "tubingen.jpg", DATA / "styles" / "starry_night.jpg", []),
    "shipwreck": (DATA / "content" / "tubingen.jpg", DATA / "styles" / "shipwreck.jpg", []),
}


def run(content: Path, style: Path, output: Path, flags: list[str]) -> tuple[float, float]:
    """`stylelab run` in a fresh process -> (CPU seconds, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stylelab", "run", str(content), str(style), "-o", str(output), "-q",
                    *flags], check=True)
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def as_read(path: Path, out: Path) -> Path:
    """`path`, or, when it carries an ICC profile, a PNG copy of its pixels without it (in `out`)."""
    with Image.open(path) as im:
        if not im.info.get("icc_profile"):
            return path
        copy = out / f"{path.stem}_as_read.png"
        rgb = im.convert("RGB")
        rgb.info.pop("icc_profile", None)  # else the PNG would carry it on
        rgb.save(copy)
    return copy


def score(net: Net, vectors: StyleVector, content: Path, style: Path, image: Path) -> dict[str, float]:
    rgb = load_rgb(image)
    ref = Reference.build(net, content, style, (rgb.shape[2], rgb.shape[3]))
    return {**ref.all_distances(net, rgb), "style vector": vectors.distance(image, content, style)}


def strip(images: list[tuple[str, Path]], path: Path, h: int = 384) -> None:
    """The images side by side at height h, each captioned."""
    tiles = []
    for label, p in images:
        im = Image.open(p).convert("RGB")
        im = im.resize((round(im.width * h / im.height), h), Image.LANCZOS)
        ImageDraw.Draw(im).text((8, 6), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0),
                                font=ImageFont.load_default(size=18))
        tiles.append(im)
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), h), (255, 255, 255))
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, quality=88)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", default="nnst,starry,shipwreck")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--recipe", default="--preset nnst", help="stylelab run flags of the recipe")
    p.add_argument("--out", default="/tmp/frontier")
    p.add_argument("--strips", default=None, help="also write each pair's strip (JPEG) into this folder")
    p.add_argument("--keep-profiles", action="store_true",
                   help="give stylelab the input files as they are (their ICC profiles honoured)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    net, vectors = Net.load("max"), StyleVector()
    cpu_pass = bare_pass(net)[0]
    runs = {"default": [], "recipe": shlex.split(args.recipe)}
    print(f"recipe: `{args.recipe}`; size {args.size}")
    print("| pair | image | VGG19 content (max) | VGG19 Gram (max) | VGG19 sliced-W2 (max) | style vector "
          "| CPU s | bare passes |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for pair in args.pairs.split(","):
        content, style, published = PAIRS[pair]
        shown: list[tuple[str, Path]] = [("content", content)]
        for name, flags in runs.items():
            output = out / f"{pair}_{name}.png"
            given = (content, style) if args.keep_profiles else (as_read(content, out), as_read(style, out))
            cpu, _ = run(*given, output, ["--size", str(args.size), *flags])
            s = score(net, vectors, content, style, output)
            label = "stylelab default" if name == "default" else f"stylelab {args.recipe}"
            print(f"| {pair} | {label} | {s['content']:.3f} | {s['gram']:.3f} | {s['sw2']:.3f} "
                  f"| {s['style vector']:.3f} | {cpu:.0f} | {cpu / cpu_pass:.0f} |", flush=True)
            shown.append((label, output))
        for label, path in published:
            s = score(net, vectors, content, style, path)
            print(f"| {pair} | {label} (published) | {s['content']:.3f} | {s['gram']:.3f} | {s['sw2']:.3f} "
                  f"| {s['style vector']:.3f} | | |", flush=True)
        if args.strips:
            strip([*shown, *published[:1]], Path(args.strips) / f"{pair}.jpg")
    cpu_pass = (cpu_pass + bare_pass(net)[0]) / 2
    print(f"\nbare 512x384 pass: {cpu_pass:.3f} CPU s (passes above use the first measurement)")


if __name__ == "__main__":
    main()
