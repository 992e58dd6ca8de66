"""Load throughput and peak memory of a shaped export: a till log of generated purchases (the
``examples/till`` layout: customer number, compact date, amount in USD) read through the table's
shape (row ids, constants, dates in a time zone), one file feeding the four sales tables.

    .venv/bin/python bench/shaped_stream.py [--rows 200000] [--repeat 3] [--xlsx]

Each repetition loads the file into a fresh database with ``crm360.ingest.load_source`` in a
fresh spawned worker process and reports rows loaded per second (the four tables' rows) and the
worker's peak resident memory (the kernel's VmHWM) above that of a worker that loads nothing.
Bounded memory shows as a peak that does not grow with ``--rows``. ``--xlsx`` writes the same
records as an Excel workbook (``format: xlsx``) instead. Uses the embedded warehouse unless
CRM360_WAREHOUSE_URL is set; each database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_throughput import peak_rss_of  # noqa: E402 - the same memory figure as the load benchmark

from crm360.core import schema, warehouse  # noqa: E402
from crm360.core.settings import Settings, get_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEADER = ["CustomerNo", "Date", "Quantity", "AmountUSD", "Currency"]


def records(rows: int, seed: int = 7):
    rng = random.Random(seed)
    first = date(2026, 1, 1)
    for _ in range(rows):
        day = first + timedelta(days=rng.randrange(300))
        yield [f"C{rng.randrange(rows // 4 + 1):07d}", day.strftime("%Y%m%d"), str(rng.randrange(1, 5)),
               f"{rng.randrange(100, 50_000) / 100:.2f}", "USD"]


def write_drop(landing: Path, rows: int, xlsx: bool) -> Path:
    folder = landing / "2026-10-31"
    folder.mkdir(parents=True)
    if xlsx:
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet("purchases")
        sheet.append(HEADER)
        for record in records(rows):
            sheet.append(record)
        path = folder / "purchases.xlsx"
        book.save(path)
        return path
    path = folder / "purchases.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(",".join(HEADER) + "\n")
        for record in records(rows):
            fh.write(",".join(record) + "\n")
    return path


def write_config(path: Path, xlsx: bool) -> None:
    document = yaml.safe_load((REPO / "examples" / "till" / "sources.yml").read_text())
    for table in document["sources"]["sales"]["tables"].values():
        if xlsx:
            table["pattern"] = "*/purchases.xlsx"
            table["format"] = "xlsx"
    path.write_text(yaml.safe_dump(document))


def load(url: str, landing: str, config: str) -> tuple[int, float, int]:
    """In the worker: one load of the sales source; (rows, seconds, peak RSS)."""
    import os

    os.environ["CRM360_SOURCES"] = config
    from crm360.ingest import drops, load_source

    wh = warehouse.from_url(url)
    bindings = drops.bindings()
    started = time.perf_counter()
    result = load_source(wh, Path(landing), "sales", batch_id=f"bench.{uuid.uuid4().hex[:6]}:sales", config=bindings)
    seconds = time.perf_counter() - started
    return result.total_rows, seconds, peak_rss_of("self") or 0


def idle() -> tuple[int, float, int]:
    import crm360.ingest  # noqa: F401 - the same imports as a load

    return 0, 0.0, peak_rss_of("self") or 0


def in_worker(fn, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--xlsx", action="store_true", help="an Excel workbook instead of a CSV file")
    args = parser.parse_args(argv)
    base = get_settings()
    with tempfile.TemporaryDirectory(prefix="crm360_bench_shaped_") as tmp:
        tmp = Path(tmp)
        landing = tmp / "landing"
        path = write_drop(landing, args.rows, args.xlsx)
        size = path.stat().st_size
        config = tmp / "sources.yml"
        write_config(config, args.xlsx)
        settings = Settings(project_dir=base.project_dir, home=tmp / "home", landing_dir=landing,
                            warehouse_url=base.warehouse_url)
        server = (warehouse.from_url(settings.warehouse_url) if settings.warehouse_url
                  else warehouse.start_embedded(settings))
        try:
            baseline = in_worker(idle)[2]
            runs = []
            for _ in range(args.repeat):
                name = f"crm360_bench_{uuid.uuid4().hex[:8]}"
                wh = warehouse.ensure_database(server, name)
                try:
                    schema.migrate(wh)
                    runs.append(in_worker(load, wh.conninfo, str(landing), str(config)))
                finally:
                    warehouse.drop_database(server, name)
        finally:
            if not settings.warehouse_url:
                warehouse.stop_embedded(settings)
    rows = runs[0][0]
    seconds = statistics.median(r[1] for r in runs)
    peak = max(r[2] for r in runs) - baseline
    print(f"{path.name}: {args.rows:,} records, {size / 1e6:.1f} MB")
    print(f"rows loaded (4 tables): {rows:,}; median {seconds:.1f} s over {len(runs)}; {rows / seconds:,.0f} rows/s")
    print(f"peak RSS above an idle worker: {peak / 2**20:.1f} MiB (idle worker {baseline / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
