"""Reading and writing videos with PyAV (its wheels bundle FFmpeg; no system ffmpeg is needed).

    clip = read_video("in.mp4", frames=(0, 48), fps=12, size=256)   # or a folder / glob of image frames
    clip.frames   # list of (H, W, 3) uint8 RGB arrays; clip.fps a Fraction; clip.has_audio
    write_video(frames, "out.mp4", clip.fps, audio=clip)            # H.264 yuv420p, audio remuxed
    write_frames(frames, "out_frames/")                              # a folder of PNGs

Outputs are written atomically (a temporary file or folder beside the target, renamed over it): a failed or
interrupted write leaves no output. Every failure on bad input raises `VideoError` with a one-line message.
Needs `av` (the `stylelab[video]` extra); imported only when a video is read or written.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from ..errors import StylelabError
from ..files import plain_dir_mode, plain_mode
from ..image import ImageError, open_image
from .flow import ExtraMissing, as_uint8

__all__ = [
    "CRF",
    "DEFAULT_FOLDER_FPS",
    "FRAME_SUFFIXES",
    "REMUX_AUDIO",
    "VIDEO_SUFFIXES",
    "Clip",
    "VideoError",
    "frame_name",
    "output_kind",
    "parse_fps",
    "parse_frames",
    "read_video",
    "write_frames",
    "write_video",
]

VIDEO_SUFFIXES = {".mp4": "mp4", ".mov": "mov"}  # outputs; anything FFmpeg reads is an input
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # frames of a folder input
DEFAULT_FOLDER_FPS = Fraction(24)  # a folder of frames has no rate of its own
CRF = 18  # libx264 quality: 18 is visually lossless-ish; the stylised frames are the product
# Audio codecs these containers take as they are; any other audio is re-encoded to AAC.
REMUX_AUDIO = {"mp4": {"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"},
               "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le"}}


class VideoError(StylelabError, ValueError):
    """A video or frame folder that cannot be read, or an output that cannot be written."""


@dataclass
class Clip:
    """Decoded frames and what the output needs to match them."""

    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB, all the same size
    fps: Fraction
    source: Path | None = None  # the video file (None for frames from a folder)
    audio_range: tuple[float, float | None] | None = None  # seconds of the source's audio to keep; None: no audio
    meta: dict = field(default_factory=dict)

    @property
    def has_audio(self) -> bool:
        return self.audio_range is not None


def _av():
    try:
        import av
    except ImportError:
        raise ExtraMissing("video needs PyAV: pip install 'stylelab[video]'") from None
    return av


def _one_line(exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None)
    if reason:  # FFmpeg errors: the reason without the errno and the path
        return str(reason)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def parse_frames(text: str) -> tuple[int | None, int | None]:
    """'A:B' -> (A, B): frames A to B-1 counting from 0; either side may be empty ('10:', ':48')."""
    a, sep, b = text.partition(":")
    try:
        start = int(a) if a.strip() else None
        stop = int(b) if b.strip() else None
    except ValueError:
        start = stop = -1
    if not sep or (start is not None and start < 0) or (stop is not None and stop < 0) \
            or (start is not None and stop is not None and stop <= start):
        raise VideoError(f"--frames must be A:B with 0 <= A < B (frames A to B-1), got {text!r}")
    return start, stop


def parse_fps(value: float | str | Fraction | None) -> Fraction | None:
    if value is None:
        return None
    try:
        fps = Fraction(str(value)).limit_denominator(100_000)
    except (ValueError, ZeroDivisionError):
        raise VideoError(f"--fps must be a number > 0, got {value!r}") from None
    if fps <= 0 or fps > 1000:
        raise VideoError(f"--fps must be > 0 and at most 1000, got {value!r}")
    return fps


def read_video(source: str | os.PathLike, *, frames: tuple[int | None, int | None] | None = None,
               fps: float | Fraction | None = None, size: int | None = None) -> Clip:
    """Decode a video file, a folder of frames or a glob ('shots/*.png') into RGB frames. `frames` (A, B) keeps
    frames A..B-1 of the source; `fps` then resamples to that rate (nearest frame; for a folder it is simply the
    rate, default 24); `size` resizes so the long edge is `size` px."""
    start, stop = frames if frames is not None else (None, None)
    fps = parse_fps(fps)
    text = str(source)
    path = Path(source)
    if path.is_dir() or (not path.exists() and any(ch in text for ch in "*?[")):
        arrays = _read_folder(path, text, start, stop, size)
        clip = Clip(arrays, fps or DEFAULT_FOLDER_FPS)
    elif not path.is_file():
        raise VideoError(f"input not found: {text}")
    else:
        clip = _read_file(path, start, stop, size)
        if fps is not None and fps != clip.fps:
            clip = _resample(clip, fps)
    if not clip.frames:
        raise VideoError(f"no frames in {text}" + (f" in the range {start or 0}:{stop if stop is not None else ''}"
                                                   if frames else ""))
    return clip


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _read_folder(path: Path, text: str, start: int | None, stop: int | None, size: int | None) -> list[np.ndarray]:
    files = sorted(path.iterdir()) if path.is_dir() else [Path(p) for p in glob.glob(text)]
    files = sorted((f for f in files if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)
    if not files:
        raise VideoError(f"no frames ({', '.join(FRAME_SUFFIXES)}) in {text}")
    arrays, shape = [], None
    for f in files[start:stop]:
        try:
            im = open_image(f, "frame").convert("RGB")
        except ImageError as exc:
            raise VideoError(str(exc)) from None
        if shape is None:
            shape = im.size
        elif im.size != shape:
            raise VideoError(f"frame {f.name} is {im.size[0]}x{im.size[1]} px, the first frame {shape[0]}x{shape[1]}")
        arrays.append(_resized(np.asarray(im), size))
    return arrays


def _read_file(path: Path, start: int | None, stop: int | None, size: int | None) -> Clip:
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"cannot read {path.name} as a video: {_one_line(exc)}") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a codec FFmpeg does not know, or has no decoder for in this build
            raise VideoError(f"cannot decode {path.name}: its video codec has no decoder in this FFmpeg build")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(rate).limit_denominator(100_000) if rate else Fraction(25)
        stream.thread_type = "AUTO"
        arrays: list[np.ndarray] = []
        try:
            for k, frame in enumerate(container.decode(stream)):
                if stop is not None and k >= stop:
                    break
                if start is None or k >= start:
                    arrays.append(_resized(frame.to_ndarray(format="rgb24"), size))
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"cannot decode {path.name} ({stream.codec_context.name}): {_one_line(exc)}") from None
        audio = None
        if container.streams.audio:
            begin = (start or 0) / fps
            audio = (float(begin), None if stop is None else float(begin + len(arrays) / fps))
    return Clip(arrays, fps, path, audio, {"codec": stream.codec_context.name})


def _resample(clip: Clip, fps: Fraction) -> Clip:
    """Nearest-frame resampling to `fps` over the same duration (no interpolation)."""
    n = len(clip.frames)
    count = max(1, int(n * fps / clip.fps)) if n else 0
    picks = [min(n - 1, round(k * clip.fps / fps)) for k in range(count)]
    return Clip([clip.frames[i] for i in picks], fps, clip.source, clip.audio_range, clip.meta)


def _resized(a: np.ndarray, size: int | None) -> np.ndarray:
    h, w = a.shape[:2]
    if size is None or max(h, w) == size:
        return np.ascontiguousarray(a)
    f = size / max(h, w)
    wh = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(a).resize(wh, Image.Resampling.LANCZOS))


def output_kind(path: str | os.PathLike) -> str:
    """'video' for .mp4/.mov, 'frames' for a folder (no suffix); checked before any work."""
    p = Path(path)
    suffix = p.suffix.lower()
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise VideoError(f"output folder does not exist: {parent}")
    if suffix in VIDEO_SUFFIXES:
        if p.is_dir():
            raise VideoError(f"output is a directory: {p}")
        return "video"
    if suffix:
        raise VideoError(f"cannot tell the output from {p.name!r}: use a .mp4 or .mov file, or a folder name "
                         "(no suffix) for PNG frames")
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise VideoError(f"output folder {p} exists and is not empty")
    return "frames"


def _even(a: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: an odd last row or column is cropped."""
    h, w = a.shape[:2]
    return a[: h - h % 2, : w - w % 2]


