"""crm360 command line."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from crm360.core.settings import WAREHOUSE_URL_ENV, get_settings


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _manifest(landing: Path) -> dict:
    path = landing / "manifest.json"
    if not path.exists():
        raise SystemExit(f"no generated data in {landing} (run `crm360 generate` first)")
    return json.loads(path.read_text())


def _default_as_of(landing: Path) -> date:
    """The day after the newest drop: tiers as of the morning after."""
    return date.fromisoformat(_manifest(landing)["end_date"]) + timedelta(days=1)


def cmd_generate(args) -> int:
    from crm360.synthetic.generate import PRESETS, GeneratorConfig, generate, generate_next_day

    settings = get_settings()
    landing = Path(args.landing or settings.landing_dir)
    if args.preset not in PRESETS:
        raise SystemExit(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    clean = getattr(args, "clean", False)  # `demo` generates through here without the flag
    if args.next_day:
        if not (landing / "manifest.json").exists():
            raise SystemExit(f"no generated data in {landing} to extend (run `crm360 generate` first)")
        # a landing generated with --clean stays clean
        clean = clean or _manifest(landing).get("config", {}).get("malformed_rate") == 0
    cfg = GeneratorConfig.preset(args.preset, seed=args.seed, end_date=args.end_date,
                                 malformed_rate=0.0 if clean else None)
    started = time.perf_counter()
    if args.next_day:
        manifest = generate_next_day(landing, cfg)
        print(f"added {manifest['end_date']} to {landing} in {time.perf_counter() - started:.1f}s")
    else:
        if landing.exists() and args.replace:
            shutil.rmtree(landing)
        _, manifest = generate(landing, cfg)
        print(f"generated preset {args.preset} (seed {cfg.seed}) into {landing} "
              f"in {time.perf_counter() - started:.1f}s")
    print(json.dumps({k: v for k, v in manifest.items() if k not in ("malformed", "config")}, indent=2))
    return 0


def cmd_warehouse(args) -> int:
    from crm360.core import warehouse

    settings = get_settings()
    if args.action == "stop":
        if settings.warehouse_url:
            print(f"{WAREHOUSE_URL_ENV} is set: crm360 does not manage that server")
            return 0
        print("stopped" if warehouse.stop_embedded(settings) else "not running")
        return 0
    wh = warehouse.get_warehouse(settings)
    if args.action == "url":
        print(wh.conninfo)
    elif args.action == "psql":
        print(wh.psql_command())
    else:
        print(f"ready: {wh.describe()}")
    return 0


def cmd_migrate(args) -> int:
    from crm360.core import schema
    from crm360.core.warehouse import get_warehouse

    wh = get_warehouse(get_settings())
    if args.status:
        with wh.connect() as conn:
            found = schema.current(conn)
        print(f"warehouse ({wh.describe()}): revision {found or '(none)'}; this crm360 needs {schema.head()}")
        return 0 if found == schema.head() else 1
    print(schema.migrate(wh).describe())
    return 0


# `crm360 run` and `backfill` exit with this when the marts were published but something needs a
# person: a deletion request found nobody or was refused, or an export could not be rewritten
EXIT_ATTENTION = 3


def _finished(command: str, summary) -> int:
    """The exit code of a run that published: 0, or EXIT_ATTENTION naming on stderr what needs a person."""
    lines = summary.attention()
    for line in lines:
        print(f"crm360 {command}: attention: {line}", file=sys.stderr)
    return EXIT_ATTENTION if lines else 0


def cmd_run(args) -> int:
    from crm360 import pipeline
    from crm360.core.warehouse import get_warehouse
    from crm360.serve import report

    settings = get_settings()
    as_of = args.as_of or _default_as_of(settings.landing_dir)
    run_id = args.run_id or f"cli_{as_of.isoformat()}"
    wh = get_warehouse(settings)
    summary = pipeline.run_all(as_of, run_id, wh, settings=settings)
    print(report.render(summary, wh))
    print(f"\nRun health report: {summary.report}")
    return _finished("run", summary)


def cmd_backfill(args) -> int:
    from crm360 import pipeline
    from crm360.core.warehouse import get_warehouse
    from crm360.serve import report

    if args.end < args.start:
        raise ValueError(f"backfill: end {args.end} is before start {args.start}")
    settings = get_settings()
    wh = get_warehouse(settings)
    summary = pipeline.backfill(args.start, args.end, wh, settings=settings)
    print(report.render(summary, wh))
    print(f"\nRun health report: {summary.report}")
    return _finished("backfill", summary)


def cmd_airflow_run(args) -> int:
    from crm360.pipeline import airflow_local

    settings = get_settings()
    logical = args.date or _default_as_of(settings.landing_dir)
    started = time.perf_counter()
    print(f"running DAGs {', '.join(airflow_local.PIPELINE_DAGS)} for {logical} through Airflow "
          f"(AIRFLOW_HOME={settings.airflow_home}) ...", flush=True)
    log_file = airflow_local.dags_test(logical, settings)
    print(f"DAG runs succeeded in {time.perf_counter() - started:.0f}s; Airflow log: {log_file}")
    return cmd_show(args)


def cmd_sources(args) -> int:
    """sources check: a dry run of sources.yml on the files as they are, before a run loads them."""
    from crm360.quality import preview

    settings = get_settings()
    wh = None
    if not args.no_warehouse:
        from crm360.core.warehouse import get_warehouse

        wh = get_warehouse(settings)
    as_of = date.fromisoformat(args.as_of) if args.as_of else None
    results = preview.check(settings, Path(args.landing) if args.landing else None, sample=args.sample, wh=wh,
                            as_of=as_of)
    print(preview.render(results))
    return 1 if any(r.fails for r in results) else 0


def cmd_show(args) -> int:
    from crm360 import pipeline
    from crm360.core.warehouse import get_warehouse
    from crm360.serve import report

    settings = get_settings()
    latest = settings.reports_dir / "latest.json"
    if not latest.exists():
        print("no run yet: run `crm360 demo` or `crm360 run`")
        return 1
    data = json.loads(latest.read_text())
    summary = pipeline.RunSummary(**data)
    print()
    print(report.render(summary, get_warehouse(settings)))
    print(f"\nRun health report: {summary.report or settings.reports_dir / 'latest.html'}")
    print(f"Run summary (JSON): {latest}")
    return 0


def cmd_demo(args) -> int:
    """Generate the preset's data (if not there yet), run the DAGs through Airflow, show it."""
    settings = get_settings()
    started = time.perf_counter()
    manifest_path = settings.landing_dir / "manifest.json"
    if not manifest_path.exists():
        cmd_generate(argparse.Namespace(landing=None, replace=False, preset=args.preset,
                                        seed=args.seed, end_date=None, next_day=False))
    args.date = None
    rc = cmd_airflow_run(args)
    print(f"\ncrm360 demo finished in {time.perf_counter() - started:.0f}s")
    return rc


