"""Drops: where a source's files are (any fsspec location), which day each belongs to, and how
their bytes are read (decompressed by name; line by line, never a line longer than the limit)."""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import fsspec
from fsspec.utils import infer_compression

from crm360.core.settings import Settings, get_settings
from crm360.ingest.batch import COPY_CHUNK, MAX_RECORD_ENV, IngestError, max_record_bytes
from crm360.ingest.sources import (
    Contract,
    FileSource,
    FileTable,
    SourceBinding,
    config_path,
    load_config,
)

log = logging.getLogger(__name__)


def bindings(settings: Settings | None = None) -> dict[str, SourceBinding]:
    """The deployment's ``sources.yml`` (or the file ``CRM360_SOURCES`` names)."""
    settings = settings or get_settings()
    return load_config(config_path(settings.project_dir))


DATE_IN_PATH = re.compile(r"(\d{4}-\d{2}-\d{2})")


def file_date(rel: str) -> date | None:
    """The day a drop belongs to, from its path (sales/2026-10-31/orders.csv, events_2026-10-31.jsonl)."""
    match = DATE_IN_PATH.search(rel)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


@dataclass(frozen=True)
class Drop:
    """One file of a source: where it is and the name it has in the ledger."""

    table: FileTable
    fs: fsspec.AbstractFileSystem
    path: str  # in ``fs``
    file: str  # ``<source>/<path under the source's location>``: stable if the location moves
    shared: bool = False  # the file feeds several tables of its source (an order-line export with its orders)

    @property
    def rel(self) -> str:
        """The drop's name in the ledger and in raw's ``_source_file``: the file's, and, for a file that
        feeds several tables, the table's after a '#' (each table's load of it is recorded apart)."""
        return f"{self.file}#{self.table.name}" if self.shared else self.file

    @property
    def compression(self) -> str | None:
        return infer_compression(self.path)

    def open(self):
        """The file's bytes, decompressed if its name says it is compressed (.gz, .bz2, .xz, .zst)."""
        return self.fs.open(self.path, "rb", compression="infer")

    def open_stored(self):
        """The file's bytes as stored (what its checksum is taken of)."""
        return self.fs.open(self.path, "rb")


def filesystem(source: FileSource, landing: Path) -> tuple[fsspec.AbstractFileSystem, str]:
    location = source.location
    if "://" not in location and not Path(location).is_absolute():
        location = str(Path(landing) / location)
    try:
        fs, root = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise IngestError(f"{source.name}: cannot open location {source.location!r}: {exc}") from None
    return fs, root.rstrip("/")


def discover(landing: Path, source: FileSource, until: date | None = None) -> Iterator[Drop]:
    """Every file of ``source`` in name (that is, date) order; with ``until``, only drops
    dated before it (a run for a data interval ending on ``until`` loads the days up
    to it; later drops wait for their own run). A file the patterns of several tables match
    is a drop of each (an order-line export feeding orders and order lines)."""
    fs, root = filesystem(source, landing)
    found = {table.name: [p for p in sorted(fs.glob(f"{root}/{table.pattern}")) if fs.isfile(p)]
             for table in source.tables}
    tables_of: dict[str, int] = {}
    for paths in found.values():
        for path in paths:
            tables_of[path] = tables_of.get(path, 0) + 1
    for table in source.tables:
        for path in found[table.name]:
            rel = f"{source.name}/{path[len(root) + 1:]}" if path.startswith(root + "/") else f"{source.name}/{path}"
            day = file_date(rel)
            if until is not None and day is not None and day >= until:
                continue
            yield Drop(table, fs, path, rel, shared=tables_of[path] > 1)


def sha256_of(drop: Drop) -> str:
    digest = hashlib.sha256()
    with drop.open_stored() as fh:
        for chunk in iter(lambda: fh.read(COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileLoad:
    source: str
    drop: Drop
    batch_id: str
    loaded_at: datetime

    @property
    def rel(self) -> str:
        return self.drop.rel

    @property
    def contract(self) -> Contract:
        return self.drop.table.contract


def too_long(rel: str, line: int, limit: int) -> IngestError:
    return IngestError(f"{rel}: line {line}: longer than {limit} bytes ({MAX_RECORD_ENV}): not a record but a broken "
                       "export (missing line ends, or binary data); nothing from the file was loaded")


def lines(fh, rel: str, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, line with its line end) of a line-delimited file, read in chunks: a
    line longer than ``limit`` bytes fails the file before more than that is held in memory."""
    limit = limit or max_record_bytes()
    number, pending = 0, b""
    while chunk := fh.read(COPY_CHUNK):
        lines = (pending + chunk if pending else chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            if len(line) > limit:
                raise too_long(rel, number, limit)
            yield number, line + b"\n"
        if len(pending) > limit:
            raise too_long(rel, number + 1, limit)
    if pending:
        yield number + 1, pending


def text_lines(fh, rel: str, errors: str) -> Iterator[str]:
    """The lines of a UTF-8 file as text (a byte-order mark dropped), for the csv module."""
    for number, line in lines(fh, rel):
        text = line.decode("utf-8", errors)
        yield text[1:] if number == 1 and text.startswith("\ufeff") else text


class LineLengths:
    """Follows the line lengths of a stream handed on in chunks, without splitting it."""

    def __init__(self, rel: str, limit: int) -> None:
        self.rel, self.limit, self.line, self.length = rel, limit, 1, 0

    def feed(self, chunk: bytes) -> None:
        end = chunk.find(b"\n")
        if end < 0:
            self.length += len(chunk)
            self.check()
            return
        self.length += end
        self.check()
        if self.limit < len(chunk):  # a line inside the chunk could be too long as well
            start = end + 1
            while (end := chunk.find(b"\n", start)) >= 0:
                self.line, self.length = self.line + 1, end - start
                self.check()
                start = end + 1
            self.line, self.length = self.line + 1, len(chunk) - start
        else:
            self.line += chunk.count(b"\n")
            self.length = len(chunk) - chunk.rfind(b"\n") - 1
        self.check()

    def check(self) -> None:
        if self.length > self.limit:
            raise too_long(self.rel, self.line, self.limit)


def table_reader(drop: Drop, fh, errors: str):
    """The records of a tabular drop, header first, as lists of text with ``line_num``: a csv.reader
    over a CSV file, the first (or named) sheet of an Excel workbook."""
    if drop.table.format == "xlsx":
        from crm360.ingest.workbook import SheetReader

        return SheetReader(fh, drop.rel, drop.table.sheet)
    return csv.reader(text_lines(fh, drop.rel, errors), delimiter=drop.table.delimiter)
