"""A bounded sample of a drop, for ``crm360 sources check``: the file's first records as a drop of
their own, read by the same code as a load (header check, mapping, shaping, COPY, the contract's
value checks), without reading the rest of the file.

- CSV: the header and the lines of the first ``records`` records (a quoted field may span lines);
- JSON lines: the first ``records`` non-empty lines;
- a JSON document: parsed as a load parses it (whole: its list can only be found by parsing it, and
  no further than ``CRM360_MAX_DOCUMENT_BYTES``), then only its first ``records`` records are kept;
- an Excel workbook: its first ``records`` rows after the header, as the CSV text a load would see
  (each cell as ``crm360.ingest.workbook`` writes it), so row numbers are the sheet's.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import islice

from crm360.ingest import drops, jsonfile
from crm360.ingest.batch import MAX_DOCUMENT_ENV, IngestError, max_document_bytes
from crm360.ingest.drops import Drop, FileLoad


@dataclass(frozen=True)
class SampleDrop(Drop):
    """A drop whose bytes are a sample held in memory: what ``open`` returns instead of the file."""

    data: bytes = b""

    def open(self):
        return io.BytesIO(self.data)

    def open_stored(self):
        return io.BytesIO(self.data)


def sample_drop(drop: Drop, records: int) -> SampleDrop:
    """The first ``records`` records of ``drop`` as a drop of their own (same table, same name)."""
    table = drop.table
    if table.format == "xlsx":
        data = _sheet_head(drop, records)
        table = replace(table, format="csv", delimiter=",", sheet=None)
    elif table.format == "csv":
        data = _csv_head(drop, records)
    elif table.format == "jsonl":
        data = _jsonl_head(drop, records)
    else:
        data = _document_head(drop, records)
    return SampleDrop(table, drop.fs, drop.path, drop.file, drop.shared, data)


def _csv_head(drop: Drop, records: int) -> bytes:
    taken: list[bytes] = []
    with drop.open() as fh:
        def text():
            for _, line in drops.lines(fh, drop.rel):
                taken.append(line)
                yield line.decode("utf-8", "surrogateescape")

        reader = csv.reader(text(), delimiter=drop.table.delimiter)
        try:
            for _ in islice(reader, records + 1):  # the header, then the records
                pass
        except csv.Error:
            pass  # the load names the unreadable line: the sample keeps it
    return b"".join(taken)


def _jsonl_head(drop: Drop, records: int) -> bytes:
    taken: list[bytes] = []
    found = 0
    with drop.open() as fh:
        for _, line in drops.lines(fh, drop.rel):
            if found >= records:
                break
            taken.append(line)
            found += bool(line.strip())
    return b"".join(taken)


def _document_head(drop: Drop, records: int) -> bytes:
    limit = max_document_bytes()
    with drop.open() as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise IngestError(f"{drop.rel}: the JSON document is larger than {limit} bytes ({MAX_DOCUMENT_ENV}); a load "
                          "would fail it")
    try:
        document = jsonfile.parse(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return data  # unreadable as it is: the load's reader names why
    key = drop.table.list_key
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        return data
    head = {key: document[key][:records]}
    # NaN and the infinities are written back as they came, for the checks to find them
    return json.dumps(head, ensure_ascii=False, allow_nan=True,
                      default=lambda o: float(o.name) if isinstance(o, jsonfile.NotJson) else str(o)).encode()


def _sheet_head(drop: Drop, records: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with drop.open() as fh:
        reader = drops.table_reader(drop, fh, "strict")
        for fields in islice(reader, records + 1):
            writer.writerow(fields)
    return out.getvalue().encode("utf-8")


def job(drop: Drop, batch_id: str = "check", loaded_at: datetime | None = None) -> FileLoad:
    """A load of ``drop`` as the readers and loaders take it."""
    return FileLoad(drop.table.contract.table, drop, batch_id, loaded_at or datetime.now(UTC))
