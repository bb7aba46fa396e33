"""Box constraints: which way of keeping pixels in [0,1] reaches the lowest *clamped* loss per second?

    python bench/box.py [--size 256] [--passes 100] [--style-weight 10] [--pooling avg]

Every method gets the same budget of forward+backward passes of stylelab's own objective (content init,
Tübingen x The Starry Night from ../shared/data). What is scored is the objective at clamp(x, 0, 1), the image
that is saved. Methods:

  clip-at-end   torch L-BFGS, no constraint in the loop, clipped once at the end (stylelab before this study)
  project       torch L-BFGS, x clamped to [0,1] after every step (the curvature pairs see the projected step)
  penalty       torch L-BFGS on objective + κ · mean(dist(x, [0,1])²), κ = 1e3, clipped at the end
  sigmoid       torch L-BFGS on z, x = sigmoid(z) (content init: z = logit(clamp(c, 1e-3, 1 − 1e-3)))
  lbfgs-b       scipy's L-BFGS-B with bounds [0,1] (line search: passes are function evaluations)

Prints a markdown table: clamped loss after 25/50/100 % of the passes, the unclamped in-run loss, seconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.optimize
import torch

from stylelab import Config
from stylelab.engine.optimize import build_model, build_style_losses, compute_targets, objective
from stylelab.image import resize_long_edge, to_tensor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def setup(size: int, config: Config):
    content = resize_long_edge(to_tensor(str(DATA / "content" / "tubingen.jpg")), size).contiguous()
    style = resize_long_edge(to_tensor(str(DATA / "styles" / "starry_night.jpg")), size).contiguous()
    model = build_model(None, config.pooling, torch.device("cpu"))
    losses = build_style_losses(config)
    targets = compute_targets(model, content, [style], config, losses)

    def f(x: torch.Tensor) -> torch.Tensor:
        return objective(model, x, targets, config, losses)[0]

    return content, f


def run_torch(x0: torch.Tensor, f: Callable, passes: int, mode: str
              ) -> tuple[list[tuple[int, float, torch.Tensor]], float]:
    """Torch L-BFGS (no line search, one pass a step) in one of the modes; snapshots of the image per pass."""
    if mode == "sigmoid":
        var = torch.logit(x0.clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
        image = torch.sigmoid
    else:
        var = x0.clone().requires_grad_(True)
        image = lambda v: v  # noqa: E731
    opt = torch.optim.LBFGS([var], lr=1.0, max_iter=1, history_size=20)
    snaps, inrun = [], [0.0]

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        x = image(var)
        loss = f(x)
        inrun[0] = float(loss)
        if mode == "penalty":
            loss = loss + 1e3 * ((x - x.clamp(0, 1)) ** 2).mean()
        loss.backward()
        return loss

    t0 = time.perf_counter()
    for i in range(1, passes + 1):
        opt.step(closure)
        if mode == "project":
            with torch.no_grad():
                var.clamp_(0, 1)
        snaps.append((i, inrun[0], image(var).detach().clone()))
    return snaps, time.perf_counter() - t0


def run_lbfgsb(x0: torch.Tensor, f: Callable, passes: int) -> tuple[list[tuple[int, float, torch.Tensor]], float]:
    shape = x0.shape
    snaps: list[tuple[int, float, torch.Tensor]] = []

    def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(z.astype(np.float32)).view(shape).requires_grad_(True)
        loss = f(x)
        loss.backward()
        snaps.append((len(snaps) + 1, float(loss), x.detach().clone()))
        return float(loss), x.grad.double().numpy().ravel()

    t0 = time.perf_counter()
    scipy.optimize.minimize(fg, x0.double().numpy().ravel(), jac=True, method="L-BFGS-B",
                            bounds=[(0.0, 1.0)] * x0.numel(),
                            options={"maxfun": passes, "maxiter": passes, "maxcor": 20, "ftol": 0, "gtol": 0})
    return snaps, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--passes", type=int, default=100)
    p.add_argument("--style-weight", type=float, default=10.0)
    p.add_argument("--pooling", default="avg")
    p.add_argument("--methods", default="clip-at-end,project,penalty,sigmoid,lbfgs-b")
    args = p.parse_args()
    torch.manual_seed(0)
    config = Config(size=args.size, style_weight=args.style_weight, pooling=args.pooling)
    content, f = setup(args.size, config)
    marks = [max(1, args.passes // 4), args.passes // 2, args.passes]
    print(f"{args.size} px, {args.passes} passes, style weight {args.style_weight}, {args.pooling} pooling")
    print("| method | " + " | ".join(f"clamped loss @{m}" for m in marks) + " | in-run loss @end | s/pass |")
    print("|---|" + "---|" * (len(marks) + 2))
    for method in args.methods.split(","):
        if method == "lbfgs-b":
            snaps, seconds = run_lbfgsb(content, f, args.passes)
        else:
            snaps, seconds = run_torch(content, f, args.passes, method)
        by_pass = {i: (v, x) for i, v, x in snaps}
        cells = []
        for m in marks:
            m = min(m, max(by_pass))
            with torch.no_grad():
                cells.append(f"{float(f(by_pass[m][1].clamp(0, 1))):.4f}")
        last = by_pass[max(by_pass)][0]
        print(f"| {method} | " + " | ".join(cells) + f" | {last:.4f} | {seconds / len(snaps):.3f} |", flush=True)


if __name__ == "__main__":
    main()
