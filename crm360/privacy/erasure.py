"""The right to be forgotten: a deletion request removes a person from every layer.

``crm360 forget --email ...`` records a request in ``audit.erasure_requests``. The identifier is
normalised by the warehouse, with the very expression staging stores that kind of identifier in
(the dbt macros ``normalize_email``, ``normalize_phone`` ..., rendered here), and kept only as
the SHA-256 digest of that form: the clear value reaches the database as a query parameter and
is never stored. (Python's lower-casing is not PostgreSQL's, a capital dotted I or a final
sigma, and a request normalised in Python found nobody.) An identifier the identity guards keep
from every customer, a shared mailbox such as info@, an address or phone on several people's
records, a shared device, names no one person: ``forget`` refuses it when the published graph
or the configured mailbox prefixes say so, and asks for a customer key or shop customer id.

The next run applies the pending requests (``apply_erasures``, after loading and before dbt),
each on its own:

1. The request is resolved through the published identity graph (``marts.customer_identifiers``)
   to the customers it names. A guarded identifier ends ``refused``, one the graph does not
   know ``not_found``: neither deletes anything, and the run says so (its report, its exit
   code, the alert webhook). Otherwise every identifier of those customers goes to
   ``audit.erased_identifiers`` as a digest; guarded identifiers are nobody's, so nobody else
   is taken along.
2. Rows carrying one of those identifiers are deleted from ``raw`` (shop customers, their
   orders and order lines, tickets, web events; quarantined records that quote one of the
   person's values), from the incremental staging and intermediate tables dbt would otherwise
   keep, from the value predictions and from the published marts. The request records the
   rows it deleted, table by table (``outcome``).
   Where runs quoted the person in free text, their values are blanked out: gate samples (a
   sample row quoting them is dropped), the failure messages built from them in
   ``audit.pipeline_runs`` and ``audit.run_health``, and the report pages and summaries in the
   reports folder.
3. The logged CSV exports in the export folder are rewritten without the person's rows.

Then ``marts__previous`` and a rejected ``marts__build``, which still hold the people, are
dropped. Every later run deletes newly loaded rows that carry an erased identifier (a new drop
from a source system that still holds the person), looking only at rows loaded since the
previous run. The load ledger keeps the files' digests, so files already loaded are not loaded
again. The source systems' own drop folders are not crm360's to change: the request must also
go to them.
"""

from __future__ import annotations

import bisect
import csv
import functools
import hashlib
import html
import json
import logging
import os
import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql
from psycopg.types.json import Jsonb

from crm360.core import ddl
from crm360.core.errors import ConfigurationError
from crm360.core.schema import require_current
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse
from crm360.quality.health import attention
from crm360.serve.segments import write_rows
from crm360.transform.dbt import project_vars

log = logging.getLogger(__name__)

IDENTIFIER_TYPES = ("email", "phone", "shop_customer_id", "visitor_id", "customer_key")
STATUSES = ("pending", "applied", "not_found", "refused")
# the dbt macro staging normalises each kind of identifier with (dbt_project/macros)
STAGING_MACROS = {"email": "normalize_email", "phone": "normalize_phone",
                  "shop_customer_id": "normalize_shop_customer_id", "visitor_id": "normalize_visitor_id"}
# a customer key is an md5 in hex, as dbt writes it
CUSTOMER_KEY_SQL = "lower(trim({}))"
# how the identity guards' reasons (int_identity_nodes) read in a sentence
GUARDS = {"shared mailbox": "a shared mailbox", "on several people": "on the records of several people",
          "on too many records": "on too many records to be one person's", "shared device": "a shared device"}
INSTEAD = "give the person's --customer-key or --shop-customer-id instead"
# a value shorter than this is not looked for in free text (quarantined lines, samples, messages, reports):
# it would match parts of other values
MIN_QUOTED_LENGTH = 6

# sha256 of a text in SQL
SQL_HASH = "encode(sha256(convert_to({}, 'UTF8')), 'hex')"
_VALUE = "__crm360_value__"


