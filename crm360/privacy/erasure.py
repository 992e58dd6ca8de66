"""The right to be forgotten: a deletion request removes a person from every layer.

``crm360 forget --email ...`` records a request in ``audit.erasure_requests``
(crm360.privacy.requests: normalised as the warehouse stores it, kept as a digest only, refused
when the identity guards say it names no one person).

The next run applies the pending requests (``apply_erasures``, after loading and before dbt),
each on its own:

1. The request is resolved through the published identity graph (``marts.customer_identifiers``)
   to the customers it names. A guarded identifier ends ``refused``, one the graph does not
   know ``not_found``: neither deletes anything, and the run says so (its report, its exit
   code, the alert webhook). Otherwise every identifier of those customers goes to
   ``audit.erased_identifiers`` as a digest; guarded identifiers are nobody's, so nobody else
   is taken along.
2. Rows carrying one of those identifiers are deleted from every table the dbt project tags as
   holding personal data (``meta: {pii: ...}`` on the sources' and models' columns, read from
   dbt's manifest by crm360.transform.manifest; docs/privacy.md): ``raw`` as loaded (shop
   customers, their orders and order lines, tickets, web events), staging and intermediate
   tables, the value predictions and the published marts; and quarantined records that quote one
   of the person's values. A new model with a tagged column is erased without a change here; a
   column named like personal data without a tag fails the build (``check_personal_data``). The
   request records the rows it deleted, table by table (``outcome``).
   Where runs quoted the person in free text, their values are blanked out: gate samples (a
   sample row quoting them is dropped), the failure messages built from them in
   ``audit.pipeline_runs`` and ``audit.run_health``, and the report pages and summaries in the
   reports folder (crm360.privacy.scrub).
3. The logged CSV exports in the export folder are rewritten without the person's rows.

Then ``marts__previous`` and a rejected ``marts__build``, which still hold the people, are
dropped. Every later run deletes newly loaded rows that carry an erased identifier (a new drop
from a source system that still holds the person), looking only at rows loaded since the
previous run. The load ledger keeps the files' digests, so files already loaded are not loaded
again. The source systems' own drop folders are not crm360's to change: the request must also
go to them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg import sql
from psycopg.types.json import Jsonb

from crm360.core import ddl
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse
from crm360.privacy.requests import (
    GUARDS,
    INSTEAD,
    MIN_QUOTED_LENGTH,
    STATUSES,
    digest,
    exists,
    warehouse_form,
)
from crm360.privacy.scrub import ExportScrub, clear_quotes, scrub_exports
from crm360.quality.health import attention
from crm360.transform import manifest
from crm360.transform.manifest import Identifier, PersonalTable

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- applying them

class _Erased:
    """The identifiers a deletion pass looks for: one request's (their digests, given) or every
    request's so far (``audit.erased_identifiers``)."""

    def __init__(self, request_id: int, ids: dict[str, set[str]] | None = None):
        self.request_id = request_id
        self.ids = ids

    def has(self, kind: str, expression: str) -> sql.Composable:
        """Whether ``expression`` (SQL of an identifier in its stored form) is one of them."""
        if self.ids is None:
            return sql.SQL("{} in (select identifier_hash from audit.erased_identifiers where identifier_type = {})"
                           ).format(digest(expression), sql.Literal(kind))
        return sql.SQL("{} = any({}::text[])").format(digest(expression), sql.Literal(sorted(self.ids[kind])))

    def add(self, conn, kind: str, hashes: set[str]) -> None:
        if self.ids is not None:
            self.ids[kind] |= hashes
        if hashes:
            conn.execute("""insert into audit.erased_identifiers (identifier_type, identifier_hash, request_id)
                            select %s, h, %s from unnest(%s::text[]) as h on conflict do nothing""",
                         (kind, self.request_id, sorted(hashes)))