def cmd_segments(args) -> int:
    """Validate, list or export marketing segments; exports read as the marketing role."""
    import getpass

    from crm360.core import access
    from crm360.core.warehouse import get_warehouse
    from crm360.serve import segments

    settings = get_settings()
    if args.action == "validate":
        path = Path(args.file) if args.file else None
        found = segments.load(path, settings)
        for s in found:
            print(f"{s.name}  (version {s.version}, {s.source})\n  {s.filter_sql}")
        print(f"{len(found)} segment(s) valid in {path or segments.segments_file(settings)}")
        return 0
    wh = access.as_role(get_warehouse(settings), access.MARKETING)
    if args.action == "list":
        rows = segments.list_segments(wh)
        width = max((len(r["segment_name"]) for r in rows), default=7)
        print(f"{'segment'.ljust(width)}  {'customers':>9}  {'contactable':>11}  version       as of")
        for r in rows:
            print(f"{r['segment_name'].ljust(width)}  {r['customers']:>9,}  {r['contactable_customers']:>11,}  "
                  f"{r['version']}  {r['as_of_date']}")
        return 0
    if not args.name:
        raise ValueError(f"segments {args.action}: name a segment (crm360 segments list shows them)")
    if args.action == "sql":
        print(segments.view_sql(args.name) + ";")
        return 0
    who = args.exported_by or getpass.getuser()
    if args.output and args.output != "-":
        out_path = segments.export_path(args.output, settings)
        rows = segments.export_file(wh, args.name, out_path, who)
        print(f"exported {rows:,} rows of segment {args.name} to {out_path}", file=sys.stderr)
    else:
        segments.export_csv(wh, args.name, sys.stdout, who, destination="stdout")
    return 0


def cmd_forget(args) -> int:
    """Record a deletion request; the next run removes the person from every layer."""
    import getpass

    from crm360 import privacy
    from crm360.core.warehouse import get_warehouse

    given = [(kind, getattr(args, kind)) for kind in privacy.IDENTIFIER_TYPES if getattr(args, kind)]
    if len(given) != 1:
        raise ValueError("forget: give exactly one of --email, --phone, --shop-customer-id, --visitor-id, "
                         "--customer-key")
    kind, value = given[0]
    settings = get_settings()
    wh = get_warehouse(settings)
    request_id, found = privacy.record_request(wh, kind, value, args.requested_by or getpass.getuser(),
                                               args.reason, settings)
    if found.customers is None:
        named = "no marts are published yet: the first run that publishes them looks it up"
    elif found.customers == 0:
        named = "nobody yet"
        print(f"crm360 forget: warning: no customer in the published marts has this {kind.replace('_', ' ')}; "
              f"the next run looks again and reports request {request_id} as not_found if it still names "
              f"nobody (check it, or {privacy.INSTEAD})", file=sys.stderr)
    else:
        named = f"{found.customers} customer(s) in the published marts"
    print(f"deletion request {request_id} recorded ({kind}, kept only as a digest; it names {named}); the next run "
          "removes them from raw, staging, the marts and the exports in the export folder")
    return 0


