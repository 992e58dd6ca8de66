"""Time each pipeline step on one generated data set, in one process.

    .venv/bin/python bench/pipeline_steps.py --preset small [--repeat 3]

Prints seconds per step (median over repeats of a full run on a fresh database)
and each step's share of the run, including the quality gates' share. Uses the
embedded warehouse unless CRM360_WAREHOUSE_URL is set (a fresh database is
created on that server and dropped afterwards).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from crm360 import ingest, pipeline, warehouse
from crm360.generate import GeneratorConfig, generate
from crm360.settings import Settings, get_settings

STEPS = ["ingest", "gate_raw", "freshness", "dbt_build", "gate_marts", "publish", "summarize"]


def one_run(wh, settings: Settings, landing: Path, as_of, run_id: str) -> dict[str, float]:
    timings: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        return result

    pipeline.prepare(wh)
    batches = [timed("ingest", pipeline.ingest_source, wh, s, run_id, landing, settings)["batch_id"]
               for s in ingest.SOURCES]
    timed("gate_raw", pipeline.gate, wh, "raw", run_id, batches, settings, as_of)
    timed("freshness", pipeline.check_freshness, wh, run_id, as_of, settings)
    timed("dbt_build", pipeline.transform, wh, as_of, settings)
    timed("gate_marts", pipeline.gate, wh, "marts", run_id, None, settings, as_of)
    timed("publish", pipeline.publish_marts, wh, run_id)
    timed("summarize", pipeline.summarize, wh, run_id, as_of, settings=settings)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    base = get_settings()
    with tempfile.TemporaryDirectory(prefix="crm360_bench_") as tmp:
        tmp = Path(tmp)
        settings = Settings(project_dir=base.project_dir, home=tmp / "home", landing_dir=tmp / "landing",
                            warehouse_url=base.warehouse_url)
        started = time.perf_counter()
        world, manifest = generate(settings.landing_dir, GeneratorConfig.preset(args.preset))
        gen_seconds = time.perf_counter() - started
        as_of = world.end_date + timedelta(days=1)
        server = (warehouse.from_url(settings.warehouse_url) if settings.warehouse_url
                  else warehouse.start_embedded(settings))
        runs = []
        for i in range(args.repeat):
            name = f"crm360_bench_{uuid.uuid4().hex[:8]}"
            wh = warehouse.ensure_database(server, name)
            wh.ensure_schemas()
            try:
                runs.append(one_run(wh, settings, settings.landing_dir, as_of, f"bench_{i}"))
            finally:
                warehouse.drop_database(server, name)
        if not settings.warehouse_url:
            warehouse.stop_embedded(settings)

    med = {s: statistics.median(r[s] for r in runs) for s in STEPS}
    total = sum(med.values())
    print(f"crm360 pipeline steps, preset {args.preset}: {manifest['people']:,} people, "
          f"{manifest['orders']:,} orders, {manifest['web_events']:,} web events "
          f"(generated in {gen_seconds:.1f}s)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"warehouse: {'configured server' if base.warehouse_url else 'embedded pgserver'}; "
          f"median of {args.repeat} runs, each on a fresh database")
    print(f"{'step':<12}{'seconds':>10}{'share':>9}")
    for s in STEPS:
        print(f"{s:<12}{med[s]:>10.2f}{med[s] / total:>9.1%}")
    print(f"{'total':<12}{total:>10.2f}{1:>9.0%}")
    gates = med["gate_raw"] + med["gate_marts"]
    print(f"gates (raw + marts): {gates:.2f}s = {gates / total:.1%} of the run "
          f"(with freshness: {(gates + med['freshness']) / total:.1%})")


if __name__ == "__main__":
    main()
