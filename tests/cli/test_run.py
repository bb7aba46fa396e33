"""The command line, in-process through `stylelab.cli.main(argv) -> int` (plus one subprocess smoke test).

Every bad input must fail before any optimisation: exit 2, one line on stderr, no traceback, no output file.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylelab
import stylelab.cli as cli
from stylelab.cli import main
from stylelab.flags import source
from stylelab.image import read_metadata

# --------------------------------------------------------------------------------------------------- helpers


def noise_png(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    # smooth-ish noise: blocks of colour, so the style has some structure
    small = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    Image.fromarray(small).resize((w, h), Image.NEAREST).save(path)
    return path


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A tiny PNG whose IHDR declares `width` x `height` RGB pixels, without pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b""))
    return path


def truncated_png(path: Path) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def images(tmp_path):
    """Tiny content and style PNGs, and the (not yet existing) output path."""
    content = noise_png(tmp_path / "content.png", 64, 48, seed=0)
    style = noise_png(tmp_path / "style.png", 48, 64, seed=1)
    return content, style, tmp_path / "out.png"


@pytest.fixture
def fail_if_optimising(monkeypatch):
    """Bad-input tests must stop before any optimisation: make reaching the optimiser a loud failure."""
    import stylelab.engine.optimize as opt

    def boom(*args, **kwargs):
        raise AssertionError("optimisation started although the input was bad")

    monkeypatch.setattr(opt, "optimize", boom)
    monkeypatch.setattr(opt, "compute_targets", boom)


def expect_error(capsys, folder: Path, argv: list[str], phrase: str = "", prefix: str = "stylelab: error:") -> str:
    """Run main(argv); assert exit 2, one clean line on stderr, nothing on stdout, no new file in `folder`."""
    before = snapshot(folder)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert "Traceback" not in err
    assert err.startswith(prefix), err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert phrase.lower() in err.lower(), f"{phrase!r} not in {err!r}"
    assert out == ""
    assert snapshot(folder) == before, "a file was created"
    return err


# ------------------------------------------------------------------------------------------------ bad inputs


def _content_missing(tmp_path, content):
    return tmp_path / "missing.png", "not found"


def _content_directory(tmp_path, content):
    d = tmp_path / "adir.png"
    d.mkdir()
    return d, "directory"


def _content_text(tmp_path, content):
    p = tmp_path / "text.png"
    p.write_text("not an image at all\n")
    return p, "not an image"


def _content_empty(tmp_path, content):
    p = tmp_path / "empty.png"
    p.touch()
    return p, "empty"


def _content_truncated(tmp_path, content):
    return truncated_png(tmp_path / "cut.png"), "truncated"


def _content_bomb(tmp_path, content):
    return bomb_png(tmp_path / "bomb.png"), "too large"


BAD_CONTENT = {
    "missing": _content_missing,
    "directory": _content_directory,
    "non-image": _content_text,
    "zero-byte": _content_empty,
    "truncated": _content_truncated,
    "decompression-bomb": _content_bomb,
}


@pytest.mark.parametrize("case", list(BAD_CONTENT), ids=list(BAD_CONTENT))
def test_bad_content_image(capsys, images, tmp_path, fail_if_optimising, case):
    content, style, out = images
    bad, phrase = BAD_CONTENT[case](tmp_path, content)
    err = expect_error(capsys, tmp_path, ["run", bad, style, "-o", out, "--size", "64", "--steps", "3"], phrase)
    assert "content image" in err and bad.name in err


@pytest.mark.parametrize("case", list(BAD_CONTENT), ids=list(BAD_CONTENT))
def test_bad_style_image(capsys, images, tmp_path, fail_if_optimising, case):
    content, style, out = images
    bad, phrase = BAD_CONTENT[case](tmp_path, content)
    err = expect_error(capsys, tmp_path, ["run", content, bad, "-o", out, "--size", "64", "--steps", "3"], phrase)
    assert "style image" in err and bad.name in err


def test_missing_second_style_image(capsys, images, tmp_path, fail_if_optimising):
    content, style, out = images
    err = expect_error(capsys, tmp_path, ["run", content, style, tmp_path / "nope.jpg", "-o", out], "not found")
    assert "style image 2" in err


BAD_SETTINGS = {
    "style-layer-unknown": (["--style-layers", "relu1_1,relu9_9"], "relu9_9"),
    "content-layer-unknown": (["--content-layers", "conv4_7"], "conv4_7"),
    "style-layer-bad-weight": (["--style-layers", "relu1_1:heavy"], "number"),
    "style-layer-nan-weight": (["--style-layers", "relu1_1:nan"], "finite"),
    "style-layer-duplicate": (["--style-layers", "relu1_1,relu1_1"], "twice"),
    "style-layers-empty": (["--style-layers", ""], "at least one layer"),
    "style-weight-negative": (["--style-weight", "-1"], "style_weight"),
    "content-weight-nan": (["--content-weight", "nan"], "content_weight"),
    "content-weight-inf": (["--content-weight", "inf"], "content_weight"),
    "tv-weight-negative": (["--tv-weight", "-0.5"], "tv_weight"),
    "lr-zero": (["--lr", "0"], "lr"),
    "device-tpu": (["--device", "tpu"], "tpu"),
    "device-cpu-garbage": (["--device", "cpu:abc"], "device"),
    # settings with a fixed set of values: argparse refuses them from the choices in Config's fields (issue 12)
    "optimizer-sgd": (["--optimizer", "sgd"], "invalid choice: 'sgd' (choose from 'lbfgs', 'adam')"),
    "pooling-median": (["--pooling", "median"], "invalid choice: 'median' (choose from 'avg', 'max', 'l2')"),
    "color-sepia": (["--color", "sepia"], "invalid choice: 'sepia'"),
    "precision-half": (["--precision", "half"], "invalid choice: 'half'"),
    "lbfgs-history-zero": (["--lbfgs-history", "0"], "lbfgs_history must be an integer >= 1"),
    "style-loss-unknown": (["--style-loss", "nope"], "nope"),
    "steps-zero": (["--steps", "0"], "steps"),
    "steps-negative": (["--steps", "-3"], "steps"),
    "size-tiny": (["--size", "8"], "size"),
    "style-size-tiny": (["--style-size", "4"], "style_size"),
    "style-blend-too-many": (["--style-blend", "1,2"], "style_blend"),
    "style-blend-not-number": (["--style-blend", "a"], "number"),
    "style-blend-negative": (["--style-blend", "-1"], "style_blend"),
    "save-every-negative": (["--save-every", "-1"], "save-every"),
    "init-missing": (["--init", "no_such_init.png"], "not found"),
    "weights-missing": (["--weights", "no_such_weights.pth"], "not found"),
    "scales-syntax": (["--scales", "256-300"], "SIZE:STEPS"),
    "scales-text": (["--scales", "256:many"], "integer"),
    "scales-zero-steps": (["--scales", "64:0"], "steps"),
    "time-budget-zero": (["--time-budget", "0"], "time_budget"),
    "tol-negative": (["--tol", "-1"], "tol"),
    "style-scale-zero": (["--style-scale", "0"], "style_scale"),
    "mask-syntax": (["--mask", "nomask.png"], "CONTENT_MASK=STYLE"),
    "mask-style-zero": (["--mask", "m.png=0"], "from 1"),
    "mask-style-missing": (["--mask", "{s}=2"], "only 1 style"),
    "mask-file-missing": (["--mask", "no_such_mask.png=1"], "not found"),
    "bit-depth-16-jpeg": (["--bit-depth", "16", "-o", "{d}/out.jpg"], ".png or .tif"),
    "resume-without-checkpoint": (["--resume"], "--checkpoint"),
    "resume-nothing-saved": (["--resume", "--checkpoint", "{d}/ckpt"], "nothing to resume"),
    "checkpoint-is-a-file": (["--checkpoint", "{s}"], "is a file"),
    "checkpoint-under-a-file": (["--checkpoint", "{s}/ckpt"], "is a file"),
    "content-url-offline": (["--init", "content"], None),
    # issue 12: loss parameters out of range (the message gives the range), seeds past 64 bits, sizes past the cap
    "sw-directions-negative": (["--style-loss", "sliced-wasserstein(directions=-5)"],
                               "directions must be in [0, 4096]"),
    "sw-directions-huge": (["--style-loss", "sliced-wasserstein(directions=1e9)"], "directions must be in [0, 4096]"),
    "rff-features-huge": (["--style-loss", "mmd-gaussian(features=1e8)"], "features must be in [1, 8192]"),
    "poly-samples-zero": (["--style-loss", "mmd-poly(degree=3,samples=0)"], "samples must be in [2, 8192]"),
    "poly-degree-huge": (["--style-loss", "mmd-poly(degree=50)"], "degree must be in [1, 10]"),
    "gaussian-scales-two": (["--style-loss", "gram:1,mmd-gaussian(scales=2)"], "scales must be 1 or 3"),
    "seed-65-bits": (["--seed", str(2**64)], "64 bits"),
    "seed-negative": (["--seed", "-1"], "seed must be an integer in [0,"),
    "size-huge": (["--size", "100000"], "size must be an integer in [16, 8192]"),
    "style-size-huge": (["--style-size", "9000"], "style_size must be an integer in [16, 8192]"),
    "scales-huge": (["--scales", "64:2,100000:1", "--size", "100000"], "in [16, 8192]"),
    # issue 12: the output must not replace an input; -o an existing folder says so
    "output-is-content": (["-o", "{c}"], "also the content image"),
    "output-is-style": (["-o", "{s}"], "also the style image"),
    "output-is-content-other-name": (["-o", "{d}/./content.png"], "also the content image"),
    "output-is-init": (["--init", "{d}/init.png", "-o", "{d}/init.png"], "also the init image"),
    "output-existing-folder": (["-o", "{d}"], "existing directory"),
    "init-file-url-missing": (["--init", "file:///no/such/folder/init.png"], "not found"),
    "file-url-other-host": (["--init", "file://elsewhere/init.png"], "another host"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS), ids=list(BAD_SETTINGS))
def test_bad_settings(capsys, images, tmp_path, fail_if_optimising, case):
    content, style, out = images
    extra, phrase = BAD_SETTINGS[case]
    extra = [a.format(s=style, d=tmp_path, c=content) for a in extra]
    if case == "output-is-init":
        noise_png(tmp_path / "init.png", seed=3)
    if phrase is None:  # an unreachable URL: nothing listens on port 1
        content, phrase = "http://127.0.0.1:1/content.png", "download"
    prefix = "stylelab run: error:" if phrase.startswith("invalid choice") else "stylelab: error:"
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--size", "64", "--steps", "3", *extra], phrase,
                 prefix=prefix)


def test_style_blend_wrong_count_with_two_styles(capsys, images, tmp_path, fail_if_optimising):
    content, style, out = images
    style2 = noise_png(tmp_path / "style2.png", seed=2)
    expect_error(capsys, tmp_path, ["run", content, style, style2, "-o", out, "--style-blend", "1,2,3"],
                 "3 weights for 2 style image(s)")


def test_content_too_thin_for_the_network(capsys, tmp_path, fail_if_optimising):
    content = noise_png(tmp_path / "thin.png", 64, 4)
    style = noise_png(tmp_path / "style.png")
    expect_error(capsys, tmp_path, ["run", content, style, "-o", tmp_path / "out.png", "--size", "64"], "px")


def test_weights_not_a_state_dict(capsys, images, tmp_path, fail_if_optimising):
    content, style, out = images
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a torch file")
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--weights", junk], "junk.pth")


@pytest.mark.parametrize(
    "output, phrase",
    [
        ("no_such_folder/out.png", "does not exist"),
        ("out.gif", "output format"),
        ("out", "output format"),
        ("out.png.part", "output format"),
    ],
)
def test_bad_output_path(capsys, images, tmp_path, fail_if_optimising, output, phrase):
    content, style, _ = images
    expect_error(capsys, tmp_path, ["run", content, style, "-o", tmp_path / output], phrase)


def test_output_is_a_directory(capsys, images, tmp_path, fail_if_optimising):
    content, style, _ = images
    (tmp_path / "dir.png").mkdir()
    expect_error(capsys, tmp_path, ["run", content, style, "-o", tmp_path / "dir.png"], "directory")


def test_output_folder_not_writable(capsys, images, tmp_path, fail_if_optimising):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root, so this cannot be tested for real")
    content, style, _ = images
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        expect_error(capsys, tmp_path, ["run", content, style, "-o", ro / "out.png"], "not writable")
    finally:
        ro.chmod(0o700)


def test_device_cuda_unavailable(capsys, images, tmp_path, fail_if_optimising):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    content, style, out = images
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--device", "cuda"], "CUDA is not available")


def test_device_mps_unavailable(capsys, images, tmp_path, fail_if_optimising):
    if torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    content, style, out = images
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--device", "mps"], "MPS")


def test_device_cuda_bad_index_with_cuda(capsys, images, tmp_path, fail_if_optimising, monkeypatch):
    content, style, out = images
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # simulate a CUDA machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--device", "cuda:x"], "cuda:x")


def test_device_cuda_index_out_of_range_with_cuda(capsys, images, tmp_path, fail_if_optimising, monkeypatch):
    content, style, out = images
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--device", "cuda:1"], "only 1 CUDA")


@pytest.mark.parametrize(
    "argv, phrase, prefix",
    [
        (["run", "{c}", "{s}"], "-o/--output", "stylelab run: error:"),
        (["run", "{c}", "{s}", "-o", "{o}", "--steps", "many"], "--steps", "stylelab run: error:"),
        (["run", "{c}", "{s}", "-o", "{o}", "--size", "1.5"], "--size", "stylelab run: error:"),
        (["run", "{c}", "{s}", "-o", "{o}", "--style-weight", "lots"], "--style-weight", "stylelab run: error:"),
        (["run", "{c}", "-o", "{o}"], "style", "stylelab run: error:"),
        ([], "command", "stylelab: error:"),
        (["paint"], "paint", "stylelab: error:"),
        (["run", "{c}", "{s}", "-o", "{o}", "--no-such-flag"], "--no-such-flag", "stylelab"),
    ],
    ids=["no-output", "steps-text", "size-float", "weight-text", "no-style", "no-command", "bad-command",
         "unknown-flag"],
)
def test_usage_errors(capsys, images, tmp_path, fail_if_optimising, argv, phrase, prefix):
    content, style, out = images
    argv = [a.format(c=content, s=style, o=out) for a in argv]
    err = expect_error(capsys, tmp_path, argv, phrase, prefix=prefix)
    assert "usage:" not in err  # one line, not argparse's usage block


def test_help_and_version_in_process(capsys):
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"stylelab {stylelab.__version__}"
    assert main(["run", "--help"]) == 0
    out, _ = capsys.readouterr()
    assert "--style-layers" in out and "--save-every" in out


# ---------------------------------------------------------------------------------------------- real runs


def test_end_to_end_quiet(capsys, tmp_path):
    content = noise_png(tmp_path / "content.png", 96, 72, seed=0)  # 4:3, larger than --size
    style = noise_png(tmp_path / "style.png", 40, 60, seed=1)
    out = tmp_path / "out.png"
    code = main(["run", str(content), str(style), "-o", str(out), "--size", "64", "--steps", "3", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == "" and captured.err == ""
    assert out.is_file()
    with Image.open(out) as im:
        assert im.mode == "RGB"
        assert max(im.size) == 64
        assert im.size == (64, 48)  # same 4:3 aspect ratio as the 96x72 content
    assert snapshot(tmp_path) == {"content.png", "style.png", "out.png"}  # no temporary files left


def test_end_to_end_save_every(capsys, images, tmp_path):
    content, style, out = images
    code = main(["run", str(content), str(style), "-o", str(out), "--size", "64", "--steps", "4",
                 "--save-every", "2", "--optimizer", "adam"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert "wrote" in captured.err  # the summary line, without --quiet
    assert snapshot(tmp_path) == {"content.png", "style.png", "out.png", "out_step0002.png", "out_step0004.png"}
    for name in ("out.png", "out_step0002.png", "out_step0004.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size == (64, 48)


def test_interrupted_run_leaves_no_output(capsys, images, tmp_path, monkeypatch):
    content, style, out = images

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("stylelab.engine.optimize.stylize", interrupted)
    before = snapshot(tmp_path)
    code = main(["run", str(content), str(style), "-o", str(out), "--size", "64", "--steps", "3"])
    captured = capsys.readouterr()
    assert code == 130
    assert "Traceback" not in captured.err
    assert "interrupted" in captured.err
    assert not out.exists()
    assert snapshot(tmp_path) == before


def test_interrupted_while_saving_leaves_no_output(capsys, images, tmp_path, monkeypatch):
    content, style, out = images
    monkeypatch.setattr("stylelab.engine.optimize.stylize", lambda *a, **k: Image.new("RGB", (64, 48)))

    def save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", save)
    before = snapshot(tmp_path)
    code = main(["run", str(content), str(style), "-o", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 130
    assert "Traceback" not in captured.err
    assert snapshot(tmp_path) == before  # neither out.png nor a temporary file


def test_failed_save_is_exit_2_without_output(capsys, images, tmp_path, monkeypatch):
    content, style, out = images
    monkeypatch.setattr("stylelab.engine.optimize.stylize", lambda *a, **k: Image.new("RGB", (64, 48)))

    def save(self, fp, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save)
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--quiet"], "No space left on device")


def test_output_may_replace_an_input_with_overwrite(capsys, images, tmp_path):
    content, style, _ = images
    before = content.read_bytes()
    code = main(["run", str(content), str(style), "-o", str(content), "--size", "64", "--steps", "1", "--overwrite",
                 "-q"])
    assert code == 0, capsys.readouterr().err
    assert content.read_bytes() != before and "stylelab" in read_metadata(content)


def test_texture_size_past_the_cap_is_exit_2(capsys, images, tmp_path, fail_if_optimising):
    _, style, _ = images
    expect_error(capsys, tmp_path, ["texture", style, "--size", "100000x64", "-o", tmp_path / "t.png"], "8192")


def test_one_pixel_content_and_init_images_run(capsys, images, tmp_path):
    """A 1x1 image comes out of the resize channels-last strided; L-BFGS needs contiguous pixels (issue 12)."""
    content, style, out = images
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (200, 10, 30)).save(one)
    assert main(["run", str(one), str(style), "-o", str(out), "--size", "32", "--steps", "2", "-q"]) == 0, \
        capsys.readouterr().err
    assert main(["run", str(content), str(style), "--init", str(one), "-o", str(tmp_path / "o2.png"), "--size", "32",
                 "--steps", "2", "-q"]) == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (32, 32)


def test_file_url_inputs_are_local_files(capsys, images, tmp_path):
    content, style, out = images
    url = content.absolute().as_uri()  # file:///.../content.png
    assert source(url) == str(content.absolute())
    assert main(["run", url, style.absolute().as_uri(), "-o", str(out), "--size", "32", "--steps", "1", "-q"]) == 0, \
        capsys.readouterr().err
    record = json.loads(read_metadata(out)["stylelab"])
    assert record["content"] == str(content.absolute())  # replayable as a plain path


def _stylelab_png(path: Path, **job) -> Path:
    """A PNG carrying a provenance record: a valid texture job, with `job` replacing (None: deleting) fields."""
    from PIL.PngImagePlugin import PngInfo

    from stylelab.config import Config, config_to_dict

    record = {"command": "texture", "size": [32, 32], "styles": [str(path.with_name("style.png"))],
              "config": config_to_dict(Config(init="noise", size=32, steps=1))}
    record.update(job)
    record = {k: v for k, v in record.items() if v is not None}
    info = PngInfo()
    info.add_itxt("stylelab", json.dumps(record))
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("job, phrase", [
    ({"size": "abc"}, "'size'"),
    ({"size": [0, 64]}, "'size'"),
    ({"size": [64]}, "'size'"),
    ({"size": [64, 1e9]}, "'size'"),
    ({"size": [True, 64]}, "'size'"),
    ({"size": [64, 100000]}, "'size'"),
    ({"styles": None}, "'styles'"),
    ({"styles": [3]}, "'styles'"),
    ({"command": "run"}, "'content'"),
    ({"command": "paint"}, "'command'"),
    ({"config": None}, "'config'"),
    ({"config": {"seed": -1}}, "seed"),
    ({"config": {"bogus": 1}}, "bogus"),
    ({"config": {"masks": [5]}}, "'config'"),
    ({"bit_depth": 12}, "'bit_depth'"),
], ids=["size-text", "size-zero", "size-one-side", "size-float", "size-bool", "size-huge", "styles-missing",
        "styles-not-text", "content-missing", "command-unknown", "config-missing", "config-bad-seed",
        "config-unknown-field", "config-bad-masks", "bit-depth-12"])
def test_replay_of_a_damaged_record_names_the_field(capsys, images, tmp_path, fail_if_optimising, job, phrase):
    png = _stylelab_png(tmp_path / "made.png", **job)
    err = expect_error(capsys, tmp_path, ["replay", png, "-o", tmp_path / "again.png"], "damaged")
    assert phrase in err


def test_replay_of_a_record_that_is_not_json(capsys, images, tmp_path, fail_if_optimising):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("stylelab", "{not json")
    Image.new("RGB", (8, 8)).save(tmp_path / "made.png", pnginfo=info)
    expect_error(capsys, tmp_path, ["replay", tmp_path / "made.png", "-o", tmp_path / "again.png"], "not valid JSON")


def test_replay_refuses_to_overwrite_the_replayed_image(capsys, images, tmp_path, fail_if_optimising):
    png = _stylelab_png(tmp_path / "made.png")
    expect_error(capsys, tmp_path, ["replay", png, "-o", png], "also the replayed image")


def test_ctrl_c_while_parsing_is_exit_130(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["--version"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_checkpoint_write_failure_is_exit_1_and_keeps_the_previous_checkpoint(capsys, images, tmp_path, monkeypatch):
    """A disk that fills up mid-run: a clean exit-1 line, the last good checkpoint intact, no temporary file."""
    import errno

    import stylelab.engine.checkpoint as ckpt_module

    content, style, out = images
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 1:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_module.torch, "save", save)
    ckpt = tmp_path / "ckpt"
    code = main(["run", str(content), str(style), "-o", str(out), "--size", "32", "--steps", "3",
                 "--checkpoint", str(ckpt), "--checkpoint-every", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("stylelab: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert "No space left on device" in err and "previous checkpoint is kept" in err
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.pt"]
    assert torch.load(ckpt / "state.pt", weights_only=True)["step"] == 1
    assert not out.exists()


def test_texture_command(capsys, images, tmp_path):
    _, style, _ = images
    out = tmp_path / "tex.png"
    code = main(["texture", str(style), "--size", "70x41", "--steps", "3", "--tileable", "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (64, 48)  # tileable: multiples of 16


def test_output_embeds_settings_and_replay_gives_the_same_pixels(capsys, images, tmp_path):
    content, style, out = images
    code = main(["run", str(content), str(style), "-o", str(out), "--size", "64", "--steps", "4", "--seed", "7",
                 "--init", "noise", "--style-loss", "sliced-wasserstein", "-q"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(read_metadata(out)["stylelab"])
    assert record["config"]["seed"] == 7 and record["config"]["style_loss"] == "sliced-wasserstein"
    assert record["content"] == str(content.absolute()) and record["stylelab"] == stylelab.__version__
    assert record["torch"] == torch.__version__ and len(record["weights_sha256"]) == 64
    again = tmp_path / "again.png"
    assert main(["replay", str(out), "-o", str(again), "-q"]) == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


def test_replay_uses_the_recorded_thread_count(capsys, images, tmp_path):
    """The same run with 1 and 2 torch threads differs (the sums are ordered by thread); the record keeps the count
    and replay uses it, so a batch worker's 1-thread output replays to the same pixels in a 2-thread process."""
    content, style, out = images
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert main(["run", str(content), str(style), "-o", str(out), "--size", "64", "--steps", "8", "-q"]) == 0
        assert json.loads(read_metadata(out)["stylelab"])["threads"] == 1
        torch.set_num_threads(2)
        two = tmp_path / "two.png"
        assert main(["run", str(content), str(style), "-o", str(two), "--size", "64", "--steps", "8", "-q"]) == 0
        torch.set_num_threads(2)
        again = tmp_path / "again.png"
        assert main(["replay", str(out), "-o", str(again), "-q"]) == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    pixels = [np.asarray(Image.open(p)) for p in (out, two, again)]
    assert not np.array_equal(pixels[0], pixels[1])  # the thread count matters here (else this test shows nothing)
    assert np.array_equal(pixels[0], pixels[2])


