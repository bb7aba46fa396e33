"""Compare style losses: one run per loss with the same settings, and every output measured under every loss.

The table is the cross-evaluation matrix of docs/method.md §4: rows are outputs (one per loss optimised),
columns are normalised distances (content image = 1 for every style loss, 0 for the content distance).
Sits on top of the core (optimize); nothing in the core imports it.
"""

from __future__ import annotations

import dataclasses
import html
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..config import Config
from ..engine.events import Step
from ..engine.optimize import Callback, build_style_losses, compute_targets, load_inputs, objective, prepare, transfer
from ..image import ImageLike, resize, resize_long_edge, tensor_to_pil
from ..losses.spec import ALL_LOSSES, parse_style_losses

__all__ = ["Row", "compare", "evaluator", "grid", "page", "split_specs", "table"]


@dataclass(frozen=True)
class Row:
    """One output of `compare`: what it optimised, its image, its distances and its speed."""

    loss: str
    image: Image.Image
    distances: dict[str, float]  # 'content' and one entry per evaluated loss label
    seconds_per_step: float


def split_specs(text: str) -> list[str]:
    """'all' or 'gram,mmd-gaussian(estimator=rff,features=512),bn' -> one spec per loss (commas in () kept)."""
    if text.strip() == "all":
        return list(ALL_LOSSES)
    return [t.label for t in parse_style_losses(text)]  # validates every spec; weights are ignored


def evaluator(content: Tensor, styles: Sequence[Tensor], config: Config, specs: Sequence[str]
              ) -> Callable[[Tensor], dict[str, float]]:
    """Targets of a run of `config` for every spec, computed once; returns image (1,3,H,W) -> normalised
    distances ('content' and one per spec). Evaluation always uses fixed draws (seed = config.seed)."""
    eval_config = dataclasses.replace(config, style_loss=",".join(specs), optimizer="lbfgs")
    model, content, styles = prepare(content, styles, config)
    losses = build_style_losses(eval_config)
    targets = compute_targets(model, content, styles, eval_config, losses)

    @torch.no_grad()
    def distances(image: Tensor) -> dict[str, float]:
        x = resize(image.to(content.device), tuple(content.shape[-2:]))
        _, terms = objective(model, x.clamp(0, 1), targets, eval_config, losses)
        out = {"content": float(terms["content"])}
        for label in losses:
            out[label] = float(terms[f"style:{label}"] if len(losses) > 1 else terms["style"])
        return out

    return distances


def compare(
    content: ImageLike, styles: ImageLike | Sequence[ImageLike], specs: Sequence[str], config: Config = Config(),
    callback: Callable[[str], Callback | None] | None = None,
) -> list[Row]:
    """Run `config` once per loss spec and measure each output under every spec (plus the content image)."""
    content_t, style_ts = load_inputs(content, styles)
    assert content_t is not None  # a content was given
    distances = evaluator(content_t, style_ts, config, specs)
    rows = []
    for spec in specs:
        seconds: list[float] = []
        inner = callback(spec) if callback else None

        def on_step(step, inner=inner, seconds=seconds):
            if isinstance(step, Step):
                seconds.append(step.seconds)
            if inner:
                inner(step)

        run_config = dataclasses.replace(config, style_loss=spec)
        out = transfer(content_t, style_ts, run_config, on_step)
        rows.append(Row(spec, tensor_to_pil(out), distances(out), statistics.median(seconds)))
    reference = resize_long_edge(content_t, config.size)
    rows.insert(0, Row("content image", tensor_to_pil(reference), distances(reference), float("nan")))
    return rows


def table(rows: Sequence[Row]) -> list[list[str]]:
    """Header + one line per row: output, content distance, each loss's distance, s/step."""
    labels = [k for k in rows[0].distances if k != "content"]
    lines = [["output", "content", *labels, "s/step"]]
    for r in rows:
        lines.append([r.loss, f"{r.distances['content']:.3f}", *(f"{r.distances[k]:.3f}" for k in labels),
                      "" if r.seconds_per_step != r.seconds_per_step else f"{r.seconds_per_step:.3f}"])
    return lines


def grid(rows: Sequence[Row], columns: int = 4) -> Image.Image:
    """Labelled contact sheet of the outputs (first tile: the content image)."""
    w, h = rows[0].image.size
    label_h = 16
    n_rows = -(-len(rows) // columns)
    sheet = Image.new("RGB", (w * min(columns, len(rows)), (h + label_h) * n_rows), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, r in enumerate(rows):
        x, y = (k % columns) * w, (k // columns) * (h + label_h)
        sheet.paste(r.image.resize((w, h)), (x, y + label_h))
        label = r.loss
        while len(label) > 1 and draw.textlength(label, font=font) > w - 6:  # a label fits its tile
            label = label[:-2] + "…"
        draw.text((x + 3, y + 2), label, fill="black", font=font)
    return sheet


def page(rows: Sequence[Row], title: str, grid_file: str, note: str = "") -> str:
    """A self-contained HTML report: the grid image (by file name) and the table, lowest distance per column
    in bold among the outputs."""
    lines = table(rows)
    labels = lines[0][1:-1]
    best = {k: min(r.distances[k] for r in rows[1:]) for k in rows[0].distances}
    body = []
    for r, line in zip(rows, lines[1:]):
        cells = [f"<td>{html.escape(line[0])}</td>"]
        for k, cell in zip(["content", *[k for k in r.distances if k != "content"]], line[1:-1]):
            bold = r is not rows[0] and r.distances[k] == best[k]
            cells.append(f"<td>{'<b>' + cell + '</b>' if bold else cell}</td>")
        cells.append(f"<td>{line[-1]}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["output", *labels, "s/step"])
    width = max(600, rows[0].image.width * min(4, len(rows)))  # grid()'s width, small tiles shown larger
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><img src="{html.escape(grid_file)}" alt="the outputs side by side" style="width:{width}px"></p>
<p>Distances to the style under each loss, normalised so that the content image is 1 (content distance: 0 at the
content image); lower is closer. Bold: the closest output in each column. {html.escape(note)}</p>
<table><tr>{head}</tr>
{"".join(body)}
</table></body></html>
"""
