"""Time the dbt transform: a full build of the history, then one day's incremental build.

    .venv/bin/python bench/transform_incremental.py --preset small
    .venv/bin/python bench/transform_incremental.py --preset medium --landing DIR --url URL --keep

Generates the preset (or reuses --landing if it holds it), loads the history as
of its last day into a fresh database, and times `pipeline.transform` (both dbt
stages and the value fit) on it; then adds the next day's drops
(`generate --next-day`), loads them and times the transform again. Prints both
times, their ratio, and the slowest models of each build from dbt's
run_results. --url points at a PostgreSQL server (a fresh database is created
there); otherwise the embedded one is used.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

from crm360 import ingest, pipeline
from crm360.core import schema, warehouse
from crm360.core.settings import Settings, get_settings
from crm360.synthetic.generate import GeneratorConfig, generate, generate_next_day


def _load(wh, settings: Settings, landing: Path, as_of: date, run_id: str) -> float:
    started = time.perf_counter()
    schema.migrate(wh)
    for source in ingest.SOURCES:
        pipeline.ingest_source(wh, source, run_id, landing, settings, until=as_of)
    return time.perf_counter() - started


def _transform(wh, settings: Settings, as_of: date) -> tuple[float, list[tuple[str, float]]]:
    started = time.perf_counter()
    result = pipeline.transform(wh, as_of, settings)
    return time.perf_counter() - started, list(result["slowest_models"].items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--landing", help="generated data to reuse (generated here if missing)")
    parser.add_argument("--url", help="PostgreSQL server URL (default: the embedded server)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    base = get_settings()
    with tempfile.TemporaryDirectory(prefix="crm360_bench_") as tmp:
        tmp = Path(tmp)
        landing = Path(args.landing) if args.landing else tmp / "landing"
        settings = Settings(project_dir=base.project_dir, home=tmp / "home", landing_dir=landing,
                            warehouse_url=None)
        cfg = GeneratorConfig.preset(args.preset)
        if not (landing / "manifest.json").exists():
            started = time.perf_counter()
            generate(landing, cfg)
            print(f"generated {args.preset} in {time.perf_counter() - started:.0f}s")
        manifest = json.loads((landing / "manifest.json").read_text())
        end = date.fromisoformat(manifest["end_date"])
        # the next day must extend the world the landing holds, whatever the current defaults
        recorded = {k: date.fromisoformat(v) if k in ("start_date", "end_date") else v
                    for k, v in manifest["config"].items()}
        cfg = GeneratorConfig(**{**recorded, "workers": cfg.workers})

        server = warehouse.from_url(args.url) if args.url else warehouse.start_embedded(settings)
        name = f"crm360_bench_{uuid.uuid4().hex[:8]}"
        wh = warehouse.ensure_database(server, name)
        try:
            as_of = end + timedelta(days=1)
            load_s = _load(wh, settings, landing, as_of, "bench_history")
            full_s, full_slowest = _transform(wh, settings, as_of)

            started = time.perf_counter()
            generate_next_day(landing, cfg)
            next_day_gen_s = time.perf_counter() - started
            day_load_s = _load(wh, settings, landing, as_of + timedelta(days=1), "bench_next_day")
            day_s, day_slowest = _transform(wh, settings, as_of + timedelta(days=1))
        finally:
            if not args.keep:
                warehouse.drop_database(server, name)
            if not args.url:
                warehouse.stop_embedded(settings)

    print(f"\npreset {args.preset}, {platform.node()}, {platform.processor() or platform.machine()}"
          f"{'' if not args.keep else f', database {name}'}")
    print(f"  load history              {load_s:8.1f} s")
    print(f"  transform, full history   {full_s:8.1f} s")
    print(f"  generate next day         {next_day_gen_s:8.1f} s")
    print(f"  load next day             {day_load_s:8.1f} s")
    print(f"  transform, one more day   {day_s:8.1f} s   ({day_s / full_s:.0%} of the full build)")
    for title, slowest in (("full build", full_slowest), ("one-day build", day_slowest)):
        print(f"  slowest models, {title}:")
        for model, seconds in slowest[:8]:
            print(f"    {model:45s} {seconds:7.1f} s")


if __name__ == "__main__":
    main()
