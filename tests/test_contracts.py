"""What BI may rely on in the marts: enforced model contracts (column names and
types), an index for every query in docs/bi_queries.sql, and dbt exposures naming
the dashboards and the marts they read.

The warehouse-backed tests share one published tiny run (the session's `shared_published`
fixture). dbt runs three marts against it, once; the contract check
fails a model before anything is written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import psycopg
import pytest
from conftest import REPO, make_settings

from crm360.core import warehouse
from crm360.core.settings import Settings
from crm360.transform import dbt

pytestmark = pytest.mark.integration  # every test runs dbt (parse and ls at least)

MARTS = REPO / "dbt_project" / "models" / "marts"
BI_QUERIES = REPO / "docs" / "bi_queries.sql"
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def _dbt_ls_exposures(tmp_path) -> tuple[list[dict], dict]:
    """`dbt ls` of the exposures (parses the project, no connection) and the manifest it writes."""
    settings = make_settings(tmp_path / "home", tmp_path / "landing")
    unused = warehouse.from_url("postgresql://nobody@127.0.0.1:1/none")
    result = dbt.run_dbt(unused, ["ls", "--resource-type", "exposure", "--output", "json", "--quiet"],
                         settings=settings)
    listed = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    manifest = json.loads((settings.dbt_target_dir / "manifest.json").read_text())
    return listed, manifest


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    return _dbt_ls_exposures(tmp_path_factory.mktemp("dbt_ls"))


def test_every_mart_has_an_enforced_contract_with_typed_documented_columns(parsed):
    _, manifest = parsed
    marts = {node["name"]: node for node in manifest["nodes"].values()
             if node["resource_type"] == "model" and node["original_file_path"].startswith("models/marts/")}
    on_disk = {path.stem for path in MARTS.rglob("*.sql")}
    assert set(marts) == on_disk and len(marts) >= 12
    problems = []
    for name, node in sorted(marts.items()):
        if not node["config"]["contract"]["enforced"]:
            problems.append(f"{name}: contract not enforced")
        if not node["columns"]:
            problems.append(f"{name}: no columns declared")
        for column in node["columns"].values():
            if not column.get("data_type"):
                problems.append(f"{name}.{column['name']}: no data_type")
            if not (column.get("description") or "").strip():
                problems.append(f"{name}.{column['name']}: no description")
    assert not problems, "\n".join(problems)


def test_money_columns_name_no_currency_and_say_they_are_money(parsed):
    """Amounts are in the deployment's reporting currency (marts.reporting_currency), so no mart
    column names one; every money column (2 decimals, numeric(14,2) or (16,2)) is tagged unit: money
    for BI, and nothing else is."""
    _, manifest = parsed
    marts = [node for node in manifest["nodes"].values()
             if node["resource_type"] == "model" and node["original_file_path"].startswith("models/marts/")]
    columns = {f"{node['name']}.{name}": column for node in marts for name, column in node["columns"].items()}
    assert not [name for name in columns if re.search(r"_(eur|usd|gbp|chf)$", name)]
    money = {name for name, column in columns.items() if column["meta"].get("unit") == "money"}
    two_decimals = {name for name, column in columns.items()
                    if column.get("data_type") in ("numeric(14,2)", "numeric(16,2)")}
    assert two_decimals <= money and {"customer_360.revenue", "customer_360.predicted_clv",
                                      "customer_360.average_order_value"} <= money
    assert not [name for name in money if not columns[name].get("data_type", "").startswith("numeric")]
    currency = next(node for node in marts if node["name"] == "reporting_currency")
    assert list(currency["columns"]) == ["currency_code", "as_of_date"]


def _bi_queries() -> list[dict]:
    """docs/bi_queries.sql as [{name, dashboard, index, sql}]."""
    queries = []
    for block in re.split(r"^(?=-- query: )", BI_QUERIES.read_text(), flags=re.M)[1:]:
        fields = dict(re.findall(r"^-- (query|dashboard|index): (.+)$", block, flags=re.M))
        body = "\n".join(line for line in block.splitlines() if not line.startswith("--")).strip()
        assert body.endswith(";") and body.count(";") == 1, f"{fields.get('query')}: one statement ending in ;"
        assert {"query", "dashboard", "index"} <= set(fields), f"incomplete header: {block[:80]}"
        queries.append({"name": fields["query"], "dashboard": fields["dashboard"], "index": fields["index"],
                        "sql": body.rstrip(";")})
    return queries


def test_exposures_list_the_dashboards_and_resolve_to_marts(parsed):
    listed, manifest = parsed
    by_name = {e["name"]: e for e in listed}
    assert set(by_name) == {"customer_pyramid", "customer_360_lookup", "service_follow_up", "marketing_segments"}
    for name, exposure in by_name.items():
        full = manifest["exposures"][exposure["unique_id"]]
        assert full["type"] == "dashboard" and full["owner"]["name"] and full["maturity"]
        assert full["url"].startswith("http://localhost:3000/"), name
        nodes = exposure["depends_on"]["nodes"]
        assert nodes, f"{name} depends on nothing"
        for node in nodes:
            assert manifest["nodes"][node]["original_file_path"].startswith("models/marts/"), (name, node)
    # every documented BI query belongs to a dashboard that exists, and reads marts it declares
    labels = {manifest["exposures"][e["unique_id"]]["label"]: e for e in listed}
    for query in _bi_queries():
        assert query["dashboard"] in labels, f"{query['name']}: unknown dashboard {query['dashboard']}"
        declared = {n.split(".")[-1] for n in labels[query["dashboard"]]["depends_on"]["nodes"]}
        read = set(re.findall(r"\bmarts\.(\w+)", query["sql"]))
        assert read <= declared, f"{query['name']} reads {read - declared}, not in its dashboard's exposure"


def _break_column(project: Path, model: str, old: str, new: str) -> None:
    path = next((project / "models" / "marts").rglob(f"{model}.sql"))
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {model}.sql"
    path.write_text(text.replace(old, new))


PROBE_SCHEMA = "marts__contract_probe"


@pytest.fixture(scope="module")
def probe_run(shared_published, tmp_path_factory):
    """One dbt run of three marts of a copy of the project into a probe schema, on
    the published run's intermediate tables (the published marts are not touched):
    - customer_pyramid with a column's type changed and customer_identifiers with a
      column renamed, as by accident: their contracts must stop them;
    - customer_tier_history unchanged, over a table of that name already built in
      the schema with its index, as a second bare `dbt build` finds it: dbt renames
      the old table to a backup that still holds the index name while the new
      table's post-hooks run, and the new table must get its index anyway.
    Returns (dbt result, indexes on the rebuilt table, tables left in the schema)."""
    wh, _, _, as_of = shared_published
    root = tmp_path_factory.mktemp("contract_probe")
    shutil.copytree(REPO / "dbt_project", root / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    _break_column(root / "dbt_project", "customer_pyramid", "        revenue_rank,\n",
                  "        cast(revenue_rank as text) as revenue_rank,\n")
    _break_column(root / "dbt_project", "customer_identifiers", "        nodes.blocked_reason,\n",
                  "        nodes.blocked_reason as block_reason,\n")
    index = "customer_tier_history__customer_key_pyramid__btree_idx"
    with wh.connect() as conn:
        conn.execute(f"create schema {PROBE_SCHEMA}")
        conn.execute(f"create table {PROBE_SCHEMA}.customer_tier_history as table marts.customer_tier_history")
        conn.execute(f'create index "{index}" on {PROBE_SCHEMA}.customer_tier_history (customer_key, pyramid)')
    settings = Settings(project_dir=root, home=root / "home", landing_dir=root / "landing", warehouse_url=None)
    result = dbt.run_dbt(wh, ["run", "--select", "customer_pyramid", "customer_identifiers", "customer_tier_history"],
                         {"as_of_date": as_of.isoformat()}, settings=settings, check=False,
                         extra_env={"CRM360_MARTS_BUILD_SCHEMA": PROBE_SCHEMA})
    with wh.connect() as conn:
        indexes = {row[0] for row in conn.execute(
            "select indexname from pg_indexes where schemaname = %s and tablename = 'customer_tier_history'",
            (PROBE_SCHEMA,)).fetchall()}
        tables = {row[0] for row in conn.execute(
            "select table_name from information_schema.tables where table_schema = %s", (PROBE_SCHEMA,)).fetchall()}
        conn.execute(f"drop schema {PROBE_SCHEMA} cascade")
    return result, indexes, tables


def test_a_changed_column_type_or_name_fails_the_build(probe_run):
    result, _, tables = probe_run
    assert result.returncode != 0
    status = {r["unique_id"]: (r["status"], r["message"] or "") for r in result.results}
    pyramid_status, pyramid_message = status["model.crm360.customer_pyramid"]
    assert pyramid_status == "error"
    assert "contract" in pyramid_message.lower() and "data type mismatch" in pyramid_message.lower()
    assert "revenue_rank" in pyramid_message
    identifiers_status, identifiers_message = status["model.crm360.customer_identifiers"]
    assert identifiers_status == "error"
    assert "contract" in identifiers_message.lower()
    assert "block_reason" in identifiers_message and "blocked_reason" in identifiers_message
    # neither was written; the unchanged mart next to them was
    assert status["model.crm360.customer_tier_history"][0] == "success"
    assert tables == {"customer_tier_history"}


def test_a_mart_rebuilt_in_place_keeps_its_indexes(probe_run):
    _, indexes, tables = probe_run
    assert "customer_tier_history__dbt_backup" not in tables
    assert indexes == {"customer_tier_history__customer_key_pyramid__btree_idx"}


def _sample_values(conn, as_of) -> dict:
    customer_key, email = conn.execute(
        "select customer_key, email from marts.customer_360 where email is not null "
        "and customer_key in (select customer_key from marts.customer_next_product) "
        "order by customer_key limit 1").fetchone()
    identifier = conn.execute("select identifier_value from marts.customer_identifiers where customer_key = %s "
                              "and identifier_type = 'phone' limit 1", (customer_key,)).fetchone()
    revenue_tier, value_tier, stage = conn.execute(
        "select revenue_tier, value_tier, lifecycle_stage from marts.customer_360 "
        "where revenue_tier is not null and value_tier is not null limit 1").fetchone()
    [snapshot_date] = conn.execute("select min(snapshot_date) from marts.customer_tier_movements").fetchone()
    return {"customer_key": customer_key, "email": email.upper(), "identifier_value": identifier[0] if identifier
            else email, "revenue_tier": revenue_tier, "value_tier": value_tier, "lifecycle_stage": stage,
            "snapshot_date": snapshot_date, "pyramid": "revenue", "on_date": as_of, "call_date": as_of}


def _index_scans(plan: dict) -> set[str]:
    found = {plan["Index Name"]} if plan.get("Node Type") in INDEX_SCANS else set()
    for child in plan.get("Plans", []):
        found |= _index_scans(child)
    return found


def test_documented_bi_queries_use_their_indexes(shared_published):
    wh, _, _, as_of = shared_published
    queries = _bi_queries()
    assert len(queries) >= 10 and len({q["name"] for q in queries}) == len(queries)
    with psycopg.connect(wh.conninfo, cursor_factory=psycopg.ClientCursor) as conn:
        values = _sample_values(conn, as_of)
        # The tiny tables fit in a page or two, where a sequential scan is cheapest and
        # the planner rightly takes it. Disabled, the planner must show that the index
        # can serve the query's filter; at production sizes it is chosen on cost.
        conn.execute("set enable_seqscan = off")
        missing = []
        for query in queries:
            text = re.sub(r"\{\{(\w+)\}\}", r"%(\1)s", query["sql"])
            [(plan,)] = conn.execute("explain (format json) " + text, values).fetchall()
            used = _index_scans(plan[0]["Plan"])
            if query["index"] not in used:
                missing.append(f"{query['name']}: expected {query['index']}, plan used {sorted(used) or 'no index'}")
            # the query answers something on the tiny run (a typo'd filter would plan fine and find nothing)
            assert conn.execute(text, values).fetchall(), f"{query['name']} returned no rows"
        assert not missing, "\n".join(missing)


def test_bi_queries_name_indexes_the_marts_create():
    for query in _bi_queries():
        table = re.search(r"\bmarts\.(\w+)", query["sql"]).group(1)
        assert query["index"].startswith(table + "__"), f"{query['name']}: index {query['index']} is not on {table}"
    created = set()
    for path in MARTS.rglob("*.sql"):
        for columns in re.findall(r"ensure_index\(\[([^\]]*)\]", path.read_text()):
            names = re.findall(r"'(\w+)'", columns)
            created.add(f"{path.stem}__{'_'.join(names)}__btree_idx")
    assert {q["index"] for q in _bi_queries()} <= created
