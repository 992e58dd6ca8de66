"""What every loader of a batch shares: the errors it raises, the limits it reads from the
settings (crm360.core.settings), the result it returns, and how a file's (or a window's) load transaction begins.

A file is the unit of work: it is loaded in one transaction that first removes any earlier rows of
the same file, then records the file and its checksum in ``audit.load_files``. Every raw row
carries ``_batch_id``, ``_source_file`` and ``_loaded_at``; those columns default to
transaction-local settings (``begin_file_load``), so a CSV streams to COPY as it is.

Limits on what one record may be, so a broken export fails clearly instead of exhausting memory:
a line of a CSV or JSON-lines file longer than ``CRM360_MAX_RECORD_BYTES`` (default 16 MiB) fails
its file, read no further than that; so does a JSON document larger than
``CRM360_MAX_DOCUMENT_BYTES`` (default 256 MiB). More than ``CRM360_MAX_BAD_ROW_FRACTION`` (default
1 %) of a batch's records malformed, and the batch is taken back out; a file of which more than
half is malformed is the wrong file and fails on its own."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings

log = logging.getLogger(__name__)


COPY_CHUNK = 1 << 20  # bytes handed to COPY per write


UNREADABLE_FRACTION = 0.5  # a file worse than this is not data with some dirt in it, it is the wrong file


MAX_RECORD_ENV = Settings.env_name("max_record_bytes")
MAX_RECORD_DEFAULT = Settings.model_fields["max_record_bytes"].default  # one line of a CSV or JSON-lines file


MAX_DOCUMENT_ENV = Settings.env_name("max_document_bytes")
MAX_DOCUMENT_DEFAULT = Settings.model_fields["max_document_bytes"].default  # one JSON document file


LOAD_WORKERS_ENV = Settings.env_name("load_workers")  # files of a source loaded at once, each on its own connection


PLAUSIBLE_YEARS = (1900, 2099)  # timestamps dated in other years are quarantined


class IngestError(Crm360Error):
    """A source file cannot be loaded; the message names the file, line and reason."""


def max_bad_fraction() -> float:
    """CRM360_MAX_BAD_ROW_FRACTION (crm360.core.settings)."""
    return get_settings().max_bad_row_fraction


def load_workers() -> int:
    """How many files of a source load at once: CRM360_LOAD_WORKERS, else 2 (1 on one CPU)."""
    return get_settings().load_workers


def max_record_bytes() -> int:
    return get_settings().max_record_bytes


def max_document_bytes() -> int:
    return get_settings().max_document_bytes



# A file's rows are found by _source_file (a reload replaces them, the contract checks read them
# right after COPY). They lie together, in the pages COPY just appended: a BRIN index (migration
# 0001, 8 pages a range) finds them as well as a btree did, at a fraction of the cost of keeping a
# btree up for every row loaded (psql \copy of ten days of medium orders: +47 % time with the
# btree, +13 % with BRIN, against no index). Each file's load summarizes the ranges it filled.
def source_file_index(table: str) -> str:
    return f"{table}__source_file_brin"


def begin_file_load(conn: psycopg.Connection, source: str, source_file: str, batch_id: str,
                    loaded_at: datetime) -> None:
    """The first statement of a file's (or a window's) load transaction: one loader per file at a
    time, whatever process it runs in; the meta columns' defaults; and every later statement
    reading that file's rows by the BRIN index on _source_file, whatever the planner guesses of a
    table whose statistics predate the load (a scan of all of raw for each file would make a
    day's load cost its history)."""
    conn.execute("select pg_advisory_xact_lock(hashtext(%s)), set_config('crm360.batch_id', %s, true), "
                 "set_config('crm360.source_file', %s, true), set_config('crm360.loaded_at', %s, true), "
                 "set_config('enable_seqscan', 'off', true)",
                 (f"{source}:{source_file}", batch_id, source_file, loaded_at.isoformat()))


def summarize_source_files(conn: psycopg.Connection, table: str) -> None:
    """Summarize the BRIN ranges of _source_file that are not yet: a range left unsummarized is
    read by every later lookup. Summarizing needs the index's owner: a loader connected as a
    role that only writes raw skips it (autovacuum summarizes full ranges later; lookups stay
    right, only slower)."""
    conn.execute("select case when pg_has_role(current_user, i.relowner, 'USAGE') "
                 "then brin_summarize_new_values(i.oid) end from pg_class i where i.oid = to_regclass(%s)",
                 (sql.Identifier("raw", source_file_index(table)).as_string(conn),))


@dataclass
class LoadResult:
    source: str
    batch_id: str
    files_loaded: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    replaced: int = 0  # files that replaced a version loaded before (kept aside until this batch is gated)
    adopted: tuple[str, ...] = ()  # other runs' batches waiting for their gate: this batch's gate checks them too

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict:
        return {"source": self.source, "batch_id": self.batch_id,
                "files_loaded": len(self.files_loaded), "files_skipped": len(self.files_skipped),
                "files_replaced": self.replaced, "batch_ids": [self.batch_id, *self.adopted],
                "rows": dict(self.rows), "quarantined": dict(self.quarantined), "drift": list(self.drift)}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:500]


def where(bad: tuple) -> str:
    line, record = bad[0], bad[1]
    return f"line {line}" if line is not None else f"record {record}"


@dataclass
class Outcome:
    rows: int = 0
    replaced: bool = False  # the file replaced a version an earlier attempt loaded
    bad: list[tuple[int | None, int | None, str, str]] = field(default_factory=list)  # line, record, reason, raw
    drift: list[str] = field(default_factory=list)
    # JSON lines COPY took unchecked: SQL naming why a loaded record is no record at all (not an
    # object, a required field missing), taken out with the invalid values in one pass
    malformed: sql.Composable | None = None
