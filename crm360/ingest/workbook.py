"""Excel workbooks (``format: xlsx``) read as the rows of one sheet, each cell as the text a CSV
export would hold, so the rest of a CSV table's load (header check, mapping, shaping, values
checked in SQL, quarantine) is the same. Read with openpyxl in read-only mode, row by row.

Rows stream in bounded memory: the sheet's XML is parsed row by row with each row dropped from the
parsed tree once read (openpyxl's own read-only rows keep every row parsed, emptied but attached,
about 80 bytes a row: a million-row sheet held some 80 MB), each row's cells read by openpyxl's
sheet parser (shared strings, dates by their number format, cached formula values).

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
        self._rows = _values(self._book, self._book[sheet] if sheet else self._book.worksheets[0])
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


def _values(book, sheet) -> Iterator[list]:
    """Each row of ``sheet`` as its cells' values (None where empty), an empty list for a row the sheet
    leaves out, dropping every row from the parsed tree once read (the module's note)."""
    from openpyxl.worksheet._reader import ROW_TAG, WorkSheetParser
    from openpyxl.xml.constants import SHEET_MAIN_NS
    from openpyxl.xml.functions import iterparse

    parser = WorkSheetParser(None, sheet._shared_strings, data_only=True, epoch=book.epoch,
                             date_formats=book._date_formats, timedelta_formats=book._timedelta_formats)
    rows_tag = f"{{{SHEET_MAIN_NS}}}sheetData"
    parent, previous = None, 0
    with sheet._get_source() as src:
        for event, element in iterparse(src, events=("start", "end")):
            if event == "start":
                if element.tag == rows_tag:
                    parent = element
                continue
            if element.tag != ROW_TAG:
                continue
            number, cells = parser.parse_row(element)
            parser.row_dimensions.clear()  # row heights and the like: not data, and one entry per row
            if parent is not None:
                parent.remove(element)
            for _ in range(previous + 1, number):
                yield []
            previous = number
            values: list = []
            for cell in cells:
                values += [None] * (cell["column"] - 1 - len(values))
                values.append(cell["value"])
            yield values