def _delete(conn, table: str, condition: sql.Composable, since, loaded_at: str | None,
            returning: tuple[str, ...] = ()) -> tuple[int, set[str]]:
    """Delete the rows of ``table`` that meet ``condition`` (only those whose ``loaded_at`` is after
    ``since``, if given); returns how many, and the values of the ``returning`` expressions they held."""
    if not exists(conn, table):
        return 0, set()
    query = sql.SQL("delete from {} where ({})").format(_relation(table), condition)
    if loaded_at is not None:
        query = sql.SQL("{} and {} > {}").format(query, sql.Identifier(loaded_at), sql.Literal(since))
    if returning:
        query = sql.SQL("{} returning {}").format(query, sql.SQL(", ").join(sql.SQL(r) for r in returning))
    cur = conn.execute(query)
    values = {v for row in cur.fetchall() for v in row if v} if returning else set()
    return cur.rowcount, values


def _delete_everywhere(conn, erased: _Erased, since, settings: Settings) -> tuple[dict[str, int], set[str]]:
    """Delete the rows carrying one of ``erased``'s identifiers from every table the dbt project tags
    as holding personal data (crm360.transform.manifest, docs/privacy.md); loaded rows only if loaded
    after ``since`` (None: all). Returns the rows deleted per table, and the person's values as the
    sources' rows held them (their own spelling, which samples and quarantined lines quote)."""
    tables = {t.name: t for t in manifest.load(settings).personal_tables() if t.holds_rows}
    deleted: dict[str, int] = {}
    quoted: set[str] = set()

    def value(table: PersonalTable, ident: Identifier) -> str:
        """The identifier in its stored form: a source's rows hold it as delivered, so it is
        normalised as staging normalises it; a model's hold it normalised already."""
        if not table.is_source:
            return ident.expression()
        return warehouse_form(ident.kind, ident.expression(), ident.country(), settings)

    def condition(table: PersonalTable) -> sql.Composable | None:
        parts = [erased.has(i.kind, value(table, i)) for i in table.identifiers]
        parent = tables.get(table.parent[0]) if table.parent else None
        if parent is not None:  # rows naming no one themselves, belonging to a parent row that does
            key = table.parent[1]
            of_parent = condition(parent)
            if of_parent is not None and exists(conn, parent.relation):
                parts.append(sql.SQL("{} in (select {} from {} where {})").format(
                    sql.Identifier(key), sql.Identifier(key), _relation(parent.relation), of_parent))
        return sql.SQL(" or ").join(parts) if parts else None

    def loaded(table: PersonalTable) -> str | None:
        return table.loaded_at if since is not None and table.is_source else None

    # rows that name the holder of their key by another of the person's identifiers (a shop record
    # with one of the person's e-mails or phones the published graph has not seen yet, loaded
    # since): their keys join the erased set first, so the rows keyed by them follow
    for table in (t for t in tables.values() if t.key):
        where = condition(table)
        if where is None or not exists(conn, table.relation):
            continue
        keys = [value(table, i) for i in table.identifiers if i.kind == table.key]
        found = sql.SQL("select distinct {} from {} where ({})").format(
            sql.SQL(", ").join(digest(k) for k in keys), _relation(table.relation), where)
        if loaded(table):
            found = sql.SQL("{} and {} > {}").format(found, sql.Identifier(loaded(table)), sql.Literal(since))
        erased.add(conn, table.key, {v for row in conn.execute(found).fetchall() for v in row if v})

    # rows belonging to a parent's before the parent's: the parent's rows name the person
    def depth(table: PersonalTable) -> int:
        return 1 + depth(tables[table.parent[0]]) if table.parent and table.parent[0] in tables else 0

    for table in sorted(tables.values(), key=lambda t: (-depth(t), t.name)):
        # after the first pass, only newly loaded rows can carry an erased identifier: what dbt
        # builds from them, and the marts, were cleaned when the request was applied
        if since is not None and not table.loaded_at:
            continue
        where = condition(table)
        if where is None:
            continue
        returning = tuple(f"trim({i.expression()})" for i in table.identifiers) if table.is_source else ()
        n, values = _delete(conn, table.relation, where, since, loaded(table), returning)
        deleted[table.relation] = deleted.get(table.relation, 0) + n
        quoted.update(values)
    return {t: n for t, n in deleted.items() if n}, quoted


def _relation(relation: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in relation.split(".", 1))


