"""Per-job overhead of `stylelab batch` vs a shell loop of `stylelab run`, of the Ray executor, and Ray scaling.

Overhead = everything but the optimiser steps (start-up, weights, decoding, style targets, encoding):
  batch / Ray:  per job, (finished - started) from the job store (the driver's view: submit to output written)
                minus the job's step time t_steps (also from the store); plus the command's start-up spread
                over the jobs (wall time of the command - sum of job times)
  shell loop:   per `stylelab run` process, its wall time minus its steps (steps x the median s/step it prints)
Scaling: the same jobs on a ray.cluster_utils.Cluster of 2 nodes x 1 CPU against 1 node x 1 CPU (1 actor per
CPU, torch 1 thread each): throughput = jobs / wall time of the batch.
Round trip (Ray's own floor per job): a no-op actor method taking 100 KB and returning 150 KB of bytes (a job's
input and output sizes here), median of 50 calls, on a local 1-CPU Ray.
Floor (no Ray): what this machine gives 2 workers at all: 2 independent processes, each the in-process executor
with 1 torch thread on every other job, started together (after loading), against 1 such process on all the jobs.

    PYTHONPATH=src python bench/batch.py --jobs 24 --loop-jobs 6 --size 256 --steps 2 --skip ray
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stylelab import Config, JobSpec, samples
from stylelab.jobs.store import Store

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def make_inputs(folder: Path, n: int, size: int) -> tuple[list[Path], Path]:
    folder.mkdir(parents=True, exist_ok=True)
    contents = []
    for k in range(n):
        p = folder / f"c{k:02d}.png"
        samples.landscape(size, size * 3 // 4).rotate(k * 3).save(p)
        contents.append(p)
    style = folder / "style.png"
    samples.swirls(size, size, seed=1).save(style)
    return contents, style


def store_overhead(out: Path, wall: float) -> dict[str, float]:
    rows = [r for r in Store(out, create=False).rows() if r.state == "done"]
    n = len(rows)
    job_time = [r.finished - r.started for r in rows]
    steps = [r.seconds["steps"] for r in rows]
    per_job = [t - s for t, s in zip(job_time, steps)]
    return {
        "jobs": n, "wall_s": wall,
        "overhead_per_job_s": statistics.mean(per_job),  # in the driver, per job
        "overhead_median_s": statistics.median(per_job),  # without the first job's one-off costs
        "startup_s": wall - sum(job_time) if n else float("nan"),  # for a sequential run: process, weights, Ray
        "load_s": statistics.mean(r.seconds["load"] for r in rows),
        "targets_s": statistics.mean(r.seconds["targets"] for r in rows),
        "steps_s": statistics.mean(steps),
        "encode_s": statistics.mean(r.seconds["encode"] for r in rows),
    }


def bench_batch_cli(contents: list[Path], style: Path, out: Path, args) -> dict[str, float]:
    cmd = [sys.executable, "-m", "stylelab", "batch", *map(str, contents), "--style", str(style), "-o", str(out),
           "--size", str(args.size), "--steps", str(args.steps), "--device", "cpu", "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=ENV, check=True)
    return store_overhead(out, time.perf_counter() - t0)


def bench_shell_loop(contents: list[Path], style: Path, out: Path, args) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    overhead, walls = [], []
    for c in contents:
        cmd = [sys.executable, "-m", "stylelab", "run", str(c), str(style), "-o", str(out / f"{c.stem}.png"),
               "--size", str(args.size), "--steps", str(args.steps), "--device", "cpu"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        m = re.search(r"(\d+) steps, median ([\d.]+) s/step", done.stderr)
        steps = int(m.group(1)) * float(m.group(2))
        walls.append(wall)
        overhead.append(wall - steps)
    return {"jobs": len(contents), "wall_s": sum(walls), "overhead_per_job_s": statistics.mean(overhead)}


def bench_local(specs: list[JobSpec], out: Path, threads: int) -> dict[str, float]:
    """The in-process executor through the same driver as Ray, with `threads` torch threads (1: like an actor)."""
    import torch

    import stylelab

    before = torch.get_num_threads()
    try:
        executor = stylelab.InProcess(threads=threads)
        executor.worker.warm()
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        assert stylelab.batch(specs, out, executor=executor).ok
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    return store_overhead(out, wall)


def bench_ray(specs: list[JobSpec], out: Path, nodes: int, cpus_per_node: int) -> dict[str, float]:
    import ray
    from ray.cluster_utils import Cluster

    import stylelab

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus_per_node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        executor = stylelab.RayActors(cpus=1)
        executor.pids()  # actors up, weights loaded: start-up is not part of the batch's throughput
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        report = stylelab.batch(specs, out, executor=executor)
        wall = time.perf_counter() - t0
        executor.close()
        assert report.ok, report.results
    finally:
        ray.shutdown()
        cluster.shutdown()
    result = store_overhead(out, wall)
    result.update(actors=executor.capacity, throughput_jobs_per_s=len(specs) / wall)
    return result


def bench_floor(args) -> dict[str, float]:
    def together(parts: list[tuple[int, int]]) -> float:
        start_at = time.time() + 25  # every process has loaded torch and the weights by then
        procs = [subprocess.Popen([sys.executable, __file__, "--jobs", str(args.jobs), "--size", str(args.size),
                                   "--steps", str(args.steps), "--worker", f"{k}/{n}@{start_at}"],
                                  env=ENV, stdout=subprocess.PIPE, text=True) for k, n in parts]
        ends = [float(p.communicate()[0].split()[-1]) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        return args.jobs / (max(ends) - start_at)

    one = together([(0, 1)])
    two = together([(0, 2), (1, 2)])
    return {"one_process_jobs_per_s": one, "two_processes_jobs_per_s": two, "floor_scaling": two / one}


def bench_round_trip() -> dict[str, float]:
    import ray

    class Echo:
        def call(self, data: bytes) -> bytes:
            return data + bytes(50_000)

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(Echo).remote()
        payload = os.urandom(100_000)
        ray.get(actor.call.remote(payload))
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            ray.get(actor.call.remote(payload))
            times.append(time.perf_counter() - t0)
    finally:
        ray.shutdown()
    return {"round_trip_median_s": statistics.median(times), "round_trip_min_s": min(times)}


def run_worker(specs: list[JobSpec], out: Path, which: str) -> None:
    """--worker K/N@T: jobs K, K+N, ... through the in-process executor (1 thread), starting at time T."""
    import torch

    import stylelab

    part, start_at = which.split("@")
    k, n = map(int, part.split("/"))
    torch.set_num_threads(1)
    executor = stylelab.InProcess(threads=1)
    executor.worker.warm()
    out.mkdir(parents=True, exist_ok=True)
    time.sleep(max(0.0, float(start_at) - time.time()))
    assert stylelab.batch(specs[k::n], out, executor=executor).ok
    print(time.time())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--loop-jobs", type=int, default=24, help="contents for the shell loop (each is a process)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: loop,batch,local1,ray,scaling,rpc,floor")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a process of the floor part
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory(prefix="stylelab-bench-batch-") as tmp:
        tmp = Path(tmp)
        contents, style = make_inputs(tmp / "in", args.jobs, args.size)
        config = Config(size=args.size, steps=args.steps, device="cpu")
        specs = [JobSpec(str(c), (str(style),), config, f"{c.stem}.png") for c in contents]
        if args.worker:
            run_worker(specs, tmp / "out", args.worker)
            return
        print(f"load: {os.getloadavg()}", flush=True)
        if "batch" not in skip:
            print("batch (in-process)", bench_batch_cli(contents, style, tmp / "batch", args), flush=True)
        if "loop" not in skip:
            print("shell loop of run", bench_shell_loop(contents[: args.loop_jobs], style, tmp / "loop", args),
                  flush=True)
        if "local1" not in skip:
            print("in-process API, 1 thread", bench_local(specs, tmp / "local1", 1), flush=True)
        if "ray" not in skip:
            print("ray 1 node x 2 CPU", bench_ray(specs, tmp / "ray2", 1, 2), flush=True)
        if "scaling" not in skip:
            one = bench_ray(specs, tmp / "ray1x1", 1, 1)
            print("ray 1 node x 1 CPU", one, flush=True)
            two = bench_ray(specs, tmp / "ray2x1", 2, 1)
            print("ray 2 nodes x 1 CPU", two, flush=True)
            print(f"scaling 2 nodes / 1 node: {two['throughput_jobs_per_s'] / one['throughput_jobs_per_s']:.2f}x")
        if "rpc" not in skip:
            print("Ray actor round trip, 100 KB in / 150 KB out", bench_round_trip(), flush=True)
        if "floor" not in skip:
            print("floor: 2 processes / 1, no Ray", bench_floor(args), flush=True)
        print(f"load: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
