"""Streaming import of AuctionNet's public CSV files into aigb's Parquet tables.

Two layouts are recognised from the header: the 18-column per-impression log (~24M rows per
period) and the per-tick trajectory file. Outputs:

    out_dir/impressions/period=<P>/<stem>.parquet   one file per (source file, period)
    out_dir/trajectories/<stem>.parquet             AUCTIONNET_TRAJECTORY_SCHEMA
    out_dir/quarantine/<stem>.bad.csv               skipped rows (line, reason, raw), skip_bad only

Outputs are named by the source file's base name and record the source's resolved path; an
import refuses to replace outputs that came from another file of the same base name (e.g.
``a/period-3.csv`` after ``b/period-3.csv``): re-importing the same file replaces its outputs.

Every output appears atomically. Bad rows (wrong number of fields, unparsable or missing value,
failed validation, invalid UTF-8) stop the import with an error naming the file and the 1-based
line (header = line 1), unless ``skip_bad`` is set, in which case they are counted and
quarantined, never dropped silently.

Streaming: the file is read in pieces of ``block_size`` bytes cut at line ends, and each piece is
parsed by ``pyarrow.csv.read_csv`` behind a copy of the header, so one piece is in memory at a
time. (``pyarrow.csv.open_csv`` would stream too, but its background reader queues up to 32
blocks ahead, ~300 MB at 8 MB blocks, and this keeps memory at one piece plus one row group.)
Cutting pieces ourselves also gives exact line numbers: a piece's first line is known from the
newlines counted before it, and inside a piece every line is either a parsed row (empty lines are
kept as rows of empty fields) or a row the parser rejected, which pyarrow reports with its line
(single-threaded parsing). Every column is parsed as text and cast by vectorised kernels; only a
piece holding an unparsable value falls back to a per-value parse of that one column to find it.
Quoted newlines are not expected in these files; a stray quote is reported as a bad row.

Fast path. An impression log is all numbers, so each piece is first parsed by pyarrow's
multithreaded reader straight into float64 columns (``use_threads``), cast to the schema's types
by vectorised checks and validated; only a piece where that fails (a field that is not a number,
a wrong field count, an empty line, a value out of its type's range, a row that breaks the
schema's rules) is parsed again by the exact path above, which names each bad line or
quarantines it. Clean pieces give the same rows either way; the fast path takes ~1.3x less CPU
and uses both cores, and parsing runs a piece ahead in a thread while the main thread writes
(a 24M-row period: 28 s, 0.86M rows/s, 320 MB peak on 2 busy cores; ``benchmarks/csv_import.py``).

Resume. When every output of a source file is written, ``out_dir/imported/<stem>.json`` records
the file's path, size and modification time and the outputs; re-running an import skips the files
it lists unchanged (a killed import of many files resumes at the file it was in).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from aigb.data.auctionnet import file_sha256
from aigb.data.parquet import AtomicParquetWriter, CorruptFileError, atomic_output, file_metadata, read_metadata
from aigb.data.schema import (
    AUCTIONNET_TRAJECTORY_CSV_COLUMNS,
    AUCTIONNET_TRAJECTORY_SCHEMA,
    IMPRESSION_CSV_COLUMNS,
    IMPRESSION_DICTIONARY_COLUMNS,
    IMPRESSION_SCHEMA,
    Violations,
    validate_auctionnet_trajectories,
    validate_impressions,
)

__all__ = ["DEFAULT_BLOCK_SIZE", "CsvImportError", "FileReport", "ImportReport", "import_csv"]

DEFAULT_BLOCK_SIZE = 4 << 20
"""Bytes of CSV read and parsed at a time (~30k impression rows). With one Parquet row group
buffered per output it sets the importer's memory (~280 MB peak on a 6M-row file, flat in the
file size); 8 MB pieces cost ~50 MB more for no measurable speed."""

_PARSE_BLOCK = 1 << 20  # pyarrow's parser runs ~25 % faster on 1 MB blocks than on one big block
_DONE_DIR = "imported"  # out_dir/imported/<stem>.json: a source file imported in full (resume)
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")  # pyarrow decompresses these by name
_NULL_TOKENS = pa.array(["", "None", "none", "nan", "NaN", "null", "NULL"])


class CsvImportError(ValueError):
    """A CSV file that cannot be imported; the message names the file (and line, if any)."""


@dataclass(frozen=True)
class _Layout:
    kind: str  # the 'kind' written into the Parquet metadata
    subdir: str  # output folder under out_dir
    schema: pa.Schema
    csv_columns: dict[str, str]  # csv name -> our name
    validate: Callable[[pa.RecordBatch], Violations]


_LAYOUTS: tuple[_Layout, ...] = (
    _Layout("impressions", "impressions", IMPRESSION_SCHEMA, IMPRESSION_CSV_COLUMNS, validate_impressions),
    _Layout("auctionnet_trajectories", "trajectories", AUCTIONNET_TRAJECTORY_SCHEMA, AUCTIONNET_TRAJECTORY_CSV_COLUMNS, validate_auctionnet_trajectories),
)


@dataclass(frozen=True)
class FileReport:
    """What the import did with one CSV file."""

    source: Path
    """The CSV file."""
    kind: str
    """'impressions' or 'auctionnet_trajectories'."""
    rows_written: int
    """Rows written to Parquet."""
    rows_skipped: int
    """Bad rows skipped and quarantined (0 unless skip_bad)."""
    blank_lines: int
    """Empty lines, which are not rows."""
    outputs: tuple[Path, ...]
    """Parquet files written."""
    quarantine: Path | None
    """The quarantine CSV, if any row was skipped."""
    skipped: bool = False
    """Imported in full by an earlier run (same file, unchanged): nothing was read this time."""


@dataclass(frozen=True)
class ImportReport:
    """What ``import_csv`` did."""

    files: tuple[FileReport, ...]
    """One report per input file, in input order."""
    seconds: float
    """Wall-clock time of the whole import."""
    dataset: object = None
    """``aigb.data.imported.ImportedDataset``: the dataset built from the folder (None: not built)."""
    rows_written: int = field(init=False)
    """Rows written over all files."""
    rows_skipped: int = field(init=False)
    """Bad rows skipped over all files."""
    outputs: tuple[Path, ...] = field(init=False)
    """Parquet files written over all files."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows_written", sum(f.rows_written for f in self.files))
        object.__setattr__(self, "rows_skipped", sum(f.rows_skipped for f in self.files))
        object.__setattr__(self, "outputs", tuple(p for f in self.files for p in f.outputs))

    def summary(self) -> str:
        rate = self.rows_written / self.seconds if self.seconds > 0 else float("inf")
        done = sum(f.skipped for f in self.files)
        return (
            f"{len(self.files)} file(s){f' ({done} imported before, unchanged)' if done else ''}: "
            f"{self.rows_written:,} rows written, {self.rows_skipped:,} skipped, "
            f"{len(self.outputs)} Parquet file(s), {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _COMPRESSED_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[:-4] if name.lower().endswith(".csv") else name


def _detect_layout(path: Path, header: Sequence[str]) -> _Layout:
    duplicates = sorted({c for c in header if list(header).count(c) > 1})
    if duplicates:
        raise CsvImportError(f"{path}: header repeats columns {duplicates}")
    for layout in _LAYOUTS:
        if set(header) == set(layout.csv_columns):
            return layout
    closest = max(_LAYOUTS, key=lambda lay: len(set(header) & set(lay.csv_columns)))
    missing = [c for c in closest.csv_columns if c not in header]
    unexpected = [c for c in header if c not in closest.csv_columns]
    raise CsvImportError(
        f"{path}: unknown CSV header; closest layout is AuctionNet {closest.kind}: "
        f"missing columns {missing}, unexpected columns {unexpected}"
    )


# ---------------------------------------------------------------------------------------------
# Text -> typed columns


def _parse_numbers(col: pa.Array, words: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Text to float64 # (n,), and the positions that do not parse. ``words`` also accepts
    true/false (pandas writes booleans that way)."""
    try:
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), np.empty(0, dtype=np.int64)
    except pa.ArrowInvalid:
        pass
    # Rare path: find the culprits one value at a time, in this column of this block only.
    out = np.empty(len(col), dtype=np.float64)
    failed = []
    for i, text in enumerate(col.to_pylist()):
        try:
            out[i] = float(text)
        except (TypeError, ValueError):
            word = text.strip().lower() if words and text else ""
            if word in ("true", "false"):
                out[i] = 1.0 if word == "true" else 0.0
            else:
                out[i] = 0.0
                failed.append(i)
    return out, np.asarray(failed, dtype=np.int64)


def _unparsable(name: str, text: str) -> str:
    return f"missing {name}" if not text.strip() else f"{name}={text!r} is not a number"


def _convert_scalar(col: pa.Array, name: str, type_: pa.DataType, errors: dict[int, str]) -> pa.Array:
    if not pa.types.is_floating(type_):
        try:
            # Fast path for integer text ("3", "0"/"1"): ~30 % quicker than parsing as float.
            values = pc.cast(col, pa.int64()).to_numpy()
        except pa.ArrowInvalid:  # "3.0", "True", garbage: the general path below sorts it out
            pass
        else:
            if pa.types.is_boolean(type_):
                ok = (values == 0) | (values == 1)
                if ok.all():
                    return pa.array(values == 1)
            else:
                info = np.iinfo(np.dtype(type_.to_pandas_dtype()))
                if values.min(initial=0) >= info.min and values.max(initial=0) <= info.max:
                    return pa.array(values.astype(type_.to_pandas_dtype()))
    values, failed = _parse_numbers(col, words=pa.types.is_boolean(type_))
    for i in failed.tolist():
        errors.setdefault(i, _unparsable(name, col[i].as_py()))
    if pa.types.is_floating(type_):
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, which validation reports
            return pa.array(values.astype(type_.to_pandas_dtype(), copy=False))
    if pa.types.is_boolean(type_):
        ok = (values == 0.0) | (values == 1.0)
        for i in np.flatnonzero(~ok).tolist():
            errors.setdefault(i, f"{name}={col[i].as_py()!r} must be 0 or 1")
        return pa.array(values == 1.0)
    dtype = np.dtype(type_.to_pandas_dtype())
    info = np.iinfo(dtype)
    integral = np.isfinite(values) & (np.trunc(values) == values)
    ok = integral & (values >= info.min) & (values <= info.max)
    for i in np.flatnonzero(~ok).tolist():
        text = col[i].as_py()
        errors.setdefault(i, f"{name}={text!r} is not an integer" if not integral[i] else f"{name}={text!r} outside [{info.min}, {info.max}]")
    return pa.array(np.where(ok, values, 0.0).astype(dtype))


def _convert_vector(col: pa.Array, name: str, type_: pa.DataType, nullable: bool, errors: dict[int, str]) -> pa.Array:
    """'(0.97, 1.0, ...)' -> fixed_size_list<float32>; empty/None/nan -> null."""
    k = type_.list_size
    text = pc.utf8_trim_whitespace(col)
    null = pc.is_in(text, value_set=_NULL_TOKENS).to_numpy(zero_copy_only=False)
    text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    if pc.any(pc.match_substring(text, "np.")).as_py():
        # numpy >= 2 writes tuples of numpy scalars as "(np.float64(0.97), ...)".
        text = pc.replace_substring_regex(text, r"np\.float(?:16|32|64)\(([^()]*)\)", r"\1")
    parts = pc.split_pattern(pc.utf8_trim(text, characters="()[] "), ",")
    lengths = pc.fill_null(pc.list_value_length(parts), 0).to_numpy(zero_copy_only=False)
    tokens = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    values, failed = _parse_numbers(tokens)
    if len(failed):
        parent = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
        for j in failed.tolist():
            errors.setdefault(int(parent[j]), f"{name} element {tokens[j].as_py()!r} is not a number")
    good = (lengths == k) & ~null
    for i in np.flatnonzero(~good & ~null).tolist():
        errors.setdefault(i, f"{name} has {lengths[i]} values, expected {k}")
    if not nullable:
        for i in np.flatnonzero(null).tolist():
            errors.setdefault(i, f"missing {name}")
    out = np.zeros((len(col), k), dtype=np.float32)  # (n, k)
    rows = np.flatnonzero(good)
    offsets = parts.offsets.to_numpy(zero_copy_only=False)
    out[rows] = values[offsets[rows][:, None] - offsets[0] + np.arange(k)]
    mask = pa.array(null) if nullable else None
    return pa.FixedSizeListArray.from_arrays(pa.array(out.ravel()), type=type_, mask=mask)


def _convert(raw: pa.RecordBatch, layout: _Layout) -> tuple[pa.RecordBatch, dict[int, str]]:
    """Typed batch of ``layout.schema`` (placeholders in bad rows) and {row: reason} of bad rows."""
    errors: dict[int, str] = {}
    arrays = []
    for csv_name, f in zip(layout.csv_columns, layout.schema):
        col = raw.column(csv_name)
        if pa.types.is_fixed_size_list(f.type):
            arrays.append(_convert_vector(col, csv_name, f.type, f.nullable, errors))
        else:
            arrays.append(_convert_scalar(col, csv_name, f.type, errors))
    batch = pa.RecordBatch.from_arrays(arrays, schema=layout.schema)
    violations = layout.validate(batch)
    for i, reason in zip(violations.rows.tolist(), violations.reasons):
        # A row that did not parse carries placeholders; its parse error is the reason to report.
        errors.setdefault(i, reason)
    return batch, errors


# ---------------------------------------------------------------------------------------------
# Reading: the file cut at line ends, each piece parsed on its own


def _pieces(src: Path, block_size: int) -> Iterator[bytes]:
    """The file's bytes (decompressed if its name says so), cut at line ends into pieces of about
    ``block_size`` bytes; only the last piece may lack a final newline."""
    try:
        stream = pa.input_stream(str(src))
    except (OSError, pa.ArrowException) as err:
        raise CsvImportError(f"{src}: cannot read: {err}") from None
    with stream:
        carry = b""
        while True:
            try:
                data = stream.read(block_size)
            except (OSError, pa.ArrowException) as err:  # e.g. a truncated .gz
                raise CsvImportError(f"{src}: cannot read: {err}") from None
            if not data:
                if carry:
                    yield carry
                return
            data = carry + data if carry else data
            cut = data.rfind(b"\n")
            if cut < 0:  # a line longer than a block: keep reading
                carry = data
                continue
            yield data[: cut + 1]
            carry = data[cut + 1 :]


def _line_count(piece: bytes) -> int:
    return piece.count(b"\n") + (0 if piece.endswith(b"\n") else 1)


# A line the parser cannot take (not UTF-8, or an odd number of quotes, which would swallow the
# lines after it) is swapped for this one-field line before parsing: the parser then rejects it
# for its field count like any malformed row, so it keeps its place in the line count.
_MARK = "\x01aigb: masked line\x01"


def _mask_lines(piece: bytes) -> tuple[bytes, dict[int, tuple[str, str]]]:
    """``piece`` with unparsable lines masked, and {buffer line: (reason, raw text)} of them."""
    lines = piece.split(b"\n")
    masked: dict[int, tuple[str, str]] = {}
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
            reason = "unbalanced quote" if line.count(b'"') % 2 else None
        except UnicodeDecodeError:
            reason = "not valid UTF-8"
        if reason:
            masked[i + 2] = (reason, line.decode("utf-8", "backslashreplace").rstrip("\r"))
            lines[i] = _MARK.encode()
    return b"\n".join(lines), masked


class _Rejected:
    """``ParseOptions.invalid_row_handler``: collects the rows with a wrong number of fields.

    Those rows never reach the table, so the n-th parsed row (0-based) lies on buffer line
    n + 2 + (rejected rows before it); pyarrow numbers the header line 1."""

    def __init__(self, masked: dict[int, tuple[str, str]]) -> None:
        self.masked = masked
        self.rows: list[tuple[int, str, str]] = []  # (buffer line, reason, raw text)

    def __call__(self, row) -> str:
        if row.number is None:  # only a multi-threaded reader loses it; ours is single-threaded
            raise RuntimeError("pyarrow did not report the line of a malformed CSV row")
        text = row.text
        if text == _MARK:
            reason, text = self.masked[row.number]
        else:
            reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        self.rows.append((row.number, reason, text))
        return "skip"

    @property
    def spans_lines(self) -> bool:
        """A rejected row swallowed line ends (a stray quote)."""
        return any("\n" in text for _, _, text in self.rows)

    def buffer_lines(self, rows: np.ndarray) -> np.ndarray:
        """Buffer line of each parsed row given its position # (n,)."""
        line = np.array([r[0] for r in self.rows], dtype=np.int64)
        parsed_before = line - 2 - np.arange(len(line))  # parsed rows above each rejected row
        return rows + 2 + np.searchsorted(parsed_before, rows, side="right")


def _parse_piece(header: bytes, piece: bytes, n_lines: int, columns: Sequence[str]) -> tuple[pa.Table, _Rejected]:
    """Parse one piece as text columns, with the rows the parser rejected.

    A clean piece parses once. A piece with a line that is not UTF-8 or has a stray quote (the
    quote would swallow the following lines into one field) is parsed again with such lines
    masked, so each is reported on its own line and the lines after it still import."""
    masked: dict[int, tuple[str, str]] = {}
    if not piece.isascii():  # isascii() is a fast scan; decoding only for non-ASCII pieces
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            # pyarrow cannot even hand such a row to the invalid-row handler: mask it first.
            piece, masked = _mask_lines(piece)
    for attempt in range(2):
        rejected = _Rejected(masked)
        buffer = header + piece
        try:
            table = pacsv.read_csv(
                pa.py_buffer(buffer),
                read_options=pacsv.ReadOptions(use_threads=False, block_size=_PARSE_BLOCK),
                # Empty lines become rows of empty fields, so every line is a row or a rejection.
                parse_options=pacsv.ParseOptions(invalid_row_handler=rejected, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=False),
            )
        except pa.ArrowInvalid as err:
            if attempt or not any(s in str(err) for s in ("UTF8", "out of sync")):
                raise
        else:
            # Every line is its own row or rejection unless a quoted value ran over a line end.
            if table.num_rows + len(rejected.rows) == n_lines and not rejected.spans_lines:
                return table, rejected
            if attempt:
                raise pa.ArrowInvalid("a quoted value runs over several lines; line numbers would be wrong")
        piece, more = _mask_lines(piece)
        masked = {**masked, **more}
    raise AssertionError("unreachable")


def _fast_piece(header: bytes, piece: bytes, n_lines: int, columns: Sequence[str], layout: _Layout) -> pa.RecordBatch | None:
    """A clean piece of an impression log parsed by the multithreaded float reader and typed;
    None when anything is off (the exact path then finds and names it)."""
    try:
        table = pacsv.read_csv(
            pa.py_buffer(header + piece),
            read_options=pacsv.ReadOptions(use_threads=True, block_size=_PARSE_BLOCK),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.float64() for c in columns}, null_values=[],
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid:
        return None
    if table.num_rows != n_lines:  # empty lines were skipped: the exact path counts them
        return None
    arrays = []
    for csv_name, f in zip(layout.csv_columns, layout.schema):
        values = table.column(csv_name).to_numpy()  # (n,) float64, no nulls
        if pa.types.is_floating(f.type):
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, which validation reports
                arrays.append(pa.array(values.astype(f.type.to_pandas_dtype(), copy=False)))
        elif pa.types.is_boolean(f.type):
            ones = values == 1.0
            if not (ones | (values == 0.0)).all():
                return None
            arrays.append(pa.array(ones))
        else:
            dtype = np.dtype(f.type.to_pandas_dtype())
            info = np.iinfo(dtype)
            if not ((np.trunc(values) == values) & (values >= info.min) & (values <= info.max)).all():
                return None
            arrays.append(pa.array(values.astype(dtype)))
    batch = pa.RecordBatch.from_arrays(arrays, schema=layout.schema)
    return None if layout.validate(batch) else batch


_END = object()


def _prefetch(items: Iterator, fn: Callable, depth: int = 2) -> Iterator:
    """(item, fn(item)) of ``items`` in order, computed up to ``depth`` items ahead in a thread;
    an exception there is raised here. Closing the generator stops and joins the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, fn(item)))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            q.put(err)
            return
        q.put(_END)

    thread = threading.Thread(target=work, name="aigb-csv-parse", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is _END:
                return
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            thread.join(timeout=0.01)


def _raw_text(raw: pa.RecordBatch, i: int) -> str:
    fields = []
    for col in raw.columns:
        value = col[i].as_py() or ""
        fields.append(f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value)
    return ",".join(fields)


def _convert_piece(raw: pa.RecordBatch, layout: _Layout, rejected: _Rejected, first_line: int) -> tuple[pa.RecordBatch, list[tuple[int, str, str]], int]:
    """Typed rows of one piece, its bad rows as (file line, reason, raw text), and its blank lines.

    ``first_line`` is the file line of the piece's first line (buffer line 2)."""
    n = raw.num_rows
    keep = np.arange(n)
    blank = 0
    if n and pc.any(pc.equal(raw.column(0), "")).as_py():
        empty = pc.equal(raw.column(0), "")
        for col in raw.columns[1:]:
            empty = pc.and_(empty, pc.equal(col, ""))
        empty_mask = empty.to_numpy(zero_copy_only=False)
        if empty_mask.any():
            # Empty lines arrive as rows whose fields are all empty; they are not data.
            keep = np.flatnonzero(~empty_mask)
            blank = n - len(keep)
            raw = raw.filter(pa.array(~empty_mask))
    batch, errors = _convert(raw, layout)
    to_file = first_line - 2
    bad = [(line + to_file, reason, text) for line, reason, text in rejected.rows]
    if errors:
        positions = np.fromiter(errors, dtype=np.int64, count=len(errors))
        lines = rejected.buffer_lines(keep[positions]) + to_file
        bad.extend((int(line), errors[int(i)], _raw_text(raw, int(i))) for i, line in zip(positions, lines))
        good = np.ones(batch.num_rows, dtype=bool)
        good[positions] = False
        batch = batch.filter(pa.array(good))
    bad.sort(key=lambda r: r[0])
    return batch, bad, blank


# ---------------------------------------------------------------------------------------------
# One file


class _Quarantine:
    """The quarantine CSV of one source file, opened on the first bad row and published atomically."""

    def __init__(self, path: Path, stack: contextlib.ExitStack):
        self.path, self._stack = path, stack
        self._writer = None
        self.count = 0

    def write(self, rows: Iterable[tuple[int, str, str]]) -> None:
        for line, reason, text in rows:
            if self._writer is None:
                tmp = self._stack.enter_context(atomic_output(self.path))
                handle = self._stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
                self._writer = csv.writer(handle)
                self._writer.writerow(["line", "reason", "raw"])
            self._writer.writerow([line, reason, text])
            self.count += 1


def _source_state(src: Path, skip_bad: bool) -> dict:
    """What decides a file's outputs: the file (path, size, modification time) and skip_bad
    (the block size and the reader change how, not what)."""
    st = src.stat()
    return {"source_path": str(src.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "skip_bad": skip_bad}


def _already_imported(src: Path, out_dir: Path, skip_bad: bool) -> FileReport | None:
    """The report of an earlier complete import of this very file (same path, size, mtime and
    skip_bad) whose outputs are all still there; None otherwise."""
    done = out_dir / _DONE_DIR / f"{_stem(src)}.json"
    try:
        record = json.loads(done.read_text())
    except (OSError, ValueError):
        return None
    if record.get("state") != _source_state(src, skip_bad):
        return None
    outputs = tuple(out_dir / p for p in record.get("outputs", []))
    quarantine = out_dir / record["quarantine"] if record.get("quarantine") else None
    if not all(p.exists() for p in outputs) or (quarantine is not None and not quarantine.exists()):
        return None
    return FileReport(src, record["kind"], record["rows_written"], record["rows_skipped"], record["blank_lines"],
                      outputs, quarantine, skipped=True)


def _record_done(report: FileReport, out_dir: Path, skip_bad: bool) -> None:
    record = {"state": _source_state(report.source, skip_bad), "kind": report.kind,
              "rows_written": report.rows_written, "rows_skipped": report.rows_skipped, "blank_lines": report.blank_lines,
              "outputs": [str(p.relative_to(out_dir)) for p in report.outputs],
              "quarantine": None if report.quarantine is None else str(report.quarantine.relative_to(out_dir))}
    with atomic_output(out_dir / _DONE_DIR / f"{_stem(report.source)}.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _import_file(src: Path, out_dir: Path, *, skip_bad: bool, block_size: int, use_threads: bool = True) -> FileReport:
    earlier = _already_imported(src, out_dir, skip_bad)
    if earlier is not None:
        return earlier
    (out_dir / _DONE_DIR / f"{_stem(src)}.json").unlink(missing_ok=True)
    with contextlib.closing(_pieces(src, block_size)) as pieces:
        report = _import_pieces(src, pieces, out_dir, skip_bad=skip_bad, block_size=block_size, use_threads=use_threads)
    _record_done(report, out_dir, skip_bad)
    return report


def _import_pieces(src: Path, pieces: Iterator[bytes], out_dir: Path, *, skip_bad: bool, block_size: int,
                   use_threads: bool = True) -> FileReport:
    stem = _stem(src)
    first = next(pieces, b"")
    if not first.strip():
        raise CsvImportError(f"{src}: empty file, expected a CSV header on line 1")
    cut = first.find(b"\n")
    header, rest = (first[: cut + 1], first[cut + 1 :]) if cut >= 0 else (first + b"\n", b"")
    try:
        names = pacsv.read_csv(pa.py_buffer(header), read_options=pacsv.ReadOptions(use_threads=False)).schema.names
    except pa.ArrowInvalid as err:
        raise CsvImportError(f"{src}: line 1: cannot read the header: {err}") from None
    layout = _detect_layout(src, names)
    source_path = str(src.resolve())
    _check_same_source(out_dir, layout, stem, src, source_path)
    quarantine_path = out_dir / "quarantine" / f"{stem}.bad.csv"
    config = {"skip_bad": skip_bad, "block_size": block_size}
    # The source's fingerprint: an imported dataset records it (aigb.data.imported).
    fingerprint = {"source_sha256": file_sha256(src), "source_bytes": src.stat().st_size}
    writers: dict[int | None, AtomicParquetWriter] = {}
    written = blank = 0
    with contextlib.ExitStack() as stack:
        quarantine = _Quarantine(quarantine_path, stack)

        def writer_for(period: int | None) -> AtomicParquetWriter:
            if period not in writers:
                if period is None:
                    path = out_dir / layout.subdir / f"{stem}.parquet"
                    meta = file_metadata(layout.kind, config, None, source=src.name, source_path=source_path, **fingerprint)
                else:
                    path = out_dir / layout.subdir / f"period={period}" / f"{stem}.parquet"
                    meta = file_metadata(layout.kind, config, None, source=src.name, source_path=source_path, period=period,
                                         **fingerprint)
                dictionary = IMPRESSION_DICTIONARY_COLUMNS if layout.kind == "impressions" else True
                writers[period] = stack.enter_context(AtomicParquetWriter(path, layout.schema, meta, use_dictionary=dictionary))
            return writers[period]

        if layout.kind != "impressions":
            writer_for(None)  # a trajectory file always yields a table, even an empty one
        first_line = 2  # file line of the current piece's first line
        def parse(piece: bytes) -> tuple[int, pa.RecordBatch | None]:
            if not piece:
                return 0, None
            n_lines = _line_count(piece)
            return n_lines, _fast_piece(header, piece, n_lines, names, layout)

        stream = itertools.chain([rest], pieces)
        if use_threads and layout.kind == "impressions":
            # Parsing runs a piece or two ahead in a thread while this one writes: both release the GIL.
            work = stack.enter_context(contextlib.closing(_prefetch(stream, parse)))
        else:
            work = ((piece, (_line_count(piece) if piece else 0, None)) for piece in stream)
        for piece, (n_lines, fast) in work:
            if not piece:
                continue
            if fast is not None:
                _write(fast, layout, writer_for)
                written += fast.num_rows
                first_line += n_lines
                continue
            try:
                table, rejected = _parse_piece(header, piece, n_lines, names)
            except pa.ArrowInvalid as err:
                raise CsvImportError(f"{src}: lines {first_line}-{first_line + n_lines - 1}: {err}") from None
            # One batch per piece (a piece of rejected lines only has none).
            batches = table.combine_chunks().to_batches()
            raw = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
            batch, bad, n_blank = _convert_piece(raw, layout, rejected, first_line)
            blank += n_blank
            if bad and not skip_bad:
                line, reason, _ = bad[0]
                raise CsvImportError(f"{src}: line {line}: {reason} (skip_bad quarantines bad rows instead)")
            quarantine.write(bad)
            if batch.num_rows:
                _write(batch, layout, writer_for)
                written += batch.num_rows
            first_line += n_lines
        outputs = tuple(w.path for w in writers.values())
    _remove_stale(out_dir, layout, stem, outputs, quarantine_path if quarantine.count == 0 else None)
    return FileReport(src, layout.kind, written, quarantine.count, blank, outputs, quarantine_path if quarantine.count else None)


def _existing_outputs(out_dir: Path, layout: _Layout, stem: str) -> list[Path]:
    if layout.kind == "impressions":
        return sorted((out_dir / layout.subdir).glob(f"period=*/{stem}.parquet"))
    path = out_dir / layout.subdir / f"{stem}.parquet"
    return [path] if path.exists() else []


def _check_same_source(out_dir: Path, layout: _Layout, stem: str, src: Path, source_path: str) -> None:
    """Refuse to replace outputs imported from another file with the same base name."""
    for old in _existing_outputs(out_dir, layout, stem):
        try:
            found = read_metadata(old).get("source_path")
        except (CorruptFileError, ValueError):
            found = None  # a damaged output is replaced
        # Outputs of imports before source paths were recorded cannot tell; they are replaced.
        if found is not None and found != source_path:
            raise CsvImportError(
                f"{src}: {old} holds the import of another file with the same name, {found}; import {src} into "
                "another directory, rename it, or delete the earlier output to replace it")


def _write(batch: pa.RecordBatch, layout: _Layout, writer_for: Callable[[int | None], AtomicParquetWriter]) -> None:
    if layout.kind != "impressions":
        writer_for(None).write_batch(batch)
        return
    period = batch.column("period").to_numpy()
    lo, hi = int(period.min()), int(period.max())
    if lo == hi:  # AuctionNet files hold one period each; split only when a piece mixes periods
        writer_for(lo).write_batch(batch)
        return
    for p in np.unique(period).tolist():
        writer_for(int(p)).write_batch(batch.filter(pa.array(period == p)))


def _remove_stale(out_dir: Path, layout: _Layout, stem: str, outputs: tuple[Path, ...], stale_quarantine: Path | None) -> None:
    """Delete what an earlier import of the same file left and this one did not rewrite, so the
    outputs always reflect the latest import (e.g. a period no longer present)."""
    if layout.kind == "impressions":
        for old in (out_dir / layout.subdir).glob(f"period=*/{stem}.parquet"):
            if old not in outputs:
                old.unlink(missing_ok=True)
    if stale_quarantine is not None:
        stale_quarantine.unlink(missing_ok=True)


def _header_kind(src: Path) -> str | None:
    """The layout kind of a file's header; None where the header is unusable (the import itself
    then reports it)."""
    with contextlib.closing(_pieces(src, 1 << 16)) as pieces:
        first = next(pieces, b"")
    line = first.split(b"\n", 1)[0]
    try:
        names = pacsv.read_csv(pa.py_buffer(line + b"\n"), read_options=pacsv.ReadOptions(use_threads=False)).schema.names
        return _detect_layout(src, names).kind
    except (pa.ArrowInvalid, CsvImportError):
        return None


def _check_one_source_kind(sources: Sequence[Path], out: Path) -> None:
    """A dataset holds impression logs or rlData, not both: refuse before writing anything."""
    from aigb.data.imported import IMPRESSION_FORMAT, MixedSourcesError, imported_sources

    kinds = {src: kind for src in sources if (kind := _header_kind(src)) is not None}
    if not kinds:
        return
    fmt, _ = imported_sources(out) if out.is_dir() else (None, {})
    first = next(iter(kinds))
    for src, kind in kinds.items():
        if kind != kinds[first]:
            raise MixedSourcesError(f"{src}: field kind: an AuctionNet {kind} file among {kinds[first]} files ({first}); "
                                    "import each kind into its own directory")
        if fmt is not None and (kind == "impressions") != (fmt == IMPRESSION_FORMAT):
            raise MixedSourcesError(f"{src}: field kind: an AuctionNet {kind} file, but {out} holds "
                                    f"{'impression logs' if fmt == IMPRESSION_FORMAT else 'rlData'}; import it into "
                                    "its own directory")


def import_csv(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    skip_bad: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    build_dataset: bool = True,
    use_threads: bool = True,
) -> ImportReport:
    """Convert AuctionNet CSV files (impression logs or trajectories; .gz/.bz2/.zst/.lz4 too) into
    Parquet under ``out_dir``.

    With ``build_dataset`` the folder then becomes a dataset ``aigb train`` reads
    (``aigb.data.imported.build_imported_dataset``: trajectories of every period of the imported
    logs, or the rlData as they are, and ``dataset.json``).

    ``use_threads`` parses clean pieces of impression logs with pyarrow's multithreaded reader (see
    the module docstring); False parses every piece with the exact single-threaded path.
    A file imported in full by an earlier call with the same ``skip_bad`` and unchanged since is skipped.

    Files are processed in order; a bad row raises ``CsvImportError`` naming file and line unless
    ``skip_bad`` is set, and a failing file leaves none of its outputs behind (files imported
    before it stay complete). Re-running on the same inputs replaces the outputs atomically.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    sources = [Path(p) for p in paths]
    if not sources:
        raise CsvImportError("no CSV files given")
    if int(block_size) < 4096:
        raise ValueError(f"block_size: must be >= 4096 bytes, got {block_size}")
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise CsvImportError(f"CSV file(s) not found: {', '.join(missing)}")
    stems: dict[str, Path] = {}
    for src in sources:
        other = stems.setdefault(_stem(src), src)
        if other is not src:
            raise CsvImportError(f"{src} and {other} would write the same output name {_stem(src)!r}; rename one")
    out = Path(out_dir)
    if build_dataset:
        _check_one_source_kind(sources, out)
    start = time.perf_counter()
    reports = tuple(_import_file(src, out, skip_bad=skip_bad, block_size=int(block_size), use_threads=use_threads)
                    for src in sources)
    dataset = None
    if build_dataset:
        from aigb.data.imported import build_imported_dataset

        dataset = build_imported_dataset(out)
    return ImportReport(reports, time.perf_counter() - start, dataset)
