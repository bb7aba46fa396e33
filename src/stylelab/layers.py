"""VGG19's layer names and pooling kinds: plain data (no torch), so settings can be checked before torch loads."""

from __future__ import annotations

__all__ = ["CONV_NAMES", "LAYER_NAMES", "POOLINGS", "TILE_GRID", "channels", "pools_before", "receptive_field",
           "tile_margin"]

_BLOCKS = (2, 2, 4, 4, 4)  # convs per block
_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
POOLINGS = ("avg", "max", "l2")
# px: the stride of the deepest layer VGG19 offers (four 2x2 pools): tiles start on this grid, so that every pool
# of a tile sees the same 2x2 cells as the pool of the whole image
TILE_GRID = 16

# Canonical names in network order: conv -> relu for each conv, a pool closing each block.
LAYER_NAMES: tuple[str, ...] = tuple(
    name
    for b, n_convs in enumerate(_BLOCKS, start=1)
    for name in (
        *(f"{kind}{b}_{k}" for k in range(1, n_convs + 1) for kind in ("conv", "relu")),
        f"pool{b}",
    )
)
CONV_NAMES: tuple[str, ...] = tuple(n for n in LAYER_NAMES if n.startswith("conv"))


def pools_before(name: str) -> int:
    """Number of 2x2 pools between the input and layer `name` (its stride is 2**pools)."""
    return sum(1 for n in LAYER_NAMES[: LAYER_NAMES.index(name)] if n.startswith("pool"))


def channels(name: str) -> int:
    """Channels of layer `name`: 64, 128, 256, 512, 512 in blocks 1-5."""
    return _CHANNELS[int(name[-1]) if name.startswith("pool") else int(name[-3])]  # relu3_2 -> 3, pool4 -> 4


def receptive_field(name: str) -> int:
    """Pixels on a side that one position of layer `name` sees: each 3x3 conv adds 2 strides, each 2x2 pool one
    (relu5_1: 156 px)."""
    field, stride = 1, 1
    for n in LAYER_NAMES[: LAYER_NAMES.index(name) + 1]:
        if n.startswith("conv"):
            field += 2 * stride
        elif n.startswith("pool"):
            field += stride
            stride *= 2
    return field


def tile_margin(names: tuple[str, ...] | list[str] | set[str]) -> int:
    """px of image a tile needs around its core so that every feature of `names` inside the core is exactly the
    whole image's: how far the deepest layer's field reaches beyond its own cell, rounded up to TILE_GRID
    (relu5_1: 70 px -> 80; relu4_2: 38 -> 48)."""
    reach = max((receptive_field(n) - 2 ** pools_before(n)) / 2 for n in names)
    return max(TILE_GRID, -(-int(reach) // TILE_GRID) * TILE_GRID)
