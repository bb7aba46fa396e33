"""Make the pictures of docs/gallery.md from the sample images (only stylelab's outputs are committed).

    .venv/bin/python docs/gallery.py --data DATA [--out docs/images/gallery] [--size 256] [--steps 150]

Pictures: one per colour mode (Tübingen x Starry Night), a two-style image with masks (sky: Starry Night,
the rest: The Great Wave; the sky mask is drawn from the photo's colours by this script) and a tileable texture
shown tiled 3x3 next to the same texture without --tileable.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

import stylelab
from stylelab import Config, Region
from stylelab.image import open_image, save_image


def sky_mask(photo: Path, out: Path) -> Path:
    """White where the photo shows blue sky: clearly blue, bright pixels, cleaned by a morphological close+open."""
    rgb = np.asarray(open_image(photo).convert("RGB"), dtype=np.float32) / 255
    r, b = rgb[..., 0], rgb[..., 2]
    sky = ((b - r > 0.15) & (b > 0.5)).astype(np.uint8) * 255
    im = Image.fromarray(sky, "L")
    for f in (ImageFilter.MaxFilter(5), ImageFilter.MinFilter(5), ImageFilter.MinFilter(5), ImageFilter.MaxFilter(5)):
        im = im.filter(f)
    im = im.filter(ImageFilter.GaussianBlur(2))
    im.save(out)
    return out


def tiled(image: Image.Image, n: int = 3) -> Image.Image:
    w, h = image.size
    sheet = Image.new("RGB", (w * n, h * n))
    for i in range(n):
        for j in range(n):
            sheet.paste(image, (i * w, j * h))
    return sheet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True,
                   help="folder with content/tubingen.jpg, styles/starry_night.jpg, styles/wave_crop.jpg")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "images" / "gallery"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=150)
    args = p.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    content = data / "content" / "tubingen.jpg"
    starry, wave = data / "styles" / "starry_night.jpg", data / "styles" / "wave_crop.jpg"
    base = Config(size=args.size, steps=args.steps)

    def make(name: str, run) -> None:
        start = time.perf_counter()
        image = run()
        save_image(image, out / name)
        print(f"{name}: {image.width}x{image.height}, {time.perf_counter() - start:.0f} s", flush=True)

    for mode in ("none", "keep-luminance", "transfer", "match", "palette-only"):
        make(f"color_{mode}.png",
             lambda mode=mode: stylelab.stylize(content, starry, dataclasses.replace(base, color=mode)))

    sky = sky_mask(content, out / "mask_sky.png")
    rest = out / "mask_rest.png"
    Image.eval(Image.open(sky), lambda v: 255 - v).save(rest)
    regions = (Region(str(sky), 0), Region(str(rest), 1))
    make("masked_two_styles.png", lambda: stylelab.stylize(content, [starry, wave], dataclasses.replace(base, masks=regions)))

    texture = dataclasses.replace(base, size=192, init="noise", tv_weight=1.0)
    for tile in (True, False):
        name = "texture_tileable" if tile else "texture_plain"
        make(f"{name}.png",
             lambda tile=tile: stylelab.synthesize(wave, (192, 192), dataclasses.replace(texture, tileable=tile)))
        save_image(tiled(Image.open(out / f"{name}.png").convert("RGB")), out / f"{name}_3x3.png")


if __name__ == "__main__":
    main()
