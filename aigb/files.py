"""Who wrote an output, and the one check every command that writes runs before it writes.

Every output directory aigb writes holds a marker, ``.aigb-output.json``, naming the command that
owns it (``{"command": "train", ...}``); outputs written before markers existed are recognised by
the files only their command writes (``SIGNATURES``). A command may write into a directory that
does not exist, is empty, or is its own (a re-run resumes or replaces its own files); a directory
another command wrote is refused, naming that command and ``--force``, the flag that writes there
anyway. In a directory that is nobody's (the user's own files), a file the command would write
that already exists is refused the same way: aigb never replaces a file it cannot tell it wrote.

Single-file outputs (``aigb simulate --out x.parquet``, ``aigb fit-evaluator --out x.pt``) are
recognised by their contents: aigb's Parquet files carry their kind in their metadata, its torch
files a ``format`` field. Replacing a file of another kind, or a file aigb did not write, needs
``--force``.

Failures are ``OutputOwnedError`` (a ``ValueError``: the command line prints one line and exits
with status 2) before any work is done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MARKER", "SIGNATURES", "OutputOwnedError", "dir_owner", "file_owner", "check_dir", "claim_dir", "claim_file",
           "read_marker"]

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
        from aigb.data.parquet import read_metadata

        try:
            kind = read_metadata(path).get("kind")
        except (OSError, ValueError):
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
    from aigb.data.parquet import atomic_output, ensure_writable_dir

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
    from aigb.data.parquet import ensure_writable_dir

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
