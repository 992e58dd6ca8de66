"""What crm360 expects of each source system, and where a deployment says it finds it.

Two halves, kept apart on purpose:

- the **contract** (this module, in code): the raw tables dbt reads, their
  columns, which are required and which must parse as a type. dbt's staging
  models are written against it, so a user cannot change it by configuration;
- the **binding** (``sources.yml``, in configuration): where each table's
  records come from (a folder or any fsspec URL and a file pattern, or a SQL
  database table read by an updated-at cursor) and how the export's own column
  names map onto the contract's. Pointing crm360 at another company's exports
  is a change to ``sources.yml``, not to code.

``${VAR}`` and ``${VAR:-default}`` in ``sources.yml`` are read from the
environment, so URLs and credentials stay out of the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from crm360.core.errors import ConfigurationError
from crm360.core.systems import SOURCES_ENV, SYSTEMS, sources_file


class SourceConfigError(ConfigurationError):
    """``sources.yml`` is missing or says something crm360 cannot do; the message names the entry."""


@dataclass(frozen=True)
class CsvTable:
    """A CSV export loaded column for column into a raw table of text columns."""

    name: str
    table: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    # columns that must parse as a PostgreSQL type (empty values allowed); a record that does not is quarantined
    types: tuple[tuple[str, str], ...] = ()
    # columns whose value must satisfy a condition, as (column, SQL condition on ``v``, reason)
    checks: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class JsonTable:
    """JSON records kept whole as ``record jsonb`` with their position in the file."""

    name: str
    table: str
    required: tuple[str, ...] = ()
    known: tuple[str, ...] = ()  # fields staging reads; others are reported as drift
    types: tuple[tuple[str, str], ...] = ()  # top-level fields that must parse as a PostgreSQL type
    checks: tuple[tuple[str, str, str], ...] = ()


Contract = CsvTable | JsonTable

# A value the staging models cannot cast must not get past the loader: contract types are the exact
# types staging casts to (numeric(12, 2) holds at most 10 digits before the point), NaN is no amount
# (numeric takes it, the marts' sums would not survive it), and a line's quantity times its unit price
# must fit the line amount's numeric(14, 2): both stay below a million.
AMOUNT = "numeric(12,2)"
NOT_NAN = ("v::numeric <> 'NaN'::numeric", "not a number (NaN)")
LINE_BOUND = 1_000_000

CONTRACT: dict[str, tuple[Contract, ...]] = {
    "sales": (
        CsvTable("products", "sales_products",
                 ("product_id", "product_name", "category", "list_price"),
                 ("product_id", "list_price"),
                 types=(("list_price", AMOUNT),),
                 checks=(("list_price", *NOT_NAN),)),
        CsvTable("customers", "sales_customers",
                 ("customer_id", "account_type", "first_name", "last_name", "email", "phone", "gender",
                  "birth_year", "income_band", "occupation", "city", "region", "country_code",
                  "acquisition_channel", "marketing_consent", "created_at", "updated_at"),
                 ("customer_id", "created_at"),
                 types=(("birth_year", "integer"), ("marketing_consent", "boolean"),
                        ("created_at", "timestamptz"), ("updated_at", "timestamptz"))),
        CsvTable("orders", "sales_orders",
                 ("order_id", "customer_id", "ordered_at", "status", "currency", "channel", "refund_amount",
                  "updated_at"),
                 ("order_id", "customer_id", "ordered_at", "status"),
                 types=(("ordered_at", "timestamptz"), ("refund_amount", AMOUNT), ("updated_at", "timestamptz")),
                 checks=(("refund_amount", *NOT_NAN),
                         ("refund_amount", "v::numeric >= 0", "a refund cannot be negative"))),
        CsvTable("order_lines", "sales_order_lines",
                 ("order_id", "line_number", "product_id", "quantity", "unit_price"),
                 ("order_id", "line_number", "product_id", "quantity", "unit_price"),
                 types=(("line_number", "integer"), ("quantity", "integer"), ("unit_price", AMOUNT)),
                 checks=(("quantity", "v::integer > 0", "quantity must be a positive whole number"),
                         ("quantity", f"v::integer < {LINE_BOUND}", f"quantity must be below {LINE_BOUND:,}"),
                         ("unit_price", *NOT_NAN),
                         ("unit_price", f"abs(v::numeric) < {LINE_BOUND}",
                          f"a unit price must be below {LINE_BOUND:,} (the line amount is numeric(14, 2))"))),
    ),
    "service": (
        JsonTable("tickets", "service_tickets", required=("id", "created_at"),
                  known=("id", "type", "status", "created_at", "updated_at", "solved_at", "requester",
                         "customer_ref", "satisfaction", "channel", "subject", "direction", "outcome"),
                  types=(("created_at", "timestamptz"), ("updated_at", "timestamptz"), ("solved_at", "timestamptz"),
                         ("satisfaction", "smallint")),
                  checks=(("satisfaction", "v::smallint between 1 and 5", "satisfaction must be 1 to 5"),)),
    ),
    "web": (
        JsonTable("events", "web_events", required=("event_id", "visitor_id", "occurred_at"),
                  known=("event_id", "visitor_id", "event_type", "page", "occurred_at", "email", "customer_id",
                         "referrer", "utm_source", "utm_medium", "utm_campaign", "product_id"),
                  types=(("occurred_at", "timestamptz"),)),
    ),
}

SOURCE_NAMES = tuple(CONTRACT)
assert SOURCE_NAMES == SYSTEMS, "the contract describes exactly the systems crm360 knows (crm360.core.systems)"


def contract_table(source: str, name: str) -> Contract:
    for table in CONTRACT[source]:
        if table.name == name:
            return table
    raise KeyError(name)


@dataclass(frozen=True)
class Shape:
    """How a CSV export's rows become the contract's, beyond renaming columns (crm360.ingest.shape):
    values it lacks and values it writes its own way."""

    constants: dict[str, str] = field(default_factory=dict)  # column -> the value of every row
    defaults: dict[str, str] = field(default_factory=dict)  # column -> the value where the export's is empty
    row_number: tuple[str, ...] = ()  # columns given the record's position in the file: 1, 2, ...
    row_id: tuple[str, ...] = ()  # columns given '<file>:<position>', unique across files
    dates: dict[str, str] = field(default_factory=dict)  # column -> strptime format of its values
    timezone: str | None = None  # the zone of timestamps written without an offset
    decimal: str = "."  # the decimal mark of numbers
    thousands: str = ""  # the thousands separator of numbers, removed

    @property
    def provided(self) -> frozenset[str]:
        return frozenset((*self.constants, *self.row_number, *self.row_id))


@dataclass(frozen=True)
class FileTable:
    """One contract table bound to files: which files, what format, which export columns."""

    contract: Contract
    pattern: str  # glob relative to the source's location
    format: str  # csv | json | jsonl
    columns: dict[str, str] = field(default_factory=dict)  # contract column -> export column (renamed ones only)
    list_key: str | None = None  # json: the key holding the list of records
    delimiter: str = ","
    shape: Shape | None = None  # csv: values the export lacks or writes its own way
    sheet: str | None = None  # xlsx: the sheet read (None: the first)

    @property
    def provided(self) -> frozenset[str]:
        """Contract columns the mapping fills without an export column."""
        return self.shape.provided if self.shape else frozenset()

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def table(self) -> str:
        return self.contract.table

    def to_contract(self) -> dict[str, str]:
        """Export column -> contract column, for the renamed ones."""
        return {export: ours for ours, export in self.columns.items()}


@dataclass(frozen=True)
class FileSource:
    name: str
    location: str  # a folder relative to the landing folder, a local path, or an fsspec URL
    tables: tuple[FileTable, ...]


@dataclass(frozen=True)
class SqlTableBinding:
    contract: CsvTable
    source_table: str
    cursor: str
    columns: dict[str, str]  # every contract column -> source column


@dataclass(frozen=True)
class SqlSourceBinding:
    name: str
    url: str
    tables: tuple[SqlTableBinding, ...]
    lookback_days: int = 1


SourceBinding = FileSource | SqlSourceBinding

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: str, where: str) -> str:
    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ and os.environ[name] != "":
            return os.environ[name]
        if default is not None:
            return default
        raise SourceConfigError(f"{where}: environment variable {name} is not set")

    return _VAR.sub(sub, value)


def config_path(project_dir: Path) -> Path:
    return sources_file(project_dir)


def load_config(path: Path) -> dict[str, SourceBinding]:
    """Read and check ``sources.yml``: the bindings of the systems it names, in contract order.

    A company binds the systems it has (sales only, sales and service, all three); at least one.
    The others are absent: not loaded, not checked for freshness, their raw tables stay empty and
    the mart columns they feed are null or zero (docs/bring-your-own-data.md)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceConfigError(f"{path}: no source configuration (set {SOURCES_ENV} to another file)") from None
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not valid YAML: {exc}") from None
    entries = (document or {}).get("sources")
    if not isinstance(entries, dict):
        raise SourceConfigError(f"{path}: expected a mapping under 'sources'")
    unknown = sorted(set(entries) - set(CONTRACT))
    if unknown:
        raise SourceConfigError(f"{path}: unknown source(s) {', '.join(unknown)}; crm360 knows {', '.join(CONTRACT)}")
    if not entries:
        raise SourceConfigError(f"{path}: sources: bind at least one system ({', '.join(CONTRACT)})")
    return {name: _binding(path, name, entries[name] or {}) for name in CONTRACT if name in entries}


