"""Time and measure the memory of each pipeline step: a full build, then one more day.

    .venv/bin/python bench/pipeline_steps.py --preset small [--repeat 3]
    .venv/bin/python bench/pipeline_steps.py --preset medium --landing DIR --repeat 1
    .venv/bin/python bench/pipeline_steps.py --presets tiny,small,medium --repeat 1

For each preset: generate the drops (or reuse --landing), then on a fresh
database run every step of a daily run as the DAGs do (load per source, raw
gate, freshness, erasures, dbt build with the value fit, marts gate, publish,
summarize) over the whole history: the full build. Then add the next day's
drops (`generate --next-day`) and run the same steps again: the one-day
incremental run. Each repetition gets a fresh database and a fresh copy of the
landing folder; figures are medians.

Printed per step: seconds, the dbt invocations it started (full build / day), and
the memory the step added (peak resident set of this process and its children,
dbt included, sampled every 20 ms, less what the process held when the step
began); the identity resolution models and the value fit are broken out of the
dbt build; the size of the drops and of the warehouse database after each run. Then
the targets issues 7 and 21 set: the one-day run against the full build (at most
10 %, stretch 5 %), the gates' share of a run, the full build against 10 minutes
(medium) and an hour (large), a day against 8 s (tiny) and 5 minutes (large), and
no one-day step's memory above the full build's. The PostgreSQL server's memory is
not in the peaks (its buffers are shared and bounded by its configuration).

Uses the embedded warehouse unless CRM360_WAREHOUSE_URL is set (a fresh
database is created on that server and dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import psutil

from crm360.core import warehouse
from crm360.core.settings import Settings, get_settings
from crm360.core.systems import SYSTEMS
from crm360.pipeline import steps
from crm360.synthetic.generate import GeneratorConfig, generate, generate_next_day
from crm360.transform import dbt

BENCH_NAMES = {"source_freshness": "freshness", "apply_erasures": "erasures"}  # shorter column heads
STEPS = [*(f"load_{s}" for s in SYSTEMS), "gate_raw",
         *(BENCH_NAMES.get(step.name, step.name) for step in steps.TRANSFORM)]
# parts of dbt_build, reported beside it
IDENTITY_MODELS = ("int_identity_nodes", "int_identity_edges", "int_identity_components", "int_identifiers_linked",
                   "int_customers_resolved")
# issue 21's targets: a full build (medium 10 minutes since issue 7, large an hour) and one day
TARGET_FULL_SECONDS = {"medium": 600, "large": 3600}
TARGET_DAY_SECONDS = {"tiny": 8, "large": 300}
DAY_SHARE, DAY_SHARE_STRETCH = 0.10, 0.05
SLOWEST = 12  # dbt models listed by their seconds in the full build plus the day


class PeakMemory:
    """Peak resident memory of this process and its children while a block runs, and how far
    it rose above what the process held when the block began (``growth``)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._me = psutil.Process()

    def _sample(self) -> int:
        total = 0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.start)

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class DbtStarts:
    """Counts the dbt processes (crm360.transform.dbt.start_process, the one place dbt is started)
    while a block runs: the fixed cost of a run is mostly dbt starting and reading its project."""

    def __init__(self):
        self.count = 0

    def __enter__(self) -> DbtStarts:
        self._real = dbt.start_process

        def counted(*args, **kwargs):
            self.count += 1
            return self._real(*args, **kwargs)

        dbt.start_process = counted
        return self

    def __exit__(self, *exc) -> None:
        dbt.start_process = self._real


