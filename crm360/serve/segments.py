"""Marketing segments: named, described filters over documented mart columns.

Segments live in ``segments.yml`` (``CRM360_SEGMENTS`` names another file)::

    segments:
      - name: top_customers_at_risk
        description: Top and big customers by value whose purchases are slowing.
        filter: value_tier in ('top', 'big') and lifecycle_stage in ('at_risk', 'dormant')

``source`` (default ``customer_360``) names the mart the filter reads:
``customer_360`` or ``customer_call_list``. A filter is a boolean expression and
nothing else: documented columns of the source, literals, comparisons, ``in``,
``between``, ``like``/``ilike``, ``is [not] null``, ``and``/``or``/``not`` and
parentheses. Anything else (functions, sub-queries, casts, semicolons, unknown
columns) is refused with the file, the segment and the reason, and so is a filter
longer than MAX_FILTER_LENGTH characters or nested deeper than MAX_FILTER_DEPTH
(parentheses and nots), with the position. The filter is re-written from its
parse tree, so what reaches SQL is what was validated. dbt gets the segments in
its ``segments`` var, through a file (crm360.transform.dbt), never on a command line.

Each run, dbt materialises every segment into the marts (``segment_members``,
one row per segment and customer, contact fields masked unless the customer
consented; ``segments``, one row per segment with its size; a view
``segment__<name>`` per segment); they are gated and published with the other
marts. After publication the sizes are appended to ``audit.segment_sizes``, the
history. A segment's version is a digest of its source and filter: a changed
filter is a new version, and the history says from when.

Exports (``crm360 segments export``, the segment web page) read as the
``marketing`` role and are logged in ``audit.segment_exports``, where the database stamps
who (its role) and when. A file is written only into the export folder
(``CRM360_EXPORT_DIR``, default ``CRM360_HOME/exports``): an erasure rewrites the logged
files there without the person, and no file anywhere else.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

import yaml
from psycopg import sql

from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse

# the filter grammar lives in its own module; its names are segments' names too
from crm360.serve.segment_filter import (  # noqa: F401 - re-exported
    MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
    SegmentError,
    compile_filter,
)
from crm360.transform import manifest

log = logging.getLogger(__name__)

SEGMENTS_ENV = Settings.env_name("segments")
SOURCES = ("customer_360", "customer_call_list")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
ENTRY_KEYS = {"name", "description", "source", "filter", "owner"}
# the marketing-safe columns of marts.segment_members, in order
MEMBER_COLUMNS = ("segment_name", "customer_key", "full_name", "email", "phone", "has_marketing_consent",
                  "city", "region", "lifecycle_stage", "activity_tier", "revenue_tier", "value_tier",
                  "revenue", "predicted_clv", "last_order_at", "last_contact_at")


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    source: str
    filter: str  # as written
    filter_sql: str  # as re-written from the parse tree
    owner: str | None = None

    @property
    def version(self) -> str:
        return hashlib.sha256(f"{self.source}\n{self.filter_sql}".encode()).hexdigest()[:12]

    def as_var(self) -> dict:
        """The entry dbt's ``segments`` var carries."""
        return {"name": self.name, "description": self.description, "source": self.source,
                "filter_sql": self.filter_sql, "version": self.version}


# ---------------------------------------------------------------- definitions

def documented_columns(settings: Settings | None = None) -> dict[str, dict[str, str | None]]:
    """For each source mart, its documented columns and their data types (None where not declared),
    as dbt's manifest has them (crm360.transform.manifest)."""
    project = manifest.load(settings)
    found = {s: project.documented_columns(s) for s in SOURCES if s in project.models}
    missing = [s for s in SOURCES if s not in found]
    if missing:
        raise SegmentError(f"no documented columns for {', '.join(missing)} in the dbt project")
    return found


