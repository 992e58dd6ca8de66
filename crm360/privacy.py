"""The right to be forgotten: a deletion request removes a person from every layer.

``crm360 forget --email ...`` records a request in ``audit.erasure_requests``;
the identifier is kept only as a SHA-256 digest of its normalised form, never in
clear. The next run applies it (``apply_erasures``, after loading and before dbt):

1. The request is resolved through the published identity graph
   (``marts.customer_identifiers``) to the customers it names and every identifier
   linked to them (guarded identifiers such as shared mailboxes link nobody, so
   nobody else is taken along). Their digests go to ``audit.erased_identifiers``.
2. Rows carrying an erased identifier are deleted from ``raw`` (shop customers,
   their orders and order lines, tickets, web events; quarantined records that
   quote one of the person's e-mails, phones or ids), from the incremental
   staging and intermediate tables dbt would otherwise keep, from the value
   predictions, and from the published marts; gate samples quoting them are
   cleared; ``marts__previous`` and a rejected ``marts__build`` are dropped.
3. Every CSV export logged in ``audit.segment_exports`` that still exists is
   rewritten without the person's rows.

Every later run deletes newly loaded rows that carry an erased identifier (a new
drop from a source system that still holds the person), looking only at rows
loaded since the previous run. The load ledger keeps the files' digests, so
files already loaded are not loaded again. The source systems' own drop folders
are not crm360's to change: the request must also go to them.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from crm360 import ddl
from crm360.errors import ConfigurationError
from crm360.schema import require_current
from crm360.settings import Settings, get_settings
from crm360.warehouse import Warehouse

log = logging.getLogger(__name__)

IDENTIFIER_TYPES = ("email", "phone", "shop_customer_id", "visitor_id", "customer_key")

# sha256 of a text in SQL, the same digest as ``digest`` below
SQL_HASH = "encode(sha256(convert_to({}, 'UTF8')), 'hex')"


class ErasureError(ConfigurationError):
    """A deletion request crm360 cannot record."""


def normalise(identifier_type: str, value: str) -> str:
    """The form crm360 keeps the identifier in (see the staging models)."""
    value = value.strip()
    if identifier_type == "email":
        return value.lower()
    if identifier_type == "phone":
        digits = re.sub(r"[\s().\-/]", "", value)
        if digits.startswith("00"):
            digits = "+" + digits[2:]
        if not re.fullmatch(r"\+[0-9]{6,15}", digits):
            raise ErasureError(f"phone {value!r}: give it in international form, e.g. +31 20 123 4567")
        return digits
    return value


def digest(identifier_type: str, value: str) -> str:
    return hashlib.sha256(normalise(identifier_type, value).encode()).hexdigest()


def request_erasure(wh: Warehouse, identifier_type: str, value: str, requested_by: str,
                    reason: str | None = None) -> int:
    """Record a deletion request; returns its id. Applied by the next run."""
    if identifier_type not in IDENTIFIER_TYPES:
        raise ErasureError(f"unknown identifier type {identifier_type!r}; one of {', '.join(IDENTIFIER_TYPES)}")
    if not value or not value.strip():
        raise ErasureError(f"an empty {identifier_type} names nobody")
    require_current(wh)
    with wh.connect() as conn:
        request_id = conn.execute(
            """insert into audit.erasure_requests (requested_by, identifier_type, identifier_hash, reason)
               values (%s, %s, %s, %s) returning request_id""",
            (requested_by, identifier_type, digest(identifier_type, value), reason)).fetchone()[0]
        conn.commit()
    return request_id


def _exists(conn, relation: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]


def _resolve(conn, request_id: int, identifier_type: str, identifier_hash: str) -> tuple[int, list[str]]:
    """Add the request's identifiers, and every identifier of the customers it names, to the erased set.
    Returns the number of customers found and the plain values found (for the quarantine)."""
    conn.execute("""insert into audit.erased_identifiers (identifier_type, identifier_hash, request_id)
                    values (%s, %s, %s) on conflict do nothing""", (identifier_type, identifier_hash, request_id))
    if not _exists(conn, "marts.customer_identifiers"):
        return 0, []
    h = sql.SQL(SQL_HASH).format(sql.Identifier("identifier_value"))
    if identifier_type == "customer_key":
        keys = conn.execute(sql.SQL("select distinct customer_key from marts.customer_identifiers "
                                    "where {} = %s").format(sql.SQL(SQL_HASH).format(sql.Identifier("customer_key"))),
                            (identifier_hash,)).fetchall()
    else:
        keys = conn.execute(sql.SQL("select distinct customer_key from marts.customer_identifiers "
                                    "where identifier_type = %s and {} = %s and customer_key is not null").format(h),
                            (identifier_type, identifier_hash)).fetchall()
    keys = [k[0] for k in keys]
    if not keys:
        return 0, []
    rows = conn.execute("""select identifier_type, identifier_value, customer_key from marts.customer_identifiers
                           where customer_key = any(%s)""", (keys,)).fetchall()
    values = []
    for kind, value, key in rows:
        conn.execute("""insert into audit.erased_identifiers (identifier_type, identifier_hash, request_id)
                        values (%s, %s, %s), ('customer_key', %s, %s) on conflict do nothing""",
                     (kind, hashlib.sha256(value.encode()).hexdigest(), request_id,
                      hashlib.sha256(key.encode()).hexdigest(), request_id))
        values.append(value)
    return len(keys), values


def _erased(conn, kind: str) -> sql.Composable:
    return sql.SQL("(select identifier_hash from audit.erased_identifiers where identifier_type = {})").format(
        sql.Literal(kind))


def _delete(conn, table: str, condition: sql.Composable, since) -> int:
    if not _exists(conn, table):
        return 0
    schema, name = table.split(".")
    query = sql.SQL("delete from {}.{} where ({})").format(sql.Identifier(schema), sql.Identifier(name), condition)
    if since is not None and schema == "raw":
        query = sql.SQL("{} and _loaded_at > {}").format(query, sql.Literal(since))
    return conn.execute(query).rowcount


def _h(expr: str) -> sql.Composable:
    return sql.SQL(SQL_HASH).format(sql.SQL(expr))


def _delete_everywhere(conn, since) -> dict[str, int]:
    """Delete rows carrying an erased identifier; raw rows only if loaded after ``since`` (None: all)."""
    e, s, v = _erased(conn, "email"), _erased(conn, "shop_customer_id"), _erased(conn, "visitor_id")
    k = _erased(conn, "customer_key")
    deleted: dict[str, int] = {}

    def run(table: str, condition: sql.Composable) -> None:
        # after the first pass, only newly loaded raw rows can carry an erased identifier: what dbt
        # builds from raw, and the marts, were cleaned when the request was applied
        if since is None or table.startswith("raw."):
            deleted[table] = deleted.get(table, 0) + _delete(conn, table, condition, since)

    # shop records named by id or by an erased e-mail; their ids join the erased set, so orders follow
    if _exists(conn, "raw.sales_customers"):
        found = sql.SQL("select customer_id from raw.sales_customers where {} in {}").format(
            _h("lower(trim(email))"), e)
        if since is not None:
            found = sql.SQL("{} and _loaded_at > {}").format(found, sql.Literal(since))
        conn.execute(sql.SQL("""insert into audit.erased_identifiers (identifier_type, identifier_hash, request_id)
                                select distinct 'shop_customer_id', {}, 0 from ({}) as f
                                on conflict do nothing""").format(_h("f.customer_id"), found))
    run("raw.sales_customers", sql.SQL("{} in {} or {} in {}").format(_h("customer_id"), s,
                                                                      _h("lower(trim(email))"), e))
    # lines before their orders: the orders name the customer
    erased_orders = sql.SQL("(select order_id from raw.sales_orders where {} in {})").format(_h("customer_id"), s)
    if _exists(conn, "raw.sales_orders"):
        run("raw.sales_order_lines", sql.SQL("order_id in {}").format(erased_orders))
        run("staging.stg_sales__order_lines", sql.SQL("order_id in {}").format(erased_orders))
    run("raw.sales_orders", sql.SQL("{} in {}").format(_h("customer_id"), s))
    run("staging.stg_sales__orders", sql.SQL("{} in {}").format(_h("customer_id"), s))
    run("raw.service_tickets", sql.SQL("{} in {} or {} in {}").format(
        _h("trim(record ->> 'customer_ref')"), s, _h("lower(trim(record -> 'requester' ->> 'email'))"), e))
    run("raw.web_events", sql.SQL("{} in {} or {} in {} or {} in {}").format(
        _h("trim(record ->> 'visitor_id')"), v, _h("trim(record ->> 'customer_id')"), s,
        _h("lower(trim(record ->> 'email'))"), e))
    run("staging.stg_web__events", sql.SQL("{} in {} or {} in {} or {} in {}").format(
        _h("visitor_id"), v, _h("customer_id"), s, _h("email"), e))
    for table in ("intermediate.int_web_visitors_aggregated", "intermediate.int_web_events_sessionized"):
        run(table, sql.SQL("{} in {}").format(_h("visitor_id"), v))
    run("intermediate.int_web_visitor_claims", sql.SQL("{} in {} or {} in {} or {} in {}").format(
        _h("visitor_id"), v, _h("claim_value"), e, _h("claim_value"), s))
    run("predictions.customer_value", sql.SQL("{} in {}").format(_h("customer_key"), k))
    # the published marts: the person is gone for readers now, not only after the next publication
    for (table,) in conn.execute("""select table_name from information_schema.columns
                                    where table_schema = 'marts' and column_name = 'customer_key'
                                      and table_name in (select table_name from information_schema.tables
                                                         where table_schema = 'marts'
                                                           and table_type = 'BASE TABLE')""").fetchall():
        run(f"marts.{table}", sql.SQL("{} in {}").format(_h("customer_key"), k))
    return {t: n for t, n in deleted.items() if n}


def _drop_stale_marts(conn) -> None:
    for schema in ("marts__previous", "marts__build"):
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


@dataclass
class ExportScrub:
    """What rewriting the logged exports came to."""

    rows_removed: dict[str, int] = field(default_factory=dict)  # file -> rows taken out
    problems: list[str] = field(default_factory=list)  # one line per file that could not be rewritten
    not_rewritable: int = 0  # logged exports that are no file of the export folder: streams, paths elsewhere


def _export_file(destination: str, folder: Path) -> Path | None:
    """The file a logged destination names if it lies in the export folder (symbolic links
    resolved), else None: standard output, a web download, a path anywhere else. The log is
    written by the marketing role, which names the destination: it is never trusted further."""
    path = Path(destination)
    if not path.is_absolute():
        return None
    resolved = path.resolve()
    return resolved if resolved != folder and resolved.is_relative_to(folder) else None


def _without_keys(path: Path, key_hashes: set[str]) -> int:
    """Rewrite one export without the rows of the erased customers; returns the rows removed.
    Reads as it writes (an export may be large), never follows a symbolic link, and replaces the
    file only when whole."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with open(fd, encoding="utf-8", newline="") as source:
        mode = os.fstat(source.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError("not a regular file")
        reader = csv.reader(source)
        header = next(reader, None)
        if not header or "customer_key" not in header:
            return 0
        col = header.index("customer_key")
        part = path.with_name(f".{path.name}.erasing")
        part.unlink(missing_ok=True)
        removed = 0
        try:
            with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(mode)),
                      "w", encoding="utf-8", newline="") as target:
                writer = csv.writer(target, lineterminator="\n")
                writer.writerow(header)
                for row in reader:
                    if len(row) > col and hashlib.sha256(row[col].encode()).hexdigest() in key_hashes:
                        removed += 1
                        continue
                    writer.writerow(row)
            if removed:
                os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
    return removed


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text, so not a file crm360 wrote as it is"
    if isinstance(exc, csv.Error):
        return f"not CSV as crm360 writes it ({exc})"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _scrub_exports(conn, key_hashes: set[str], folder: Path) -> ExportScrub:
    """Rewrite the logged CSV exports that lie in the export folder without the erased customers.
    A file that cannot be read or written is reported, one line each, and does not stop the erasure."""
    out = ExportScrub()
    if not key_hashes or not _exists(conn, "audit.segment_exports"):
        return out
    folder = folder.resolve()
    for (destination,) in conn.execute("""select distinct destination from audit.segment_exports
                                          where format = 'csv' and destination is not null
                                          order by destination""").fetchall():
        path = _export_file(destination, folder)
        if path is None:
            out.not_rewritable += 1
            continue
        try:
            if not path.exists() and not path.is_symlink():
                continue  # deleted since: nothing left to rewrite
            removed = _without_keys(path, key_hashes)
        except (OSError, UnicodeError, csv.Error) as exc:
            out.problems.append(f"export {path} could not be rewritten: {_why(exc)}; remove the person from it by hand")
            log.error("erasure: %s", out.problems[-1])
            continue
        if removed:
            out.rows_removed[str(path)] = removed
            log.info("erasure: removed %d rows from export %s", removed, path)
    return out