def _binding(path: Path, source: str, entry: dict) -> SourceBinding:
    where = f"{path}: sources.{source}"
    kind = entry.get("kind", "files")
    tables = entry.get("tables") or {}
    if not isinstance(tables, dict):
        raise SourceConfigError(f"{where}.tables: expected a mapping of table name to settings")
    names = {t.name for t in CONTRACT[source]}
    extra = sorted(set(tables) - names)
    if extra:
        raise SourceConfigError(f"{where}.tables: unknown table(s) {', '.join(extra)}; {source} has "
                                f"{', '.join(sorted(names))}")
    absent = sorted(names - set(tables))
    if absent:
        raise SourceConfigError(f"{where}.tables: table(s) not configured: {', '.join(absent)}")
    if kind == "files":
        location = _expand(str(entry.get("location") or source), where + ".location")
        return FileSource(source, location, tuple(
            _file_table(f"{where}.tables.{t.name}", t, tables[t.name] or {}) for t in CONTRACT[source]))
    if kind == "sql":
        if not all(isinstance(t, CsvTable) for t in CONTRACT[source]):
            raise SourceConfigError(f"{where}: only tabular sources can be read from a SQL database")
        url = _expand(str(entry.get("url") or ""), where + ".url")
        if not url:
            raise SourceConfigError(f"{where}.url: a SQL source needs a database URL")
        return SqlSourceBinding(source, url, tuple(
            _sql_table(f"{where}.tables.{t.name}", t, tables[t.name] or {}) for t in CONTRACT[source]),
            lookback_days=int(entry.get("lookback_days", 1)))
    raise SourceConfigError(f"{where}.kind: expected 'files' or 'sql', got {kind!r}")


