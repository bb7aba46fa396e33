"""`stylelab run`, `texture` and replay, in-process through `stylelab.cli.main(argv) -> int`: real runs on tiny
images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import expect_error, noise_png, snapshot
from PIL import Image

import stylelab
import stylelab.cli as cli
from stylelab.cli import main
from stylelab.flags import source
from stylelab.image import read_metadata

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


def test_end_to_end_save_every(capsys, run_files, tmp_path):
    content, style, out = run_files
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


def test_interrupted_run_leaves_no_output(capsys, run_files, tmp_path, monkeypatch):
    content, style, out = run_files

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


def test_interrupted_while_saving_leaves_no_output(capsys, run_files, tmp_path, monkeypatch):
    content, style, out = run_files
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


def test_failed_save_is_exit_2_without_output(capsys, run_files, tmp_path, monkeypatch):
    content, style, out = run_files
    monkeypatch.setattr("stylelab.engine.optimize.stylize", lambda *a, **k: Image.new("RGB", (64, 48)))

    def save(self, fp, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save)
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--quiet"], "No space left on device")


def test_output_may_replace_an_input_with_overwrite(capsys, run_files, tmp_path):
    content, style, _ = run_files
    before = content.read_bytes()
    code = main(["run", str(content), str(style), "-o", str(content), "--size", "64", "--steps", "1", "--overwrite",
                 "-q"])
    assert code == 0, capsys.readouterr().err
    assert content.read_bytes() != before and "stylelab" in read_metadata(content)


def test_preview_writes_the_feed_forward_image_before_optimising(capsys, run_files, tmp_path, monkeypatch):
    content, style, out = run_files
    preview = tmp_path / "first.jpg"
    from stylelab.engine import optimize

    stylize, there = optimize.stylize, []

    def watched(*args, **kwargs):
        there.append(preview.is_file())
        return stylize(*args, **kwargs)

    monkeypatch.setattr(optimize, "stylize", watched)
    code = main(["run", str(content), str(style), "-o", str(out), "--size", "32", "--steps", "1",
                 "--preview", str(preview)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert there == [True] and f"wrote preview {preview} (32x24)" in err
    with Image.open(preview) as im:
        im.load()
        assert im.format == "JPEG" and im.size == (32, 24)
    assert snapshot(tmp_path) == {"content.png", "style.png", "out.png", "first.jpg"}


def test_preview_without_the_extra_is_a_one_line_error_before_any_work(capsys, run_files, tmp_path, no_fast_model,
                                                                       fail_if_optimising):
    content, style, out = run_files
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--preview", tmp_path / "p.png"],
                 "stylelab: error: --preview needs the optional models: pip install 'stylelab[fast]'")


@pytest.mark.parametrize("which", ["output", "content image", "style image", "no format"])
def test_preview_replaces_no_input_nor_the_output(capsys, run_files, tmp_path, fail_if_optimising, which):
    content, style, out = run_files
    path = {"output": out, "content image": content, "style image": style, "no format": tmp_path / "p.xyz"}[which]
    phrase = f"--preview {path} is also the {which}" if which != "no format" else "--preview: cannot tell the output"
    expect_error(capsys, tmp_path, ["run", content, style, "-o", out, "--preview", path, "--overwrite"], phrase)


def test_texture_size_past_the_cap_is_exit_2(capsys, run_files, tmp_path, fail_if_optimising):
    _, style, _ = run_files
    expect_error(capsys, tmp_path, ["texture", style, "--size", "100000x64", "-o", tmp_path / "t.png"], "8192")


def test_one_pixel_content_and_init_images_run(capsys, run_files, tmp_path):
    """A 1x1 image comes out of the resize channels-last strided; L-BFGS needs contiguous pixels."""
    content, style, out = run_files
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (200, 10, 30)).save(one)
    assert main(["run", str(one), str(style), "-o", str(out), "--size", "32", "--steps", "2", "-q"]) == 0, \
        capsys.readouterr().err
    assert main(["run", str(content), str(style), "--init", str(one), "-o", str(tmp_path / "o2.png"), "--size", "32",
                 "--steps", "2", "-q"]) == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (32, 32)


def test_file_url_inputs_are_local_files(capsys, run_files, tmp_path):
    content, style, out = run_files
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
def test_replay_of_a_damaged_record_names_the_field(capsys, run_files, tmp_path, fail_if_optimising, job, phrase):
    png = _stylelab_png(tmp_path / "made.png", **job)
    err = expect_error(capsys, tmp_path, ["replay", png, "-o", tmp_path / "again.png"], "damaged")
    assert phrase in err


def test_replay_of_a_record_that_is_not_json(capsys, run_files, tmp_path, fail_if_optimising):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("stylelab", "{not json")
    Image.new("RGB", (8, 8)).save(tmp_path / "made.png", pnginfo=info)
    expect_error(capsys, tmp_path, ["replay", tmp_path / "made.png", "-o", tmp_path / "again.png"], "not valid JSON")


def test_replay_refuses_to_overwrite_the_replayed_image(capsys, run_files, tmp_path, fail_if_optimising):
    png = _stylelab_png(tmp_path / "made.png")
    expect_error(capsys, tmp_path, ["replay", png, "-o", png], "also the replayed image")


def test_ctrl_c_while_parsing_is_exit_130(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["--version"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_checkpoint_write_failure_is_exit_1_and_keeps_the_previous_checkpoint(capsys, run_files, tmp_path, monkeypatch):
    """A disk that fills up mid-run: a clean exit-1 line, the last good checkpoint intact, no temporary file."""
    import errno

    import stylelab.engine.checkpoint as ckpt_module

    content, style, out = run_files
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


def test_texture_command(capsys, run_files, tmp_path):
    _, style, _ = run_files
    out = tmp_path / "tex.png"
    code = main(["texture", str(style), "--size", "70x41", "--steps", "3", "--tileable", "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (64, 48)  # tileable: multiples of 16


def test_output_embeds_settings_and_replay_gives_the_same_pixels(capsys, run_files, tmp_path):
    content, style, out = run_files
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


def test_replay_uses_the_recorded_thread_count(capsys, run_files, tmp_path):
    """The same run with 1 and 2 torch threads differs (the sums are ordered by thread); the record keeps the count
    and replay uses it, so a batch worker's 1-thread output replays to the same pixels in a 2-thread process."""
    content, style, out = run_files
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


