"""Atomic, self-describing Parquet files.

Every file aigb writes carries its schema version, the aigb version, its kind, the resolved config
and the seed in the Parquet schema metadata, so a file alone says what made it. Writes go to a
hidden temporary file in the destination directory and are renamed into place with ``os.replace``
(atomic on POSIX and Windows within one file system): a reader either sees the previous file or the
complete new one, never a half-written file, and a crash leaves at most a temporary file behind.

Integrity: files are written with Parquet page checksums (CRC-32 per data page) and ``read_table``
verifies them, so a damaged page (a flipped bit on disk, a bad copy) raises ``CorruptFileError``
naming the file instead of decoding to wrong numbers. Write failures (a full disk, a file-size
limit, a directory that is not writable) raise ``OutputPathError`` naming the file; call
``ensure_writable_dir`` before long work so such a directory fails first, not last.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import aigb
from aigb.data.schema import SCHEMA_VERSION
from aigb.files import OutputPathError, atomic_output, ensure_writable_dir

# OutputPathError, ensure_writable_dir and atomic_output live in aigb.files; they stay importable here.

__all__ = [
    "COMPRESSION",
    "DEFAULT_ROW_GROUP_SIZE",
    "METADATA_PREFIX",
    "SchemaVersionError",
    "CorruptFileError",
    "OutputPathError",
    "ensure_writable_dir",
    "file_metadata",
    "atomic_output",
    "write_table_atomic",
    "AtomicParquetWriter",
    "read_metadata",
    "num_rows",
    "check_schema_version",
    "read_table",
]

COMPRESSION = "zstd"
"""Parquet codec: zstd compresses the log's repetitive columns well at a low CPU cost."""

DEFAULT_ROW_GROUP_SIZE = 1 << 20
"""Rows per row group: large enough for efficient column scans, small enough (~50 MB of an
impression log in memory) to keep a streaming writer's buffer bounded."""

METADATA_PREFIX = "aigb."
"""Prefix of aigb's keys in the Parquet schema metadata (other keys, e.g. pandas', are left alone)."""


class SchemaVersionError(ValueError):
    """A Parquet file written under another schema version, or not written by aigb."""


class CorruptFileError(ValueError):
    """A file whose bytes are damaged (failed page checksum, undecodable page or footer)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _encode(key: str, value: Any) -> bytes:
    try:
        return json.dumps(value, sort_keys=True, default=_json_default, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ValueError(f"metadata {key}: cannot store {value!r} as JSON ({err})") from None


def file_metadata(kind: str, config: Mapping[str, Any] | None = None, seed: int | None = None, **extra: Any) -> dict[bytes, bytes]:
    """Parquet schema metadata that makes a file self-describing.

    ``kind`` names the table ("impressions", "trajectories", ...), ``config`` is the resolved
    configuration that produced it, ``seed`` its root seed; ``extra`` adds further JSON-serialisable
    entries (e.g. ``source="period-7.csv"``). Values are stored as JSON under ``aigb.<key>``.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind: must be a non-empty string, got {kind!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config: must be a mapping or None, got {type(config).__name__}")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: must be an integer >= 0 or None, got {seed!r}")
        seed = int(seed)
    entries: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "aigb_version": aigb.__version__,
        "kind": kind,
        "config": dict(config) if config is not None else None,
        "seed": seed,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in extra.items():
        if key in entries:
            raise ValueError(f"metadata {key}: reserved key, pass it as the named argument instead")
        entries[key] = value
    return {f"{METADATA_PREFIX}{k}".encode(): _encode(k, v) for k, v in entries.items()}


def _merged(schema: pa.Schema, metadata: Mapping[bytes, bytes] | None) -> pa.Schema:
    if not metadata:
        return schema
    return schema.with_metadata({**(schema.metadata or {}), **metadata})


