"""What Python reads from dbt's manifest: the marts, their documented columns, and where personal
data lives (the pii tags), which erasure deletes by and a build refuses to go without."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO

from crm360 import pipeline, privacy
from crm360.core.settings import Settings
from crm360.transform import dbt, manifest

MARTS = REPO / "dbt_project" / "models" / "marts"


def _model(name: str, columns: dict, meta: dict | None = None, folder: str = "marts",
           materialized: str = "table") -> dict:
    return {"resource_type": "model", "name": name, "fqn": ["crm360", folder, name], "alias": name,
            "schema": folder, "config": {"materialized": materialized, "schema": folder, "meta": meta or {}},
            "original_file_path": f"models/{folder}/{name}.sql", "patch_path": f"crm360://models/{folder}/_m.yml",
            "columns": {c: {"name": c, "description": "d", "config": {"meta": m}} for c, m in columns.items()}}


def _manifest(*models: dict) -> manifest.Manifest:
    return manifest.Manifest({"nodes": {f"model.crm360.{m['name']}": m for m in models}, "sources": {}})


# ---------------------------------------------------------------- the convention, on a manifest made here

def test_tags_say_how_erasure_finds_a_person():
    found = _manifest(
        _model("contacts", {"email": {"pii": "email"}, "full_name": {"pii": "personal"},
                            "claim": {"pii": ["email", "shop_customer_id"]}, "product_name": {"pii": False}}),
        _model("events", {"record": {"pii": {"visitor_id": "visitor_id", "email": "requester.email"}}}),
        _model("lines", {"order_id": {}}, meta={"erase_with": {"parent": "contacts", "key": "order_id"}}),
    ).personal_tables()
    by_name = {t.name: t for t in found}
    assert [(i.kind, i.column) for i in by_name["contacts"].identifiers] == [
        ("email", "email"), ("email", "claim"), ("shop_customer_id", "claim")]
    assert by_name["contacts"].personal == ("full_name",)
    assert [i.expression() for i in by_name["events"].identifiers] == [
        """"record" ->> 'visitor_id'""", """"record" -> 'requester' ->> 'email'"""]
    assert by_name["lines"].parent == ("contacts", "order_id") and by_name["lines"].relation == "marts.lines"


@pytest.mark.parametrize("meta, reason", [
    ({"pii": "e-mail"}, "unknown pii kind 'e-mail'"),
    ({"pii": 3}, "pii must be an identifier kind"),
    ({"pii": {"email": "requester;drop"}}, "must be keys joined by dots"),
])
def test_a_tag_erasure_cannot_read_is_refused_with_its_file_and_column(meta, reason):
    with pytest.raises(manifest.ManifestError, match=reason) as err:
        _manifest(_model("contacts", {"email": meta})).personal_tables()
    assert "models/marts/_m.yml: contacts, column email" in str(err.value)


def test_a_column_named_like_personal_data_must_be_tagged():
    m = _manifest(_model("contacts", {"customer_key": {"pii": "customer_key"}, "phone": {},
                                      "email_count": {}, "segment_name": {"pii": False}}))
    assert [p.split(" is named")[0] for p in m.untagged()] == ["models/marts/_m.yml: contacts.phone"]
    # a column the warehouse has and the YAML does not declare is named by the model's SQL file
    problems = m.untagged({"marts.contacts": ["customer_key", "phone", "date_of_birth", "revenue"]})
    assert [p.split(" is named")[0] for p in problems] == [
        "models/marts/contacts.sql: contacts.date_of_birth", "models/marts/_m.yml: contacts.phone"]


def test_personal_data_with_no_way_to_a_person_is_reported():
    m = _manifest(_model("notes", {"full_name": {"pii": "personal"}}))
    [problem] = m.unreachable()
    assert "notes holds personal data (full_name) but no column tagged with an identifier kind" in problem
    with pytest.raises(manifest.ManifestError, match="erase_with names nowhere"):
        _manifest(_model("lines", {}, meta={"erase_with": {"parent": "nowhere", "key": "order_id"}})).personal_tables()
    with pytest.raises(manifest.ManifestError, match="in a circle"):
        _manifest(_model("a", {}, meta={"erase_with": {"parent": "b", "key": "k"}}),
                  _model("b", {}, meta={"erase_with": {"parent": "a", "key": "k"}})).personal_tables()


# ---------------------------------------------------------------- the project's own manifest

@pytest.mark.integration  # parses the dbt project with dbt
def test_the_marts_are_the_models_under_marts():
    m = manifest.load()
    assert set(m.marts()) == {p.stem for p in MARTS.rglob("*.sql")}
    assert set(m.counted_marts()) == {"customer_360", "customer_pyramid", "customer_identifiers",
                                      "customer_identity_links"}
    assert {"value_tier", "lifecycle_stage", "email"} <= set(m.documented_columns("customer_360"))


@pytest.mark.integration  # parses the dbt project with dbt
def test_every_personal_column_of_the_project_is_tagged_and_reachable():
    m = manifest.load()
    assert m.untagged() == [] and m.unreachable() == []
    tables = {t.name: t for t in m.personal_tables()}
    # every layer: raw as loaded, staging, intermediate, the predictions and the marts
    assert {"sales.sales_customers", "sales.sales_order_lines", "service.service_tickets", "web.web_events",
            "stg_sales__customers", "stg_web__events", "int_web_visitor_claims", "predictions.customer_value",
            "customer_360", "segment_members"} <= set(tables)
    assert tables["sales.sales_customers"].key == "shop_customer_id"


def test_the_customer_state_is_written_after_every_consumer_of_the_affected_customers():
    """A consumer of int_customers_affected (a model built on it: the customer-level models, the
    orders) must be built before each int_*_seen state model: a state written first, then a consumer
    failing, would make the next build miss the changes that consumer never took up
    (macros/affected_customers.sql)."""
    nodes = manifest.load().data["nodes"]
    models = {n["name"]: n for n in nodes.values() if n["resource_type"] == "model"}
    affected = models["int_customers_affected"]["unique_id"]
    consumers = {name for name, n in models.items() if affected in n["depends_on"]["nodes"]}
    states = {name for name, n in models.items()
              if name.startswith("int_") and name.endswith("_seen") and n["fqn"][1:3] == ["intermediate", "customer"]}
    assert {"int_customer_orders_aggregated", "int_customer_web_aggregated", "int_orders_attributed"} <= consumers
    assert {"int_customer_keys_seen", "int_order_customers_seen", "int_products_seen"} <= states

    def ancestors(unique_id: str, found: set[str]) -> set[str]:
        for parent in nodes.get(unique_id, {}).get("depends_on", {}).get("nodes", []):
            if parent not in found:
                found.add(parent)
                ancestors(parent, found)
        return found

    missing = {state: sorted(consumers - {nodes[a]["name"] for a in ancestors(models[state]["unique_id"], set())
                                          if a in nodes})
               for state in sorted(states)}
    assert not any(missing.values()), f"state models built without waiting for these consumers: {missing}"


def test_the_warehouse_holds_no_untagged_personal_column(shared_published):
    wh, settings, _, _ = shared_published
    with wh.connect() as conn:
        assert manifest.check_personal_data(conn, settings) == []


# ---------------------------------------------------------------- a new model, in a copy of the project

def _copy_project(tmp_path: Path, landing: Path) -> Settings:
    root = tmp_path / "project"
    shutil.copytree(REPO / "dbt_project", root / "dbt_project",
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    for name in ("segments.yml", "sources.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "expectations", root / "expectations")
    return Settings(project_dir=root, home=tmp_path / "home", landing_dir=landing, warehouse_url=None)


NEW_MODELS = {
    "int_newsletter_signups.sql": """