def write_video(frames: Iterable[np.ndarray | Tensor], path: str | os.PathLike, fps: Fraction | float,
                audio: Clip | None = None) -> Path:
    """Encode `frames` (uint8 RGB arrays or (1, 3, H, W) tensors in [0,1]) as H.264 (yuv420p, CRF 18) at `fps`;
    with `audio` (a Clip read from a file with an audio stream) its audio over the clip's time range is copied
    (remuxed; re-encoded to AAC when the container cannot hold the codec). Atomic."""
    av = _av()
    p = Path(path)
    fmt = VIDEO_SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise VideoError(f"cannot write a video as {p.name!r}; use .mp4 or .mov")
    rate = parse_fps(fps)
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}.", suffix=p.suffix)
    os.close(fd)
    os.chmod(tmp, plain_mode())  # as a plainly created file, not mkstemp's 0600
    try:
        n = 0
        with av.open(tmp, "w", format=fmt) as out:
            stream = None
            src = None
            for frame in frames:
                a = _even(as_uint8(frame))
                if a.shape[0] < 2 or a.shape[1] < 2:
                    raise VideoError(f"frames of {a.shape[1]}x{a.shape[0]} px are too small for H.264")
                if stream is None:
                    stream = out.add_stream("libx264", rate=rate)
                    stream.width, stream.height, stream.pix_fmt = a.shape[1], a.shape[0], "yuv420p"
                    stream.options = {"crf": str(CRF)}
                    if audio is not None and audio.has_audio and audio.source is not None:
                        src = _AudioCopy(av, out, fmt, audio)
                elif (a.shape[1], a.shape[0]) != (stream.width, stream.height):
                    raise VideoError(f"frame {n} is {a.shape[1]}x{a.shape[0]} px, the first "
                                     f"{stream.width}x{stream.height}")
                for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                    out.mux(packet)
                n += 1
            if stream is None:
                raise VideoError("no frames to write")
            for packet in stream.encode():
                out.mux(packet)
            if src is not None:
                src.copy()
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, av.FFmpegError):
            raise VideoError(f"cannot write {p.name}: {_one_line(exc)}") from None
        raise
    return p