class ErasureError(ConfigurationError):
    """A deletion request crm360 cannot record."""


# ---------------------------------------------------------------- the warehouse's normalisation

_MACRO = re.compile(r"\{%-?\s*macro\s+(?P<name>\w+)\s*\(.*?\{%-?\s*endmacro\s*-?%\}", re.S)


@functools.cache
def _macro_sources(macros_dir: Path) -> dict[str, str]:
    """Every macro of the dbt project by name, as written (a macro file may hold dbt-only tags
    elsewhere, so each macro is cut out on its own)."""
    found: dict[str, str] = {}
    for path in sorted(macros_dir.rglob("*.sql")):
        for m in _MACRO.finditer(path.read_text(encoding="utf-8")):
            found[m.group("name")] = m.group(0)
    return found


@functools.cache
def _render(source: str, name: str, args: tuple[str, ...]) -> str:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    call = "{{ " + name + "(" + ", ".join(repr(a) for a in args) + ") }}"
    return env.from_string(source + call).render().strip()


def warehouse_form(kind: str, value_sql: str, country_sql: str = "null", settings: Settings | None = None) -> str:
    """SQL of the form staging stores a ``kind`` identifier in, taken of the SQL expression
    ``value_sql`` (a phone's country from ``country_sql``): staging's own dbt macro, rendered."""
    if kind == "customer_key":
        return CUSTOMER_KEY_SQL.format(value_sql)
    name = STAGING_MACROS[kind]
    source = _macro_sources((settings or get_settings()).dbt_project_dir / "macros").get(name)
    if source is None:
        raise ErasureError(f"the dbt project has no macro {name}, which staging normalises each {kind} with")
    return _render(source, name, (value_sql, country_sql) if kind == "phone" else (value_sql,))


def _digest(expression: str) -> sql.Composable:
    return sql.SQL(SQL_HASH).format(sql.SQL(expression))


def shared_mailbox_prefixes(settings: Settings | None = None) -> list[str]:
    """The local parts the identity guards treat as shared mailboxes (the dbt var
    ``identity_shared_mailbox_prefixes``, which int_identity_nodes reads)."""
    found = project_vars(settings).get("identity_shared_mailbox_prefixes") or []
    return [str(p) for p in found]


# ---------------------------------------------------------------- requests

@dataclass(frozen=True)
class Lookup:
    """What the warehouse says of an identifier someone gave."""

    identifier_hash: str
    customers: int | None  # customers of the published marts it names; None: no marts published yet
    guard: str | None  # why the identity guards keep it from every customer


def _exists(conn, relation: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]


def lookup(conn, kind: str, value: str, settings: Settings | None = None) -> Lookup:
    """Normalise ``value`` as the warehouse does, and look it up in the published identity graph."""
    if kind not in IDENTIFIER_TYPES:
        raise ErasureError(f"unknown identifier type {kind!r}; one of {', '.join(IDENTIFIER_TYPES)}")
    if not value:
        raise ErasureError(f"an empty {kind} names nobody")
    form = warehouse_form(kind, _VALUE, settings=settings).replace("%", "%%").replace(_VALUE, "%(value)s")
    normalised, identifier_hash, local_part = conn.execute(
        sql.SQL("select n, {}, split_part(split_part(n, '@', 1), '+', 1) from (select {} as n) as given").format(
            _digest("n"), sql.SQL(form)), {"value": value}).fetchone()
    if normalised is None:
        hint = ": give it in international form, e.g. +31 20 123 4567" if kind == "phone" else ""
        raise ErasureError(f"{value!r} is no {kind} the warehouse would keep, so it names nobody{hint}")
    guard = "shared mailbox" if kind == "email" and local_part in shared_mailbox_prefixes(settings) else None
    customers = None
    if _exists(conn, "marts.customer_identifiers"):
        if kind == "customer_key":
            customers, graph_guard = conn.execute("select count(distinct customer_key), null from "
                                                  "marts.customer_identifiers where customer_key = %s",
                                                  (normalised,)).fetchone()
        else:
            customers, graph_guard = conn.execute(
                "select count(distinct customer_key), min(blocked_reason) from marts.customer_identifiers "
                "where identifier_type = %s and identifier_value = %s", (kind, normalised)).fetchone()
        guard = graph_guard or guard
    return Lookup(identifier_hash, customers, guard)


