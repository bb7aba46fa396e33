"""`stylelab video` on clips the tests make themselves: round trip, frame range, resume, the job store, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import die_after_saving, make_clip, streams, unknown_codec_clip

pytest.importorskip("av")
pytest.importorskip("cv2")

import stylelab.cli.video as videocli
import stylelab.video.temporal as video
from stylelab.cli import main
from stylelab.samples import swirls
from stylelab.video.io import read_video

FAST = ["--size", "64", "--steps", "3", "--frame-steps", "2", "-q"]


@pytest.fixture()
def style_png(tmp_path):
    path = tmp_path / "style.png"
    swirls(64, 64, seed=1).save(path)
    return path


def test_cli_round_trip_keeps_count_size_fps_and_audio(tmp_path, style_png):
    src = make_clip(tmp_path / "in.mp4", n=3, w=64, h=48, fps=12)
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), str(style_png), "-o", str(out), *FAST]) == 0
    back = read_video(out)
    assert len(back.frames) == 3 and back.fps == 12 and back.frames[0].shape == (48, 64, 3) and back.has_audio
    assert streams(out)["audio"][0] == "aac"
    assert not (tmp_path / "out.mp4.frames").exists()  # the work folder goes once the output is written
    # stylised: not the input frames
    assert np.abs(back.frames[1].astype(int) - read_video(src).frames[1]).mean() > 10


def test_cli_frames_to_png_folder_with_range(tmp_path, style_png):
    src = make_clip(tmp_path / "in.mp4", n=8, audio=False)
    out = tmp_path / "pngs"
    assert main(["video", str(src), str(style_png), "-o", str(out), "--frames", "2:5", *FAST]) == 0
    # named as --frames counts: input frames 2, 3 and 4
    assert sorted(p.name for p in out.iterdir()) == [f"frame_00000{k}.png" for k in (2, 3, 4)]


def test_cli_resumes_at_the_next_frame(tmp_path, style_png, monkeypatch):
    src = make_clip(tmp_path / "in.mp4", n=3)
    out = tmp_path / "out.mp4"
    _, real = die_after_saving(monkeypatch, 2)
    assert main(["video", str(src), str(style_png), "-o", str(out), *FAST]) == 130
    assert not out.exists() and len(list((tmp_path / "out.mp4.frames").glob("frame_*.png"))) == 2
    monkeypatch.setattr(videocli, "save_frame", real)
    starts = []
    real_transfer = video.transfer
    monkeypatch.setattr(video, "transfer", lambda *a, **k: starts.append(1) or real_transfer(*a, **k))
    assert main(["video", str(src), str(style_png), "-o", str(out), *FAST]) == 0
    assert starts == [] and len(read_video(out).frames) == 3
    # other settings with a kept work folder: refused, not mixed
    (tmp_path / "out.mp4.frames").mkdir()
    (tmp_path / "out.mp4.frames" / "settings.json").write_text("{}")
    assert main(["video", str(src), str(style_png), "-o", str(tmp_path / "out.mp4"), *FAST]) == 2


def test_cli_job_store_redoes_frames_from_a_changed_one_on(tmp_path, style_png, monkeypatch):
    """The work folder's job store: frames done with their sha256 and times; a frame whose file changed is done
    again, and so is every frame after it (each starts from the one before); the ones before it are kept."""
    from PIL import Image

    from stylelab.jobs.store import Store

    src = make_clip(tmp_path / "in.mp4", n=4)
    out = tmp_path / "out.mp4"
    work = tmp_path / "out.mp4.frames"
    _, real = die_after_saving(monkeypatch, 3)
    assert main(["video", str(src), str(style_png), "-o", str(out), *FAST]) == 130
    with Store(work, create=False) as store:
        rows = {r.key: r for r in store.rows()}
    assert [rows[f"frame_00000{k}.png"].state for k in (0, 1, 2, 3)] == ["done", "done", "done", "running"]
    assert all(rows[f"frame_00000{k}.png"].sha256 and rows[f"frame_00000{k}.png"].seconds["steps"] > 0
               for k in (0, 1, 2))
    Image.new("RGB", Image.open(work / "frame_000001.png").size, "red").save(work / "frame_000001.png")
    monkeypatch.setattr(videocli, "save_frame", real)
    frames_done = []
    real_optimize = video.optimize
    monkeypatch.setattr(video, "optimize", lambda *a, **k: frames_done.append(1) or real_optimize(*a, **k))
    monkeypatch.setattr(video, "transfer", lambda *a, **k: pytest.fail("frame 0 was kept and is not redone"))
    assert main(["video", str(src), str(style_png), "-o", str(out), *FAST]) == 0
    assert len(frames_done) == 3  # frames 1, 2 and 3
    stylised = read_video(out).frames
    assert len(stylised) == 4 and np.abs(stylised[1].astype(int) - [255, 0, 0]).mean() > 40  # not the red frame


@pytest.mark.parametrize("kind", ["text", "zero-frames", "bad-output", "bad-frames", "negative-frames", "codec"])
def test_cli_bad_input_exit_2_one_line_no_output(tmp_path, style_png, capsys, kind):
    src = tmp_path / "in.mp4"
    out = tmp_path / "out.mp4"
    extra = []
    if kind == "codec":
        src = unknown_codec_clip(tmp_path / "in.mkv")
    elif kind == "text":
        src.write_text("not a video")
    elif kind == "zero-frames":
        src = tmp_path / "empty"
        src.mkdir()
    elif kind == "bad-output":
        make_clip(src, n=2)
        out = tmp_path / "out.avi"
    elif kind == "negative-frames":  # a value that starts with '-' is the option's value, not another option
        make_clip(src, n=2)
        extra = ["--frames", "-3:2"]
    else:
        make_clip(src, n=2)
        extra = ["--frames", "5:9"]
    before = set(tmp_path.iterdir())
    assert main(["video", str(src), str(style_png), "-o", str(out), *FAST, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylelab: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert set(tmp_path.iterdir()) == before  # no output, no work folder
    if kind == "negative-frames":
        assert "--frames must be A:B" in err


def test_cli_refuses_to_replace_its_input(tmp_path, style_png, capsys):
    """`-o` equal to the input video (or a style image) is refused before any work, as `stylelab run` does."""
    import hashlib

    src = make_clip(tmp_path / "in.mp4", n=2)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    for out in (src, tmp_path / "." / "in.mp4", style_png):
        assert main(["video", str(src), str(style_png), "-o", str(out), *FAST]) == 2
        err = capsys.readouterr().err
        assert err.startswith("stylelab: error: output ") and "--overwrite" in err and err.count("\n") == 1
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", style_png.name]
    assert main(["video", str(src), str(style_png), "-o", str(src), *FAST, "--overwrite"]) == 0  # when asked to
    assert hashlib.sha256(src.read_bytes()).hexdigest() != digest