def cmd_personal_data(args) -> int:
    """List where the dbt project's tags say personal data lives; --check: refuse (exit 1) if a column
    named like personal data, in the YAML or in the published warehouse, carries no tag."""
    from crm360.core.warehouse import get_warehouse
    from crm360.transform import manifest

    settings = get_settings()
    for table in manifest.load(settings).personal_tables():
        found = ", ".join([f"{i.column}{'.' + '.'.join(i.path) if i.path else ''} ({i.kind})"
                           for i in table.identifiers] + [f"{c} (personal)" for c in table.personal])
        parent = f"; with {table.parent[0]} by {table.parent[1]}" if table.parent else ""
        print(f"{table.relation:<50} {table.materialized:<12} {found}{parent}")
    if not args.check:
        return 0
    with get_warehouse(settings).connect() as conn:
        problems = manifest.check_personal_data(conn, settings)
    for line in problems:
        print(f"crm360 personal-data: {line}", file=sys.stderr)
    return 1 if problems else 0


def cmd_docs(args) -> int:
    """Generate the dbt docs site from the warehouse; print where it is, or serve it."""
    from crm360.core.warehouse import get_warehouse
    from crm360.serve import docs

    settings = get_settings()
    if args.no_generate:
        site = docs.DocsSite(docs.docs_dir(settings))
        if not site.index.exists():
            raise ValueError(f"no docs in {site.target} yet: run `crm360 docs` without --no-generate")
    else:
        site = docs.generate(get_warehouse(settings), settings)
    if not args.serve:
        print(f"dbt docs: {site.static_page}  (one file: open it in a browser)")
        print(f"site folder: {site.target}  (`crm360 docs --serve` serves it)")
        return 0
    httpd = docs.server(site, args.host, args.port)
    print(f"serving dbt docs on http://{args.host}:{httpd.server_address[1]}/  (Ctrl-C stops)", flush=True)
    return _serve_until_interrupted(httpd)


def _serve_until_interrupted(httpd) -> int:
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def cmd_serve(args) -> int:
    """The read-only segment browser for marketing, reading as the marketing role."""
    from crm360.core import access
    from crm360.core.warehouse import get_warehouse
    from crm360.serve import web

    wh = access.as_role(get_warehouse(get_settings()), access.MARKETING)
    httpd = web.make_server(wh, args.host, args.port)
    print(f"segments on http://{args.host}:{httpd.server_address[1]}/  (read-only, as role {access.MARKETING}; "
          "Ctrl-C stops)", flush=True)
    return _serve_until_interrupted(httpd)


