"""Excel workbooks (``format: xlsx``) read as the rows of one sheet, each cell as the text a CSV
export would hold, so the rest of a CSV table's load (header check, mapping, shaping, values
checked in SQL, quarantine) is the same. Read with openpyxl in read-only mode, row by row.

Cells become text as an export would write them: empty cells empty, whole numbers without a
fraction (Excel keeps every number as a float), other numbers as Python writes them, dates and
times in ISO 8601 (a workbook's times carry no offset: the table's ``timezone`` places them),
booleans as true/false."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time

from crm360.ingest.batch import IngestError


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


class SheetReader:
    """Rows of a sheet as lists of text, with ``line_num`` (the sheet's row number) like csv.reader."""

    def __init__(self, fh, rel: str, sheet: str | None):
        from openpyxl import load_workbook

        try:
            self._book = load_workbook(fh, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a file that is no workbook
            raise IngestError(f"{rel}: not a readable Excel workbook ({exc.__class__.__name__}: {exc})") from None
        if sheet is not None and sheet not in self._book.sheetnames:
            raise IngestError(f"{rel}: no sheet {sheet!r}; the workbook has {', '.join(self._book.sheetnames)}")
        self._rows = (self._book[sheet] if sheet else self._book.worksheets[0]).iter_rows(values_only=True)
        self.line_num = 0
        self.width: int | None = None  # the header's, once read

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        row = next(self._rows)
        self.line_num += 1
        fields = [cell_text(v) for v in row]
        if not any(fields):
            return []  # an empty row, as a blank line of a CSV
        if self.width is None:  # the header: openpyxl pads rows to the sheet's widest
            while fields[-1] == "":
                fields.pop()
            self.width = len(fields)
        elif len(fields) > self.width and not any(fields[self.width:]):
            fields = fields[:self.width]
        elif len(fields) < self.width:
            fields += [""] * (self.width - len(fields))
        return fields
