"""A CSV export's rows made the contract's, as its table's ``Shape`` in sources.yml says: constants
and defaults for values it lacks, row positions for keys it lacks, and dates and numbers written
its own way (compact or day-first dates, naive timestamps in a time zone, decimal commas and
thousands separators) rewritten as the ISO 8601 and plain decimals the contract reads.

A value that does not fit its stated format makes the record bad, with the column, the value and
the format: it goes to the quarantine like any malformed record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo

from crm360.ingest.sources import NUMERIC_TYPES, CsvTable, FileTable, Shape


@cache
def _number_pattern(decimal: str, thousands: str) -> re.Pattern:
    """A number as the export writes it: thousands grouped by three if it groups them at all."""
    fraction = rf"({re.escape(decimal)}[0-9]+)?"
    if not thousands:
        return re.compile(rf"^[+-]?[0-9]+{fraction}$")
    return re.compile(rf"^[+-]?([0-9]{{1,3}}({re.escape(thousands)}[0-9]{{3}})+|[0-9]+){fraction}$")


@dataclass(frozen=True)
class Shaper:
    """For one file: the columns COPY writes, and how each record's fields become their values."""

    shape: Shape
    names: list[str]  # the contract columns written, in order (the file's known ones, then the provided)
    sources: list[int | None]  # per name: the file's field index, None for a provided column
    rel: str

    @classmethod
    def of(cls, table: FileTable, header: list[str], rel: str) -> Shaper:
        contract = table.contract
        assert isinstance(contract, CsvTable) and table.shape is not None
        known = [(c, i) for i, c in enumerate(header) if c in contract.columns]
        present = {c for c, _ in known}
        added = [c for c in contract.columns
                 if c not in present and (c in table.provided or c in table.shape.defaults)]
        return cls(table.shape, [c for c, _ in known] + added, [i for _, i in known] + [None] * len(added), rel)

    def row(self, fields: list[str], record: int, types: dict[str, str]) -> tuple[list[str | None], str | None]:
        """The record's values for :attr:`names`, or the problem that makes it bad."""
        shape, out = self.shape, []
        for name, index in zip(self.names, self.sources, strict=True):
            value = fields[index] if index is not None else ""
            if name in shape.constants:
                value = shape.constants[name]
            elif name in shape.row_number:
                value = str(record)
            elif name in shape.row_id:
                value = f"{self.rel}:{record}"
            elif value.strip() == "" and name in shape.defaults:
                value = shape.defaults[name]
            try:
                value = self._convert(name, value, types.get(name))
            except ValueError as exc:
                return [], f"{name}: {exc}"
            out.append(value)
        return out, None

    def _convert(self, name: str, value: str, type_name: str | None) -> str:
        shape = self.shape
        text = value.strip()
        if not text:
            return value
        if type_name == "timestamptz" and (name in shape.dates or shape.timezone):
            fmt = shape.dates.get(name)
            try:
                moment = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text[:40]!r} does not match the date format {fmt or 'ISO 8601'}") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ZoneInfo(shape.timezone or "UTC"))
            return moment.isoformat()
        if type_name in NUMERIC_TYPES and (shape.decimal != "." or shape.thousands):
            if not _number_pattern(shape.decimal, shape.thousands).match(text):
                raise ValueError(f"{text[:40]!r} is not a number with decimal mark {shape.decimal!r}"
                                 + (f" and thousands separator {shape.thousands!r}" if shape.thousands else ""))
            plain = text.replace(shape.thousands, "") if shape.thousands else text
            return plain.replace(shape.decimal, ".")
        return value
