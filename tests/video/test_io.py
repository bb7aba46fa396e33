"""Video in and out (PyAV), and `stylize_video` / `stylelab video` on clips the tests make themselves."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from stylelab.video.io import VideoError, parse_frames, read_video, write_frames, write_video  # noqa: E402

SR = 16000  # audio sample rate of the test clips


def moving_frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """A textured background panned 2 px per frame plus a bright bar: real structure for the flow and the VGG."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (h // 4 + 2, (w + 2 * n) // 4 + 2, 3), dtype=np.uint8)
    from PIL import Image

    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 4, small.shape[0] * 4), Image.BILINEAR))
    frames = []
    for k in range(n):
        a = big[:h, 2 * k:2 * k + w].copy()
        a[h // 3:h // 3 + 6, :] = 255
        frames.append(a)
    return frames


def make_clip(path: Path, n: int = 6, w: int = 64, h: int = 48, fps: int = 12, audio: bool = True) -> Path:
    """An H.264 mp4 of `n` frames at `fps`, with a 440 Hz AAC tone as long as the video when `audio`."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio:
            a = out.add_stream("aac", rate=SR)
            a.layout = "mono"
        for frame in moving_frames(n, w, h):
            for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if audio:
            total = SR * n // fps
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / SR)).astype(np.float32)
            for i in range(0, total, 1024):
                f = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="flt", layout="mono")
                f.sample_rate, f.pts = SR, i
                for p in a.encode(f):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


def streams(path: Path) -> dict[str, tuple[str, float]]:
    """type -> (codec, duration in seconds)."""
    with av.open(str(path)) as c:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base) if s.duration else 0.0)
                for s in c.streams}


# ------------------------------------------------------------------------------------------------- reading


def test_read_video_frames_fps_audio(tmp_path):
    clip = read_video(make_clip(tmp_path / "in.mp4", n=6, fps=12))
    assert len(clip.frames) == 6 and clip.fps == 12 and clip.has_audio
    assert clip.frames[0].shape == (48, 64, 3) and clip.frames[0].dtype == np.uint8
    # decoded in order: each frame is closest to the one encoded at its place (H.264 with 4:2:0 chroma: ~10 levels
    # off on this noisy texture; the neighbours, 2 px away, ~40)
    truth = moving_frames(6, 64, 48)
    for k, frame in enumerate(clip.frames):
        errors = [np.abs(frame.astype(int) - t).mean() for t in truth]
        assert int(np.argmin(errors)) == k and errors[k] < 16


def test_read_video_range_resample_and_size(tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=12, fps=12)
    clip = read_video(src, frames=(2, 10), fps=6, size=32)
    assert len(clip.frames) == 4 and clip.fps == 6
    assert clip.frames[0].shape == (24, 32, 3)
    assert clip.audio_range == pytest.approx((2 / 12, 10 / 12))
    assert len(read_video(src, frames=(None, 5)).frames) == 5
    assert len(read_video(src, frames=(9, None)).frames) == 3


def test_read_folder_and_glob_of_frames(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    from PIL import Image

    for k, a in enumerate(moving_frames(3, 40, 30)):
        Image.fromarray(a).save(folder / f"f{k + 1}.png")  # f1, f2, f3: natural order, not f1, f10, f2
    Image.fromarray(moving_frames(11, 40, 30)[10]).save(folder / "f10.png")
    clip = read_video(folder)
    assert len(clip.frames) == 4 and clip.fps == 24 and not clip.has_audio
    assert np.array_equal(clip.frames[3], moving_frames(11, 40, 30)[10])
    assert len(read_video(str(folder / "f1*.png"), fps=5).frames) == 2 and read_video(folder, fps=5).fps == 5


def test_parse_frames():
    assert parse_frames("3:9") == (3, 9) and parse_frames(":9") == (None, 9) and parse_frames("4:") == (4, None)
    for bad in ("9:3", "a:b", "5", "-1:4", "3:3"):
        with pytest.raises(VideoError):
            parse_frames(bad)


def unknown_codec_clip(path: Path) -> Path:
    """A Matroska file whose video track names a codec FFmpeg has no decoder for (the H.264 codec id replaced by
    another of the same length, so the container stays valid)."""
    data = make_clip(path.with_name("h264.mkv"), n=3, audio=False).read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_STYLELAB/NONE"))
    path.with_name("h264.mkv").unlink()
    return path


@pytest.mark.parametrize("kind", ["text", "audio-only", "empty-folder", "missing", "out-of-range", "codec"])
def test_bad_inputs_raise_one_line(tmp_path, kind):
    if kind == "codec":
        src = unknown_codec_clip(tmp_path / "clip.mkv")
    elif kind == "text":
        src = tmp_path / "clip.mp4"
        src.write_text("not a video")
    elif kind == "audio-only":  # a container without a single video frame
        src = tmp_path / "sound.mp4"
        with av.open(str(src), "w") as out:
            a = out.add_stream("aac", rate=SR)
            a.layout = "mono"
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            f.sample_rate, f.pts = SR, 0
            for p in [*a.encode(f), *a.encode()]:
                out.mux(p)
    elif kind == "empty-folder":
        src = tmp_path / "frames"
        src.mkdir()
    elif kind == "missing":
        src = tmp_path / "nothere.mp4"
    else:
        src = make_clip(tmp_path / "in.mp4", n=4)
    with pytest.raises(VideoError) as err:
        read_video(src, frames=(10, 20) if kind == "out-of-range" else None)
    assert "\n" not in str(err.value) and str(err.value)
    if kind == "codec":
        assert str(err.value) == "cannot decode clip.mkv: its video codec has no decoder in this FFmpeg build"


# ------------------------------------------------------------------------------------------------- writing


def test_write_video_keeps_fps_size_and_audio(tmp_path):
    clip = read_video(make_clip(tmp_path / "in.mp4", n=6, fps=12))
    out = write_video(clip.frames, tmp_path / "out.mp4", clip.fps, audio=clip)
    back = read_video(out)
    assert len(back.frames) == 6 and back.fps == 12 and back.has_audio
    assert back.frames[0].shape == (48, 64, 3)
    info = streams(out)
    assert info["video"][0] == "h264" and info["audio"][0] == "aac"
    assert info["audio"][1] == pytest.approx(0.5, abs=0.07)  # 6 frames at 12 fps; AAC packets are 64 ms
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]  # no temporary file left


def test_write_video_trims_audio_to_the_range_and_crops_odd_sides(tmp_path):
    clip = read_video(make_clip(tmp_path / "in.mp4", n=24, fps=12), frames=(6, 12), size=63)
    assert clip.frames[0].shape == (47, 63, 3)
    out = write_video(clip.frames, tmp_path / "out.mp4", clip.fps, audio=clip)
    info = streams(out)
    assert info["audio"][1] == pytest.approx(0.5, abs=0.07)  # of the 2 s source, the 0.5 s of the range
    assert read_video(out).frames[0].shape == (46, 62, 3)  # yuv420p: even sides


def test_written_video_has_a_plain_files_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        out = write_video(moving_frames(2, 32, 32), tmp_path / "out.mp4", 12)
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o644  # not the 0600 of the temporary file it was written as


def test_write_without_audio_and_frame_folder(tmp_path):
    frames = moving_frames(3, 32, 32)
    out = write_video(frames, tmp_path / "silent.mov", Fraction(10))
    assert "audio" not in streams(out) and read_video(out).fps == 10
    folder = write_frames(frames, tmp_path / "pngs")
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert np.array_equal(read_video(folder).frames[2], frames[2])  # PNG: lossless


def test_failed_write_leaves_no_file(tmp_path):
    def frames():
        yield moving_frames(1, 32, 32)[0]
        raise RuntimeError("stylisation failed")

    with pytest.raises(RuntimeError):
        write_video(frames(), tmp_path / "out.mp4", 12)
    with pytest.raises(RuntimeError):
        write_frames(frames(), tmp_path / "pngs")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- stylize_video and CLI

import torch  # noqa: E402

import stylelab.cli.video as videocli  # noqa: E402
import stylelab.video.temporal as video  # noqa: E402
from stylelab import Config  # noqa: E402
from stylelab.cli import main  # noqa: E402
from stylelab.engine.optimize import build_style_losses, compute_targets, objective, prepare  # noqa: E402
from stylelab.image import to_tensor  # noqa: E402
from stylelab.samples import swirls  # noqa: E402
from stylelab.video.flow import FlowEstimator, warping_error  # noqa: E402

FAST = ["--size", "64", "--steps", "3", "--frame-steps", "2", "-q"]


@pytest.fixture()
def style_png(tmp_path):
    path = tmp_path / "style.png"
    swirls(64, 64, seed=1).save(path)
    return path


def test_objective_adds_the_extra_loss(content_image, style_image):
    config = Config(size=48, steps=1)
    model, c, s = prepare(to_tensor(content_image), [to_tensor(style_image)], config)
    losses = build_style_losses(config)
    targets = compute_targets(model, c, s, config, losses)
    x = c.clone().requires_grad_(True)
    base, _ = objective(model, x, targets, config, losses)
    total, terms = objective(model, x, targets, config, losses, lambda y: 3.0 * (y**2).mean())
    assert torch.allclose(total, base + 3.0 * (c**2).mean()) and torch.allclose(terms["extra"], 3.0 * (c**2).mean())


def test_temporal_loss_cuts_the_flicker_and_reuses_the_style_targets(monkeypatch):
    frames = moving_frames(4, 64, 48)
    calls = []
    real = video.compute_targets
    monkeypatch.setattr(video, "compute_targets", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = Config(size=64, steps=4)

    def run(weight: float) -> list[torch.Tensor]:
        return [f.image for f in video.stylize_video(frames, [swirls(64, 64, seed=1)], config,
                                                      temporal_weight=weight, frame_steps=3)]

    steady, free = run(1000.0), run(0.0)
    assert len(calls) == 2  # once per clip, not per frame
    est = FlowEstimator()
    # weight 0 still starts each frame from the warped previous one; the temporal term holds it there
    assert warping_error(steady, frames, est) < 0.5 * warping_error(free, frames, est)
    assert all(f.shape == (1, 3, 48, 64) for f in steady)


def test_long_term_weights_never_count_a_pixel_twice():
    est = FlowEstimator()
    frames = moving_frames(5, 32, 32)
    outputs = {k: torch.rand(1, 3, 32, 32) for k in range(4)}
    warped, weights = video._temporal_terms(est, frames, outputs, 4, (1, 2, 4), torch.device("cpu"))
    assert len(warped) == 3
    total = sum(weights)
    assert total.max() <= 1 and total.min() >= 0 and weights[0].mean() > 0.5


def test_done_frames_are_yielded_not_recomputed(monkeypatch):
    frames = moving_frames(3, 64, 48)
    kept = torch.full((1, 3, 48, 64), 0.5)
    calls = []
    real = video.transfer
    monkeypatch.setattr(video, "transfer", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = list(video.stylize_video(frames, [swirls(64, 64, seed=1)], Config(size=64, steps=2), frame_steps=2,
                                   done=lambda t: kept if t == 0 else None))
    assert out[0].resumed and torch.equal(out[0].image, kept) and not out[1].resumed
    assert calls == []  # frame 1 was warped from the kept frame 0, not restarted


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


def die_after_saving(monkeypatch, n: int):
    """The video CLI's frame saves, patched to act like a kill (KeyboardInterrupt) once `n` frames are saved.
    Returns (the saved paths, the real save_frame to patch back)."""
    saved, real = [], videocli.save_frame

    def save_then_die(image, path, **kw):
        if len(saved) == n:
            raise KeyboardInterrupt
        saved.append(path)
        return real(image, path, **kw)

    monkeypatch.setattr(videocli, "save_frame", save_then_die)
    return saved, real


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


def test_frame_folder_has_a_plain_folders_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        folder = write_frames(moving_frames(2, 32, 32), tmp_path / "pngs")
    finally:
        os.umask(mask)
    assert folder.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
