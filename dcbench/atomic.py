"""Atomic file writes: a reader never sees a half-written checkpoint, log or record file.

Every write goes to a temporary file in the same folder, is flushed and fsynced, then
renamed over the target (rename is atomic on POSIX). A crash at any moment leaves either the
old file or the new one.
"""

from __future__ import annotations

import fcntl
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _file_mode() -> int:
    """The mode open() would give a new file (mkstemp's is 0600, too private for results)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def through_links(path: str | os.PathLike) -> Path:
    """The file a write to `path` must replace: a symlink's target, so that a link (a
    records.jsonl shared by several results folders) stays a link instead of being
    replaced by a regular file by the rename."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file + fsync + rename); a symlink is written
    through (its target is replaced, the link kept)."""
    path = through_links(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable_dir(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, a destination folder that is a file or cannot be written
    (probed with a real temporary file: permissions, read-only mounts, root's CAP_DAC)."""
    from dcbench.errors import DcbenchError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DcbenchError(f"{what} {p} is a file, not a folder; pass a folder path")
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise DcbenchError(f"{what} {p} cannot be created: {probe} is a file; pass a folder path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dcbench-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise DcbenchError(f"{what} {p} is not writable (cannot create a file in {probe}: "
                           f"{e.strerror or e}); choose a folder you can write to") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through an in-memory buffer, then an atomic write."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_numpy_save(path: str | os.PathLike, array: Any) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


@contextmanager
def locked(path: str | os.PathLike,
           on_wait: Callable[[Path], None] | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path + '.lock'` (for read-modify-write of a file).
    `on_wait(lock_path)` is called once if another process holds it (before blocking)."""
    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        if on_wait is None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_wait(lock_path)
                fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def hold_or_refuse(path: str | os.PathLike, what: str) -> IO[str]:
    """Take an exclusive lock on `path + '.lock'` for as long as the returned file stays open
    (the process's life: the OS drops it even on kill -9), or refuse in one line if another
    process holds it; the holder's pid is written into the lock file for that message."""
    from dcbench.errors import DcbenchError

    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(lock_path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise DcbenchError(f"{what} {path} is in use by another dcbench process (pid "
                           f"{holder}); wait for it to finish or choose another {what}") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def atomic_append_lines(path: str | os.PathLike, lines: list[str]) -> None:
    """Append whole lines to a text file so that it never holds a partial line.

    The file is rewritten (old content + new lines) under a lock and renamed into place:
    concurrent writers serialise, and a crash leaves the file as it was before.
    """
    path = through_links(path)          # one lock for every link to the same file
    with locked(path):
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        new = "".join(line.rstrip("\n") + "\n" for line in lines).encode("utf-8")
        atomic_write_bytes(path, old + new)
