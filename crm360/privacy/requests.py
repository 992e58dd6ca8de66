"""Deletion requests: an identifier someone gave, normalised as the warehouse stores it and looked up
in the published identity graph; recorded as a digest, never in clear (crm360.privacy.erasure
applies them).

The identifier is normalised by the warehouse, with the very expression staging stores that kind
of identifier in (the dbt macros ``normalize_email``, ``normalize_phone`` ..., rendered here), and
kept only as the SHA-256 digest of that form: the clear value reaches the database as a query
parameter and is never stored. (Python's lower-casing is not PostgreSQL's, a capital dotted I or a
final sigma, and a request normalised in Python found nobody.) An identifier the identity guards
keep from every customer, a shared mailbox such as info@, an address or phone on several people's
records, a shared device, names no one person: ``forget`` refuses it when the published graph or
the configured mailbox prefixes say so, and asks for a customer key or shop customer id.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from crm360.core.errors import ConfigurationError
from crm360.core.schema import require_current
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse
from crm360.transform.dbt import project_vars
from crm360.transform.manifest import IDENTIFIER_KINDS

# the kinds a request may name a person by: the identifier kinds the dbt project tags (docs/privacy.md)
IDENTIFIER_TYPES = IDENTIFIER_KINDS
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


def digest(expression: str) -> sql.Composable:
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


def exists(conn, relation: str) -> bool:
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
            digest("n"), sql.SQL(form)), {"value": value}).fetchone()
    if normalised is None:
        hint = ": give it in international form, e.g. +31 20 123 4567" if kind == "phone" else ""
        raise ErasureError(f"{value!r} is no {kind} the warehouse would keep, so it names nobody{hint}")
    guard = "shared mailbox" if kind == "email" and local_part in shared_mailbox_prefixes(settings) else None
    customers = None
    if exists(conn, "marts.customer_identifiers"):
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
