"""How soon a web job shows something: from its start to the feed-forward first preview, and to its first step.

    .venv/bin/python bench/fast_preview.py [--size 512] [--steps 1] [--repeats 3] [--device cpu] [--same-style]

Jobs of the FastAPI app of `stylelab serve` (in this process through TestClient, as bench/web_speed.py runs them)
on a drawn content image at --size px (4:3) and a style drawn anew for each job (its targets computed, as for a
style not used before; --same-style: one style, its targets from the app's cache after the first job), alternately
with the feed-forward preview (stylelab[fast]) and without it (stylelab.engine.fast.preview made to answer None, as
when the extra is not installed), so a busy machine slows both alike. Every event is timestamped as the worker
publishes it (the runner's `event` wrapped in this process; no polling delay); times count from the job's 'running'
state event. A first job, not counted, loads the weights and the ONNX sessions. Prints a markdown table: per job,
seconds to the fast preview, the preview's own seconds (the network and its resize, before the JPEG), and seconds
to the first step's event; then the medians, and /proc/loadavg before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from stylelab import samples
from stylelab.engine import fast
from stylelab.web.app import create_app


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def stamp_events(runner) -> dict[int, list[tuple[float, dict]]]:
    """(perf_counter, event) of every event the runner publishes from now on, by job id."""
    stamps: dict[int, list[tuple[float, dict]]] = defaultdict(list)
    publish = runner.event

    def stamped(job_id: int, event: dict) -> None:
        stamps[job_id].append((time.perf_counter(), event))
        publish(job_id, event)

    runner.event = stamped
    return stamps


@contextlib.contextmanager
def no_fast_preview() -> Iterator[None]:
    """Jobs as without stylelab[fast]: no feed-forward preview."""
    preview = fast.preview
    fast.preview = lambda *args, **kwargs: None
    try:
        yield
    finally:
        fast.preview = preview


def run_job(client: TestClient, stamps: dict, content: str, style: str, settings: dict
            ) -> tuple[float | None, float | None, float]:
    """(s to the fast preview or None, its own seconds or None, s to the first step), from the 'running' event."""
    r = client.post("/api/jobs", json={"content": content, "styles": [style], "settings": settings})
    r.raise_for_status()
    job = r.json()["id"]
    with client.stream("GET", f"/api/jobs/{job}/events") as stream:  # to its end, as the page follows it
        for line in stream.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "end" and event["state"] != "done":
                    raise RuntimeError(f"job {job} {event['state']}: {event['error']}")
    events = stamps[job]
    start = next(t for t, e in events if e["type"] == "state" and e["state"] == "running")
    quick = next(((t, e) for t, e in events if e["type"] == "preview" and e["fast"]), None)
    step = next(t for t, e in events if e["type"] == "step")
    return (None, None, step - start) if quick is None else (quick[0] - start, quick[1]["seconds"], step - start)


def upload(client: TestClient, path: Path) -> str:
    r = client.post("/api/uploads", files={"file": (path.name, path.read_bytes(), "image/png")})
    r.raise_for_status()
    return r.json()["sha256"]


def new_style(client: TestClient, folder: Path, size: int, seed: int) -> str:
    path = folder / f"style{seed}.png"
    samples.swirls(size, size, seed=seed).save(path)
    return upload(client, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--same-style", action="store_true", help="one style for every job (its targets cached)")
    args = p.parse_args()
    fast.require("bench/fast_preview.py")
    settings = {"size": args.size, "steps": args.steps, "device": args.device}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        content = folder / "content.png"
        samples.landscape(args.size, args.size * 3 // 4).save(content)
        with TestClient(create_app(folder / "data"), base_url="http://127.0.0.1") as client:
            stamps = stamp_events(client.app.state.runner)  # type: ignore[attr-defined]
            image, seeds = upload(client, content), iter(range(1, 2 * args.repeats + 2))

            def job() -> tuple[float | None, float | None, float]:
                style = new_style(client, folder, args.size, 1 if args.same_style else next(seeds))
                return run_job(client, stamps, image, style, settings)

            job()  # weights and ONNX sessions loaded
            print(f"load before: {loadavg()}")
            print(f"{args.size} px, {args.steps} step(s) at the first scale, {args.device}, "
                  f"{'the same style' if args.same_style else 'a new style'} each job\n")
            print("| job | fast preview | to fast preview s | fast preview's own s | to step 1 s |\n"
                  "|---|---|---|---|---|")
            got: dict[str, list[tuple[float | None, float | None, float]]] = {"on": [], "off": []}
            for k in range(args.repeats):
                got["on"].append(job())
                with no_fast_preview():
                    got["off"].append(job())
                for mode in ("on", "off"):
                    quick, own, step = got[mode][-1]
                    print(f"| {k + 1} | {mode} | {'–' if quick is None else f'{quick:.3f}'} | "
                          f"{'–' if own is None else f'{own:.3f}'} | {step:.3f} |")
            for mode, runs in got.items():
                quicks = [q for q, _, _ in runs if q is not None]
                owns = [o for _, o, _ in runs if o is not None]
                print(f"| median | {mode} | {f'{statistics.median(quicks):.3f}' if quicks else '–'} | "
                      f"{f'{statistics.median(owns):.3f}' if owns else '–'} | "
                      f"{statistics.median(s for _, _, s in runs):.3f} |")
            print(f"\nload after: {loadavg()}")


if __name__ == "__main__":
    main()
