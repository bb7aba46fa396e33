"""stylelab batch: resumable job store, retries, kill -9 safety, manifests, the style-target cache."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import child_env
from PIL import Image

import stylelab
from stylelab import Config, JobSpec
from stylelab.cli import main
from stylelab.engine.events import Step, TileProgress
from stylelab.jobs.executors import LocalProcesses
from stylelab.jobs.spec import StyleCache, read_inputs, run_job
from stylelab.jobs.store import STORE_NAME, Store, file_sha256

CONFIG = Config(size=48, steps=2, device="cpu")


def specs(images: Path, n: int = 2, config: Config = CONFIG) -> list[JobSpec]:
    return [JobSpec(str(images / f"c{k}.png"), (str(images / "style.png"),), config, f"c{k}_style.png")
            for k in range(n)]


class Steps:
    """Counts optimiser steps reported through the batch callback (final reports are not steps)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, event: stylelab.BatchEvent) -> None:
        if event.kind == "step" and isinstance(event.step, Step):
            self.n += 1


def test_rerun_skips_done_jobs_and_redoes_changed_or_missing_outputs(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    jobs = specs(images, 3)
    first = Steps()
    report = stylelab.batch(jobs, out, callback=first)
    assert report.ok and sorted(report.done) == [j.output for j in jobs]
    assert first.n == 3 * CONFIG.steps
    rows = {r.key: r for r in Store(out).rows()}
    assert all(r.state == "done" and r.sha256 == file_sha256(out / r.key) for r in rows.values())

    again = Steps()
    report = stylelab.batch(jobs, out, callback=again)
    assert again.n == 0 and report.done == [] and sorted(report.skipped) == sorted(rows)

    Image.new("RGB", (48, 36), "red").save(out / "c1_style.png")  # changed by someone
    (out / "c2_style.png").unlink()  # lost
    third = Steps()
    report = stylelab.batch(jobs, out, callback=third)
    assert sorted(report.done) == ["c1_style.png", "c2_style.png"] and report.skipped == ["c0_style.png"]
    assert third.n == 2 * CONFIG.steps
    assert file_sha256(out / "c1_style.png") == Store(out).row("c1_style.png").sha256


@pytest.mark.parametrize("where", ["in-process", "a worker process"])
def test_a_job_in_tiles_reports_its_tiles(images: Path, tmp_path: Path, where: str) -> None:
    """Inside a scale computed in tiles the batch hears each tile of each sweep (from another process too), as
    `stylelab run` shows them: a print-size job's steps take minutes."""
    out = tmp_path / "out"
    out.mkdir()
    config = Config(size=96, steps=1, optimizer="adam", multiscale=False, tile=64, device="cpu")
    executor = None if where == "in-process" else LocalProcesses(1, threads=1)
    events: list[stylelab.BatchEvent] = []
    try:
        report = stylelab.batch(specs(images, 1, config), out, executor=executor, callback=events.append)
    finally:
        if executor is not None:
            executor.close()
    assert report.ok
    tiles = [e for e in events if e.kind == "tile"]
    assert tiles and all(e.key == "c0_style.png" and isinstance(e.tile, TileProgress) for e in tiles)
    # 96 x 72 px: 2 x 2 cores of 64 px; the step sweeps four times (its normalisers too), its final report three
    ends = [(e.tile.sweep, e.tile.sweeps) for e in tiles if e.tile.phase == "step" and e.tile.tile == 4]
    assert ends == [(1, 4), (2, 4), (3, 4), (4, 4), (1, 3), (2, 3), (3, 3)]
    assert any(e.tile.phase == "targets" for e in tiles)


def test_changed_settings_make_a_new_job(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stylelab.batch(specs(images, 1), out)
    counter = Steps()
    report = stylelab.batch(specs(images, 1, Config(size=48, steps=3, device="cpu")), out, callback=counter)
    assert report.done == ["c0_style.png"] and counter.n == 3


def test_failed_attempt_is_retried_up_to_retries(images: Path, tmp_path: Path) -> None:
    class FailFirstAttempts:
        def __init__(self, n: int) -> None:
            self.left = n

        def __call__(self, event) -> None:
            if event.kind == "step" and self.left > 0:
                self.left -= 1
                raise RuntimeError("flaky worker")

    out = tmp_path / "out"
    out.mkdir()
    job = specs(images, 1)
    report = stylelab.batch(job, out, callback=FailFirstAttempts(1), retries=1)
    assert report.ok
    row = Store(out).row("c0_style.png")
    assert row.state == "done" and row.attempts == 2 and row.error is None

    out2 = tmp_path / "out2"
    out2.mkdir()
    report = stylelab.batch(job, out2, callback=FailFirstAttempts(3), retries=2)
    row = Store(out2).row("c0_style.png")
    assert report.failed == ["c0_style.png"] and row.state == "failed" and row.attempts == 3
    assert "flaky worker" in row.error and not (out2 / "c0_style.png").exists()
    # the rerun retries the failed job (a fresh allowance of retries)
    report = stylelab.batch(job, out2, retries=0)
    assert report.done == ["c0_style.png"] and Store(out2).row("c0_style.png").attempts == 4


def test_bad_input_fails_its_own_job_once_and_the_rest_run(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    jobs = [*specs(images, 1), JobSpec(str(images / "nope.png"), (str(images / "style.png"),), CONFIG, "nope.png")]
    report = stylelab.batch(jobs, out, retries=3)
    assert report.done == ["c0_style.png"] and report.failed == ["nope.png"]
    row = Store(out).row("nope.png")
    assert row.attempts == 1 and row.permanent and row.error == f"content image not found: {images / 'nope.png'}"


def test_style_cache_computes_style_targets_once_and_changes_no_pixel(images: Path) -> None:
    jobs = specs(images, 2)
    cache = StyleCache()
    cached = [run_job(j, read_inputs(j), cache=cache) for j in jobs]
    assert (cache.misses, cache.hits) == (1, 1)  # one scale: the second content reuses the style's statistics
    plain = [run_job(j) for j in jobs]
    for a, b in zip(cached, plain):
        assert a.ok and b.ok
        assert a.sha256 == b.sha256  # same encoded file, so the same pixels


def _store_rows(out: Path) -> dict[str, tuple]:
    db = sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True, timeout=30)
    try:
        return {r[0]: r[1:] for r in db.execute("SELECT key, state, sha256, attempts, finished FROM jobs")}
    finally:
        db.close()


def test_kill_9_mid_batch_leaves_no_partial_output_and_the_rerun_finishes_the_rest(images: Path,
                                                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "stylelab", "batch", str(images / "c*.png"), "--style", str(images / "style.png"),
            "-o", str(out), "--size", "48", "--steps", "4", "--device", "cpu", "-q"]
    env = child_env()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # a bound on a hung child, not a measurement
    try:
        while True:
            assert proc.poll() is None, f"the batch ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no job finished"
            if (out / STORE_NAME).exists():
                try:
                    if any(r[0] == "done" for r in _store_rows(out).values()):
                        break
                except sqlite3.OperationalError:  # the schema is being created
                    pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    before = _store_rows(out)
    assert len(before) == 5 and set(r[0] for r in before.values()) <= {"queued", "running", "done"}
    done = {k: r for k, r in before.items() if r[0] == "done"}
    assert 1 <= len(done) < 5
    for path in out.iterdir():
        if path.name.startswith(".stylelab-jobs"):
            continue
        if path.name.startswith("."):  # a temporary file of an interrupted write: never renamed to an output
            assert path.name.endswith(".tmp")
            continue
        assert path.name in done and file_sha256(path) == done[path.name][1]  # only complete, recorded outputs

    assert main(argv[3:]) == 0
    after = _store_rows(out)
    assert all(r[0] == "done" for r in after.values())
    for key, row in done.items():
        assert after[key] == row  # finished jobs were not run again
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(after)
    assert all(file_sha256(out / k) == r[1] for k, r in after.items())


def test_manifest_bad_rows_fail_alone(images: Path, tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "jobs.jsonl"
    rows = [
        {"content": "in/c0.png", "style": "in/style.png;in/style2.png", "style_weight": 5},
        {"content": "in/missing.png", "style": "in/style.png"},
        {"content": "in/c1.png", "style": "in/style.png", "steps": "many"},
        {"content": "in/c2.png", "style": "in/style.png", "colour": "red"},
        {"content": "in/c3.png", "style": "in/style.png", "output": "sub/three.png", "tileable": "yes"},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    code = main(["batch", "--manifest", str(manifest), "-o", str(out), "--size", "48", "--steps", "2",
                 "--device", "cpu", "-q"])
    assert code == 1
    got = {r.key: r for r in Store(out).rows()}
    assert got["c0_style+style2.png"].state == "done" and got["sub/three.png"].state == "done"
    spec = got["c0_style+style2.png"].spec
    assert spec["config"]["style_weight"] == 5 and len(spec["styles"]) == 2
    assert got["sub/three.png"].spec["config"]["tileable"] is True
    assert got["missing_style.png"].error == f"content image not found: {tmp_path / 'in' / 'missing.png'}"
    assert got["c1_style.png"].state == "failed" and "--steps" in got["c1_style.png"].error
    assert "'many'" in got["c1_style.png"].error
    assert got["c2_style.png"].state == "failed" and "unknown column 'colour'" in got["c2_style.png"].error
    assert not (out / "c1_style.png").exists() and not (out / "c2_style.png").exists()

    capsys.readouterr()
    assert main(["batch", "--status", str(out)]) == 0
    table = capsys.readouterr().out
    assert "unknown column 'colour'" in table and "2 done, 3 failed" in table.replace("0 queued, 0 running, ", "")


def test_csv_manifest_row_with_a_bad_value(images: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("content,style,size,output\nin/c0.png,in/style.png,48,a.png\nin/c1.png,in/style.png,-3,b.png\n")
    out = tmp_path / "out"
    assert main(["batch", "--manifest", str(manifest), "-o", str(out), "--steps", "2", "--device", "cpu", "-q"]) == 1
    got = {r.key: r for r in Store(out).rows()}
    assert got["a.png"].state == "done"
    assert got["b.png"].state == "failed"
    assert got["b.png"].error == "row 2: size must be an integer in [16, 8192] px, got -3"


@pytest.mark.parametrize("name,text", [
    ("jobs.csv", "content,output\nin/c0.png,a.png\n"),  # no style column
    ("jobs.csv", "content,style\nin/c0.png,in/style.png,extra\n"),  # ragged
    ("jobs.csv", ""),
    ("jobs.jsonl", '{"content": "in/c0.png", "style": "in/style.png"}\n{"content": \n'),
    ("jobs.jsonl", '["in/c0.png", "in/style.png"]\n'),
    ("jobs.txt", "content,style\nin/c0.png,in/style.png\n"),
])
def test_malformed_manifest_exits_2_before_any_work(images: Path, tmp_path: Path, capsys, name: str,
                                                     text: str) -> None:
    manifest = tmp_path / name
    manifest.write_text(text)
    out = tmp_path / "out"
    assert main(["batch", "--manifest", str(manifest), "-o", str(out), "--size", "48", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylelab: error: manifest") and "\n" not in err
    assert not out.exists()


def test_product_zip_and_names(images: Path, tmp_path: Path) -> None:
    from stylelab.cli import build_parser
    from stylelab.cli.batch import plan_product

    def keys(*extra: str) -> list[str]:
        args = build_parser().parse_args(["batch", str(images), "-o", str(tmp_path / "o"), *extra])
        return [p.key for p in plan_product(args)]

    s1, s2 = str(images / "style.png"), str(images / "style2.png")
    assert keys("--style", s1, "--style", s2)[:4] == ["c0_style.png", "c0_style2.png", "c1_style.png",
                                                        "c1_style2.png"]
    assert len(keys("--style", s1, "--style", s2)) == 14  # 7 images in the folder x 2 styles
    assert keys("--style", f"{s1};{s2}", "--name", "{n}-{content}-{style}.jpg")[0] == "0-c0-style+style2.jpg"
    with pytest.raises(stylelab.ConfigError, match="--pairing zip needs as many styles as contents"):
        keys("--style", s1, "--pairing", "zip")
    assert main(["batch", str(images / "none*.png"), "--style", s1, "-o", str(tmp_path / "o")]) == 2


# A batch whose job, once running, waits until the process is killed: `Worker.run` replaced, nothing else.
HANG = """
import sys
from stylelab.jobs import spec as jobs
from stylelab.cli import main

def hang(self, spec, inputs=None, callback=None, on_tile=None):
    print(spec.key, flush=True)  # the job is running now
    sys.stdin.read()  # until killed

jobs.Worker.run = hang
sys.exit(main(sys.argv[1:]))
"""

# Holds the batch lock of a folder until killed.
HOLD = """
import sys
from stylelab.jobs.store import exclusive

with exclusive(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _child(code: str, *args: str) -> subprocess.Popen:
    """A Python child running `code`; it has written its first line once this returns."""
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(60)
        pytest.fail(f"the child ended early: {proc.stderr.read()}")
    return proc


def _kill_9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()


def _one_job(images: Path, out: Path) -> list[str]:
    return ["batch", str(images / "c0.png"), "--style", str(images / "style.png"), "-o", str(out), "--size", "48",
            "--steps", "2", "--device", "cpu", "-q"]


def test_status_after_kill_9_of_a_running_job_says_interrupted_and_a_rerun_redoes_it(images: Path, tmp_path: Path,
                                                                                     capsys) -> None:
    out = tmp_path / "out"
    argv = _one_job(images, out)
    proc = _child(HANG, *argv)
    try:
        assert _store_rows(out)["c0_style.png"][0] == "running"
    finally:
        _kill_9(proc)
    assert _store_rows(out)["c0_style.png"][0] == "running"  # as the killed batch left it

    capsys.readouterr()
    assert main(["batch", "--status", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:3] == ["c0_style.png", "interrupted", "1"]
    assert table[-1] == "0 queued, 0 running, 1 interrupted, 0 done, 0 failed"

    assert main(argv) == 0
    assert _store_rows(out)["c0_style.png"][0] == "done" and Store(out).row("c0_style.png").attempts == 2


def test_second_batch_on_a_folder_is_refused_until_the_first_is_gone(images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with Store(out) as store:
        store.plan([("old.png", {}, "d")])
    holder = _child(HOLD, str(out))
    try:
        capsys.readouterr()
        assert main(_one_job(images, out)) == 2
        err = capsys.readouterr().err
        assert err == f"stylelab: error: another batch is running on {out} (pid {holder.pid}); wait for it to end " \
                      "or stop it\n"
        assert [r.key for r in Store(out).rows()] == ["old.png"]  # nothing planned, nothing run
        assert not (out / "c0_style.png").exists()
        assert main(["batch", "--status", str(out)]) == 0  # reading takes no lock
        assert "old.png" in capsys.readouterr().out
    finally:
        _kill_9(holder)
    assert (out / ".stylelab-jobs.lock").read_text().split()[0] == str(holder.pid)  # left behind by the killed one
    assert main(_one_job(images, out)) == 0
    assert Store(out).row("c0_style.png").state == "done"


@pytest.mark.parametrize("kind", ["other database", "garbage"])
def test_a_file_in_place_of_the_job_store_that_is_not_one_exits_2(images: Path, tmp_path: Path, capsys,
                                                                   kind: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = out / STORE_NAME
    if kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        db = sqlite3.connect(path)
        db.executescript("CREATE TABLE jobs (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO jobs (title) "
                         "VALUES ('keep me')")
        db.close()
    before = path.read_bytes()
    capsys.readouterr()
    for argv in (_one_job(images, out), ["batch", "--status", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"stylelab: error: {path} is not a stylelab job store (") and err.count("\n") == 1
    assert path.read_bytes() == before
    assert not (out / "c0_style.png").exists()
