import csv
import json
from datetime import timedelta

from crm360.generate import GeneratorConfig, build_world, count_sessions, generate


def _tree_bytes(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path):
    cfg = GeneratorConfig.preset("tiny", seed=7)
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")


def test_other_seed_other_data(tmp_path):
    generate(tmp_path / "a", GeneratorConfig.preset("tiny", seed=1))
    generate(tmp_path / "b", GeneratorConfig.preset("tiny", seed=2))
    assert _tree_bytes(tmp_path / "a") != _tree_bytes(tmp_path / "b")


def test_files_hold_what_the_manifest_says(tmp_path):
    world, manifest = generate(tmp_path, GeneratorConfig.preset("tiny"))
    days = {p.name for p in (tmp_path / "sales").iterdir()}
    assert len(days) == 120 == len(list((tmp_path / "web").glob("events_*.jsonl")))

    def csv_rows(name):
        return sum(
            len(list(csv.DictReader(open(p, encoding="utf-8"))))
            for p in (tmp_path / "sales").glob(f"*/{name}.csv")
        )

    assert csv_rows("customers") == manifest["shop_customers"]
    assert csv_rows("orders") == manifest["orders"]
    assert csv_rows("order_lines") == manifest["order_lines"]
    tickets = sum(len(json.load(open(p))["tickets"]) for p in (tmp_path / "service").glob("*.json"))
    assert tickets == manifest["tickets"]
    events = sum(1 for p in (tmp_path / "web").glob("*.jsonl") for _ in open(p))
    assert events == manifest["web_events"]
    revenue = 0
    completed = {
        r["order_id"]
        for p in (tmp_path / "sales").glob("*/orders.csv")
        for r in csv.DictReader(open(p))
        if r["status"] == "completed"
    }
    for p in (tmp_path / "sales").glob("*/order_lines.csv"):
        for r in csv.DictReader(open(p)):
            if r["order_id"] in completed:
                revenue += int(r["quantity"]) * round(float(r["unit_price"]) * 100)
    assert f"{revenue / 100:.2f}" == manifest["revenue"]


def test_revenue_is_concentrated_like_a_real_customer_base():
    world = build_world(GeneratorConfig.preset("small"))
    revenue = sorted(world.revenue_by_customer().values(), reverse=True)
    top_fifth = sum(revenue[: len(revenue) // 5]) / sum(revenue)
    assert 0.5 < top_fifth < 0.95


def test_every_source_feeds_the_pyramid():
    world = build_world(GeneratorConfig.preset("tiny"))
    manifest = world.manifest()
    assert (
        manifest["buyers"] > 0 and manifest["prospects"] > 0 and manifest["anonymous_visitors"] > 0
    )
    assert manifest["complaints"] > 0
    last = world.last_purchase_by_customer()
    cutoff = world.end_date - timedelta(days=30)
    assert any(d > cutoff for d in last.values()) and any(d <= cutoff for d in last.values())


def test_sessions_split_on_thirty_minutes_of_silence():
    events = [
        {"visitor_id": "a", "occurred_at": "2026-01-01T10:00:00+00:00"},
        {"visitor_id": "a", "occurred_at": "2026-01-01T11:29:00+01:00"},  # 29 min later
        {"visitor_id": "a", "occurred_at": "2026-01-01T11:00:01+00:00"},  # 31 min later
        {"visitor_id": "b", "occurred_at": "2026-01-01T10:00:00+00:00"},
    ]
    assert count_sessions(events) == 3
