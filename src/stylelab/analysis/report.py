"""`stylelab explain`'s report: the numbers of explain.py drawn by figures.py (matplotlib) and page.py (HTML),
every file written atomically into one folder."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..files import write_atomic, write_text_atomic
from ..image import ImageLike, save_image
from .explain import analyse

__all__ = ["explain"]


def explain(
    content: ImageLike, styles: ImageLike | Sequence[ImageLike], report_dir: str | Path,
    output: ImageLike | None = None, config: Config = Config(), size: int | None = None,
) -> Path:
    """Write report_dir/index.html and its figures; returns the HTML path. `size`: as in `analyse`."""
    from .figures import gram_figure, moments_figure  # matplotlib: imported only for a report
    from .page import page

    out_dir = Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyse(content, styles, output, config, size)
    for name, im in analysis.images.items():
        save_image(im, out_dir / f"{name}.png")
    for view in analysis.layers:
        for kind, draw in (("gram", gram_figure), ("moments", moments_figure)):
            write_atomic(out_dir / f"{kind}_{view.layer}.png", functools.partial(draw, view))
    return write_text_atomic(out_dir / "index.html", page(analysis))