def apply_erasures(wh: Warehouse, run_id: str, settings: Settings | None = None) -> dict:
    """Apply pending deletion requests, and every request to rows loaded since the last run."""
    settings = settings or get_settings()
    with wh.connect() as conn:
        # one erasure at a time, and not under a publication's feet
        conn.execute("select pg_advisory_xact_lock(hashtext('crm360.publish'))")
        # exports in progress finish (and are logged) first; later ones read the segments without the person
        conn.execute("select pg_advisory_xact_lock(hashtext('crm360.erasure'))")
        pending = conn.execute("""select request_id, identifier_type, identifier_hash
                                  from audit.erasure_requests where status = 'pending'
                                  order by request_id""").fetchall()
        has_any = conn.execute("select exists (select 1 from audit.erased_identifiers)").fetchone()[0]
        if not pending and not has_any:
            conn.commit()
            return {"requests": 0, "rows_deleted": {}}
        row = conn.execute("select loaded_through from audit.erasure_watermark").fetchone()
        since = row[0] if row and not pending else None
        loaded_through = conn.execute(
            "select max(m) from (select max(_loaded_at) as m from raw.sales_customers union all "
            "select max(_loaded_at) from raw.web_events union all select max(_loaded_at) from raw.service_tickets "
            "union all select max(_loaded_at) from raw.sales_orders) as t").fetchone()[0]
        plain: list[str] = []
        found: dict[int, int] = {}
        for request_id, kind, identifier_hash in pending:
            found[request_id], values = _resolve(conn, request_id, kind, identifier_hash)
            plain += values
        deleted = _delete_everywhere(conn, since)
        for value in {v for v in plain if len(v) >= 6}:
            # quarantined lines quoting the person, and gate samples showing one of their values
            n = conn.execute("delete from raw._quarantine where strpos(raw_record, %s) > 0", (value,)).rowcount
            if n:
                deleted["raw._quarantine"] = deleted.get("raw._quarantine", 0) + n
            if _exists(conn, "audit.gate_results"):
                n = conn.execute("update audit.gate_results set sample = null "
                                 "where strpos(sample::text, %s) > 0", (value,)).rowcount
                if n:
                    deleted["audit.gate_results (samples)"] = deleted.get("audit.gate_results (samples)", 0) + n
        if pending:  # the replaced marts and a rejected build still hold the person: neither is needed
            ddl.run(wh, conn, "erasure: dropping marts__previous and marts__build, which still hold the person",
                    lambda: _drop_stale_marts(conn))
        key_hashes = {r[0] for r in conn.execute(
            "select identifier_hash from audit.erased_identifiers where identifier_type = 'customer_key'")}
        exports = _scrub_exports(conn, key_hashes, settings.exports_dir) if pending else ExportScrub()
        total = sum(deleted.values())
        for request_id, _kind, _hash in pending:
            conn.execute("""update audit.erasure_requests set status = 'applied', applied_at = %s,
                                   applied_run_id = %s, customers_found = %s, rows_deleted = %s, detail = %s
                            where request_id = %s""",
                         (datetime.now(UTC), run_id, found[request_id], total,
                          "; ".join(exports.problems) or None, request_id))
        if loaded_through is not None:
            conn.execute("""insert into audit.erasure_watermark (loaded_through) values (%s)
                            on conflict (id) do update set loaded_through = excluded.loaded_through""",
                         (loaded_through,))
        conn.commit()
    if pending or total:
        log.info("erasure: %d new request(s), %d rows deleted %s, %d exported rows removed",
                 len(pending), total, deleted, sum(exports.rows_removed.values()))
    return {"requests": len(pending), "rows_deleted": deleted,
            "export_rows_removed": sum(exports.rows_removed.values()), "export_problems": exports.problems,
            "exports_not_rewritable": exports.not_rewritable}
