"""Bad input to the command line, in-process through `stylelab.cli.main(argv) -> int`: every one must fail
before any optimisation: exit 2, one line on stderr, no traceback, no output file.
"""

from __future__ import annotations

import os

import pytest
import torch
from helpers import bomb_png, expect_error, noise_png, truncated

import stylelab
from stylelab.cli import main

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
    return truncated(tmp_path / "cut.png"), "truncated"


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
def test_bad_content_image(capsys, run_files, tmp_path, fail_if_optimising, case):
    content, style, out = run_files
    bad, phrase = BAD_CONTENT[case](tmp_path, content)
    err = expect_error(capsys, tmp_path, ["run", bad, style, "-o", out, "--size", "64", "--steps", "3"], phrase)
    assert "content image" in err and bad.name in err


@pytest.mark.parametrize("case", list(BAD_CONTENT), ids=list(BAD_CONTENT))
def test_bad_style_image(capsys, run_files, tmp_path, fail_if_optimising, case):
    content, _, out = run_files
    bad, phrase = BAD_CONTENT[case](tmp_path, content)
    err = expect_error(capsys, tmp_path, ["run", content, bad, "-o", out, "--size", "64", "--steps", "3"], phrase)
    assert "style image" in err and bad.name in err


def test_missing_second_style_image(capsys, run_files, tmp_path, fail_if_optimising):
    content, style, out = run_files
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
    # settings with a fixed set of values: argparse refuses them from the choices in Config's fields
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
    # loss parameters out of range (the message gives the range), seeds past 64 bits, sizes past the cap
    "sw-directions-negative": (["--style-loss", "sliced-wasserstein(directions=-5)"],
                               "directions must be in [0, 4096]"),
    "sw-directions-huge": (["--style-loss", "sliced-wasserstein(directions=1e9)"], "directions must be in [0, 4096]"),
    "rff-features-huge": (["--style-loss", "mmd-gaussian(features=1e8)"], "features must be in [1, 8192]"),
    "poly-samples-zero": (["--style-loss", "mmd-poly(degree=3,samples=0)"], "samples must be in [2, 8192]"),
    "poly-degree-huge": (["--style-loss", "mmd-poly(degree=50)"], "degree must be in [1, 10]"),
    "gaussian-scales-two": (["--style-loss", "gram:1,mmd-gaussian(scales=2)"], "scales must be 1 or 3"),
    "nn-mix-out-of-range": (["--style-loss", "nn(mix=2)"], "mix must be in [0, 1]"),
    "nn-reuse-negative": (["--style-loss", "nn(reuse=-1)"], "reuse must be in [0, 1000]"),
    "loss-run-context-param": (["--style-loss", "sliced-wasserstein(resample=1)"], "has no parameter 'resample'"),
    "remd-moments-negative": (["--style-loss", "remd(moments=-1)"], "moments must be in [0, 1000]"),
    "param-unknown": (["--param", "wavelets"], "invalid choice: 'wavelets'"),
    "content-loss-unknown": (["--content-loss", "gram"], "invalid choice: 'gram'"),
    "preset-unknown": (["--preset", "nope"], "invalid choice: 'nope'"),
    "preset-with-bad-flag": (["--preset", "nnst", "--style-loss", "nn(samples=1)"], "samples must be in [2, 8192]"),
    # tiles: a size off the 16-px grid or too small, and what cannot tile (a sampled loss, exact sorts, masks)
    "tile-off-grid": (["--tile", "100", "--style-loss", "gram"], "multiple of 16"),
    "tile-tiny": (["--tile", "32", "--style-loss", "gram"], "tile must be an integer in [64, 8192]"),
    "tile-sampled-loss": (["--tile", "512", "--style-loss", "gram,mmd-gaussian"], "'mmd-gaussian' cannot run in tiles"),
    "tile-exact-sorts": (["--tile", "512", "--style-loss", "histogram(bins=0)"], "cannot run in tiles"),
    "tile-with-mask": (["--tile", "512", "--style-loss", "gram", "--mask", "{s}=1"], "masks cannot run in tiles"),
    "seed-65-bits": (["--seed", str(2**64)], "64 bits"),
    "seed-negative": (["--seed", "-1"], "seed must be an integer in [0,"),
    "size-huge": (["--size", "100000"], "size must be an integer in [16, 8192]"),
    "style-size-huge": (["--style-size", "9000"], "style_size must be an integer in [16, 8192]"),
    "scales-huge": (["--scales", "64:2,100000:1", "--size", "100000"], "in [16, 8192]"),
    # the output must not replace an input; -o an existing folder says so
    "output-is-content": (["-o", "{c}"], "also the content image"),
    "output-is-style": (["-o", "{s}"], "also the style image"),
    "output-is-content-other-name": (["-o", "{d}/./content.png"], "also the content image"),
    "output-is-init": (["--init", "{d}/init.png", "-o", "{d}/init.png"], "also the init image"),
    "output-existing-folder": (["-o", "{d}"], "existing directory"),
    "init-file-url-missing": (["--init", "file:///no/such/folder/init.png"], "not found"),
    "file-url-other-host": (["--init", "file://elsewhere/init.png"], "another host"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS), ids=list(BAD_SETTINGS))