class _AudioCopy:
    """The audio stream of a clip's source, over the clip's time range, into an output container."""

    def __init__(self, av, out, fmt: str, clip: Clip) -> None:
        assert clip.audio_range is not None  # only made for a clip with audio
        self.av, self.out, self.range = av, out, clip.audio_range
        self.inp = av.open(str(clip.source))
        self.ia = self.inp.streams.audio[0]
        self.remux = self.ia.codec_context.name in REMUX_AUDIO[fmt]
        if self.remux:
            self.oa = out.add_stream_from_template(self.ia)
        else:
            self.oa = out.add_stream("aac", rate=self.ia.codec_context.sample_rate or 48000)

    def copy(self) -> None:
        begin, end = self.range
        try:
            if self.remux:
                self._remux(begin, end)
            else:
                self._transcode(begin, end)
        finally:
            self.inp.close()

    def _remux(self, begin: float, end: float | None) -> None:
        tb = self.ia.time_base
        offset = round(begin / tb)
        for packet in self.inp.demux(self.ia):
            if packet.dts is None or packet.pts is None:
                continue
            t = float(packet.pts * tb)
            if t < begin - 1e-6 or (end is not None and t >= end - 1e-6):
                continue
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = self.oa
            self.out.mux(packet)

    def _transcode(self, begin: float, end: float | None) -> None:
        resampler = self.av.AudioResampler(format="fltp", layout="stereo", rate=self.oa.codec_context.sample_rate)
        pts = 0
        for frame in self.inp.decode(self.ia):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            if t < begin - 1e-6 or (end is not None and t >= end - 1e-6):
                continue
            for f in resampler.resample(frame):
                f.pts = pts
                pts += f.samples
                for packet in self.oa.encode(f):
                    self.out.mux(packet)
        for packet in self.oa.encode():
            self.out.mux(packet)


def write_frames(frames: Iterable[np.ndarray | Tensor], folder: str | os.PathLike, first: int = 0) -> Path:
    """Save `frames` as folder/frame_000000.png, ... (numbered from `first`, as `--frames` counts). Atomic:
    written into a temporary folder beside `folder`, renamed to it at the end (`folder` must not exist or be
    empty); the folder gets a plain folder's permissions, not mkdtemp's 0700."""
    p = Path(folder)
    tmp = Path(tempfile.mkdtemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}."))
    try:
        os.chmod(tmp, plain_dir_mode())
        n = 0
        for n, frame in enumerate(frames, start=1):
            Image.fromarray(as_uint8(frame)).save(tmp / frame_name(first + n - 1))
        if n == 0:
            raise VideoError("no frames to write")
        if p.is_dir():
            p.rmdir()  # empty (checked by output_kind); os.replace cannot replace a folder
        os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return p


def frame_name(n: int) -> str:
    """File name of frame n (from 0, as `--frames` counts) in a frame folder."""
    return f"frame_{n:06d}.png"