def write_table_atomic(
    table: pa.Table,
    path: str | os.PathLike,
    metadata: Mapping[bytes, bytes] | None = None,
    *,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
) -> Path:
    """Write ``table`` as zstd Parquet to ``path`` atomically, with ``metadata`` merged into its
    schema metadata. Returns the final path."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"table: expected a pyarrow.Table, got {type(table).__name__}")
    if row_group_size < 1:
        raise ValueError(f"row_group_size: must be >= 1, got {row_group_size}")
    table = table.replace_schema_metadata(_merged(table.schema, metadata).metadata)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION, row_group_size=row_group_size, write_page_checksum=True)
    return Path(path)


def _schema_difference(expected: pa.Schema, got: pa.Schema) -> str:
    if expected.names != got.names:
        missing = [n for n in expected.names if n not in got.names]
        unexpected = [n for n in got.names if n not in expected.names]
        if missing or unexpected:
            return f"missing columns {missing}, unexpected columns {unexpected}"
        return f"columns in order {got.names}, expected {expected.names}"
    diffs = [f"{e.name}: {g.type} instead of {e.type}" for e, g in zip(expected, got) if not e.type.equals(g.type)]
    return "; ".join(diffs) or "nullability differs"


class AtomicParquetWriter:
    """Streaming Parquet writer that publishes its file only on a clean exit.

    Use as a context manager::

        with AtomicParquetWriter(path, IMPRESSION_SCHEMA, file_metadata("impressions")) as w:
            for batch in batches:
                w.write_batch(batch)

    Batches are buffered into row groups of ``row_group_size`` rows (small input batches would
    otherwise make small row groups, which scan slowly). On an exception the temporary file is
    deleted and nothing appears under ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        metadata: Mapping[bytes, bytes] | None = None,
        *,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        use_dictionary: bool | list[str] = True,
    ):
        if row_group_size < 1:
            raise ValueError(f"row_group_size: must be >= 1, got {row_group_size}")
        self.path = Path(path)
        self.schema = _merged(schema, metadata)
        self.row_group_size = int(row_group_size)
        self.use_dictionary = use_dictionary  # True, or the columns to dictionary-encode (pyarrow's option)
        self.rows_written = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._output: contextlib.AbstractContextManager[Path] | None = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> AtomicParquetWriter:
        if self._output is not None:
            raise RuntimeError(f"{self.path}: writer already open")
        self._output = atomic_output(self.path)
        tmp = self._output.__enter__()
        try:
            self._writer = pq.ParquetWriter(tmp, self.schema, compression=COMPRESSION, write_page_checksum=True,
                                            use_dictionary=self.use_dictionary)
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        return self

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append rows; their schema must match the writer's (metadata aside)."""
        if self._writer is None:
            raise RuntimeError(f"{self.path}: use AtomicParquetWriter as a context manager ('with')")
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"{self.path}: batch schema does not match the file's: {_schema_difference(self.schema, batch.schema)}")
        if batch.num_rows == 0:
            return
        self._buffer.extend(batch.to_batches() if isinstance(batch, pa.Table) else [batch])
        self._buffered += batch.num_rows
        if self._buffered >= self.row_group_size:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        # Write whole row groups only; the remainder waits for more rows unless this is the end.
        n = table.num_rows if final else (table.num_rows // self.row_group_size) * self.row_group_size
        self._writer.write_table(table.slice(0, n), row_group_size=self.row_group_size)
        rest = table.slice(n)
        self._buffer = rest.to_batches() if rest.num_rows else []
        self._buffered = rest.num_rows
        self.rows_written += n

    def __exit__(self, exc_type, exc, tb) -> bool:
        writer, output = self._writer, self._output
        if writer is None or output is None:
            return False
        try:
            if exc_type is None:
                try:
                    self._flush(final=True)
                    writer.close()
                except BaseException:
                    with contextlib.suppress(Exception):
                        writer.close()
                    output.__exit__(*sys.exc_info())
                    raise
                output.__exit__(None, None, None)
            else:
                with contextlib.suppress(Exception):
                    writer.close()
                output.__exit__(exc_type, exc, tb)
        finally:
            self._writer, self._output, self._buffer, self._buffered = None, None, [], 0
        return False


def _damaged(path, err: Exception) -> CorruptFileError:
    return CorruptFileError(f"{path}: damaged file, cannot be read ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                            "delete it and regenerate or re-import it")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """aigb's metadata of a Parquet file, decoded (``aigb.`` prefix dropped); {} if it has none."""
    try:
        raw = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as err:
        raise _damaged(path, err) from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        key = key.decode("utf-8", "replace")
        if key.startswith(METADATA_PREFIX):
            name = key[len(METADATA_PREFIX):]
            try:
                out[name] = json.loads(value)
            except ValueError:
                raise ValueError(f"{path}: metadata {name} is not valid JSON: {value[:80]!r}") from None
    return out


def num_rows(path: str | os.PathLike) -> int:
    """Rows of a Parquet file, from its footer (``CorruptFileError`` if the footer is damaged)."""
    try:
        return int(pq.read_metadata(path).num_rows)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as err:
        raise _damaged(path, err) from None


def check_schema_version(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Raise ``SchemaVersionError`` naming ``path`` unless it was written under ``SCHEMA_VERSION``
    (and, if given, is of ``kind``); return its decoded metadata."""
    meta = read_metadata(path)
    if "schema_version" not in meta:
        raise SchemaVersionError(f"{path}: not an aigb Parquet file (no {METADATA_PREFIX}schema_version in its metadata)")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: written with schema version {meta['schema_version']} "
            f"(aigb {meta.get('aigb_version', '?')}), this aigb reads version {SCHEMA_VERSION}; "
            "regenerate or re-import the file"
        )
    if kind is not None and meta.get("kind") != kind:
        raise SchemaVersionError(f"{path}: holds {meta.get('kind')!r} data, expected {kind!r}")
    return meta


def read_table(path: str | os.PathLike, columns: list[str] | None = None, kind: str | None = None, *,
               check_version: bool = True) -> pa.Table:
    """Read a Parquet file after checking its schema version (and kind, if given), verifying the
    page checksums of the pages it reads; a damaged file raises ``CorruptFileError`` naming it.
    ``check_version=False`` reads any Parquet file (its checksums are still verified)."""
    if check_version:
        check_schema_version(path, kind)
    if columns is not None:
        try:
            names = pq.read_schema(path).names
        except (OSError, pa.ArrowException) as err:
            raise _damaged(path, err) from None
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as err:
        raise _damaged(path, err) from None