@dataclass
class _Outcome:
    """What became of one request."""

    request_id: int
    kind: str
    status: str = "pending"
    customers: int = 0
    detail: str | None = None
    deleted: dict[str, int] = field(default_factory=dict)
    cleared: dict[str, int] = field(default_factory=dict)  # values blanked out where they were quoted
    key_hashes: set[str] = field(default_factory=set)
    values: set[str] = field(default_factory=set)  # the person's values in clear: in memory only, never stored
    problems: list[str] = field(default_factory=list)  # reports and exports left with the person
    exports: ExportScrub | None = None

    def as_json(self) -> dict:
        out: dict = {"deleted": self.deleted, "cleared": self.cleared}
        if self.exports is not None:
            out["exports"] = {"rows_removed": self.exports.rows_removed, "problems": self.exports.problems,
                              "not_rewritable": self.exports.not_rewritable}
        return out


def _not_found(kind: str) -> str:
    return (f"no customer in the published marts has this {kind.replace('_', ' ')} (compared as the warehouse "
            f"stores it), so nothing was deleted: check it, or {INSTEAD}; someone loaded since the last "
            "publication can be found after the next")


def _apply_one(conn, request_id: int, kind: str, identifier_hash: str, settings: Settings) -> _Outcome:
    """Resolve one request through the published graph and delete its people's rows."""
    out = _Outcome(request_id, kind)
    params = {"kind": kind, "hash": identifier_hash}
    if kind == "customer_key":
        match = sql.SQL("{} = %(hash)s").format(digest("customer_key"))
    else:
        match = sql.SQL("identifier_type = %(kind)s and {} = %(hash)s").format(digest("identifier_value"))
        guard = conn.execute(sql.SQL("select min(blocked_reason) from marts.customer_identifiers where {}").format(
            match), params).fetchone()[0]
        if guard:
            out.status = "refused"
            out.detail = (f"the {kind.replace('_', ' ')} is {GUARDS.get(guard, guard)} in the identity graph and "
                          f"names no one person, so nothing was deleted; {INSTEAD}")
            return out
    keys = [r[0] for r in conn.execute(sql.SQL("select distinct customer_key from marts.customer_identifiers "
                                               "where {} and customer_key is not null order by 1").format(match),
                                       params).fetchall()]
    if not keys:
        out.status, out.detail = "not_found", _not_found(kind)
        return out
    # every identifier of those customers (guarded ones belong to nobody, so they are not among them)
    ids: dict[str, set[str]] = defaultdict(set)
    for identifier_type, value, hashed in conn.execute(
            sql.SQL("""select identifier_type, identifier_value, {} from marts.customer_identifiers
                       where customer_key = any(%s)
                       union all select 'customer_key', k, {} from unnest(%s::text[]) as k""").format(
                digest("identifier_value"), digest("k")), (keys, keys)).fetchall():
        ids[identifier_type].add(hashed)
        out.values.add(value)
    erased = _Erased(request_id, ids)
    for identifier_type, hashes in list(ids.items()):
        erased.add(conn, identifier_type, hashes)
    out.deleted, quoted = _delete_everywhere(conn, erased, None, settings)
    out.values |= quoted
    # quarantined lines quoting one of the person's values, as delivered or as stored
    for value in sorted(v for v in out.values if len(v) >= MIN_QUOTED_LENGTH):
        n = conn.execute("delete from raw._quarantine where strpos(lower(raw_record), lower(%s)) > 0",
                         (value,)).rowcount
        if n:
            out.deleted["raw._quarantine"] = out.deleted.get("raw._quarantine", 0) + n
    out.cleared, out.problems = clear_quotes(conn, out.values, settings.reports_dir)
    out.status, out.customers, out.key_hashes = "applied", len(keys), ids["customer_key"]
    return out


def _drop_stale_marts(conn) -> None:
    for schema in ("marts__previous", "marts__build"):
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))



