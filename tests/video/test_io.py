"""Video in and out (stylelab.video.io, PyAV) on clips the tests make themselves."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from helpers import SR, make_clip, moving_frames, streams, unknown_codec_clip

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from stylelab.video.io import VideoError, parse_frames, read_video, write_frames, write_video  # noqa: E402

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


def test_frame_folder_has_a_plain_folders_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        folder = write_frames(moving_frames(2, 32, 32), tmp_path / "pngs")
    finally:
        os.umask(mask)
    assert folder.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
