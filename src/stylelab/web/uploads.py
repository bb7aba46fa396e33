"""Uploaded images: DATA/uploads/<sha256>.<format>, every one under the hash of its bytes (a request never names a
path), listed in the uploads table. An upload is decoded by the CLI's loaders before it is kept."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

from PIL import Image

from ..errors import StylelabError
from ..files import write_atomic
from ..jobs.spec import decode
from .db import Database
from .errors import BadRequest, NotFound

__all__ = ["Uploads", "check", "client_name", "size_text", "sniff"]


class Uploads:
    """The uploads of one data folder."""

    def __init__(self, folder: Path, db: Database) -> None:
        self.folder, self.db = folder, db
        folder.mkdir(exist_ok=True)

    def add(self, data: bytes, fmt: str, name: str, size: tuple[int, int]) -> dict:
        """Keep `data` (a decoded image of format `fmt`, `size` pixels; `name`: the client's, for display)."""
        sha = hashlib.sha256(data).hexdigest()
        file = f"{sha}.{fmt.lower()}"
        if not (self.folder / file).is_file():
            write_atomic(self.folder / file, lambda f: f.write(data))
        self.db.add_upload(sha, file, name, size)
        return self.get(sha)

    def get(self, sha: str) -> dict:
        row = self.db.upload(sha)
        if row is None:
            raise NotFound(f"no upload {sha[:16]}")
        return row

    def recent(self, limit: int = 50) -> list[dict]:
        return self.db.uploads(limit)

    def path(self, sha: str) -> Path:
        return self.folder / self.get(sha)["file"]  # the file name comes from the table


def check(data: bytes, name: str, max_bytes: int, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """An upload's bytes as the API takes them: (format, size), else a BadRequest with the status that says why
    (413 too large, 415 not an image, 400 empty)."""
    if len(data) > max_bytes:
        raise BadRequest(f"{name} is larger than the upload limit ({size_text(max_bytes)})", 413)
    if not data:
        raise BadRequest(f"{name} is an empty file", 400)
    try:
        fmt, size = sniff(data, name)
    except StylelabError as exc:
        raise BadRequest(str(exc), 413 if "too large" in str(exc) else 415) from None
    if size[0] * size[1] > max_pixels:
        raise BadRequest(f"{name} is too large ({size[0]}x{size[1]} px, limit {max_pixels:,} pixels)", 413)
    return fmt, size


def sniff(data: bytes, name: str) -> tuple[str, tuple[int, int]]:
    """Decode the bytes with the CLI's loader (pixel limit / decompression-bomb guard, orientation, ICC); returns
    the format the content really is (never the file name's) and the decoded size."""
    image = decode(data, name, "upload")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # decode() has applied the guard
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "img").lower()
    return ("jpg" if fmt == "jpeg" else fmt), image.size


def client_name(filename: str | None) -> str:
    """The client's file name, for messages only (never a path here)."""
    name = Path((filename or "upload").replace("\\", "/")).name
    return "".join(c for c in name if c.isprintable())[:80] or "upload"


def size_text(n: int) -> str:
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} kB"
