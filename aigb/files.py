"""Atomic writes and output-directory checks, used by every layer that writes.

``atomic_output(path)`` yields a hidden temporary file beside ``path`` and renames it into place
with ``os.replace`` (atomic on POSIX and Windows within one file system) after an fsync: a reader
sees the previous file or the complete new one, never a part, and a crash leaves at most a
temporary file behind. ``ensure_writable_dir`` checks an output directory before long work, so an
unwritable one fails in a second instead of after the work. Both raise ``OutputPathError`` naming
the path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OutputPathError", "ensure_writable_dir", "atomic_output"]


class OutputPathError(OSError):
    """An output that cannot be written (unwritable or missing directory, full disk, size limit);
    the message names the path."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) if needed and check that a file can be created in it.

    Raises ``OutputPathError`` naming the path otherwise. Run it before long work whose results go
    there, so an unwritable output fails in a second instead of after the work.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: cannot write here (it is a file, not a directory)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".aigb-write-test-{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(f"{path}: cannot write here ({_reason(err)})") from None
    return path


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened on Windows, where NTFS
    # journals the rename anyway.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; on a clean exit it replaces ``path``.

    The temporary name starts with '.' so dataset readers (which skip hidden files) never pick it
    up. On any exception, KeyboardInterrupt included, the temporary file is removed and ``path`` is
    left as it was.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = final.parent / f".{final.name}.tmp-{secrets.token_hex(4)}"
            try:
                # O_EXCL: never clobber another writer's temporary file; 0o666 lets the umask
                # decide the final file's permissions as for any ordinary file.
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                break
            except FileExistsError:
                continue
    except OSError as err:
        raise OutputPathError(f"{final}: cannot write ({_reason(err)})") from None
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, OutputPathError):
            # The writes in the body go to tmp; name the file the user asked for. Readers
            # convert their own OSErrors (CorruptFileError, CsvImportError), so what is left
            # here is a failed write: a full disk, a size limit, a vanished directory.
            raise OutputPathError(f"{final}: cannot write ({_reason(err)})") from err
        raise