with customers as (select * from {{ ref('stg_sales__customers') }}),
final as (select distinct email, 'shop' as signed_up_via from customers where email is not null)
select * from final
""",
    "int_callback_requests.sql": """
with customers as (select * from {{ ref('stg_sales__customers') }}),
final as (select distinct customer_id, phone_e164 as phone from customers)
select * from final
""",
    "_newsletter__models.yml": """version: 2
models:
  - name: int_newsletter_signups
    description: One row per e-mail signed up for the newsletter.
    columns:
      - name: email
        description: The e-mail signed up.
        config: {meta: {pii: email}}
  - name: int_callback_requests
    description: One row per shop customer asking for a call back.
""",
}


def test_a_new_tagged_model_is_erased_and_an_untagged_one_refused(published, tmp_path):
    """A model added to the dbt project with its personal column tagged is erased from by the next
    request without a line of crm360.privacy changing; one with an untagged phone fails the check."""
    wh, settings, landing, as_of = published
    copy = _copy_project(tmp_path, landing)
    folder = copy.dbt_project_dir / "models" / "intermediate" / "newsletter"
    folder.mkdir()
    for name, text in NEW_MODELS.items():
        (folder / name).write_text(text, encoding="utf-8")
    dbt.run_dbt(wh, ["build", "--select", "int_newsletter_signups", "int_callback_requests"], settings=copy)

    with wh.connect() as conn:
        email, before = conn.execute("""select min(email), count(*) from intermediate.int_newsletter_signups
                                        where email in (select email from marts.customer_360)""").fetchone()
        assert email and before > 1
        total = conn.execute("select count(*) from intermediate.int_newsletter_signups").fetchone()[0]
        problems = manifest.check_personal_data(conn, copy)
    assert [p.split(" is named")[0] for p in problems] == [
        "models/intermediate/newsletter/int_callback_requests.sql: int_callback_requests.phone"]
    with pytest.raises(pipeline.PersonalDataUntagged, match="int_callback_requests.phone"):
        pipeline.check_personal_data(wh, copy)
    # the shipped project does not know the new models: erasure there never looks at them
    assert "int_newsletter_signups" not in {t.name for t in manifest.load(settings).personal_tables()}

    privacy.request_erasure(wh, "email", email, "dpo", settings=copy)
    result = privacy.apply_erasures(wh, "forget_new_model", copy)
    assert result["applied"] and result["rows_deleted"]["intermediate.int_newsletter_signups"] == 1
    with wh.connect() as conn:
        left = conn.execute("select count(*) from intermediate.int_newsletter_signups where email = %s",
                            (email,)).fetchone()[0]
        after = conn.execute("select count(*) from intermediate.int_newsletter_signups").fetchone()[0]
        gone = conn.execute("select count(*) from marts.customer_360 where email = %s", (email,)).fetchone()[0]
    assert (left, after, gone) == (0, total - 1, 0)


@pytest.mark.integration  # parses the dbt project with dbt
def test_a_new_mart_is_a_mart_without_code(tmp_path):
    copy = _copy_project(tmp_path, tmp_path / "landing")
    (copy.dbt_project_dir / "models" / "marts" / "customer" / "customer_upgrade_odds.sql").write_text(
        "select customer_key, revenue_tier from {{ ref('customer_360') }}\n", encoding="utf-8")
    m = manifest.load(copy)
    assert set(m.marts()) == set(manifest.load().marts()) | {"customer_upgrade_odds"}
    # its customer_key is undeclared: the check names the model's SQL file
    assert [p.split(" is named")[0] for p in m.untagged({"marts.customer_upgrade_odds": ["customer_key"]})] == [
        "models/marts/customer/customer_upgrade_odds.sql: customer_upgrade_odds.customer_key"]