def refusal(kind: str, value: str, guard: str) -> str:
    return (f"the {kind} {value!r} is {GUARDS.get(guard, guard)}: the identity guards keep it from every "
            f"customer, so it names no one person and forgetting by it would delete others too; {INSTEAD}")


def record_request(wh: Warehouse, kind: str, value: str, requested_by: str, reason: str | None = None,
                   settings: Settings | None = None) -> tuple[int, Lookup]:
    """Record a deletion request, applied by the next run; returns its id and what the published marts
    say of the identifier. Refuses a guarded identifier (see :func:`refusal`)."""
    require_current(wh)
    with wh.connect() as conn:
        found = lookup(conn, kind, value, settings)
        if found.guard:
            raise ErasureError(refusal(kind, value, found.guard))
        request_id = conn.execute(
            """insert into audit.erasure_requests (requested_by, identifier_type, identifier_hash, reason)
               values (%s, %s, %s, %s) returning request_id""",
            (requested_by, kind, found.identifier_hash, reason)).fetchone()[0]
        conn.commit()
    return request_id, found


def request_erasure(wh: Warehouse, identifier_type: str, value: str, requested_by: str,
                    reason: str | None = None, settings: Settings | None = None) -> int:
    """Record a deletion request; returns its id. Applied by the next run."""
    return record_request(wh, identifier_type, value, requested_by, reason, settings)[0]


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
                           ).format(_digest(expression), sql.Literal(kind))
        return sql.SQL("{} = any({}::text[])").format(_digest(expression), sql.Literal(sorted(self.ids[kind])))

    def add(self, conn, kind: str, hashes: set[str]) -> None:
        if self.ids is not None:
            self.ids[kind] |= hashes
        if hashes:
            conn.execute("""insert into audit.erased_identifiers (identifier_type, identifier_hash, request_id)
                            select %s, h, %s from unnest(%s::text[]) as h on conflict do nothing""",
                         (kind, self.request_id, sorted(hashes)))


def _delete(conn, table: str, condition: sql.Composable, since, returning: tuple[str, ...] = ()
            ) -> tuple[int, set[str]]:
    """Delete the rows of ``table`` that meet ``condition`` (raw rows only if loaded after ``since``);
    returns how many, and the values of the ``returning`` expressions they held."""
    if not _exists(conn, table):
        return 0, set()
    schema, name = table.split(".")
    query = sql.SQL("delete from {}.{} where ({})").format(sql.Identifier(schema), sql.Identifier(name), condition)
    if since is not None and schema == "raw":
        query = sql.SQL("{} and _loaded_at > {}").format(query, sql.Literal(since))
    if returning:
        query = sql.SQL("{} returning {}").format(query, sql.SQL(", ").join(sql.SQL(r) for r in returning))
    cur = conn.execute(query)
    values = {v for row in cur.fetchall() for v in row if v} if returning else set()
    return cur.rowcount, values


