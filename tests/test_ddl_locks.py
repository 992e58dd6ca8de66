"""A reader's transaction left open does not hold a run hostage.

A BI session that read yesterday's marts and stayed "idle in transaction" keeps its locks on
those tables after the publication renamed them to ``marts__previous``. Dropping that schema
(the next publication, or an erasure, which must not leave the person in the replaced marts)
waits for the session. The DDL waits a short while per try, tries a few times, then fails
with a retryable error naming the session; once the session ends, the same steps pass."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from crm360 import privacy
from crm360.core import access, ddl, errors
from crm360.transform import publish

pytestmark = pytest.mark.e2e

BI_APPLICATION = "dashboard left open"


def _build(wh, version: int) -> None:
    """A build as dbt leaves it: tables with their grants, in the build schema."""
    with wh.connect(autocommit=True) as conn:
        conn.execute(f"create schema {publish.BUILD}")
        # the columns the dbt project tags as personal data in customer_360: erasure deletes by them
        conn.execute(f"""create table {publish.BUILD}.customer_360 as
                         select {version} as version, 'k1' as customer_key, null::text as shop_customer_id,
                                'held@example.com' as email, null::text as phone""")
        conn.execute(f"""create table {publish.BUILD}.customer_identifiers as
                         select 'email' as identifier_type, 'held@example.com' as identifier_value,
                                'k1' as customer_key, null::text as blocked_reason""")
        conn.execute(f"grant select on {publish.BUILD}.customer_360 to bi_reader")


def _publish_build(wh, version: int) -> None:
    _build(wh, version)
    publish.publish(wh, f"run{version}")


def test_a_reader_left_idle_in_transaction_makes_ddl_fail_fast_naming_it(db, monkeypatch):
    monkeypatch.setenv(ddl.TIMEOUT_ENV, "0.3")
    monkeypatch.setenv(ddl.TRIES_ENV, "3")
    _publish_build(db, 1)
    bi = psycopg.connect(access.as_role(db, access.BI_READER).conninfo, application_name=BI_APPLICATION)
    # a dashboard's transaction: it read the marts and was never ended
    bi.execute("select version from marts.customer_360").fetchone()
    bi_pid = bi.info.backend_pid
    # publication renames; the reader's locks travel with the tables to marts__previous
    _publish_build(db, 2)
    request = privacy.request_erasure(db, "email", "held@example.com", "dpo")
    # should the DDL wait for the reader (the hole), the reader ends after 8 s instead of hanging the test
    ender = threading.Timer(8, bi.commit)
    ender.start()
    try:
        started = time.monotonic()
        with pytest.raises(ddl.ObjectBusy) as busy:
            privacy.apply_erasures(db, "erase_while_held")
        assert time.monotonic() - started < 5
        message = str(busy.value)
        for part in (f"pid {bi_pid}", "user bi_reader", f"application '{BI_APPLICATION}'", "idle in transaction",
                     "transaction open since", "client "):
            assert part in message, message
        assert message.startswith("erasure")
        assert errors.is_retryable(busy.value)
        # nothing of the erasure was committed: it is applied whole when it passes
        with db.connect() as conn:
            assert conn.execute("select status from audit.erasure_requests where request_id = %s",
                                (request,)).fetchone()[0] == "pending"
            assert conn.execute("select count(*) from marts.customer_identifiers").fetchone()[0] == 1

        _build(db, 3)
        started = time.monotonic()
        with pytest.raises(ddl.ObjectBusy, match=rf"^publish: .*pid {bi_pid} \(user bi_reader"):
            publish.publish(db, "run3")
        assert time.monotonic() - started < 5
        with db.connect() as conn:  # readers keep the marts they had
            assert conn.execute("select version from marts.customer_360").fetchone()[0] == 2
    finally:
        ender.cancel()
        bi.commit()
        bi.close()

    # the reader is gone: both steps pass
    assert publish.publish(db, "run3") == ["customer_360", "customer_identifiers"]
    assert privacy.apply_erasures(db, "erase_after")["requests"] == 1
    with db.connect() as conn:
        assert conn.execute("select version from marts.customer_360").fetchone() is None  # the person's row
        assert conn.execute("select status from audit.erasure_requests").fetchone()[0] == "applied"
        assert conn.execute("select to_regclass('marts__previous')").fetchone()[0] is None


def test_lock_wait_settings_are_checked(monkeypatch):
    monkeypatch.setenv(ddl.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=f"{ddl.TIMEOUT_ENV} must be a number of seconds above 0, got 'soon'"):
        ddl.lock_timeout()
    monkeypatch.setenv(ddl.TRIES_ENV, "0")
    with pytest.raises(ValueError, match=f"{ddl.TRIES_ENV} must be a whole number of tries, at least 1, got '0'"):
        ddl.tries()
