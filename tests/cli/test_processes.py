"""The command line in a child process: the module and the console script, Ctrl-C, a file-size limit, SIGKILL
then --resume, and what answers before torch loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import child_env, noise_png
from PIL import Image

import stylelab
from stylelab.cli import main

# -------------------------------------------------------------------------------------------- subprocesses


def test_module_help_and_console_script_version(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "stylelab", "--help"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "usage: stylelab" in r.stdout and "run" in r.stdout
    assert "Traceback" not in r.stderr

    r = subprocess.run([sys.executable, "-m", "stylelab", "--version"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"stylelab {stylelab.__version__}"

    # the installed console script, next to this interpreter (the venv's bin/)
    script = Path(sys.executable).with_name("stylelab")
    if script.exists():
        r = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"stylelab {stylelab.__version__}"

    r = subprocess.run([sys.executable, "-m", "stylelab", "run", "missing.png", "style.png", "-o", "x.png"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.startswith("stylelab: error:")
    assert r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_torch_loads_is_exit_130_without_traceback(tmp_path, input_files):
    """Ctrl-C while torch loads (it takes seconds, when work starts): exit 130, no traceback."""
    code = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from stylelab.__main__ import entry\n"
        "sys.exit(entry())\n"
    )
    env = child_env()
    c, s = input_files
    r = subprocess.run([sys.executable, "-c", code, "run", str(c), str(s), "-o", "o.png"], capture_output=True,
                       text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr and "interrupted" in r.stderr


def test_checkpoint_past_the_file_size_limit_is_exit_1_then_resume_finishes(tmp_path):
    """RLIMIT_FSIZE lets the first checkpoints through and stops a later, larger one (L-BFGS history grows)."""
    import resource

    content = noise_png(tmp_path / "content.png", 48, 40, seed=0)
    style = noise_png(tmp_path / "style.png", 40, 48, seed=1)
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.png"
    argv = [sys.executable, "-m", "stylelab", "run", str(content), str(style), "-o", str(out), "--size", "32",
            "--steps", "4", "--checkpoint", str(ckpt), "--checkpoint-every", "1", "-q"]
    env = child_env()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "File too large" in r.stderr
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.pt"] and not out.exists()
    r = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.exists()


def checkpoint_step(folder: Path) -> int:
    """The step of the last checkpoint in `folder`, 0 before the first (each one replaces the file atomically)."""
    path = folder / "state.pt"
    return torch.load(path, weights_only=True)["step"] if path.exists() else 0


def test_sigkill_mid_run_then_resume_finishes(tmp_path):
    """A run killed with SIGKILL leaves a usable checkpoint and no output; --resume finishes it."""
    content = noise_png(tmp_path / "content.png", 64, 48, seed=0)
    style = noise_png(tmp_path / "style.png", 48, 64, seed=1)
    out, ckpt = tmp_path / "out.png", tmp_path / "ckpt"
    argv = [sys.executable, "-m", "stylelab", "run", str(content), str(style), "-o", str(out), "--size", "64",
            "--steps", "150", "--checkpoint", str(ckpt), "--checkpoint-every", "2", "-q"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240  # a bound on a hung child, not a measurement
        while checkpoint_step(ckpt) < 10:  # several checkpoints in: the kill lands mid-run, not at its start
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no checkpoint of step 10 or later"
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    saved = torch.load(ckpt / "state.pt", weights_only=True)
    assert 0 < saved["step"] < 150
    r = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (64, 48)
    assert torch.load(ckpt / "state.pt", weights_only=True)["step"] == 150


def test_the_command_line_starts_without_torch():
    """`--version`, `--help` and usage or file errors answer before torch loads: importing the CLI and building
    its parser (every subcommand) imports no torch."""
    code = ("import sys, stylelab.cli as c; c.build_parser(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('stylelab'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_input_is_reported_before_torch_loads(tmp_path):
    code = ("import sys, stylelab.cli as c; "
            f"r = c.main(['run', {str(tmp_path / 'missing.png')!r}, 's.png', '-o', 'o.png']); "
            "assert r == 2 and 'torch' not in sys.modules, r")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"stylelab: error: content image not found: {tmp_path / 'missing.png'}\n"


@pytest.mark.parametrize("tv", ["0", "1"])
def test_progress_shows_the_tv_term_only_when_it_counts(input_files, tmp_path, capsys, tv):
    c, s = input_files
    assert main(["run", str(c), str(s), "-o", str(tmp_path / "o.png"), "--size", "48", "--steps", "1",
                 "--tv-weight", tv]) == 0
    err = capsys.readouterr().err
    assert "style " in err and ((" tv " in err) == (tv == "1"))