def _delete_everywhere(conn, erased: _Erased, since, settings: Settings) -> tuple[dict[str, int], set[str]]:
    """Delete the rows carrying one of ``erased``'s identifiers; raw rows only if loaded after ``since``
    (None: all). Returns the rows deleted per table, and the person's values as the raw rows held
    them (their own spelling, which samples and quarantined lines quote)."""
    def stored(kind: str, expression: str, country: str = "null") -> str:
        return warehouse_form(kind, expression, country, settings)

    def email(expression: str) -> sql.Composable:
        return erased.has("email", stored("email", expression))

    def shop(expression: str) -> sql.Composable:
        return erased.has("shop_customer_id", stored("shop_customer_id", expression))

    deleted: dict[str, int] = {}
    quoted: set[str] = set()

    def run(table: str, condition: sql.Composable, returning: tuple[str, ...] = ()) -> None:
        # after the first pass, only newly loaded raw rows can carry an erased identifier: what dbt
        # builds from raw, and the marts, were cleaned when the request was applied
        if since is None or table.startswith("raw."):
            n, values = _delete(conn, table, condition, since, returning)
            deleted[table] = deleted.get(table, 0) + n
            quoted.update(values)

    # shop records with one of the person's e-mails or phones that the published graph has not seen
    # yet (loaded since): theirs too, so their ids join the erased set, and their orders follow
    if _exists(conn, "raw.sales_customers"):
        found = sql.SQL("select distinct {} from raw.sales_customers where {} or {}").format(
            _digest(stored("shop_customer_id", "customer_id")), email("email"),
            erased.has("phone", stored("phone", "phone", "country_code")))
        if since is not None:
            found = sql.SQL("{} and _loaded_at > {}").format(found, sql.Literal(since))
        erased.add(conn, "shop_customer_id", {r[0] for r in conn.execute(found).fetchall() if r[0]})
    run("raw.sales_customers", sql.SQL("{} or {}").format(shop("customer_id"), email("email")),
        ("trim(customer_id)", "trim(email)", "trim(phone)"))
    # lines before their orders: the orders name the customer
    erased_orders = sql.SQL("(select order_id from raw.sales_orders where {})").format(shop("customer_id"))
    if _exists(conn, "raw.sales_orders"):
        run("raw.sales_order_lines", sql.SQL("order_id in {}").format(erased_orders))
        run("staging.stg_sales__order_lines", sql.SQL("order_id in {}").format(erased_orders))
    run("raw.sales_orders", shop("customer_id"))
    run("staging.stg_sales__orders", erased.has("shop_customer_id", "customer_id"))
    run("raw.service_tickets", sql.SQL("{} or {}").format(
        shop("record ->> 'customer_ref'"), email("record -> 'requester' ->> 'email'")),
        ("trim(record -> 'requester' ->> 'email')", "trim(record ->> 'customer_ref')"))
    run("raw.web_events", sql.SQL("{} or {} or {}").format(
        erased.has("visitor_id", stored("visitor_id", "record ->> 'visitor_id'")), shop("record ->> 'customer_id'"),
        email("record ->> 'email'")), ("trim(record ->> 'email')", "record ->> 'visitor_id'"))
    # staging and intermediate hold identifiers in their stored form already
    run("staging.stg_web__events", sql.SQL("{} or {} or {}").format(
        erased.has("visitor_id", "visitor_id"), erased.has("shop_customer_id", "customer_id"),
        erased.has("email", "email")))
    for table in ("intermediate.int_web_visitors_aggregated", "intermediate.int_web_events_sessionized"):
        run(table, erased.has("visitor_id", "visitor_id"))
    run("intermediate.int_web_visitor_claims", sql.SQL("{} or {} or {}").format(
        erased.has("visitor_id", "visitor_id"), erased.has("email", "claim_value"),
        erased.has("shop_customer_id", "claim_value")))
    run("predictions.customer_value", erased.has("customer_key", "customer_key"))
    # the published marts: the person is gone for readers now, not only after the next publication
    for (table,) in conn.execute("""select table_name from information_schema.columns
                                    where table_schema = 'marts' and column_name = 'customer_key'
                                      and table_name in (select table_name from information_schema.tables
                                                         where table_schema = 'marts'
                                                           and table_type = 'BASE TABLE')
                                    order by table_name""").fetchall():
        run(f"marts.{table}", erased.has("customer_key", "customer_key"))
    return {t: n for t, n in deleted.items() if n}, quoted


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
        match = sql.SQL("{} = %(hash)s").format(_digest("customer_key"))
    else:
        match = sql.SQL("identifier_type = %(kind)s and {} = %(hash)s").format(_digest("identifier_value"))
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
    for identifier_type, value, digest in conn.execute(
            sql.SQL("""select identifier_type, identifier_value, {} from marts.customer_identifiers
                       where customer_key = any(%s)
                       union all select 'customer_key', k, {} from unnest(%s::text[]) as k""").format(
                _digest("identifier_value"), _digest("k")), (keys, keys)).fetchall():
        ids[identifier_type].add(digest)
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
    out.cleared, out.problems = _clear_quotes(conn, out.values, settings.reports_dir)
    out.status, out.customers, out.key_hashes = "applied", len(keys), ids["customer_key"]
    return out


