"""Executors run jobs; `batch` drives them against the job store.

    InProcess()           one Worker in this process (default: on 2 cores torch already uses both)
    LocalProcesses(n)     n spawned processes, torch threads split between them
    RayActors(address)    Ray actors (extra stylelab[ray]), each with a Worker; inputs go as bytes, outputs
                          come back as bytes; an actor that dies is replaced and its job retried on another

Every executor has `capacity` (jobs in flight), `submit(spec, inputs)`, `wait() -> JobResult` (the next one to
finish, steps reported meanwhile through `on_step(key, worker, step)`) and `close()`. Only the driver (`batch`)
touches files and the store; workers get bytes and return bytes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import queue as queue_mod
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError
from ..engine.events import Report, ScaleEnd, Step, TileProgress
from ..engine.ray_tiles import joined_ray, ray_module
from ..errors import StylelabError
from ..files import WriteError, remove_partial_writes, write_atomic
from ..image import check_output_path
from .spec import JobInputs, JobResult, JobSpec, Worker, read_inputs
from .store import Store, exclusive

__all__ = ["BatchEvent", "BatchReport", "InProcess", "LocalProcesses", "Progress", "RayActors", "StepFields",
    "StepSink", "batch", "worker_name"]

# (job key, worker name, a step, the end of a scale, or a tile done inside a scale computed in tiles)
StepSink = Callable[[str, str, "Report | TileProgress"], None]
# A Report without its image, as it crosses a process boundary: (scale, i, n, loss, terms, seconds, stopped), with
# stopped None for a Step and a str for a ScaleEnd
StepFields = tuple[int, int, int, float, dict[str, float], float, str | None]
Progress = tuple[str, str, "StepFields | TileProgress"]  # (job key, worker name, step fields or a tile: plain data)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _step_fields(step: Report) -> StepFields:
    """A report without its image: what crosses a process boundary for progress."""
    stopped = step.stopped if isinstance(step, ScaleEnd) else None
    return (step.scale, step.i, step.n, step.loss, step.terms, step.seconds, stopped)


def _step_from(fields: StepFields | TileProgress) -> Report | TileProgress:
    if isinstance(fields, TileProgress):
        return fields
    scale, i, n, loss, terms, seconds, stopped = fields
    # image None: the pixels stay with the worker.
    if stopped is None:
        return Step(scale, i, n, loss, terms, seconds, None)
    return ScaleEnd(scale, i, n, loss, terms, seconds, None, stopped)


# --------------------------------------------------------------------------------------------- in-process


class InProcess:
    """Jobs one at a time in this process; Steps reach the callback as `stylize` gives them (with the image)."""

    capacity = 1

    def __init__(self, threads: int | None = None) -> None:
        self.worker = Worker(threads, name=worker_name())
        self.pending: deque[tuple[JobSpec, JobInputs]] = deque()
        self.on_step: StepSink = lambda key, worker, step: None

    def submit(self, spec: JobSpec, inputs: JobInputs) -> None:
        self.pending.append((spec, inputs))

    def wait(self) -> JobResult:
        spec, inputs = self.pending.popleft()
        def report(event: Report | TileProgress) -> None:
            self.on_step(spec.key, self.worker.name, event)

        return self.worker.run(spec, inputs, report, on_tile=report)

    def close(self) -> None:
        self.pending.clear()


# ------------------------------------------------------------------------------------------ local processes

_process_worker: Worker | None = None
_process_queue: mp.Queue[Progress] | None = None


def _init_process(threads: int, progress: mp.Queue[Progress]) -> None:
    global _process_worker, _process_queue
    _process_worker = Worker(threads, name=worker_name())
    _process_worker.warm()
    _process_queue = progress


def _run_in_process(spec: JobSpec, inputs: JobInputs) -> JobResult:
    worker, progress = _process_worker, _process_queue
    if worker is None or progress is None:
        raise RuntimeError("_run_in_process runs in a LocalProcesses worker, after _init_process")

    def report(step: Report) -> None:
        progress.put((spec.key, worker.name, _step_fields(step)))

    def tile(event: TileProgress) -> None:
        progress.put((spec.key, worker.name, event))

    return worker.run(spec, inputs, report, on_tile=tile)


class LocalProcesses:
    """`n` spawned worker processes on this machine, `threads` torch threads each (default: the cores split)."""

    def __init__(self, n: int, threads: int | None = None) -> None:
        if n < 1:
            raise ConfigError(f"--workers must be >= 1, got {n}")
        self.capacity = n
        self.threads = threads or max(1, (os.cpu_count() or 1) // n)
        self.ctx = mp.get_context("spawn")
        self.progress: mp.Queue[Progress] = self.ctx.Queue()
        self.pool = self._new_pool()
        self.futures: dict[cf.Future, JobSpec] = {}
        self.on_step: StepSink = lambda key, worker, step: None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.capacity, mp_context=self.ctx, initializer=_init_process,
                                      initargs=(self.threads, self.progress))

    def submit(self, spec: JobSpec, inputs: JobInputs) -> None:
        self.futures[self.pool.submit(_run_in_process, spec, inputs)] = spec

    def _drain(self) -> None:
        while True:
            try:
                key, worker, fields = self.progress.get_nowait()
            except queue_mod.Empty:
                return
            self.on_step(key, worker, _step_from(fields))

    def wait(self) -> JobResult:
        while True:
            done, _ = cf.wait(self.futures, timeout=0.1, return_when=cf.FIRST_COMPLETED)
            self._drain()
            if done:
                break
        future = next(iter(done))
        spec = self.futures.pop(future)
        try:
            return future.result()
        except cf.process.BrokenProcessPool:  # a worker process died: this pool is unusable, start another
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            lost = list(self.futures.values())
            self.futures.clear()
            for other in lost:  # jobs that were in flight elsewhere go again (their attempt is not counted)
                self.submit(other, read_inputs(other))
            return JobResult(spec.key, error="the worker process died", permanent=False)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------------ Ray


_ray = ray_module  # the module, or a ConfigError naming the extra (the commands check it before any work)


class RayActors:
    """Ray actors each holding a Worker (VGG19 and its style cache). `address`: None starts a local Ray (or uses
    the one this process already joined), 'auto' joins RAY_ADDRESS / the running cluster, else a cluster address.
    `actors`: how many (default: the cluster's CPUs // `cpus`); each takes `cpus` CPUs and as many torch threads.
    `job_timeout`: seconds after which a job's actor is killed and the job fails (retried); None: no limit."""

    def __init__(self, address: str | None = None, actors: int | None = None, cpus: int = 1,
                 init_kwargs: dict | None = None, job_timeout: float | None = None) -> None:
        ray = self.ray = joined_ray(address, init_kwargs)
        self.cpus, self.job_timeout = cpus, job_timeout
        total = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = actors or max(1, total // cpus)
        self.actor_class = ray.remote(num_cpus=cpus, max_restarts=0)(_Actor)
        self.sink = ray.remote(num_cpus=0)(_Sink).remote()
        self.actors = [self._new_actor() for _ in range(self.capacity)]
        self.idle = list(self.actors)
        self.running: dict = {}  # object ref -> (spec, actor)
        self.on_step: StepSink = lambda key, worker, step: None

    def _new_actor(self):
        return self.actor_class.remote(self.cpus, self.sink)

    def _replace(self):
        actor = self._new_actor()
        self.actors.append(actor)
        return actor

    def pids(self) -> list[int]:
        """Process ids of the actors (tests kill one). A busy actor answers after its current job."""
        return self.ray.get([a.pid.remote() for a in self.actors])

    def submit(self, spec: JobSpec, inputs: JobInputs) -> None:
        actor = self.idle.pop()
        self.running[actor.run.remote(spec, inputs)] = (spec, actor, time.monotonic())

    def _drain(self) -> None:
        for key, worker, fields in self.ray.get(self.sink.drain.remote()):
            self.on_step(key, worker, _step_from(fields))

    def wait(self) -> JobResult:
        ray = self.ray
        while True:
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=0.1)
            if ready:
                break  # its steps are drained below, after its result: one round trip to the sink per job
            self._drain()
            if self.job_timeout is not None:
                late = [ref for ref, (_, _, t0) in self.running.items() if time.monotonic() - t0 > self.job_timeout]
                if late:
                    spec, actor, _ = self.running.pop(late[0])
                    ray.kill(actor)
                    self.actors.remove(actor)
                    self.idle.append(self._replace())
                    return JobResult(spec.key, error=f"timed out after {self.job_timeout:g} s", permanent=False)
        ref = ready[0]
        spec, actor, _ = self.running.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # the actor's process died: replace it, retry the job
            self.actors.remove(actor)
            actor = self._replace()
            result = JobResult(spec.key, error="the Ray worker died: " + " ".join(str(exc).split())[:200],
                               permanent=False)
        except ray.exceptions.RayError as exc:
            result = JobResult(spec.key, error="Ray: " + " ".join(str(exc).split())[:200], permanent=False)
        self._drain()
        self.idle.append(actor)
        return result

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.ray.kill(self.sink)
        self.actors, self.idle, self.running = [], [], {}


class _Sink:
    """Steps from the actors, collected for the driver (one small actor, no shared filesystem)."""

    def __init__(self) -> None:
        self.items: list = []

    def put(self, item) -> None:
        self.items.append(item)

    def drain(self) -> list:
        items, self.items = self.items, []
        return items


class _Actor:
    def __init__(self, threads: int, sink) -> None:
        self.worker = Worker(threads, name=worker_name())
        self.worker.warm()
        self.sink = sink

    def pid(self) -> int:
        return os.getpid()

    def run(self, spec: JobSpec, inputs: JobInputs) -> JobResult:
        def report(step: Report) -> None:
            self.sink.put.remote((spec.key, self.worker.name, _step_fields(step)))

        def tile(event: TileProgress) -> None:
            self.sink.put.remote((spec.key, self.worker.name, event))

        return self.worker.run(spec, inputs, report, on_tile=tile)


# ---------------------------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class BatchEvent:
    """What `batch` reports to its callback, synchronously, in the calling thread (as `stylize` reports Steps).
    kind: 'plan' (before any job: total, skipped), 'start', 'step' (`step`: the Step; its image is None when the
    job runs in another process), 'tile' (`tile`: a TileProgress inside a scale computed in tiles), 'retry' (a
    failed attempt that will run again), 'done', 'failed'."""

    kind: str
    key: str | None
    total: int
    done: int
    failed: int
    skipped: int
    step: Report | None = None
    tile: TileProgress | None = None
    result: JobResult | None = None
    worker: str = ""


@dataclass
class BatchReport:
    """Outcome of `batch`: keys by outcome and the results of the jobs run (in finishing order)."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    results: list[JobResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def batch(jobs: Iterable[JobSpec], output_dir: str | os.PathLike, *, executor=None,
          callback: Callable[[BatchEvent], None] | None = None, retries: int = 1,
          jobs_inputs: dict[str, JobInputs] | None = None) -> BatchReport:
    """Run `jobs` into `output_dir` (outputs at output_dir / spec.output) with a job store there: done jobs whose
    output is unchanged are skipped; a failed attempt is retried up to `retries` times unless the failure was a
    bad input or setting (it would fail again). One job's failure never stops the others. The batch holds the
    folder's lock (`store.exclusive`) while it runs.
    Raises ConfigError before any work for duplicate or unwritable output names, StoreBusy while another batch
    runs on the folder and StoreError for a file in its place that is not a job store."""
    folder = Path(output_dir)
    if not folder.is_dir():
        raise ConfigError(f"output folder does not exist: {folder}")
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an integer >= 0, got {retries!r}")
    specs = list(jobs)
    by_key: dict[str, JobSpec] = {}
    for spec in specs:
        if spec.key in by_key:
            raise ConfigError(f"two jobs write the same output {spec.key!r}; give them different output names")
        rel = Path(spec.key)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ConfigError(f"output name {spec.key!r} must be a relative path inside the output folder")
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        check_output_path(folder / rel, spec.bit_depth)
        by_key[spec.key] = spec
    own = executor is None
    executor = InProcess() if own else executor
    emit = callback or (lambda event: None)
    report = BatchReport()
    with exclusive(folder), Store(folder) as store:
        remove_partial_writes(folder)
        to_run, report.skipped = store.plan([(s.key, s.to_dict(), s.digest()) for s in specs])
        total = len(specs)

        def event(kind: str, key: str | None = None, **kw) -> None:
            emit(BatchEvent(kind, key, total, len(report.done), len(report.failed), len(report.skipped), **kw))

        def on_step(key: str, worker: str, step: Report | TileProgress) -> None:
            if isinstance(step, TileProgress):
                event("tile", key, tile=step, worker=worker)
            else:
                event("step", key, step=step, worker=worker)

        executor.on_step = on_step
        event("plan")
        pending = deque(to_run)
        tries = dict.fromkeys(to_run, 0)
        in_flight = 0
        try:
            while pending or in_flight:
                while pending and in_flight < executor.capacity:
                    key = pending.popleft()
                    spec = by_key[key]
                    store.start(key)
                    tries[key] += 1
                    event("start", key)
                    try:
                        inputs = (jobs_inputs or {}).get(key) or read_inputs(spec)
                    except StylelabError as exc:  # a missing input fails its own job, nothing is submitted
                        _record(store, report, JobResult(key, error=str(exc), permanent=True), folder, event,
                                final=True)
                        continue
                    executor.submit(spec, inputs)
                    in_flight += 1
                if not in_flight:  # every job taken this round failed before it could be submitted
                    continue
                result = executor.wait()
                in_flight -= 1
                again = not result.ok and not result.permanent and tries[result.key] <= retries
                _record(store, report, result, folder, event, final=not again)
                if again:
                    pending.append(result.key)
        finally:
            executor.on_step = lambda key, worker, step: None
            if own:
                executor.close()
    return report


def _record(store: Store, report: BatchReport, result: JobResult, folder: Path, event: Callable[..., None],
            final: bool) -> None:
    report.results.append(result)
    data, sha256 = result.data, result.sha256
    if result.ok and data is not None and sha256 is not None:  # a finished job carries both
        try:
            write_atomic(folder / result.key, lambda f: f.write(data))
        except WriteError as exc:
            result = JobResult(result.key, seconds=result.seconds, steps=result.steps, worker=result.worker,
                               error=str(exc), permanent=True)
            report.results[-1] = result
        else:
            store.finish(result.key, sha256, result.seconds, result.losses, result.steps, result.worker)
            report.done.append(result.key)
            event("done", result.key, result=result, worker=result.worker)
            return
    error = result.error or "the job gave no output"
    store.fail(result.key, error, result.permanent, result.seconds, final=final, worker=result.worker)
    if final:
        report.failed.append(result.key)
    event("failed" if final else "retry", result.key, result=result, worker=result.worker)
