"""Reports on top of the engine, never imported by it.

    compare.py  one run per style loss, the cross-evaluation table and the grid
    explain.py  what the style losses see (the numbers); figures.py draws them (matplotlib), page.py the HTML
"""

__all__ = []
