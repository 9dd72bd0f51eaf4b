"""Atomic writes and output-directory checks, used by every layer that writes.

``atomic_output(path)`` yields a hidden temporary file beside ``path`` and renames it into place
with ``os.replace`` (atomic on POSIX and Windows within one file system) after an fsync: a reader
sees the previous file or the complete new one, never a part, and a crash leaves at most a
temporary file behind. ``ensure_writable_dir`` checks an output directory before long work, so an
unwritable one fails in a second instead of after the work. Both raise ``OutputPathError`` naming
the path.

Who wrote an output. Who wrote an output, and the one check every command that writes runs before it writes.

Every output directory aigb writes holds a marker, ``.aigb-output.json``, naming the command that
owns it (``{"command": "train", ...}``); outputs written before markers existed are recognised by
the files only their command writes (``SIGNATURES``). A command may write into a directory that
does not exist, is empty, or is its own (a re-run resumes or replaces its own files); a directory
another command wrote is refused, naming that command and ``--force``, the flag that writes there
anyway. In a directory that is nobody's (the user's own files), a file the command would write
that already exists is refused the same way: aigb never replaces a file it cannot tell it wrote.

Single-file outputs (``aigb simulate --out x.parquet``, ``aigb diffbid fit-evaluator --out x.pt``) are
recognised by their contents: aigb's Parquet files carry their kind in their metadata, its torch
files a ``format`` field. Replacing a file of another kind, or a file aigb did not write, needs
``--force``.

Failures are ``OutputOwnedError`` (a ``ValueError``: the command line prints one line and exits
with status 2) before any work is done.
"""


from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["OutputPathError", "ensure_writable_dir", "atomic_output", "MARKER", "SIGNATURES", "OutputOwnedError",
           "dir_owner", "file_owner", "check_dir", "claim_dir", "claim_file", "read_marker"]


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


# ------------------------------------------------------------------------- who wrote an output




MARKER = ".aigb-output.json"
"""The marker file of an output directory (hidden: dataset readers skip it)."""

SIGNATURES: dict[str, tuple[str, ...]] = {
    "evaluate": ("results.parquet", "rows.partial.jsonl"),
    "train": ("train_args.json", "last.pt"),
    "sweep": ("sweep.json",),
    "generate": ("dataset.json",),
    "report": ("report.html", "leaderboard.json"),
    "demo": ("stages",),
}
"""Files (any one of them) that tell which command wrote an output directory without a marker.
(An export without one is told by its params.json: ``aigb.export.exporter``.)"""

# Parquet ``kind`` metadata -> the command that writes such files on its own.
_PARQUET_KINDS = {"simulation": "simulate", "evaluation": "evaluate", "evaluation-traces": "evaluate",
                  "impressions": "generate", "trajectories": "generate"}
# torch payload ``format`` -> command.
_TORCH_FORMATS = {"aigb.algos.checkpoint": "train", "aigb.plan_evaluator": "fit-evaluator"}


class OutputOwnedError(ValueError):
    """An output another command wrote (or a file aigb did not write) that a command would replace."""


def read_marker(directory: str | os.PathLike) -> dict | None:
    """The marker of ``directory`` (None without one, or with one that is not aigb's)."""
    try:
        value = json.loads((Path(directory) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("command"), str) else None


def dir_owner(directory: str | os.PathLike) -> tuple[str | None, str]:
    """(the command that wrote ``directory``, the evidence) or (None, "") when none did."""
    directory = Path(directory)
    marker = read_marker(directory)
    if marker is not None:
        return marker["command"], MARKER
    if not directory.is_dir():
        return None, ""
    for command, names in SIGNATURES.items():
        for name in names:
            if (directory / name).exists():
                return command, name
    return None, ""


def file_owner(path: str | os.PathLike) -> str | None:
    """The command that writes a file like ``path`` (by its contents), or None for a file aigb
    did not write."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # aigb's Parquet files carry their kind as JSON under "aigb.kind" (aigb.data.parquet).
        try:
            kind = json.loads((pq.read_schema(path).metadata or {}).get(b"aigb.kind", b"null"))
        except (OSError, ValueError, pa.ArrowException):
            return None
        return _PARQUET_KINDS.get(kind)
    if path.suffix in (".pt", ".pth"):
        try:
            import torch
        except ImportError:
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:   # noqa: BLE001 - any unreadable file is one aigb cannot tell it wrote
            return None
        return _TORCH_FORMATS.get(payload.get("format")) if isinstance(payload, dict) else None
    return None


def _refuse(what: str, command: str, force_flag: str) -> OutputOwnedError:
    return OutputOwnedError(f"--out: {what}; `aigb {command}` does not replace it: choose another --out, "
                            f"or add {force_flag} to write there anyway")


def check_dir(directory: str | os.PathLike, command: str, *, force: bool = False, writes: Iterable[str] = (),
              force_flag: str = "--force") -> Path:
    """``claim_dir``'s refusals alone: nothing is created or marked."""
    directory = Path(directory)
    owner, evidence = dir_owner(directory)
    if not force and owner is not None and owner != command:
        raise _refuse(f"{directory} holds the output of `aigb {owner}` ({evidence})", command, force_flag)
    if not force and owner is None and directory.is_dir():
        taken = [name for name in writes if (directory / name).exists()]
        if taken:
            raise _refuse(f"{directory / taken[0]} exists and was not written by `aigb {command}`", command, force_flag)
    return directory


def claim_dir(directory: str | os.PathLike, command: str, *, force: bool = False, writes: Iterable[str] = (),
              force_flag: str = "--force") -> Path:
    """Check that ``command`` may write into ``directory``, make it, and mark it as ``command``'s.

    Refused unless ``force`` (``OutputOwnedError``): a directory another command wrote; in a
    directory no command wrote, any of the names in ``writes`` (the files ``command`` writes) that
    exists. Also raises ``OutputPathError`` (from ``ensure_writable_dir``) for a directory that
    cannot be written. Returns the directory's path.
    """

    directory = check_dir(directory, command, force=force, writes=writes, force_flag=force_flag)
    ensure_writable_dir(directory)
    marker = read_marker(directory)
    if marker is None or marker["command"] != command:
        with atomic_output(directory / MARKER) as tmp:
            tmp.write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")
    return directory


def claim_file(path: str | os.PathLike, command: str, *, force: bool = False, force_flag: str = "--force") -> Path:
    """Check that ``command`` may write the single file ``path`` (see the module docstring) and that
    its directory can be written; returns the path."""

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out: {path} is a directory; give a file name, e.g. {path / ('out' + (path.suffix or '.parquet'))}")
    if path.exists() and not force:
        owner = file_owner(path)
        if owner is None:
            raise _refuse(f"{path} exists and is not a file aigb wrote", command, force_flag)
        if owner != command:
            raise _refuse(f"{path} was written by `aigb {owner}`", command, force_flag)
    ensure_writable_dir(path.parent)
    return path