REDACTED = "[erased]"


class _Redactor:
    """Finds an erased person's values quoted in free text (gate samples and the messages built
    from them, run records, report pages) and blanks them out. Texts are compared as the
    warehouse compares them, lower-cased by PostgreSQL, not by Python; the values are looked
    for as written and as JSON, Python and HTML quote them."""

    def __init__(self, conn, values: set[str]):
        self.conn = conn
        forms: set[str] = set()
        for value in (v for v in values if len(v) >= MIN_QUOTED_LENGTH):
            quoted = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1], repr(value)[1:-1]}
            forms |= quoted | {html.escape(q) for q in quoted}
        self.needles = sorted({n for n in self.lower(sorted(forms)) if n}, key=len, reverse=True)

    def lower(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        return [r[0] for r in self.conn.execute(
            "select lower(t) from unnest(%s::text[]) with ordinality as u(t, i) order by i", (texts,)).fetchall()]

    def redact(self, texts: list[str]) -> list[str | None]:
        """Each text with the values blanked out, or None where it quotes none."""
        out: list[str | None] = []
        for text, low in zip(texts, self.lower(texts), strict=True):
            spans = sorted((start, start + len(n)) for n in self.needles for start in _finds(low, n))
            if spans and len(low) != len(text):
                # lower() changed the length (ICU maps İ to two characters): lower each character on
                # its own to learn where each one's lower-case form starts, and map the matches back
                pieces = self.lower(list(text))
                starts = [0]
                for piece in pieces:
                    starts.append(starts[-1] + len(piece))
                spans = sorted((bisect.bisect_right(starts, a) - 1, bisect.bisect_left(starts, b))
                               for n in self.needles for a, b in ((i, i + len(n)) for i in _finds("".join(pieces), n)))
            if not spans:
                out.append(None)
                continue
            parts, at = [], 0
            for start, end in spans:
                if start >= at:
                    parts += [text[at:start], REDACTED]
                at = max(at, end)
            out.append("".join(parts) + text[at:])
        return out

    def redact_json(self, document):
        """The document with every string in it redacted, and whether anything was."""
        strings: list[str] = []
        _strings(document, strings)
        redacted = dict(zip(strings, self.redact(strings), strict=True))
        changed = any(v is not None for v in redacted.values())
        return _replace(document, redacted), changed


def _finds(text: str, needle: str):
    start = text.find(needle)
    while start >= 0:
        yield start
        start = text.find(needle, start + 1)


def _strings(document, into: list[str]) -> None:
    if isinstance(document, str):
        into.append(document)
    elif isinstance(document, dict):
        for k, v in document.items():
            _strings(k, into)
            _strings(v, into)
    elif isinstance(document, list):
        for v in document:
            _strings(v, into)


def _replace(document, redacted: dict[str, str | None]):
    if isinstance(document, str):
        return redacted.get(document) or document
    if isinstance(document, dict):
        return {_replace(k, redacted): _replace(v, redacted) for k, v in document.items()}
    if isinstance(document, list):
        return [_replace(v, redacted) for v in document]
    return document


def _candidates(conn, table: str, column: str, redactor: _Redactor) -> list[tuple]:
    """(ctid, value) of the rows whose ``column`` (as text) may quote one of the values."""
    if not redactor.needles or not _exists(conn, table):
        return []
    return conn.execute(sql.SQL("""select ctid::text, {col} from {table}
                                   where exists (select 1 from unnest(%s::text[]) as n
                                                 where strpos(lower({col}::text), n) > 0)""").format(
        col=sql.Identifier(column), table=sql.SQL(table)), (redactor.needles,)).fetchall()


def _clear_quotes(conn, values: set[str], reports: Path) -> tuple[dict[str, int], list[str]]:
    """Blank out the person's values where runs recorded them in free text: gate samples (a sample
    row quoting them is dropped, the others kept) and observed values, the run health rows, the
    runs' summaries and failure messages, and the report pages and JSON summaries in ``reports``.
    Returns what was cleared where, and the report files that could not be read or written."""
    redactor = _Redactor(conn, values)
    cleared: dict[str, int] = {}
    for ctid, sample in _candidates(conn, "audit.gate_results", "sample", redactor):
        rows = sample if isinstance(sample, list) else [sample]
        kept = [row for row in rows if not redactor.redact_json(row)[1]]
        conn.execute("update audit.gate_results set sample = %s where ctid = %s::tid",
                     (Jsonb(kept) if kept else None, ctid))
        cleared["audit.gate_results"] = cleared.get("audit.gate_results", 0) + 1
    for table, column in (("audit.gate_results", "observed_value"), ("audit.run_health", "detail")):
        found = _candidates(conn, table, column, redactor)
        for (ctid, _), text in zip(found, redactor.redact([t for _, t in found]), strict=True):
            if text is not None:
                conn.execute(sql.SQL("update {} set {} = %s where ctid = %s::tid").format(
                    sql.SQL(table), sql.Identifier(column)), (text, ctid))
                cleared[table] = cleared.get(table, 0) + 1
    for ctid, summary in _candidates(conn, "audit.pipeline_run_history", "summary", redactor):
        document, changed = redactor.redact_json(summary)
        if changed:
            conn.execute("update audit.pipeline_run_history set summary = %s where ctid = %s::tid",
                         (Jsonb(document), ctid))
            cleared["audit.pipeline_run_history"] = cleared.get("audit.pipeline_run_history", 0) + 1
    problems = []
    for page in sorted(reports.glob("*")) if reports.is_dir() and redactor.needles else []:
        if page.suffix not in (".html", ".json") or not page.is_file() or page.is_symlink():
            continue
        try:
            text = page.read_text(encoding="utf-8")
            if page.suffix == ".json":
                document, changed = redactor.redact_json(json.loads(text))
                new = json.dumps(document, indent=2) + "\n" if changed else None
            else:
                new = redactor.redact([text])[0]
            if new is not None:
                part = page.with_name(f".{page.name}.erasing")
                part.write_text(new, encoding="utf-8")
                os.replace(part, page)
                cleared["reports"] = cleared.get("reports", 0) + 1
        except (OSError, UnicodeError, ValueError) as exc:
            problems.append(f"report {page} could not be cleared: {_why(exc)}; remove the person from it by hand")
            log.error("erasure: %s", problems[-1])
    return cleared, problems


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
                def kept():
                    nonlocal removed
                    yield header
                    for row in reader:
                        if len(row) > col and hashlib.sha256(row[col].encode()).hexdigest() in key_hashes:
                            removed += 1
                            continue
                        yield row

                # as an export is written: a file left unneutralised (by an older crm360, by hand) comes out safe
                write_rows(target, kept())
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
        try:
            path = _export_file(destination, folder)
        except (OSError, RuntimeError, ValueError) as exc:  # a symbolic link loop, a name the system refuses
            out.problems.append(f"logged export {destination!r} could not be looked at: {exc}; check it by hand")
            log.error("erasure: %s", out.problems[-1])
            continue
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
        graph = _exists(conn, "marts.customer_identifiers")
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
            o.exports = _scrub_exports(conn, o.key_hashes, settings.exports_dir)
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
