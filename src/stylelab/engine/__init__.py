"""The engine: a picture optimised against VGG19 features.

    features.py    VGG19 with canonical layer names, truncated at the deepest layer asked for; weights
    optimize.py    schedule, targets, objective, the optimiser loop, stop rules; stylize(), synthesize()
    color.py       YUV, luminance-only transfer, colour matching, palette-only recolouring
    masks.py       spatial control: masks -> per-position weights at each layer
    checkpoint.py  the optimisation state on disk, atomically, with a fingerprint of the run
    memory.py      a run's peak memory estimated from its schedule, before any work
    fast.py        the feed-forward first picture (Magenta's arbitrary-style network, stylelab[fast])

Uses the shared base (config, image, files, layers) and the losses; reports through callbacks, never prints.
"""

__all__ = []