def one_run(wh, settings: Settings, landing: Path, as_of: date, run_id: str) -> dict[str, tuple[float, int]]:
    """Every step of one run: {step: (seconds, peak bytes)}; plus identity and value_fit seconds,
    and the dbt invocations of each step under ``_dbt_starts``."""
    out: dict[str, tuple[float, int]] = {}
    starts: dict[str, int] = {}
    out["_dbt_starts"] = starts

    def timed(name, fn, *args, **kwargs):
        with PeakMemory() as mem, DbtStarts() as counter:
            started = time.perf_counter()
            result = fn(*args, **kwargs)
            seconds = time.perf_counter() - started
        out[name] = (seconds, mem.growth)
        starts[name] = counter.count
        return result

    # the steps as crm360.pipeline.steps declares them, each run as its Airflow task runs it
    ctx = steps.RunContext(run_id, as_of, settings=settings, landing=landing)
    batches = []
    for source in SYSTEMS:
        for step in steps.INGEST:
            if step.name == "load":
                loaded = timed(f"load_{source}", steps.execute, step.name, wh, ctx.with_(source=source))
                batches.extend(loaded["batch_ids"])
            elif step.name != "gate_raw":
                steps.execute(step.name, wh, ctx.with_(source=source))
    timed("gate_raw", steps.execute, "gate_raw", wh, ctx.with_(batch_ids=tuple(batches)))
    results = {step.name: timed(BENCH_NAMES.get(step.name, step.name), steps.execute, step.name, wh, ctx)
               for step in steps.TRANSFORM}
    built = results["dbt_build"]
    models = built["model_seconds"]
    out["identity"] = (sum(models.get(m, 0.0) for m in IDENTITY_MODELS), 0)
    out["value_fit"] = (built["value_model"]["seconds"], 0)
    # the build's one dbt process: its parse (partial parsing kept) and each stage, as it timed them
    for part, seconds in built["build_seconds"].items():
        out[f"dbt_{part}"] = (seconds or 0.0, 0)
    out["models"] = (sum(models.values()), 0)
    out["tests"] = (built["test_seconds"], 0)
    out["_models"] = models  # {model: seconds}: the slowest are printed
    out["_tests"] = built["slowest_tests"]  # {test: seconds}, the ten slowest of this run
    out["_affected"] = affected_counts(wh)
    with wh.connect() as conn:
        out["_db_bytes"] = conn.execute("select pg_database_size(current_database())").fetchone()[0]
    return out


def affected_counts(wh) -> dict[str, str]:
    """What the build's int_customers_affected held, per reason: a count of customer keys, or
    'everyone'; and the customers in customer_360, to set it against."""
    with wh.connect() as conn:
        rows = conn.execute("select reason, bool_or(customer_key is null), count(customer_key) "
                            "from intermediate.int_customers_affected group by reason order by reason").fetchall()
        customers = conn.execute("select count(*) from marts.customer_360").fetchone()[0]
    counts = {reason: ("everyone" if everyone else f"{n:,}") for reason, everyone, n in rows}
    counts["customers"] = f"{customers:,}"
    return counts


def _recorded_config(landing: Path, preset: str) -> GeneratorConfig:
    """The generator config the landing was made with, so the next day extends that world."""
    manifest = json.loads((landing / "manifest.json").read_text())
    recorded = {k: date.fromisoformat(v) if k in ("start_date", "end_date") else v
                for k, v in manifest["config"].items()}
    return GeneratorConfig(**{**recorded, "workers": GeneratorConfig.preset(preset).workers})


