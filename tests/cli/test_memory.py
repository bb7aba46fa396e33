"""Memory before work, at the command line: a run too large for the free memory is refused before anything heavy;
an out-of-memory error is exit 1 with a clear message.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from stylelab.cli import main
from stylelab.config import Config
from stylelab.engine import memory


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    return tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out.png"


@pytest.fixture
def nothing_heavy(monkeypatch):
    """Neither the VGG19 weights nor the optimiser may be reached."""
    import stylelab.engine.optimize as opt

    def boom(*args, **kwargs):
        raise AssertionError("heavy work started although the run was refused")

    for name in ("_cached_weights", "optimize", "compute_targets"):
        monkeypatch.setattr(opt, name, boom)


def _one_line_exit(capsys, code: int, argv, phrase: str) -> str:
    assert main([str(a) for a in argv]) == code
    _, err = capsys.readouterr()
    assert err.startswith("stylelab: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert phrase in err, err
    return err


def test_absurd_size_is_refused_before_anything_heavy(capsys, inputs, nothing_heavy):
    c, s, out = inputs
    _one_line_exit(capsys, 2, ["run", c, s, "-o", out, "--size", "100000"], "[16, 8192]")
    _one_line_exit(capsys, 2, ["texture", s, "-o", out, "--size", "100000x100000"], "8192")
    assert not out.exists()


def test_a_run_larger_than_the_free_memory_is_refused_with_advice(capsys, inputs, nothing_heavy, monkeypatch):
    c, s, out = inputs
    monkeypatch.setattr(memory, "available", lambda device="cpu": 2 * 2**30)
    err = _one_line_exit(capsys, 2, ["run", c, s, "-o", out, "--size", "2048"], "needs about")
    assert "2048x1536 px" in err and "2.0 GiB" in err and "--size" in err and "--low-memory" in err
    suggested = int(err.split("--size ")[1].split(",")[0])
    e = memory.estimate(dataclasses.replace(Config(), size=suggested), (48, 64), [(64, 64)])
    assert e.bytes <= 2 * 2**30  # the suggested size fits
    _one_line_exit(capsys, 2, ["texture", s, "-o", out, "--size", "4096x4096"], "needs about")
    assert not out.exists()


def test_cpu_out_of_memory_is_exit_1_with_a_clear_message(capsys, inputs, monkeypatch):
    c, s, out = inputs

    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:116] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 120795955200 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr("stylelab.engine.optimize.stylize", oom)
    err = _one_line_exit(capsys, 1, ["run", c, s, "-o", out, "--size", "64"], "out of memory")
    assert "--size" in err and not out.exists()


def test_other_runtime_errors_are_not_called_out_of_memory(inputs, monkeypatch):
    c, s, out = inputs

    def bug(*args, **kwargs):
        raise RuntimeError("a genuine bug")

    monkeypatch.setattr("stylelab.engine.optimize.stylize", bug)
    with pytest.raises(RuntimeError, match="genuine bug"):
        main(["run", str(c), str(s), "-o", str(out), "--size", "64"])


def test_the_summary_gives_the_estimate(capsys, inputs):
    c, s, out = inputs
    assert main(["run", str(c), str(s), "-o", str(out), "--size", "32", "--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "peak memory about" in err and "MiB" in err


def test_the_refusal_offers_tiles_when_the_losses_tile_and_a_tile_fits(capsys, inputs, nothing_heavy, monkeypatch):
    """With automatic tiling turned off (--tile 0)."""
    c, s, out = inputs
    free = 3 * 2**30
    monkeypatch.setattr(memory, "available", lambda device="cpu": free)
    argv = ["run", c, s, "-o", out, "--size", "4096", "--style-loss", "gram", "--optimizer", "adam", "--tile", "0"]
    err = _one_line_exit(capsys, 2, argv, "try --tile ")
    tile = int(err.split("--tile ")[1].split(",")[0])
    config = Config(size=4096, style_loss="gram", optimizer="adam")
    assert memory.estimate(config, (48, 64), [(64, 64)]).bytes > free
    assert memory.estimate(dataclasses.replace(config, tile=tile), (48, 64), [(64, 64)]).bytes <= free  # it fits
    # a tile too large for the memory: a smaller one is offered
    err = _one_line_exit(capsys, 2, [*argv[:-1], "1024"], "try --tile ")
    assert int(err.split("--tile ")[1].split(",")[0]) == tile
    # the default mix tiles too (its transport losses keep style samples besides: more memory); a sampled loss
    # cannot: no --tile offered
    monkeypatch.setattr(memory, "available", lambda device="cpu": 5 * 2**30)
    err = _one_line_exit(capsys, 2, ["run", c, s, "-o", out, "--size", "4096", "--optimizer", "adam", "--tile", "0"],
                         "try --tile ")
    err = _one_line_exit(capsys, 2, ["run", c, s, "-o", out, "--size", "4096", "--style-loss", "mmd-gaussian"],
                         "needs about")
    assert "--tile" not in err


def test_a_run_that_does_not_fit_runs_in_tiles_that_fit(capsys, inputs, monkeypatch):
    """Tiles are automatic: the command runs in the largest tile that fits, says so, and records it."""
    import stylelab.engine.optimize as opt
    from stylelab.engine.provenance import read_provenance

    c, s, out = inputs
    free = 5 * 2**30
    monkeypatch.setattr(memory, "available", lambda device="cpu": free)
    seen = []

    def fake_stylize(content, styles, config, *args, **kwargs):
        seen.append(config)
        return Image.new("RGB", (64, 48))

    monkeypatch.setattr(opt, "stylize", fake_stylize)
    assert main([str(a) for a in ["run", c, s, "-o", out, "--size", "4096", "--optimizer", "adam"]]) == 0
    err = capsys.readouterr().err
    (config,) = seen
    assert config.tile is not None and f"in tiles of {config.tile} px" in err
    assert memory.estimate(config, (48, 64), [(64, 64)]).bytes <= free
    assert read_provenance(str(out))[1].tile == config.tile  # a replay runs the same tiles