def segments_file(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.segments_file


def load(path: Path | None = None, settings: Settings | None = None) -> list[Segment]:
    """Read and validate the segment definitions; errors name the file, the segment and the reason."""
    path = path or segments_file(settings)
    if not path.exists():
        raise SegmentError(f"{path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SegmentError(f"{path}: not valid YAML: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) != {"segments"} or not isinstance(doc["segments"], list):
        raise SegmentError(f"{path}: expected one key, 'segments', holding a list")
    columns = documented_columns(settings)
    out: list[Segment] = []
    seen: set[str] = set()
    for n, entry in enumerate(doc["segments"], start=1):
        where = f"{path}: segment {n}"
        if not isinstance(entry, dict):
            raise SegmentError(f"{where}: expected a mapping with name, description and filter")
        name = entry.get("name")
        if isinstance(name, str):
            where = f"{path}: segment {name!r}"
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            raise SegmentError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                               f"allowed: {', '.join(sorted(ENTRY_KEYS))}")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise SegmentError(f"{where}: name must be lower-case letters, digits and _ (at most 50), "
                               f"starting with a letter; got {name!r}")
        if name in seen:
            raise SegmentError(f"{where}: defined twice")
        seen.add(name)
        description = entry.get("description")
        if not isinstance(description, str) or not description.strip():
            raise SegmentError(f"{where}: a description is required")
        source = entry.get("source", "customer_360")
        if source not in SOURCES:
            raise SegmentError(f"{where}: source must be one of {', '.join(SOURCES)}; got {source!r}")
        text = entry.get("filter", "true" if source == "customer_call_list" else None)
        if not isinstance(text, str):
            raise SegmentError(f"{where}: filter must be a string (a condition over {source}'s columns)")
        renamed: list[tuple[str, str]] = []
        try:
            filter_sql = "true" if text.strip() == "true" else compile_filter(text, columns[source], renamed)
        except SegmentError as exc:
            raise SegmentError(f"{where}: filter: {exc}") from None
        for old, new in dict(renamed).items():
            log.warning("%s: filter: column %s is deprecated, renamed %s in crm360 0.2 (amounts are in the "
                        "reporting currency, marts.reporting_currency); rename it in the file: the old name "
                        "will stop working", where, old, new)
        owner = entry.get("owner")
        out.append(Segment(name=name, description=" ".join(description.split()), source=source,
                           filter=text, filter_sql=filter_sql, owner=str(owner) if owner else None))
    return out


def dbt_var(segments: list[Segment]) -> list[dict]:
    return [s.as_var() for s in segments]


# ---------------------------------------------------------------- published segments

def record_sizes(wh: Warehouse, run_id: str) -> int:
    """Append the published segments' sizes to the history (once per run)."""
    with wh.connect() as conn:
        if conn.execute("select to_regclass('marts.segments')").fetchone()[0] is None:
            conn.commit()
            return 0
        conn.execute("delete from audit.segment_sizes where run_id = %s", (run_id,))
        n = conn.execute("""
            insert into audit.segment_sizes (run_id, as_of_date, segment_name, version, filter_sql,
                                             customers, contactable_customers)
            select %s, as_of_date, segment_name, version, filter_sql, customers, contactable_customers
            from marts.segments""", (run_id,)).rowcount
        conn.commit()
    return n


def list_segments(wh: Warehouse) -> list[dict]:
    from crm360.quality.health import fetch_dicts

    with wh.connect() as conn:
        return fetch_dicts(conn, """
            select segment_name, description, source_model, filter_sql, version, customers,
                   contactable_customers, as_of_date
            from marts.segments order by segment_name""")


def _segment(conn, name: str) -> dict:
    cur = conn.execute("select segment_name, version, customers from marts.segments where segment_name = %s",
                       (name,))
    row = cur.fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("select segment_name from marts.segments order by 1").fetchall()]
        raise SegmentError(f"no segment {name!r}; published segments: {', '.join(known) or '(none)'}")
    return {"segment_name": row[0], "version": row[1], "customers": row[2]}


def members(wh: Warehouse, name: str, limit: int | None = None) -> tuple[list[str], list[tuple]]:
    """The segment's members (masked marketing-safe columns), most valuable first."""
    with wh.connect() as conn:
        _segment(conn, name)
        query = sql.SQL("select {} from marts.segment_members where segment_name = %s "
                        "order by predicted_clv desc nulls last, revenue desc, customer_key{}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in MEMBER_COLUMNS),
            sql.SQL(" limit {}").format(sql.Literal(int(limit))) if limit is not None else sql.SQL(""))
        cur = conn.execute(query, (name,))
        return [c.name for c in cur.description], cur.fetchall()


