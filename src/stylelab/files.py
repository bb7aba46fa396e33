"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it.

A failed, interrupted or killed write never leaves a partial file under the target's name, and an existing file
stays as it was until the new one is complete. Used for images (image.save_image) and reports (explain); any
writer of results should use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import StylelabError

__all__ = ["TMP_INFIX", "WriteError", "check_not_an_input", "plain_dir_mode", "plain_mode", "remove_partial_writes",
    "same_file", "write_atomic", "write_text_atomic"]


class WriteError(StylelabError, OSError):
    """A file could not be written: `cannot write PATH: reason`, one line."""


TMP_INFIX = ".stylelab-"  # temporary files are .NAME.stylelab-XXXX.tmp beside NAME, renamed over it when complete


def remove_partial_writes(folder: str | os.PathLike) -> None:
    """Delete the temporary files that killed writes left under `folder` (never renamed, so never a result)."""
    for tmp in Path(folder).rglob(f".*{TMP_INFIX}*.tmp"):
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Run `write(f)` on a temporary binary file beside `path`, then rename it over `path`; returns the path.

    Any OSError (disk full, no permission, file size limit ...) becomes a WriteError; any other exception,
    KeyboardInterrupt included, propagates unchanged. In every failure the temporary file is removed. The file
    gets the permissions of a plainly created one (0666 less the umask), not mkstemp's 0600.
    """
    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}{TMP_INFIX}", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {p}: {_reason(exc)}") from None
    try:
        os.chmod(tmp, plain_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StylelabError):
            raise WriteError(f"cannot write {p}: {_reason(exc)}") from None
        raise
    return p


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """`write_atomic` of UTF-8 text."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data))


def _reason(exc: OSError) -> str:
    return " ".join(str(exc.strerror or exc).split())


def plain_mode() -> int:
    """The permissions of a plainly created file: 0666 less the umask (mkstemp's files are 0600)."""
    return 0o666 & ~_umask()


def plain_dir_mode() -> int:
    """The permissions of a plainly created folder: 0777 less the umask (mkdtemp's folders are 0700)."""
    return 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_not_an_input(output: str | Path, inputs: dict[str, str]) -> None:
    """Refuse an output that would replace one of the inputs (same path, or the same file by another name)."""
    out = Path(output)
    for role, path in inputs.items():
        if same_file(out, path):
            raise StylelabError(f"output {out} is also the {role}; choose another -o, or add --overwrite to replace it")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether writing `a` would replace `b`: the same path, through links too, or the same existing file."""
    a, b = Path(a), Path(b)
    if a.absolute() == b.absolute() or a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and a.samefile(b)
