"""The identity graph kept by the day (int_identity_components, int_identifiers_linked:
macros/identity.sql) equals a full rebuild: a day whose ticket joins two people (a merge), then a
day whose new shop record puts one of them on a guarded e-mail (the link it made is no longer used:
a split); on the same days a person's second shop record, then the two records swapping e-mails
(nothing changes but the anchor's contacts: int_customers_resolved's primary e-mail). Each day
rewrites the rows of the components it touched, not the others'. A table built before it kept the
columns it compares is computed whole once."""

from __future__ import annotations

import json

import pytest
from test_affected_customers import _append, _key, _rows
from test_equivalence import _config, as_of_after, incremental_equals_full_rebuild, world  # noqa: F401

from crm360 import pipeline
from crm360.synthetic.generate import generate_next_day

pytestmark = pytest.mark.e2e

IDENTITY_TABLES = ("int_identity_components", "int_identifiers_linked")


def _row_versions(wh) -> dict[str, dict[str, str]]:
    """Per identity table, each identifier's row version (xmin): a row rewritten by a build gets a new one."""
    with wh.connect() as conn:
        return {table: dict(conn.execute(f"select identifier_id, xmin::text from intermediate.{table}").fetchall())  # noqa: S608
                for table in IDENTITY_TABLES}


def _rewritten(before: dict, after: dict) -> dict[str, set[str]]:
    return {table: {i for i, version in after[table].items() if before[table].get(i) != version}
            for table in IDENTITY_TABLES}


def _two_people(wh) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """Two registered shop customers with e-mails, other first names and other customer keys:
    (shop customer id, normalised e-mail, first name) each."""
    with wh.connect() as conn:
        rows = conn.execute(
            "select c.customer_id, c.email, c.first_name from staging.stg_sales__customers c "
            "join intermediate.int_identifiers_linked l on l.identifier_id = 'email:' || c.email "
            "where c.account_type = 'registered' and l.blocked_reason is null "
            "order by c.customer_id limit 40").fetchall()
    a = rows[0]
    b = next(r for r in rows[1:] if r[2] != a[2] and _key(wh, r[0]) != _key(wh, a[0]))
    return a, b


def _shop_record(landing, customer_id: str) -> tuple[list[str], dict]:
    """The newest row of a shop customer in the sales drops, and the drops' columns."""
    rows = [(fields, row) for path in sorted((landing / "sales").glob("*/customers.csv"))
            for fields, rows in [_rows(path)] for row in rows if row["customer_id"] == customer_id]
    return rows[-1]


def _primary_email(wh, key: str) -> str:
    with wh.connect() as conn:
        return conn.execute("select primary_email from intermediate.int_customers_resolved where customer_key = %s",
                            (key,)).fetchone()[0]


def _add_ticket(landing, customer_ref: str, requester_email: str) -> None:
    """A ticket of the newest day, of shop customer ``customer_ref``, sent from ``requester_email``."""
    day = json.loads((landing / "manifest.json").read_text())["end_date"]
    path = landing / "service" / f"tickets_{day}.json"
    drop = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {
        "exported_at": f"{day}T23:59:59+00:00", "tickets": []}
    at = f"{day}T12:00:00+00:00"
    drop["tickets"].append({
        "id": "T9999999000001", "type": "question", "status": "solved", "created_at": at, "updated_at": at,
        "solved_at": at, "requester": {"email": requester_email, "name": "Someone"}, "customer_ref": customer_ref,
        "satisfaction": None, "channel": "email", "direction": "inbound"})
    path.write_text(json.dumps(drop), encoding="utf-8")


