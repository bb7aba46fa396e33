"""Checkpoints: the whole optimisation state in one file, written atomically, so a killed run can resume.

State = {fingerprint, scale, step, image, optimizer state}. The fingerprint hashes the settings and the input
pixels, so a checkpoint is never resumed into a different run. With L-BFGS (fixed draws) a resumed run gives the
same pixels as an uninterrupted one; Adam with sampling losses redraws its samples after a resume.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import Config, config_to_dict
from ..errors import StylelabError
from ..files import WriteError, write_atomic

__all__ = ["STATE_FILE", "Checkpoint", "CheckpointError", "CheckpointWriteError", "fingerprint"]

STATE_FILE = "state.pt"


class CheckpointError(StylelabError, RuntimeError):
    """A checkpoint folder that cannot be written, read or resumed."""


class CheckpointWriteError(CheckpointError):
    """Saving failed mid-run (disk full, file-size limit, I/O error); the previous checkpoint is intact."""

    exit_code = 1


@dataclass(frozen=True)
class Checkpoint:
    """Where and how often to save; `resume` continues from the saved state instead of starting over."""

    folder: Path
    every: int = 20  # steps between saves (also saved at the end of every scale)
    resume: bool = False

    @property
    def path(self) -> Path:
        return Path(self.folder) / STATE_FILE

    def check_writable(self) -> None:
        """Before the first step: a CheckpointError unless the folder, or the nearest existing folder above it
        (where it will be made), takes a file. Probes with a temporary file and leaves nothing behind."""
        folder = Path(self.folder).absolute()
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            what = "checkpoint folder is a file" if existing == folder else f"{existing} is a file, so it cannot hold"
            raise CheckpointError(f"{what}: {self.folder}" if existing == folder else f"{what} {self.folder}")
        try:
            with tempfile.TemporaryFile(dir=existing, prefix=".stylelab-probe-") as f:
                f.write(b"stylelab")
                f.flush()
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoints to {self.folder}: {exc.strerror or exc}") from None

    def save(self, state: dict[str, Any]) -> None:
        """torch.save through `files.write_atomic` (a temporary file in the same folder, fsync, an atomic rename):
        never a torn file. A failed write (disk full, file-size limit) removes the temporary file, keeps the previous
        checkpoint and raises CheckpointWriteError."""
        folder = Path(self.folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointWriteError(f"cannot write checkpoints to {folder}: {exc.strerror or exc}") from None
        try:
            write_atomic(self.path, lambda f: torch.save(state, f))
        except BaseException as exc:
            reason = _os_reason(exc.__context__ or exc if isinstance(exc, WriteError) else exc)
            if reason is None:
                raise
            kept = "; the previous checkpoint is kept" if self.path.is_file() else ""
            raise CheckpointWriteError(f"cannot save the checkpoint in {folder}: {reason}{kept}") from None

    def load(self, fingerprint: str) -> dict[str, Any]:
        """The saved state of this very run (same fingerprint), or a CheckpointError saying why not."""
        if not self.path.is_file():
            raise CheckpointError(f"nothing to resume: no checkpoint in {self.folder}")
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file gets the same one-line message
            raise CheckpointError(f"checkpoint {self.path} is unreadable ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"checkpoint in {self.folder} is from a different run (settings or input images differ)")
        return state


def fingerprint(config: Config, images: Sequence[Tensor | None], shape: tuple[int, int] | None = None) -> str:
    """sha256 of the settings (minus the time budget, which a resumed run may change) and the input pixels."""
    settings = config_to_dict(config)
    settings.pop("time_budget")
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(repr(shape).encode())
    for image in images:
        if image is not None:
            h.update(image.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _os_reason(exc: BaseException) -> str | None:
    """The strerror of the OSError behind a failed write: raised directly, or wrapped by torch's zip writer
    (a RuntimeError whose cause or context is the OSError, or whose message says the write failed)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, RuntimeError) and "fail" in str(exc).lower() and "writ" in str(exc).lower():
        return str(exc).splitlines()[0]
    return None