def bench_preset(preset: str, landing_arg: str | None, repeat: int, base: Settings, tmp: Path) -> dict:
    source = Path(landing_arg) if landing_arg else tmp / f"landing_{preset}"
    generated = None
    if not (source / "manifest.json").exists():
        started = time.perf_counter()
        generate(source, GeneratorConfig.preset(preset))
        generated = time.perf_counter() - started
    landing_bytes = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    manifest = json.loads((source / "manifest.json").read_text())
    as_of = date.fromisoformat(manifest["end_date"]) + timedelta(days=1)
    cfg = _recorded_config(source, preset)
    settings = Settings(project_dir=base.project_dir, home=tmp / "home", landing_dir=source,
                        warehouse_url=base.warehouse_url)
    server = warehouse.from_url(base.warehouse_url) if base.warehouse_url else warehouse.start_embedded(settings)
    full, day = [], []
    for i in range(repeat):
        # the next day is added to a copy: the source landing stays as it was for the next repetition
        landing = tmp / f"run_{preset}_{i}"
        shutil.copytree(source, landing, copy_function=os.link if _same_fs(source, tmp) else shutil.copy2)
        # the drops are linked, not copied; the manifest, which the next day rewrites, is a copy of its own
        (landing / "manifest.json").unlink()
        shutil.copy2(source / "manifest.json", landing / "manifest.json")
        name = f"crm360_bench_{uuid.uuid4().hex[:8]}"
        wh = warehouse.ensure_database(server, name)
        try:
            full.append(one_run(wh, settings, landing, as_of, f"bench_full_{i}"))
            print(f"{preset}, repetition {i + 1}, full build: "
                  + ", ".join(f"{k} {v[0]:.1f}s" for k, v in full[-1].items() if not k.startswith("_")), flush=True)
            started = time.perf_counter()
            generate_next_day(landing, cfg)
            next_day_gen = time.perf_counter() - started
            day.append(one_run(wh, settings, landing, as_of + timedelta(days=1), f"bench_day_{i}"))
            print(f"{preset}, repetition {i + 1}, one day: "
                  + ", ".join(f"{k} {v[0]:.1f}s" for k, v in day[-1].items() if not k.startswith("_"))
                  + f"; dbt starts {sum(day[-1]['_dbt_starts'].values())}", flush=True)
        finally:
            warehouse.drop_database(server, name)
            shutil.rmtree(landing, ignore_errors=True)
    if not base.warehouse_url:
        warehouse.stop_embedded(settings)
    return {"preset": preset, "manifest": manifest, "generated": generated, "next_day_generate": next_day_gen,
            "landing_bytes": landing_bytes,
            "full": _medians(full), "day": _medians(day), "repeat": repeat}


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def _medians(runs: list[dict]) -> dict[str, tuple[float, int]]:
    out = {k: (statistics.median(r[k][0] for r in runs), int(statistics.median(r[k][1] for r in runs)))
           for k in runs[0] if not k.startswith("_")}
    out["_models"] = {m: statistics.median(r["_models"].get(m, 0.0) for r in runs) for m in runs[0]["_models"]}
    out["_tests"] = runs[-1]["_tests"]  # the last repetition's: the slowest tests differ between runs
    out["_dbt_starts"] = runs[-1]["_dbt_starts"]  # the same in every repetition
    out["_affected"] = runs[-1]["_affected"]
    out["_db_bytes"] = runs[-1]["_db_bytes"]
    return out


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def report(result: dict, models: tuple[str, ...] = ()) -> None:
    m, full, day = result["manifest"], result["full"], result["day"]
    print(f"\n## preset {result['preset']}: {m['people']:,} people, {m['orders']:,} orders, "
          f"{m['web_events']:,} web events; median of {result['repeat']} run(s)")
    if result["generated"] is not None:
        print(f"generated in {result['generated']:.1f}s; next day generated in {result['next_day_generate']:.1f}s")
    print(f"on disk: the drops {_size(result['landing_bytes'])}; the warehouse database after the full build "
          f"{_size(full['_db_bytes'])}, after the day {_size(day['_db_bytes'])}")
    print(f"{'step':<14}{'full s':>10}{'full +MB':>10}{'day s':>10}{'day +MB':>10}{'day/full':>10}{'dbt starts':>12}")
    for step in STEPS:
        (fs, fm), (ds, dm) = full[step], day[step]
        ratio = f"{ds / fs:.1%}" if fs > 0.005 else "-"
        counts = f"{full['_dbt_starts'].get(step, 0)} / {day['_dbt_starts'].get(step, 0)}"
        print(f"{step:<14}{fs:>10.2f}{fm / 2**20:>10.0f}{ds:>10.2f}{dm / 2**20:>10.0f}{ratio:>10}{counts:>12}")
    for part in ("identity", "value_fit", "dbt_process", "dbt_parse", "dbt_stage_1", "dbt_stage_2"):
        print(f"  {part:<12}{full[part][0]:>10.2f}{'':>10}{day[part][0]:>10.2f}   (part of dbt_build)")
    # dbt runs several nodes at a time: these sums of their own seconds can exceed dbt_build's wall time
    for part in ("models", "tests"):
        print(f"  {part:<12}{full[part][0]:>10.2f}{'':>10}{day[part][0]:>10.2f}   (sum over dbt's nodes)")
    print("customers the build marked affected, per reason: full build "
          + ", ".join(f"{k} {v}" for k, v in full["_affected"].items()) + "; one day "
          + ", ".join(f"{k} {v}" for k, v in day["_affected"].items()))
    slowest = sorted(full["_models"], key=lambda m: -(full["_models"][m] + day["_models"].get(m, 0.0)))[:SLOWEST]
    print("slowest dbt models (seconds of their own, full build and one day; dbt runs several at a time):")
    for model in slowest:
        print(f"  {model:<40}{full['_models'][model]:>8.2f}{day['_models'].get(model, 0.0):>10.2f}")
    if models:
        print("named dbt models (seconds of their own, full build, one day, day / full):")
    for model in models:
        fs, ds = full["_models"].get(model), day["_models"].get(model)
        if fs is None or ds is None:
            print(f"  {model:<40}not built")
            continue
        print(f"  {model:<40}{fs:>8.2f}{ds:>10.2f}{(f'{ds / fs:.0%}' if fs > 0.005 else '-'):>10}")
    for label, run in (("full build", full), ("one day", day)):
        print(f"slowest dbt tests, {label} (seconds of their own, last repetition):")
        for test, seconds in run["_tests"].items():
            print(f"  {test[:70]:<72}{seconds:>8.2f}")
    total_full = sum(full[s][0] for s in STEPS)
    total_day = sum(day[s][0] for s in STEPS)
    counts = f"{sum(full['_dbt_starts'].values())} / {sum(day['_dbt_starts'].values())}"
    print(f"{'total':<14}{total_full:>10.2f}{'':>10}{total_day:>10.2f}{'':>10}{total_day / total_full:>10.1%}"
          f"{counts:>12}")
    gates_full = full["gate_raw"][0] + full["gate_marts"][0]
    gates_day = day["gate_raw"][0] + day["gate_marts"][0]
    print("targets:")
    share = total_day / total_full
    print(f"  one-day run at most {DAY_SHARE:.0%} of the full build (stretch {DAY_SHARE_STRETCH:.0%}): {share:.1%} "
          f"({'met, stretch too' if share <= DAY_SHARE_STRETCH else 'met' if share <= DAY_SHARE else 'missed'})")
    day_target = TARGET_DAY_SECONDS.get(result["preset"])
    if day_target:
        print(f"  one day at most {day_target} s: {total_day:.1f} s ({'met' if total_day <= day_target else 'missed'})")
    print(f"  gates under 15 % of a run: full {gates_full / total_full:.1%}, one day {gates_day / total_day:.1%} "
          f"({'met' if max(gates_full / total_full, gates_day / total_day) < 0.15 else 'missed'})")
    target = TARGET_FULL_SECONDS.get(result["preset"])
    if target:
        print(f"  full build at most {target / 60:.0f} minutes: {total_full / 60:.1f} min "
              f"({'met' if total_full <= target else 'missed'})")
    grew = [s for s in STEPS if day[s][1] > 1.25 * full[s][1] and day[s][1] > 50 * 2**20]
    print(f"  a one-day step's memory not above the full build's (+25 %, 50 MB slack): "
          f"{'met' if not grew else 'missed for ' + ', '.join(grew)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="one preset (default small)")
    parser.add_argument("--presets", default=None, help="several, comma-separated, e.g. tiny,small,medium")
    parser.add_argument("--landing", default=None, help="drops to reuse (with one preset only)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="", help="comma-separated dbt models whose seconds to print too")
    args = parser.parse_args()
    presets = (args.presets.split(",") if args.presets else [args.preset or "small"])
    if args.landing and len(presets) > 1:
        parser.error("--landing goes with one preset")

    base = get_settings()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GB, Python {platform.python_version()}; "
          f"warehouse: {'configured server' if base.warehouse_url else 'embedded pgserver'}")
    with tempfile.TemporaryDirectory(prefix="crm360_bench_") as tmp:
        for preset in presets:
            report(bench_preset(preset, args.landing, args.repeat, base, Path(tmp)),
                   tuple(m for m in args.models.split(",") if m))


if __name__ == "__main__":
    main()