def _mapping(where: str, contract: Contract, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SourceConfigError(f"{where}.columns: expected a mapping of crm360 column to export column")
    ours = set(contract.columns if isinstance(contract, CsvTable) else contract.known)
    unknown = sorted(set(value) - ours)
    if unknown:
        raise SourceConfigError(f"{where}.columns: {', '.join(unknown)} not a crm360 column of "
                                f"{contract.name}; known: {', '.join(sorted(ours))}")
    targets = list(value.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise SourceConfigError(f"{where}.columns: export column(s) mapped twice: {', '.join(doubled)}")
    return {k: v for k, v in value.items() if k != v}


def _file_table(where: str, contract: Contract, entry: dict) -> FileTable:
    pattern = entry.get("pattern")
    if not pattern:
        raise SourceConfigError(f"{where}.pattern: a file pattern is required")
    default_format = "csv" if isinstance(contract, CsvTable) else "jsonl"
    fmt = entry.get("format", default_format)
    allowed = ("csv", "xlsx") if isinstance(contract, CsvTable) else ("json", "jsonl")
    if fmt not in allowed:
        raise SourceConfigError(f"{where}.format: {contract.name} can be read as {' or '.join(allowed)}, not {fmt!r}")
    list_key = entry.get("list_key")
    if fmt == "json" and not list_key:
        raise SourceConfigError(f"{where}.list_key: a JSON document source needs the key holding its records")
    delimiter = str(entry.get("delimiter", ","))
    if len(delimiter) != 1:
        raise SourceConfigError(f"{where}.delimiter: one character, got {delimiter!r}")
    columns = _mapping(where, contract, entry.get("columns"))
    shape = _shape(where, contract, entry, columns)
    sheet = entry.get("sheet")
    if sheet is not None and fmt != "xlsx":
        raise SourceConfigError(f"{where}.sheet: only an Excel workbook (format: xlsx) has sheets")
    return FileTable(contract, str(pattern), fmt, columns, list_key, delimiter, shape,
                     None if sheet is None else str(sheet))


SHAPE_KEYS = ("constants", "defaults", "row_number", "row_id", "dates", "timezone", "decimal", "thousands")
NUMERIC_TYPES = (AMOUNT, "integer", "smallint")


def _shape(where: str, contract: Contract, entry: dict, columns: dict[str, str]) -> Shape | None:
    """The shaping settings of a CSV table (None if it has none), checked entry by entry."""
    given = [k for k in SHAPE_KEYS if k in entry]
    if not given:
        return None
    if not isinstance(contract, CsvTable):
        raise SourceConfigError(f"{where}.{given[0]}: only CSV exports can be shaped; {contract.name} is JSON")
    known = contract.columns
    types = dict(contract.types)

    def names(key: str) -> tuple[str, ...]:
        value = entry.get(key) or ()
        value = (value,) if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise SourceConfigError(f"{where}.{key}: a crm360 column or a list of them")
        for column in value:
            if column not in known:
                raise SourceConfigError(f"{where}.{key}: {column} is not a crm360 column of {contract.name}; "
                                        f"known: {', '.join(known)}")
        return tuple(value)

    def values(key: str) -> dict[str, str]:
        value = entry.get(key) or {}
        if not isinstance(value, dict):
            raise SourceConfigError(f"{where}.{key}: expected a mapping of crm360 column to value")
        for column, v in value.items():
            if column not in known:
                raise SourceConfigError(f"{where}.{key}.{column}: not a crm360 column of {contract.name}; "
                                        f"known: {', '.join(known)}")
            if v is None or isinstance(v, (dict, list)):
                raise SourceConfigError(f"{where}.{key}.{column}: a single value, got {v!r}")
        return {c: (str(v).lower() if isinstance(v, bool) else str(v)) for c, v in value.items()}

    constants, defaults = values("constants"), values("defaults")
    row_number, row_id = names("row_number"), names("row_id")
    filled = [*constants, *row_number, *row_id]
    twice = sorted({c for c in filled if filled.count(c) > 1} | (set(filled) & set(columns)))
    if twice:
        raise SourceConfigError(f"{where}: {', '.join(twice)} given more than one way (columns, constants, "
                                "row_number, row_id)")
    for column in row_number:
        if column in types and types[column] != "integer":
            raise SourceConfigError(f"{where}.row_number: {column} is a {types[column]}, not a number")
    dates = values("dates")
    for column, fmt in dates.items():
        if types.get(column) != "timestamptz":
            raise SourceConfigError(f"{where}.dates.{column}: not a timestamp column of {contract.name}; "
                                    f"those are {', '.join(c for c, t in contract.types if t == 'timestamptz')}")
        if "%" not in fmt:
            raise SourceConfigError(f"{where}.dates.{column}: a strptime format such as %Y%m%d or "
                                    f"%d.%m.%Y %H:%M, got {fmt!r}")
    timezone = entry.get("timezone")
    if timezone is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise SourceConfigError(f"{where}.timezone: not a time zone name (such as Europe/Berlin or "
                                    f"America/New_York): {timezone!r}") from None
        timezone = str(timezone)
    naive = [c for c, fmt in dates.items() if "%z" not in fmt]
    if naive and timezone is None:
        raise SourceConfigError(f"{where}.timezone: dates of {', '.join(naive)} carry no offset; say which time "
                                "zone they are in (timezone: Europe/Berlin, or UTC)")
    decimal, thousands = str(entry.get("decimal", ".")), str(entry.get("thousands", ""))
    if decimal not in (".", ","):
        raise SourceConfigError(f"{where}.decimal: '.' or ',', got {decimal!r}")
    if thousands not in ("", ".", ",", " ", "'") or thousands == decimal:
        raise SourceConfigError(f"{where}.thousands: one of '', '.', ',', ' ', \"'\" and not the decimal mark, "
                                f"got {thousands!r}")
    return Shape(constants, defaults, row_number, row_id, dates, timezone, decimal, thousands)


def _sql_table(where: str, contract: CsvTable, entry: dict) -> SqlTableBinding:
    mapping = {c: c for c in contract.columns}
    mapping.update(_mapping(where, contract, entry.get("columns")))
    return SqlTableBinding(contract, str(entry.get("table") or contract.name), str(entry.get("cursor", "updated_at")),
                           mapping)