@pytest.mark.timeout(1800)
def test_identity_kept_by_the_day_merges_and_splits_like_a_full_rebuild(world):  # noqa: F811
    wh, settings, landing, _ = world
    pipeline.run_all(as_of_after(landing), "day1", wh, landing=landing, settings=settings)
    a, b = _two_people(wh)
    with wh.connect() as conn:  # C: a registered customer with a phone, neither A nor B
        c = conn.execute("select customer_id from staging.stg_sales__customers where account_type = 'registered' "
                         "and phone_e164 is not null and email is not null and customer_id <> all(%s) "
                         "order by customer_id limit 1", ([a[0], b[0]],)).fetchone()[0]
    c_fields, c_row = _shop_record(landing, c)

    # a ticket of A's account sent from B's e-mail joins A and B; C gets a guest record with C's
    # phone, another e-mail and the same creation time
    before = _row_versions(wh)
    generate_next_day(landing, _config())
    _add_ticket(landing, a[0], b[1])
    day = sorted((landing / "sales").iterdir())[-1]
    second = {**c_row, "customer_id": "C9999992", "account_type": "guest", "email": "second.record@example.org"}
    _append(day / "customers.csv", c_fields, second)
    pipeline.run_all(as_of_after(landing), "day2", wh, landing=landing, settings=settings)
    assert _key(wh, a[0]) == _key(wh, b[0]), "the ticket's link merged the two people"
    c_key = _key(wh, c)
    assert _key(wh, "C9999992") == c_key and _primary_email(wh, c_key) != "second.record@example.org"
    rewritten = _rewritten(before, _row_versions(wh))
    for table, ids in rewritten.items():
        assert {f"shop_customer_id:{a[0]}", f"shop_customer_id:{b[0]}"} <= ids, (table, "the merged people's rows")
        assert len(ids) < len(before[table]) / 2, f"{table}: {len(ids)} of {len(before[table])} rows rewritten"
    incremental_equals_full_rebuild(wh, settings, as_of_after(landing))

    # a new shop record of another first name with B's e-mail: the e-mail is on several people, a
    # guard blocks it, and A and B part again
    before = _row_versions(wh)
    generate_next_day(landing, _config())
    day = sorted((landing / "sales").iterdir())[-1]
    fields, _ = _rows(day / "customers.csv")
    template = _rows(next(p for p in sorted((landing / "sales").glob("*/customers.csv")) if _rows(p)[1]))[1][0]
    _append(day / "customers.csv", fields, {**template, "customer_id": "C9999991", "email": b[1],
                                             "first_name": "Zz" + b[2], "phone": ""})
    # C's two records swap e-mails: the same identifiers, the same key, another primary e-mail
    later = day.name + "T08:00:00+00:00"
    _append(day / "customers.csv", c_fields, {**c_row, "email": "second.record@example.org", "updated_at": later})
    _append(day / "customers.csv", c_fields, {**second, "email": c_row["email"], "updated_at": later})
    pipeline.run_all(as_of_after(landing), "day3", wh, landing=landing, settings=settings)
    assert _key(wh, a[0]) != _key(wh, b[0]), "the guarded e-mail no longer links them"
    assert _key(wh, c) == c_key and _primary_email(wh, c_key) == "second.record@example.org"
    with wh.connect() as conn:
        reasons = {r for (r,) in conn.execute("select reason from intermediate.int_customers_affected "
                                              "where customer_key = %s", (c_key,)).fetchall()}
    assert "profile" in reasons and "identity" not in reasons, reasons
    with wh.connect() as conn:
        blocked = conn.execute("select blocked_reason from intermediate.int_identity_nodes where identifier_id = %s",
                               (f"email:{b[1]}",)).fetchone()
    assert blocked == ("on several people",)
    rewritten = _rewritten(before, _row_versions(wh))
    for table, ids in rewritten.items():
        assert f"shop_customer_id:{a[0]}" in ids and f"shop_customer_id:{b[0]}" in ids, (table, "the split")
        assert len(ids) < len(before[table]) / 2, f"{table}: {len(ids)} of {len(before[table])} rows rewritten"
    incremental_equals_full_rebuild(wh, settings, as_of_after(landing))

    # the tables as the builds before them left them, without the columns compared: computed whole, once
    with wh.connect(autocommit=True) as conn:
        conn.execute("alter table intermediate.int_identity_components drop column edges_digest, drop column link_rule")
        conn.execute("alter table intermediate.int_identifiers_linked drop column component_id, "
                     "drop column anchor_priority")
    before = _row_versions(wh)
    generate_next_day(landing, _config())
    pipeline.run_all(as_of_after(landing), "day4", wh, landing=landing, settings=settings)
    rewritten = _rewritten(before, _row_versions(wh))
    for table, ids in rewritten.items():
        assert len(ids) == len(_row_versions(wh)[table]), f"{table}: not every row computed again"
    incremental_equals_full_rebuild(wh, settings, as_of_after(landing))