def apply_erasures(wh: Warehouse, run_id: str, settings: Settings | None = None) -> dict:
    """Apply the pending deletion requests, each on its own, and every earlier request to the rows
    loaded since the last run. Returns what was done, and the lines a person must read."""
    settings = settings or get_settings()
    with wh.connect() as conn:
        # one erasure at a time, and not under a publication's feet
        conn.execute("select pg_advisory_xact_lock(hashtext('crm360.transform.publish'))")
        # exports in progress finish (and are logged) first; later ones read the segments without the person
        conn.execute("select pg_advisory_xact_lock(hashtext('crm360.erasure'))")
        pending = conn.execute("""select request_id, identifier_type, identifier_hash
                                  from audit.erasure_requests where status = 'pending'
                                  order by request_id""").fetchall()
        has_any = conn.execute("select exists (select 1 from audit.erased_identifiers)").fetchone()[0]
        if not pending and not has_any:
            conn.commit()
            return _result([], {})
        graph = exists(conn, "marts.customer_identifiers")
        row = conn.execute("select loaded_through from audit.erasure_watermark").fetchone()
        since = row[0] if row else None
        loaded_through = conn.execute(
            "select max(m) from (select max(_loaded_at) as m from raw.sales_customers union all "
            "select max(_loaded_at) from raw.web_events union all select max(_loaded_at) from raw.service_tickets "
            "union all select max(_loaded_at) from raw.sales_orders) as t").fetchone()[0]
        outcomes: list[_Outcome] = []
        for request_id, kind, identifier_hash in pending:
            if not graph:  # nothing published yet to resolve it through: it waits for the first publication
                log.warning("erasure: request %d waits: no identity graph is published yet", request_id)
                outcomes.append(_Outcome(request_id, kind))
                continue
            outcomes.append(_apply_one(conn, request_id, kind, identifier_hash, settings))
        # rows loaded since the last run that carry someone forgotten before
        later = _delete_everywhere(conn, _Erased(0), since, settings)[0] if has_any else {}
        applied = [o for o in outcomes if o.status == "applied"]
        for o in applied:
            o.exports = scrub_exports(conn, o.key_hashes, settings.exports_dir)
            o.detail = "; ".join(o.problems + o.exports.problems) or None
        if applied:  # the replaced marts and a rejected build still hold the people: neither is needed
            ddl.run(wh, conn, "erasure: dropping marts__previous and marts__build, which still hold the person",
                    lambda: _drop_stale_marts(conn))
        now = datetime.now(UTC)
        for o in outcomes:
            if o.status == "pending":
                continue
            conn.execute("""update audit.erasure_requests set status = %s, applied_at = %s, applied_run_id = %s,
                                   customers_found = %s, rows_deleted = %s, outcome = %s, detail = %s
                            where request_id = %s""",
                         (o.status, now if o.status == "applied" else None, run_id, o.customers,
                          sum(o.deleted.values()), Jsonb(o.as_json()), o.detail, o.request_id))
        if loaded_through is not None:
            conn.execute("""insert into audit.erasure_watermark (loaded_through) values (%s)
                            on conflict (id) do update set loaded_through = excluded.loaded_through""",
                         (loaded_through,))
        conn.commit()
    result = _result(outcomes, later)
    if outcomes or later:
        log.info("erasure: %d request(s) taken up (%d applied), %d rows deleted %s, %d exported rows removed",
                 result["requests"], len(result["applied"]), sum(result["rows_deleted"].values()),
                 result["rows_deleted"], result["export_rows_removed"])
    return result


def _result(outcomes: list[_Outcome], later: dict[str, int]) -> dict:
    deleted = dict(later)
    for o in outcomes:
        for table, n in o.deleted.items():
            deleted[table] = deleted.get(table, 0) + n
    taken = [o for o in outcomes if o.status != "pending"]
    exports = [o.exports for o in taken if o.exports is not None]
    return {"requests": len(taken),
            **{status: [o.request_id for o in outcomes if o.status == status] for status in STATUSES},
            "rows_deleted": deleted,
            "export_rows_removed": sum(n for e in exports for n in e.rows_removed.values()),
            "export_problems": [p for e in exports for p in e.problems],
            "exports_not_rewritable": max((e.not_rewritable for e in exports), default=0),
            "attention": [line for o in taken if (line := attention(o.request_id, o.kind, o.status, o.detail))]}
