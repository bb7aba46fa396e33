"""stylelab.files.write_atomic: all or nothing, whatever stops the write."""

import os
import stat

import pytest

from stylelab.errors import StylelabError
from stylelab.files import WriteError, write_atomic, write_text_atomic


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "report.html"
    assert write_text_atomic(target, "one ✓") == target
    write_text_atomic(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # not mkstemp's 0600


@pytest.mark.parametrize("exc", [RuntimeError("encoder failed"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path, exc):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"half a new fi")
        raise exc

    with pytest.raises(type(exc)):
        write_atomic(target, write)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_disk_errors_are_one_line_write_errors(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(WriteError) as info:
        write_text_atomic(tmp_path / "index.html", "x")
    assert isinstance(info.value, StylelabError) and isinstance(info.value, OSError)
    assert str(info.value) == f"cannot write {tmp_path / 'index.html'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_missing_folder(tmp_path):
    with pytest.raises(WriteError, match="cannot write"):
        write_text_atomic(tmp_path / "nope" / "index.html", "x")