def test_replay_of_a_foreign_png_is_a_clear_error(capsys, images, tmp_path):
    content, _, _ = images
    expect_error(capsys, tmp_path, ["replay", str(content), "-o", str(tmp_path / "x.png")], "no stylelab settings")


def test_content_alpha_is_kept(capsys, images, tmp_path):
    _, style, out = images
    rgba = Image.new("RGBA", (64, 48), (200, 120, 40, 255))
    rgba.paste((200, 120, 40, 0), (0, 0, 32, 48))  # left half transparent
    rgba.save(tmp_path / "rgba.png")
    assert main(["run", str(tmp_path / "rgba.png"), str(style), "-o", str(out), "--size", "64", "--steps", "2",
                 "-q"]) == 0, capsys.readouterr().err
    with Image.open(out) as im:
        alpha = np.asarray(im.getchannel("A"))
    assert im.mode == "RGBA" and alpha[:, :30].max() == 0 and alpha[:, 34:].min() == 255


def test_bit_depth_16_png(capsys, images, tmp_path):
    content, style, _ = images
    out = tmp_path / "deep.png"
    assert main(["run", str(content), str(style), "-o", str(out), "--size", "64", "--steps", "2",
                 "--bit-depth", "16", "-q"]) == 0, capsys.readouterr().err
    assert out.read_bytes()[24] == 16  # IHDR bit depth
    assert "stylelab" in read_metadata(out)


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


def child_env() -> dict[str, str]:
    """The environment for a child Python that imports this checkout's stylelab, wherever it runs from."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(stylelab.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}


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
        deadline = time.monotonic() + 240
        while not (ckpt / "state.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a few more steps and saves: the kill lands at a random point
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