# What a spreadsheet may run when a cell starts with it.
FORMULA_PREFIXES = ("=", "+", "-", "@", "|", "%")
# A cell starts at the start of a value, and, for a reader that splits lines on a list separator
# without honouring quotes (';' is the separator of spreadsheets in comma-decimal locales), after
# each of these inside it.
LIST_SEPARATORS = re.compile(r"([,;|])")
# a plain signed number (an exponent too) or a phone number (+, digits, blanks, dots) calls nothing
HARMLESS = re.compile(r"^[+-]?[0-9][0-9 .]*(?:[eE][+-]?[0-9]+)?$")
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: those that end a
# line or a cell for some reader (tab, LF, VT, FF, CR, U+001C-U+001F, NEL, U+2028, U+2029) become a
# blank, the others (NUL, BEL, ESC ...) are dropped. None of them has a visible form.
CONTROLS = {c: (" " if chr(c).isspace() else None) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
HAS_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _opening(field: str) -> str:
    """The first character of a field as a lenient reader sees it: past blanks, quotes and invisible
    format characters (zero-width space, byte-order mark, direction marks), which readers trim."""
    for ch in field:
        if not (ch.isspace() or ch == '"' or unicodedata.category(ch) == "Cf"):
            return ch
    return ""


def _neutralise(field: str) -> str:
    if _opening(field) in FORMULA_PREFIXES and not HARMLESS.match(field):
        return "'" + field
    return field


def csv_cell(value) -> str:
    """A value as a CSV cell that no spreadsheet runs, however a reader splits the file.

    Control characters go first (line breaks and tabs become blanks, the invisible rest is
    dropped), so a cell is one line and one cell for every reader. Then every place a cell can
    start (the value's start, and after each ',', ';' or '|' in it) that opens, past blanks and
    quotes, with = + - @ | % gets an apostrophe, unless it is a plain number or a phone number.
    Visible characters are kept, in order; a cell written by this function is returned unchanged,
    so rewriting an export (crm360.privacy) keeps it as it was."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    text = str(value)  # numbers too: a Decimal prints '-Infinity'
    if HAS_CONTROLS.search(text):
        text = text.translate(CONTROLS)
    if not LIST_SEPARATORS.search(text):  # (a million rows have 16 million cells: the plain case is quick)
        return _neutralise(text)
    parts = LIST_SEPARATORS.split(text)
    return "".join(_neutralise(p) if i % 2 == 0 else p for i, p in enumerate(parts))


def write_rows(out: TextIO, rows: Iterable[Sequence]) -> int:
    """Write ``rows`` as CSV lines to ``out``, every value through ``csv_cell``; returns the rows
    written. Every CSV crm360 writes from segment members goes through here: the export, and the
    erasure's rewrite of an export (crm360.privacy)."""
    writer = csv.writer(out, lineterminator="\n")
    n = 0
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        n += 1
    return n


# An export holds this lock (shared) from reading the segment until its log row is committed, an
# erasure holds it exclusively: an export either is logged before the erasure reads the log (and
# its file is rewritten), or reads the segment after the erasure removed the person.
EXPORT_LOCK = "select pg_advisory_xact_lock_shared(hashtext('crm360.erasure'))"


def _write_csv(conn, name: str, out: TextIO) -> tuple[dict, int]:
    seg = _segment(conn, name)
    write_rows(out, [MEMBER_COLUMNS])
    with conn.cursor(name="segment_export") as cur:  # server-side: a large segment streams
        cur.execute(sql.SQL("select {} from marts.segment_members where segment_name = %s "
                            "order by predicted_clv desc nulls last, revenue desc, customer_key").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in MEMBER_COLUMNS)), (name,))
        rows = write_rows(out, cur)
    return seg, rows


def _log_export(conn, seg: dict, rows: int, exported_by: str, destination: str | None) -> None:
    # who (db_role) and when (exported_at) are the database's to say: it stamps them (migration 0005)
    conn.execute("""insert into audit.segment_exports (exported_by, segment_name, segment_version, row_count,
                                                       destination, format)
                    values (%s, %s, %s, %s, %s, 'csv')""",
                 (exported_by, seg["segment_name"], seg["version"], rows, destination))


def export_csv(wh: Warehouse, name: str, out: TextIO, exported_by: str, destination: str | None = None) -> int:
    """Write the whole segment as CSV to ``out`` (a stream: standard output, a web download) and log
    the export; returns the rows written. A file goes through :func:`export_file`."""
    with wh.connect() as conn:
        conn.execute(EXPORT_LOCK)
        seg, rows = _write_csv(conn, name, out)
        _log_export(conn, seg, rows, exported_by, destination)
        conn.commit()
    return rows


def export_path(output: str, settings: Settings | None = None) -> Path:
    """The file ``-o output`` names, inside the export folder: a relative name goes into the folder;
    anything that resolves outside it (an absolute path elsewhere, ``..``, a symbolic link leading
    out) is refused, because an erasure rewrites exports there and nowhere else."""
    settings = settings or get_settings()
    folder = settings.exports_dir.resolve()
    given = Path(output).expanduser()
    target = (given if given.is_absolute() else folder / given).resolve()
    if target == folder or not target.is_relative_to(folder):
        raise SegmentError(f"{output}: not a file inside the export folder {folder} (CRM360_EXPORT_DIR): crm360 "
                           "writes exports only there, so that an erasure can find and rewrite every one; give a "
                           "file name (it goes into that folder), or - for standard output")
    return target


def export_file(wh: Warehouse, name: str, path: Path, exported_by: str) -> int:
    """Write the whole segment as CSV into ``path`` (see :func:`export_path`) and log it; returns the
    rows written. The file appears whole, under its name, before its log row is committed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with wh.connect() as conn:
            conn.execute(EXPORT_LOCK)
            with part.open("w", encoding="utf-8", newline="") as out:
                seg, rows = _write_csv(conn, name, out)
            os.replace(part, path)
            _log_export(conn, seg, rows, exported_by, str(path))
            conn.commit()
    finally:
        part.unlink(missing_ok=True)
    return rows


def view_sql(name: str) -> str:
    """The SQL a tool uses to read the segment: its published view."""
    return f"select * from marts.segment__{name}"
