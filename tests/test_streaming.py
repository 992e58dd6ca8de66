"""Shaped CSV exports and Excel workbooks are read in bounded memory: a file far larger than the
memory its reading may take goes through, record by record."""

import tracemalloc
from dataclasses import dataclass

from conftest import REPO

from crm360.ingest import csvfile, workbook
from crm360.ingest.batch import COPY_CHUNK
from crm360.ingest.drops import Drop, FileLoad
from crm360.ingest.shape import Shaper
from crm360.ingest.sources import load_config

ROWS = 200_000


class Generated:
    """A till log written as it is read: it exists nowhere whole, neither on disk nor in memory."""

    def __init__(self, rows: int):
        self.pending = b"CustomerNo,Date,Quantity,AmountUSD,Currency\n"
        self.records = (f"C{i % 5000:07d},202608{i % 28 + 1:02d},1,{i % 900 + 1}.50,USD\n".encode()
                        for i in range(rows))
        self.size = len(self.pending)

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "the reader asked for the whole file at once"
        while len(self.pending) < size:
            record = next(self.records, None)
            if record is None:
                break
            self.pending += record
            self.size += len(record)
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@dataclass(frozen=True)
class GeneratedDrop(Drop):
    rows: int = 0

    def open(self):
        return Generated(self.rows)


def test_a_shaped_export_is_read_record_by_record():
    """Never more of the file read than the records handed on and the chunk being split into lines:
    reading the whole file first (or any growing part of it) fails at once."""
    orders = next(t for t in load_config(REPO / "examples" / "till" / "sources.yml")["sales"].tables
                  if t.name == "orders")
    drop = GeneratedDrop(orders, None, "purchases.csv", "sales/purchases.csv", rows=ROWS)
    job = FileLoad("sales", drop, "b", None)
    _, _, header = csvfile.header(job)
    shaper = Shaper.of(orders, header, drop.file)
    types = dict(orders.contract.types)
    count, last, handed, ahead = 0, None, 0, 0  # handed: bytes of the records read so far
    opened: list[Generated] = []

    class Watched(GeneratedDrop):
        def open(self):
            opened.append(Generated(self.rows))
            return opened[-1]

    job = FileLoad("sales", Watched(orders, None, "purchases.csv", "sales/purchases.csv", rows=ROWS), "b", None)
    for _, record, fields, problem in csvfile.records(job, len(header)):
        assert problem is None
        last, problem = shaper.row(fields, record, types)
        assert problem is None
        count += 1
        handed += len(",".join(fields)) + 1
        ahead = max(ahead, opened[-1].size - handed)
    assert count == ROWS and opened[-1].size > 6_000_000
    assert last[shaper.names.index("order_id")] == f"sales/purchases.csv:{ROWS}"
    assert last[shaper.names.index("ordered_at")] == f"2026-08-{(ROWS - 1) % 28 + 1:02d}T00:00:00-04:00"
    assert ahead <= 2 * COPY_CHUNK, f"{ahead:,} bytes read ahead of the records handed on"


def test_a_workbook_is_read_row_by_row(tmp_path):
    from openpyxl import Workbook

    rows = 30_000
    book = Workbook(write_only=True)
    sheet = book.create_sheet("purchases")
    sheet.append(["CustomerNo", "Date", "Quantity", "AmountUSD"])
    for i in range(rows):
        sheet.append([f"C{i:07d}", 20260801 + i % 28, 1, 10.5 + i % 50])
    path = tmp_path / "purchases.xlsx"
    book.save(path)

    def read(limit: int | None) -> tuple[int, list]:
        with path.open("rb") as fh:
            reader = workbook.SheetReader(fh, "sales/purchases.xlsx", None)
            next(reader)  # the header: the workbook's parts are read and parsed before it
            count, last = 0, None
            tracemalloc.start()
            for fields in reader:
                count, last = count + 1, fields
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return count, last, peak

    count, last, peak = read(None)
    assert count == rows and last == [f"C{rows - 1:07d}", str(20260801 + (rows - 1) % 28), "1", "59.5"]
    # openpyxl's own read-only rows keep about 80 bytes per row read: 2.4 MB for these
    assert peak < 1 << 20, f"{peak:,} bytes at the peak to read {rows:,} rows"
