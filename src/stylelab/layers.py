"""VGG19's layer names and pooling kinds: plain data (no torch), so settings can be checked before torch loads."""

from __future__ import annotations

__all__ = ["CONV_NAMES", "LAYER_NAMES", "POOLINGS", "channels", "pools_before"]

_BLOCKS = (2, 2, 4, 4, 4)  # convs per block
_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
POOLINGS = ("avg", "max", "l2")

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
