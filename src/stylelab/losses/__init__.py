"""The style losses: one registry of names, and one module per family.

    spec.py       the registry (name -> factory, plain Python: no torch until a loss is built) and the
                  `--style-loss` mini-language, "name(k=v,...):weight,..." -> LossTerms
    base.py       what every loss shares: StyleLoss (stats, loss, blend), flattening, position weights, samples
    moments.py    gram, mmd-linear (channel means), bn (means and stds), w2 (Gaussians)
    mmd.py        mmd-poly, mmd-gaussian (kernel MMD² on samples, or random Fourier features)
    transport.py  sliced-wasserstein, histogram (1-D optimal transport by rank); binned.py: the ranks from a
                  histogram of each row (linear work); ranks.py: by a sort
    neighbours.py nn (each output position takes the style vector nearest to the content's, matched once per scale
                  by the loss's guide), remd (relaxed earth mover's distance by cosine, with moments)
    content.py    the content losses (features, self-similarity) and total variation

Importing this package loads no torch: the command line checks a style-loss spec before torch loads.
"""

from __future__ import annotations

from .spec import ALL_LOSSES, STYLE_LOSSES, LossTerm, loss_factory, parse_style_losses, style_loss

__all__ = ["ALL_LOSSES", "STYLE_LOSSES", "LossTerm", "loss_factory", "parse_style_losses", "style_loss"]
