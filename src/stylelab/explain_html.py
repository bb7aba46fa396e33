"""The page of `stylelab explain`: an Analysis -> one self-contained HTML document (figures by file name)."""

from __future__ import annotations

import html

from .explain import MAX_PAIRWISE, Analysis, LayerView

_STYLE = """body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"""


def page(analysis: Analysis) -> str:
    images = analysis.images
    h, w = next(iter(images.values())).shape[-2:]
    which = analysis.compared
    checks = "".join(_check_row(view) for view in analysis.layers)
    sections = "".join(_section(view, analysis.losses) for view in analysis.layers)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>stylelab explain</title>
<style>{_STYLE}</style></head><body>
<h1>What the style losses see</h1>
<p>{" ".join(f"<img src='{n}.png' height=160 title='{n}'>" for n in images)}<br>
Images: {", ".join(images)} ({w}×{h} px). Each VGG19 layer turns an image into a cloud of
feature vectors, one per position. A style loss compares the {which} image's cloud with the style's.</p>
<h2>Gram matching is MMD with k(x, y) = (xᵀy)²</h2>
<p>Left: ‖G<sub>x</sub> − G<sub>y</sub>‖²<sub>F</sub> with G = F Fᵀ / M computed from Gram matrices. Right: the
biased MMD² computed from the feature vectors, as a sum of (x<sub>i</sub>ᵀx<sub>j</sub>)² over all pairs. x = the
{which} image, y = the style. Where an image has more than {MAX_PAIRWISE} positions both sides use the same random
subsample of {MAX_PAIRWISE} positions (the pairwise sum is quadratic in positions), so they must still agree.</p>
<table><tr><th>layer</th><th>positions (x × y)</th><th>‖ΔG‖²<sub>F</sub></th><th>MMD²</th>
<th>relative difference</th></tr>
{checks}</table>
{sections}
</body></html>"""


def _check_row(view: LayerView) -> str:
    k = view.check
    positions = f"{k.positions[0]} × {k.positions[1]}{' (subsampled)' if k.subsampled else ''}"
    return (f"<tr><td>{k.layer}</td><td>{positions}</td><td>{k.gram_distance:.6e}</td><td>{k.mmd:.6e}</td>"
            f"<td>{k.relative_difference:.1e}</td></tr>")


def _section(view: LayerView, losses: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in losses)
    rows = "".join(f"<tr><th>{name}</th>{''.join(f'<td>{d[label]:.3f}</td>' for label in losses)}</tr>"
                   for name, d in view.distances.items())
    layer = view.layer
    return (f"<h2>{layer}</h2><img src='gram_{layer}.png'><img src='moments_{layer}.png'>"
            f"<p>Distance to the style, normalised so the content image scores 1:</p>"
            f"<table><tr><th></th>{head}</tr>{rows}</table>")