def test_bad_settings(capsys, run_files, tmp_path, fail_if_optimising, case):
    content, style, out = run_files
    extra, phrase = BAD_SETTINGS[case]
    extra = [a.format(s=style, d=tmp_path, c=content) for a in extra]
    if case == "output-is-init":
        noise_png(tmp_path / "init.png", seed=3)
    if phrase is None:  # an unreachable URL: nothing listens on port 1
        content, phrase = "http://127.0.0.1:1/content.png", "download"
    prefix = "stylelab run: error:" if phrase.startswith("invalid choice") else "stylelab: error:"
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--size", "64", "--steps", "3", *extra], phrase,
                 prefix=prefix)


def test_style_blend_wrong_count_with_two_styles(capsys, run_files, tmp_path, fail_if_optimising):
    content, style, out = run_files
    style2 = noise_png(tmp_path / "style2.png", seed=2)
    expect_error(capsys, tmp_path, ["run", content, style, style2, "-o", out, "--style-blend", "1,2,3"],
                 "3 weights for 2 style image(s)")


def test_content_too_thin_for_the_network(capsys, tmp_path, fail_if_optimising):
    content = noise_png(tmp_path / "thin.png", 64, 4)
    style = noise_png(tmp_path / "style.png")
    expect_error(capsys, tmp_path, ["run", content, style, "-o", tmp_path / "out.png", "--size", "64"], "px")


def test_weights_not_a_state_dict(capsys, run_files, tmp_path, fail_if_optimising):
    content, style, out = run_files
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
def test_bad_output_path(capsys, run_files, tmp_path, fail_if_optimising, output, phrase):
    content, style, _ = run_files
    expect_error(capsys, tmp_path, ["run", content, style, "-o", tmp_path / output], phrase)


def test_output_is_a_directory(capsys, run_files, tmp_path, fail_if_optimising):
    content, style, _ = run_files
    (tmp_path / "dir.png").mkdir()
    expect_error(capsys, tmp_path, ["run", content, style, "-o", tmp_path / "dir.png"], "directory")


def test_output_folder_not_writable(capsys, run_files, tmp_path, fail_if_optimising):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root, so this cannot be tested for real")
    content, style, _ = run_files
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        expect_error(capsys, tmp_path, ["run", content, style, "-o", ro / "out.png"], "not writable")
    finally:
        ro.chmod(0o700)


def test_device_cuda_unavailable(capsys, run_files, tmp_path, fail_if_optimising):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    content, style, out = run_files
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--device", "cuda"], "CUDA is not available")


def test_device_mps_unavailable(capsys, run_files, tmp_path, fail_if_optimising):
    if torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    content, style, out = run_files
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--device", "mps"], "MPS")


def test_device_cuda_bad_index_with_cuda(capsys, run_files, tmp_path, fail_if_optimising, monkeypatch):
    content, style, out = run_files
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # simulate a CUDA machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--device", "cuda:x"], "cuda:x")


def test_device_cuda_index_out_of_range_with_cuda(capsys, run_files, tmp_path, fail_if_optimising, monkeypatch):
    content, style, out = run_files
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
def test_usage_errors(capsys, run_files, tmp_path, fail_if_optimising, argv, phrase, prefix):
    content, style, out = run_files
    argv = [a.format(c=content, s=style, o=out) for a in argv]
    err = expect_error(capsys, tmp_path, argv, phrase, prefix=prefix)
    assert "usage:" not in err  # one line, not argparse's usage block


def test_help_and_version_in_process(capsys):
    assert main(["--version"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == f"stylelab {stylelab.__version__}"
    assert main(["run", "--help"]) == 0
    out, _ = capsys.readouterr()
    assert "--style-layers" in out and "--save-every" in out
