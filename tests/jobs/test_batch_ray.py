"""The Ray executor on a local cluster: same pixels as in-process, and a killed actor's job retried elsewhere."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stylelab
from stylelab import Config, JobSpec
from stylelab.engine.events import Step
from stylelab.jobs.store import Store

ray = pytest.importorskip("ray")

JOB_TIMEOUT_S = 120  # a bound on a hung actor (the job fails instead of the test hanging), not a measurement


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def jobs(images: Path, n: int, steps: int) -> list[JobSpec]:
    config = Config(size=48, steps=steps, device="cpu", seed=3)
    return [JobSpec(str(images / f"c{k}.png"), (str(images / "style.png"),), config, f"c{k}.png") for k in range(n)]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_ray_gives_the_same_pixels_as_in_process(cluster, images: Path, tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    local.mkdir()
    remote.mkdir()
    batch = jobs(images, 2, steps=2)
    threads = __import__("torch").get_num_threads()
    try:  # the actors run torch with 1 thread each; so does the reference
        assert stylelab.batch(batch, local, executor=stylelab.InProcess(threads=1)).ok
    finally:
        __import__("torch").set_num_threads(threads)
    executor = stylelab.RayActors(actors=2, job_timeout=JOB_TIMEOUT_S)
    workers = set()
    try:
        report = stylelab.batch(batch, remote, executor=executor,
                                callback=lambda e: workers.add(e.worker) if e.kind == "done" else None)
    finally:
        executor.close()
    assert report.ok and sorted(report.done) == ["c0.png", "c1.png"]
    for job in batch:
        assert np.array_equal(pixels(local / job.output), pixels(remote / job.output))
    assert all(str(os.getpid()) != w.rsplit(":", 1)[1] for w in workers)  # the work ran in the actors


def test_killed_actor_mid_job_is_replaced_and_the_batch_completes(cluster, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    executor = stylelab.RayActors(actors=2, job_timeout=JOB_TIMEOUT_S)
    actor_pids = set(executor.pids())  # asked before any job: a busy actor answers only after its job
    killed: list[tuple[str, int]] = []

    def kill_once(event) -> None:
        if event.kind == "step" and not killed and isinstance(event.step, Step) and event.step.i < event.step.n:
            pid = int(event.worker.rsplit(":", 1)[1])
            assert pid in actor_pids
            os.kill(pid, signal.SIGKILL)
            killed.append((event.key, pid))

    try:
        report = stylelab.batch(jobs(images, 3, steps=6), out, executor=executor, callback=kill_once, retries=1)
    finally:
        executor.close()
    assert killed and report.ok and sorted(report.done) == ["c0.png", "c1.png", "c2.png"]
    _, pid = killed[0]
    died = [r.key for r in report.results if r.error is not None]
    assert len(died) == 1 and all("Ray worker died" in r.error for r in report.results if r.error)
    row = Store(out).row(died[0])  # the job that was running in the killed actor ran again in another
    assert row.state == "done" and row.attempts == 2 and int(row.worker.rsplit(":", 1)[1]) != pid
