"""Fingerprints of whole schemas: a row count and an order-independent digest per table, to prove
two ways of reaching a state (a clean run and one with faults; a day's incremental build and a
full rebuild of the same raw data) leave the same rows."""

from __future__ import annotations

from psycopg import sql

from crm360 import pipeline

SCHEMAS = ("raw", "staging", "intermediate", "marts", "predictions")
# when a row was loaded, and by which attempt: a retry is a new attempt (crm360.ingest.ledger), so these name
# the attempt that finally loaded a file, not what was loaded
PER_RUN_COLUMNS = frozenset({"_loaded_at", "loaded_at", "_batch_id", "batch_id"})
# what one build touched (the customers whose inputs changed since the build before): a full rebuild, or
# a run retried after a fault, reaches the same state through other builds, so these tables differ by design
PER_BUILD_TABLES = frozenset({"int_customers_affected"})


def fingerprint(wh, schemas=SCHEMAS, skip=PER_RUN_COLUMNS, ledger: bool = True,
                rename: dict[str, str] | None = None) -> dict[str, tuple[int, str]]:
    """{schema.table: (rows, hash of the sorted row hashes)} for every table and view of ``schemas``
    (plus the load ledger); columns named in ``skip`` left out, doubles rounded to 6 places.
    ``rename`` maps a schema to the name it is reported under (marts__build as marts)."""
    out = {}
    with wh.connect() as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables where table_schema = any(%s) "
            "order by 1, 2", (list(schemas),)).fetchall()
        for schema, table in [*tables, *([("audit", "load_files")] if ledger else [])]:
            if table in PER_BUILD_TABLES:
                continue
            columns = conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position", (schema, table)).fetchall()
            exprs = [sql.SQL("round({}::numeric, 6)" if kind in ("double precision", "real") else "{}")
                     .format(sql.Identifier(name))
                     for name, kind in columns if name not in skip]
            query = sql.SQL(
                "select count(*), coalesce(md5(string_agg(h, '' order by h)), '') "
                "from (select md5(row({})::text) as h from {}) as hashed").format(
                sql.SQL(", ").join(exprs), sql.Identifier(schema, table))
            out[f"{(rename or {}).get(schema, schema)}.{table}"] = tuple(conn.execute(query).fetchone())
    return out


def only(prints: dict, *schemas: str) -> dict:
    return {k: v for k, v in prints.items() if k.split(".")[0] in schemas}


def assert_same(actual: dict, expected: dict, what: str = "a clean run's") -> None:
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    differ = {k: (actual[k], expected[k]) for k in expected.keys() & actual.keys() if actual[k] != expected[k]}
    assert not (missing or extra or differ), (
        f"warehouse differs from {what}: missing tables {missing}, extra tables {extra}, "
        f"(rows, checksum) now vs expected: {differ}")


def incremental_equals_full_rebuild(wh, settings, as_of) -> dict[str, tuple[int, str]]:
    """The published marts and the incremental tables equal, row for row, what a full rebuild of
    every incremental model from the same raw data (``dbt build --full-refresh``) gives; returns the
    published marts' fingerprints. Every mart dbt declares (the manifest) must be among them."""
    published = fingerprint(wh, ("marts",), ledger=False)
    declared = {f"marts.{mart}" for mart in pipeline.marts(settings)}
    assert declared and declared <= published.keys(), f"marts not published: {sorted(declared - published.keys())}"
    built = fingerprint(wh, ("staging", "intermediate"), ledger=False)
    pipeline.transform(wh, as_of, settings, full_refresh=True)
    assert_same(fingerprint(wh, ("staging", "intermediate"), ledger=False), built,
                "a full rebuild's staging and intermediate tables")
    assert_same(fingerprint(wh, ("marts__build",), ledger=False, rename={"marts__build": "marts"}), published,
                "a full rebuild's marts")
    return published
