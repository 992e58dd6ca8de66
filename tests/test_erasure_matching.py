"""A deletion request matches an identifier exactly when the warehouse says they are the same.

Staging normalises identifiers in PostgreSQL (dbt macros: lower-cased and trimmed e-mails,
phones in E.164 ...), with PostgreSQL's own case mapping, which is not Python's: a capital
dotted I, a final sigma, a non-breaking space or a tab are treated differently. For generated
non-ASCII identifiers and the ways a person might type them again, the request's digest must
be the digest of what staging would store, and applying it must find the person exactly when
staging normalises both to the same value, and otherwise end as ``not_found``, never ``applied``.

The oracle is dbt itself: the test compiles the staging macros once with ``dbt compile`` and
evaluates them in the warehouse; crm360's own rendering of them is what is under test.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from conftest import REPO, make_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crm360 import privacy
from crm360.core import schema, warehouse
from crm360.privacy import scrub
from crm360.transform import dbt

pytestmark = pytest.mark.e2e

# staging's expression per identifier type, as dbt compiles it (__v__: the value, __c__: its country)
MACROS = {"email": "normalize_email('__v__')", "phone": "normalize_phone('__v__', '__c__')",
          "shop_customer_id": "normalize_shop_customer_id('__v__')", "visitor_id": "normalize_visitor_id('__v__')"}
SHARED_PREFIXES = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"][
    "identity_shared_mailbox_prefixes"]

SPLIT = "-- crm360:next"

# letters whose case mapping differs between Python and PostgreSQL, or between locales, and
# spaces that Python's strip() removes and PostgreSQL's trim() keeps
TRICKY = "İıIiẞßΣσςǅǄǆKkÅåÉéÖöŞşÇçĞğĲĳﬀΐΰ" + "ŉ"
SPACES = ["", " ", "  ", "\t", "\u00a0", "\u2003"]
letters = st.sampled_from(list(TRICKY + "abcXYZ"))
word = st.lists(letters, min_size=1, max_size=8).map("".join)
typings = st.sampled_from([str, str.upper, str.lower, str.swapcase, str.title, str.casefold,
                           lambda v: "00" + v[1:] if v.startswith("+") else v.upper()])  # +49 ... as 0049 ...


def _emails():
    return st.builds(lambda a, b, c: f"{a}.{b}@{c}.example", word, word, word)


def _phones():
    digits = st.text(alphabet="0123456789", min_size=7, max_size=11).map(lambda d: "+4930" + d[:-1] + "7")
    seps = st.sampled_from(["", " ", "-", ".", "/", "\u00a0", " (0)", "\u2009"])
    return st.builds(lambda d, s: d[:3] + s + d[3:5] + s + d[5:], digits, seps)


def _ids():
    return st.builds(lambda a, b: f"{a}-{b}", word, st.text(alphabet="0123456789", min_size=1, max_size=6))


IDENTIFIERS = st.one_of(st.tuples(st.just("email"), _emails()), st.tuples(st.just("phone"), _phones()),
                        st.tuples(st.just("shop_customer_id"), _ids()), st.tuples(st.just("visitor_id"), _ids()))


@pytest.fixture(scope="module")
def warehouse_normalises(embedded_server):
    """(warehouse, kind -> SQL of staging's normalisation of %(v)s) on a fresh, migrated database."""
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(embedded_server, name)
    schema.migrate(wh)
    with tempfile.TemporaryDirectory() as home:
        inline = f"\n{SPLIT}\n".join(f"{{{{ {m} }}}}" for m in MACROS.values())
        result = dbt.run_dbt(wh, ["compile", "--inline", inline, "--output", "json", "--log-format", "text"],
                             settings=make_settings(Path(home), Path(home)), target_dir=Path(home) / "target")
    document = re.search(r"^\{$.*^\}$", result.output, re.S | re.M).group(0)
    compiled = json.loads(document)["compiled"].split(SPLIT)
    expressions = {kind: sql.strip().replace("%", "%%").replace("__v__", "%(v)s").replace("__c__", "null")
                   for kind, sql in zip(MACROS, compiled, strict=True)}
    with wh.connect() as conn:  # the graph an erasure resolves through, as the marts have it
        conn.execute("""create table marts.customer_identifiers (identifier_type text, identifier_value text,
                        customer_key text, blocked_reason text)""")
        conn.commit()
    yield wh, expressions
    warehouse.drop_database(embedded_server, name)


def _normalised(conn, expression: str, value: str) -> str | None:
    return conn.execute(f"select {expression}", {"v": value}).fetchone()[0]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(identifier=IDENTIFIERS, typing=typings, before=st.sampled_from(SPACES), after=st.sampled_from(SPACES))
def test_a_request_matches_exactly_what_staging_would_store(warehouse_normalises, identifier, typing, before,
                                                            after):
    wh, expressions = warehouse_normalises
    kind, source = identifier
    typed = before + typing(source) + after  # the same identifier, as a person might type it again
    with wh.connect() as conn:
        stored = _normalised(conn, expressions[kind], source)
        wanted = _normalised(conn, expressions[kind], typed)
        if stored is None or (kind == "email" and wanted is not None
                              and wanted.split("@")[0].split("+")[0] in SHARED_PREFIXES):
            event("not an identifier a source could link")
            return
        conn.execute("insert into marts.customer_identifiers values (%s, %s, md5(%s), null)", (kind, stored, stored))
        conn.commit()
    try:
        if wanted is None:  # the warehouse would store nothing for it: no request either
            event(f"{kind}: refused at request time")
            with pytest.raises(privacy.ErasureError):
                privacy.request_erasure(wh, kind, typed, "dpo")
            return
        request = privacy.request_erasure(wh, kind, typed, "dpo")
        with wh.connect() as conn:
            digest = conn.execute("select identifier_hash from audit.erasure_requests where request_id = %s",
                                  (request,)).fetchone()[0]
            assert digest == conn.execute("select encode(sha256(convert_to(%s, 'UTF8')), 'hex')",
                                          (wanted,)).fetchone()[0]
            kept = json.dumps(conn.execute("select row_to_json(r) from audit.erasure_requests r").fetchall(),
                              ensure_ascii=False)
            assert typed.strip() not in kept and stored not in kept
        privacy.apply_erasures(wh, "match")
        with wh.connect() as conn:
            status, found, deleted = conn.execute(
                "select status, customers_found, rows_deleted from audit.erasure_requests where request_id = %s",
                (request,)).fetchone()
        event(f"{kind}: {'the same' if wanted == stored else 'another'} identifier for the warehouse")
        if wanted == stored:
            assert (status, found) == ("applied", 1), (kind, source, typed, stored, wanted)
        else:
            assert (status, found, deleted) == ("not_found", 0, 0), (kind, source, typed, stored, wanted)
    finally:
        with wh.connect() as conn:
            for table in ("marts.customer_identifiers", "audit.erasure_requests", "audit.erased_identifiers",
                          "audit.erasure_watermark"):
                conn.execute(f"delete from {table}")
            conn.commit()


def test_quotes_are_cleared_where_lower_casing_changes_the_length(external_server, tmp_path):
    """An ICU database lower-cases İ to two characters, so a match in the lower-cased text is found
    at another position than in the text: it is mapped back, and only the person's value goes."""
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(external_server.conninfo, autocommit=True) as conn:
        try:
            conn.execute(f"create database {name} template template0 locale_provider icu icu_locale 'und' "
                         "locale 'C.UTF-8'")
        except psycopg.errors.FeatureNotSupported as exc:
            pytest.skip(f"the server has no ICU: {exc}")
    try:
        wh = external_server.with_database(name)
        schema.migrate(wh)
        message = "gate failed, e.g. [{'name': 'İlker İnan', 'email': 'ILKER.İNAN@EXAMPLE.COM', 'id': 'CQUOTE001'}]"
        with wh.connect() as conn:
            assert conn.execute("select length(lower('İ'))").fetchone()[0] == 2
            conn.execute("""insert into audit.run_health (run_id, status, section, item, metric, detail, recorded_at)
                            values ('r', 'failed', 'run', 'status', 'failed', %s, now())""", (message,))
            cleared, problems = scrub.clear_quotes(conn, {"CQUOTE001", "ilker.i̇nan@example.com"}, tmp_path)
            detail = conn.execute("select detail from audit.run_health").fetchone()[0]
    finally:
        warehouse.drop_database(external_server, name)
    assert (cleared, problems) == ({"audit.run_health": 1}, [])
    assert detail == "gate failed, e.g. [{'name': 'İlker İnan', 'email': '[erased]', 'id': '[erased]'}]"
