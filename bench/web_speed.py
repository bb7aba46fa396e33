"""Seconds per step of a web job against `stylelab run`'s, for the same inputs and settings.

    .venv/bin/python bench/web_speed.py [--size 128] [--steps 10,40] [--repeats 3] [--device cpu]

For each step count, runs alternately (so a busy machine slows both alike) `repeats` times:
  run  the library call `stylelab run` makes (stylize with a step callback) in this process;
  web  a job of the FastAPI app of `stylelab serve` (in this process through TestClient, its event loop on its own
       thread as under uvicorn), followed the way the page follows it: its server-sent events, read to the end.
Both get the same Config: the web form's settings turned into one by the web app's own code. Prints per run the
median of the steps' own seconds (the optimiser step, callback not included) and the wall seconds per step
(first to last step, so callbacks and previews included), the torch thread count each ran with (the web's from
its result's provenance, written in the worker thread), and /proc/loadavg before and after: the machine's load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from fastapi.testclient import TestClient

from stylelab import samples
from stylelab.engine.events import Step
from stylelab.engine.optimize import stylize
from stylelab.web.app import create_app
from stylelab.web.schema import settings_to_config


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


Timing = tuple[float, float, float, int, str]  # median step s, fastest step s, wall s/step, threads, previews


def per_step(seconds: list[float], elapsed: list[float]) -> tuple[float, float, float]:
    """(median step seconds, the fastest step's, wall seconds per step from the first step's end to the last's).
    On a busy machine the fastest step is the nearest to what a step costs alone."""
    wall = (elapsed[-1] - elapsed[0]) / max(1, len(elapsed) - 1)
    return statistics.median(seconds), min(seconds), wall


def run_cli(content: Path, style: Path, settings: dict) -> Timing:
    """`stylelab run`'s library call with a callback: (median step s, wall s/step, torch threads)."""
    from stylelab.image import open_image

    config, _ = settings_to_config(settings)
    seconds: list[float] = []
    elapsed: list[float] = []

    def on_step(step: Step) -> None:
        if isinstance(step, Step):
            seconds.append(step.seconds)
            elapsed.append(time.perf_counter())

    stylize(open_image(str(content), "content image"), [str(style)], config, on_step)
    return (*per_step(seconds, elapsed), torch.get_num_threads(), "")


def run_web(client: TestClient, content: str, style: str, settings: dict) -> Timing:
    """A web job, its events read as the page reads them; the threads are the worker thread's, the previews say
    how many were made and their median encode-and-write seconds."""
    r = client.post("/api/jobs", json={"content": content, "styles": [style], "settings": settings})
    r.raise_for_status()
    job = r.json()["id"]
    steps, encodes = [], []
    with client.stream("GET", f"/api/jobs/{job}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "step" and not event["final"]:
                    steps.append(event)
                if event["type"] == "preview":
                    encodes.append(event["encode_s"])
                if event["type"] == "end" and event["state"] != "done":
                    raise RuntimeError(f"web job {job} {event['state']}: {event['error']}")
    threads = client.get(f"/api/jobs/{job}/provenance").json()["threads"]
    previews = f"{len(encodes)} x {statistics.median(encodes):.4f} s"
    return (*per_step([e["seconds"] for e in steps], [e["elapsed"] for e in steps]), threads, previews)


def upload(client: TestClient, path: Path) -> str:
    r = client.post("/api/uploads", files={"file": (path.name, path.read_bytes(), "image/png")})
    r.raise_for_status()
    return r.json()["sha256"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", default="10,40")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        content, style = Path(tmp) / "content.png", Path(tmp) / "style.png"
        samples.landscape(args.size, args.size * 3 // 4).save(content)
        samples.swirls(args.size, args.size, seed=1).save(style)
        with TestClient(create_app(Path(tmp) / "data"), base_url="http://127.0.0.1") as client:
            ids = upload(client, content), upload(client, style)
            warm = {"size": args.size, "steps": 2, "device": args.device}
            run_cli(content, style, warm), run_web(client, *ids, warm)  # weights loaded, caches warm
            print(f"load before: {loadavg()}")
            print("| steps | run | median s/step | fastest step s | wall s/step | torch threads | previews |\n"
                  "|---|---|---|---|---|---|---|")
            for n in (int(s) for s in args.steps.split(",")):
                settings = {"size": args.size, "steps": n, "device": args.device}
                got: dict[str, list[Timing]] = {"run": [], "web": []}
                for _ in range(args.repeats):
                    got["run"].append(run_cli(content, style, settings))
                    got["web"].append(run_web(client, *ids, settings))
                for name, runs in got.items():
                    for median, fastest, wall, threads, previews in runs:
                        print(f"| {n} | {name} | {median:.4f} | {fastest:.4f} | {wall:.4f} | {threads} | {previews} |")
                ratios = [statistics.median(float(r[k]) for r in got["web"])
                          / statistics.median(float(r[k]) for r in got["run"]) for k in range(3)]
                print(f"| {n} | web / run | " + " | ".join(f"{x:.2f}x" for x in ratios) + " | | |")
            print(f"load after: {loadavg()}")


if __name__ == "__main__":
    main()