def cmd_config(args) -> int:
    """The configuration: the values in use, or the reference table of docs/configuration.md."""
    from crm360.core import settings as config

    if args.action == "show":
        for name, value in config.shown():
            print(f"{name}={value}")
        return 0
    page = Path(args.page) if args.page else get_settings().project_dir / "docs" / "configuration.md"
    text = page.read_text(encoding="utf-8")
    updated = config.with_reference(text, str(page))
    if updated == text:
        print(f"{page}: the environment reference is up to date")
        return 0
    if args.check:
        print(f"{page}: the environment reference is out of date; run `crm360 config reference`", file=sys.stderr)
        return 1
    page.write_text(updated, encoding="utf-8")
    print(f"{page}: environment reference written")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm360",
        description="Customer-360 warehouse pipeline: load sales, service and web records into "
                    "PostgreSQL, resolve identities, build the customer 360 and pyramid marts.",
        epilog=f"Warehouse: set {WAREHOUSE_URL_ENV} to use a PostgreSQL server; unset, crm360 "
               "runs an embedded one under .crm360/pgdata.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write synthetic source drops (deterministic by seed)")
    p.add_argument("--preset", default="small",
                   help="data size: tiny, small (default), medium (~100k customers), large (~1M customers)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 42)")
    p.add_argument("--end-date", type=_date, default=None, help="last day of history")
    p.add_argument("--landing", default=None, help="output folder (default: landing/)")
    p.add_argument("--replace", action="store_true", help="delete the folder first")
    p.add_argument("--clean", action="store_true",
                   help="no malformed records (for benchmarks that compare with psql \\copy, "
                        "which stops at the first one)")
    p.add_argument("--next-day", action="store_true",
                   help="add the day after the landing's last day: its new and changed records only "
                        "(same preset and seed as the landing was generated with)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("migrate", help="create or upgrade the warehouse's schema (safe to repeat, and to run "
                                      "from several processes at once)")
    p.add_argument("--status", action="store_true", help="only show the warehouse's revision and the code's")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("warehouse", help="start, stop or locate the warehouse")
    p.add_argument("action", choices=["start", "stop", "url", "psql"])
    p.set_defaults(func=cmd_warehouse)

    p = sub.add_parser("run", help="run the whole pipeline in this process (no Airflow)")
    p.add_argument("--as-of", type=_date, default=None, help="tier date (default: day after data)")
    p.add_argument("--run-id", default=None)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("airflow-run", help="run the ingest DAGs, then the transform DAG, through Airflow "
                                          "(`airflow dags test`)")
    p.add_argument("--date", type=_date, default=None, help="logical date (default: day after data)")
    p.set_defaults(func=cmd_airflow_run)

    p = sub.add_parser("backfill", help="load history day by day, then build and publish once (no Airflow)")
    p.add_argument("--from", dest="start", type=_date, required=True, help="first day (as-of date) to load")
    p.add_argument("--to", dest="end", type=_date, required=True, help="last day (as-of date), inclusive")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("demo", help="generate data, run the DAGs through Airflow, show the result")
    p.add_argument("--preset", default="small")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("segments", help="marketing segments: validate segments.yml, list sizes, export a list")
    p.add_argument("action", choices=["validate", "list", "export", "sql"],
                   help="validate: check segments.yml; list: published sizes; export: a segment as CSV "
                        "(logged in audit.segment_exports); sql: the view to query a segment with")
    p.add_argument("name", nargs="?", help="segment name (export, sql)")
    p.add_argument("-o", "--output", default=None,
                   help="CSV file in the export folder (CRM360_EXPORT_DIR, default .crm360/exports/; a relative "
                        "name goes into it), or - for standard output (the default)")
    p.add_argument("--file", default=None, help="segments file to validate (default: segments.yml)")
    p.add_argument("--exported-by", default=None, help="who the export is for (default: the OS user)")
    p.set_defaults(func=cmd_segments)

    p = sub.add_parser("forget", help="the right to be forgotten: remove a person from every layer at the next run")
    p.add_argument("--email")
    p.add_argument("--phone", help="in international form, e.g. +31201234567")
    p.add_argument("--shop-customer-id", dest="shop_customer_id")
    p.add_argument("--visitor-id", dest="visitor_id")
    p.add_argument("--customer-key", dest="customer_key", help="a customer_360 key")
    p.add_argument("--reason", default=None, help="e.g. the ticket of the request")
    p.add_argument("--requested-by", default=None, help="who recorded it (default: the OS user)")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("personal-data", help="where the dbt project's pii tags say personal data lives, which "
                                             "erasure deletes from")
    p.add_argument("--check", action="store_true", help="exit 1, naming file and column, if a column named like "
                                                        "personal data (YAML or published warehouse) has no tag")
    p.set_defaults(func=cmd_personal_data)

    p = sub.add_parser("docs", help="generate the dbt docs of the published marts; print the page or serve it")
    p.add_argument("--serve", action="store_true", help="serve the site over HTTP until Ctrl-C")
    p.add_argument("--port", type=int, default=8081, help="port to serve on (default 8081)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--no-generate", action="store_true", help="serve or show the docs generated last time")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("serve", help="read-only web page where marketing browses segments and downloads lists")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help="the configuration: show the values in use, or write the environment "
                                     "reference of docs/configuration.md from the settings model")
    p.add_argument("action", choices=["show", "reference"])
    p.add_argument("--check", action="store_true", help="reference: only say whether the page is up to date "
                                                        "(exit 1 if not)")
    p.add_argument("--page", default=None, help="reference: the page (default docs/configuration.md)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("sources", help="check sources.yml on a sample of each table: the first rows after mapping, "
                       "what a load would quarantine, which raw gate checks would fail (exit 1 if a run would)")
    p.add_argument("action", choices=["check"])
    p.add_argument("--landing", default=None, help="where the drops are (default: CRM360_LANDING_DIR)")
    p.add_argument("--sample", type=int, default=1000, help="records read per table (default 1000)")
    p.add_argument("--as-of", default=None, help="the run date the raw gates check against (default: today, UTC)")
    p.add_argument("--no-warehouse", action="store_true",
                   help="read the files only: no value checks in SQL, no raw gates")
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser("show", help="print what the latest run built")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from crm360.core.errors import Crm360Error

    try:
        return args.func(args)
    except (Crm360Error, ValueError) as exc:  # a reason crm360 can name: one line, no traceback
        print(f"crm360 {args.command}: error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(note, file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of our output went away (crm360 ... | head): not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
