"""The page of `stylelab explain`: an Analysis -> one self-contained HTML document (figures by file name).

A first screen in plain words (the images, one sentence naming the layer that matters, one bar per layer with what
that layer looks at), then the maths: the identity check, and per layer the Gram heatmaps, moments and distances.
"""

from __future__ import annotations

import html
import math

from .explain import (
    MAX_PAIRWISE,
    Analysis,
    LayerView,
    headline_layer,
    layer_scores,
    receptive_field,
)

__all__ = ["BLOCK_WORDS", "THUMB", "first_screen", "layer_words", "number", "page", "verdict"]

# What a layer of each VGG19 block responds to, in words (the block is the first digit of the name: relu3_1 -> 3).
BLOCK_WORDS = {1: "colours and the finest strokes", 2: "small strokes and fine texture",
               3: "brush marks and small patterns", 4: "motifs and parts of objects",
               5: "large shapes and their arrangement"}
THUMB = 96  # px, width of the small style picture on each layer's row

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:0 16px;color:#222}
img{max-width:100%}h1{margin:.5em 0 .3em}figure{display:inline-block;margin:0 12px 0 0}
figcaption{font-size:90%;color:#555}.verdict{font-size:125%;max-width:60em;margin:.6em 0}
.layers{border-collapse:collapse;margin:.4em 0}.layers td{border:0;padding:4px 10px 4px 0;text-align:left}
.layers tr.headline{background:#fff4d6}.muted{color:#666;font-size:90%}
.thumb{position:relative;background-size:100% 100%;display:inline-block;vertical-align:middle}
.box{position:absolute;border:2px solid #ffd400;box-shadow:0 0 0 1px #000;box-sizing:border-box}
.bar{width:320px;height:16px;background:#e6e6e6;border-radius:3px}.bar div{height:100%;background:#3a7bd5;
border-radius:3px}.pct{font-weight:600;white-space:nowrap}.how{color:#444;max-width:60em}
.maths table{border-collapse:collapse}.maths td,.maths th{border:1px solid #ccc;padding:3px 8px;text-align:right}"""


def page(analysis: Analysis) -> str:
    """The whole report page."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>stylelab explain</title>
<style>{_STYLE}</style></head><body>
{first_screen(analysis)}
<div class="maths"><h2 id="maths">The maths</h2>
{_identity(analysis)}
{"".join(_section(view, analysis.losses) for view in analysis.layers)}
</div></body></html>"""


def first_screen(analysis: Analysis) -> str:
    """Plain words: the images, a verdict naming one layer, a bar per layer, how the % is made, the size used."""
    with_output = analysis.compared == "output"
    title = "How much of the style the picture took" if with_output else "How your content and style differ"
    scores, named = layer_scores(analysis), headline_layer(analysis)
    rows = "".join(_layer_row(analysis, layer, score, layer == named) for layer, score in scores.items())
    return f"""<div id="first-screen"><h1>{title}</h1>
<div>{"".join(_figure(analysis, name) for name in analysis.images)}</div>
<p class="verdict">{verdict(analysis)}</p>
<p>stylelab sees a picture through VGG19, a network trained to recognise objects. Each of its layers looks at
square patches of the picture (yellow box): small ones at the first layer, large ones at the last. A style is
matched layer by layer, so each bar is about the style at one scale, from fine strokes to large shapes.</p>
<table class="layers">{rows}</table>
<p class="how">{_how(with_output)} {_measured(analysis)} <a href="#maths">The maths is below.</a></p></div>"""


def verdict(analysis: Analysis) -> str:
    """One or two sentences naming `headline_layer` with its number."""
    scores = layer_scores(analysis)
    named = headline_layer(analysis)
    other = (max if analysis.compared == "output" else min)(scores, key=scores.__getitem__)

    def says(layer: str) -> str:
        return f"<b>{layer_words(layer)}</b> ({layer}: {_percent(scores[layer])})"

    if analysis.compared == "content":
        return (f"No output image was given, so the bars compare the content with the style. They differ most in "
                f"{says(named)}: that is what a stylisation will change most. They are closest in {says(other)}.")
    if scores[named] >= 0.9:
        return (f"The output matches the style closely at every layer. The least matched is {says(named)}; the "
                f"best, {says(other)}.")
    return (f"The output took most of the style's {says(other)} and least of its {says(named)}: that is what the "
            f"picture still lacks most. More steps or a higher style weight move the bars to the right.")


def layer_words(layer: str) -> str:
    """What `layer` responds to, in words."""
    return BLOCK_WORDS[int(next(ch for ch in layer if ch.isdigit()))]


def _percent(score: float) -> str:
    return f"{round(100 * score)}%"


def _figure(analysis: Analysis, name: str) -> str:
    """An image with its own size: the size it was measured at, and the file's if that was resized."""
    h, w = analysis.images[name].shape[-2:]
    caption = f"{name} · {w}×{h} px"
    if analysis.files.get(name, (w, h)) != (w, h):
        caption += " (file {}×{})".format(*analysis.files[name])
    return f"<figure><img src='{name}.png' height=150 alt='{name}'><figcaption>{caption}</figcaption></figure>"


def _layer_row(analysis: Analysis, layer: str, score: float, headline: bool) -> str:
    """One layer: the style picture with the patch it looks at, what it responds to, a bar, the %."""
    label = "style matched" if analysis.compared == "output" else "different"
    note = " (further from the style than the content is)" if score < 0 else ""
    width = min(max(score, 0.0), 1.0) * 100
    mark = " class='headline'" if headline else ""
    return (f"<tr{mark} data-layer='{layer}' data-score='{score:.6f}'><td>{_patch(analysis, layer)}</td>"
            f"<td><b>{layer_words(layer)}</b><br><span class='muted'>{layer} · {_patch_words(analysis, layer)}"
            f"</span></td><td><div class='bar'><div style='width:{width:.1f}%'></div></div></td>"
            f"<td class='pct'>{label} {_percent(score)}{note}</td></tr>")


def _patch(analysis: Analysis, layer: str) -> str:
    """The style picture, small, with a box the size of one feature's patch at `layer`, in its middle."""
    h, w = analysis.images["style"].shape[-2:]
    th, field = round(THUMB * h / w), receptive_field(layer)
    side = min(field * THUMB / w, THUMB, th) if field < max(h, w) else None  # None: the whole picture
    box = ("left:0;top:0;width:100%;height:100%" if side is None else
           f"left:{(THUMB - side) / 2:.1f}px;top:{(th - side) / 2:.1f}px;width:{side:.1f}px;height:{side:.1f}px")
    return (f"<div class='thumb' style=\"width:{THUMB}px;height:{th}px;background-image:url('style.png')\">"
            f"<div class='box' style='{box}'></div></div>")


def _patch_words(analysis: Analysis, layer: str) -> str:
    side = receptive_field(layer)
    if side >= max(analysis.images["style"].shape[-2:]):
        return f"patches about {side} px wide: the whole picture at this size"
    return f"patches about {side} px wide"


def _how(with_output: bool) -> str:
    if with_output:
        return ("How the % is made: 1 − ‖G<sub>output</sub> − G<sub>style</sub>‖ / ‖G<sub>content</sub> − "
                "G<sub>style</sub>‖, with G the layer's Gram matrix (how strongly each pair of features fires "
                "together; heatmaps below): 0% is no closer to the style than the content image, 100% is the "
                "style's statistics exactly.")
    return ("How the % is made: ‖G<sub>content</sub> − G<sub>style</sub>‖ / √(‖G<sub>content</sub>‖² + "
            "‖G<sub>style</sub>‖²), with G the layer's Gram matrix (how strongly each pair of features fires "
            "together; heatmaps below): 0% is the same statistics, 100% is nothing in common.")


def _measured(analysis: Analysis) -> str:
    if analysis.size_from_output:
        return f"Measured at {analysis.size} px on the long edge, the output's own size."
    if "output" in analysis.files:
        return ("Measured at {} px on the long edge, as asked (the output is {}×{} px)."
                .format(analysis.size, *analysis.files["output"]))
    return f"Measured at {analysis.size} px on the long edge."


def _identity(analysis: Analysis) -> str:
    which = analysis.compared
    rows = "".join(_check_row(view) for view in analysis.layers)
    return f"""<p>Each VGG19 layer turns an image into a cloud of feature vectors, one per position. A style loss
compares the {which} image's cloud with the style's.</p>
<h3>Gram matching is MMD with k(x, y) = (xᵀy)²</h3>
<p>Left: ‖G<sub>x</sub> − G<sub>y</sub>‖²<sub>F</sub> with G = F Fᵀ / M computed from Gram matrices. Right: the
biased MMD² computed from the feature vectors, as a sum of (x<sub>i</sub>ᵀx<sub>j</sub>)² over all pairs. x = the
{which} image, y = the style. Where an image has more than {MAX_PAIRWISE} positions both sides use the same random
subsample of {MAX_PAIRWISE} positions (the pairwise sum is quadratic in positions), so they must still agree.</p>
<table><tr><th>layer</th><th>positions (x × y)</th><th>‖ΔG‖²<sub>F</sub></th><th>MMD²</th>
<th>relative difference</th></tr>
{rows}</table>"""


def number(x: float, digits: int = 4) -> str:
    """x with `digits` significant digits, as 1234 or 0.0123, or as 3.312 × 10<sup>13</sup> when far from 1."""
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    exponent = math.floor(math.log10(abs(x)))
    mantissa = x / 10.0**exponent
    if round(abs(mantissa), digits - 1) >= 10:  # 9.99996 -> 10.000: carry into the exponent
        mantissa, exponent = mantissa / 10, exponent + 1
    sign = "−" if exponent < 0 else ""
    return f"{mantissa:.{digits - 1}f} × 10<sup>{sign}{abs(exponent)}</sup>"


def _cell(x: float, digits: int = 4) -> str:
    """A table cell showing `number(x)`; the exact value in its title (on hover)."""
    return f"<td title='{x!r}'>{number(x, digits)}</td>"


def _check_row(view: LayerView) -> str:
    k = view.check
    positions = f"{k.positions[0]} × {k.positions[1]}{' (subsampled)' if k.subsampled else ''}"
    return (f"<tr><td>{k.layer}</td><td>{positions}</td>{_cell(k.gram_distance, 7)}{_cell(k.mmd, 7)}"
            f"{_cell(k.relative_difference, 2)}</tr>")


def _section(view: LayerView, losses: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in losses)
    rows = "".join(f"<tr><th>{name}</th>{''.join(f'<td>{d[label]:.3f}</td>' for label in losses)}</tr>"
                   for name, d in view.distances.items())
    layer = view.layer
    return (f"<h2>{layer}</h2><p>{layer_words(layer)}, in patches about {receptive_field(layer)} px wide. Gram "
            f"matrix: entry (i, j) is how strongly features i and j fire together, averaged over the picture (log "
            f"colour scale: bright = strong; channels sorted by the style's).</p>"
            f"<img src='gram_{layer}.png'><img src='moments_{layer}.png'>"
            f"<p>Distance to the style, normalised so the content image scores 1:</p>"
            f"<table><tr><th></th>{head}</tr>{rows}</table>")