def test_replay_of_a_foreign_png_is_a_clear_error(capsys, run_files, tmp_path):
    content, _, _ = run_files
    expect_error(capsys, tmp_path, ["replay", str(content), "-o", str(tmp_path / "x.png")], "no stylelab settings")


def test_content_alpha_is_kept(capsys, run_files, tmp_path):
    _, style, out = run_files
    rgba = Image.new("RGBA", (64, 48), (200, 120, 40, 255))
    rgba.paste((200, 120, 40, 0), (0, 0, 32, 48))  # left half transparent
    rgba.save(tmp_path / "rgba.png")
    assert main(["run", str(tmp_path / "rgba.png"), str(style), "-o", str(out), "--size", "64", "--steps", "2",
                 "-q"]) == 0, capsys.readouterr().err
    with Image.open(out) as im:
        alpha = np.asarray(im.getchannel("A"))
    assert im.mode == "RGBA" and alpha[:, :30].max() == 0 and alpha[:, 34:].min() == 255


def test_bit_depth_16_png(capsys, run_files, tmp_path):
    content, style, _ = run_files
    out = tmp_path / "deep.png"
    assert main(["run", str(content), str(style), "-o", str(out), "--size", "64", "--steps", "2",
                 "--bit-depth", "16", "-q"]) == 0, capsys.readouterr().err
    assert out.read_bytes()[24] == 16  # IHDR bit depth
    assert "stylelab" in read_metadata(out)
