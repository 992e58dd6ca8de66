"""Money has a currency: the ``currency:`` section of ``sources.yml``.

    currency:
      reporting: USD                 # the currency every mart amount is in (default EUR)
      rates: rates/usd.csv           # relative to sources.yml's folder; ${VAR} allowed

The reporting currency is configured here once: the loads read it from here, and dbt gets it as
the var ``reporting_currency`` from every run crm360 starts (crm360.pipeline.run.build_vars;
CRM360_DBT_VARS may not set it). Orders keep their own currency (``currency``, empty = the
reporting currency) and amounts; staging converts them by the rate valid on the order's day (UTC).

The rates file is a CSV with the header ``currency,valid_from,rate`` and optionally ``valid_to``:
``rate`` turns one unit of ``currency`` into the reporting currency (1 USD = 0.92 EUR: ``USD,
2025-03-01,0.92``). A rate holds from ``valid_from`` to ``valid_to`` (both days included) or, without
``valid_to``, until the day before the currency's next ``valid_from``; the last one holds on. Each sales
load reads the file, checks it (a bad row fails the load naming file, line and reason) and replaces
``raw.currency_rates`` with it; an order in another currency without a rate on its day is quarantined
("no rate for USD on 2025-03-02"). Orders in the reporting currency need no rate, nor a file.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from crm360.core.errors import ConfigurationError
from crm360.core.settings import Settings, get_settings

DEFAULT_REPORTING = "EUR"
CODE = re.compile(r"^[A-Z]{3}$")
COLUMNS = ("currency", "valid_from", "valid_to", "rate")
REQUIRED = ("currency", "valid_from", "rate")


class CurrencyConfigError(ConfigurationError):
    """The ``currency:`` section or its rates file says something crm360 cannot use; the message names
    the file, the line and the reason."""


@dataclass(frozen=True)
class Rate:
    currency: str
    valid_from: date
    valid_to: date | None
    rate: Decimal
    line: int
    # the last day it holds: valid_to, else the day before the currency's next rate, else for ever
    valid_until: date = date.max


@dataclass(frozen=True)
class CurrencyConfig:
    reporting: str = DEFAULT_REPORTING
    rates_file: Path | None = None


def load(path: Path) -> CurrencyConfig:
    """The ``currency:`` section of ``path`` (a sources.yml); the defaults without one."""
    from crm360.ingest.sources import _expand

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return CurrencyConfig()
    except yaml.YAMLError as exc:
        raise CurrencyConfigError(f"{path}: not valid YAML: {exc}") from None
    section = document.get("currency") if isinstance(document, dict) else None
    if section is None:
        return CurrencyConfig()
    where = f"{path}: currency"
    if not isinstance(section, dict):
        raise CurrencyConfigError(f"{where}: expected a mapping with reporting and rates")
    unknown = sorted(set(section) - {"reporting", "rates"})
    if unknown:
        raise CurrencyConfigError(f"{where}: unknown setting(s) {', '.join(map(str, unknown))}; "
                                  "known: reporting, rates")
    reporting = section.get("reporting", DEFAULT_REPORTING)
    if not isinstance(reporting, str) or not CODE.match(reporting):
        raise CurrencyConfigError(f"{where}.reporting: {reporting!r} is not a currency code "
                                  "(three capital letters, ISO 4217: EUR, USD, ...)")
    rates = section.get("rates")
    if rates is None:
        return CurrencyConfig(reporting)
    if not isinstance(rates, str) or not rates.strip():
        raise CurrencyConfigError(f"{where}.rates: expected the path of a CSV file")
    rates_path = Path(_expand(rates, f"{where}.rates"))
    if not rates_path.is_absolute():
        rates_path = path.parent / rates_path
    return CurrencyConfig(reporting, rates_path)


def configured(settings: Settings | None = None) -> CurrencyConfig:
    """The deployment's currency settings, from the sources.yml it uses (CRM360_SOURCES)."""
    return load((settings or get_settings()).sources_file)


def reporting_currency(settings: Settings | None = None) -> str:
    """The one reporting currency, as every Python step and (through its var) dbt read it."""
    return configured(settings).reporting


def read_rates(config: CurrencyConfig) -> list[Rate]:
    """The rates file, checked: one error for the first bad line, naming file, line and reason."""
    if config.rates_file is None:
        return []
    path = config.rates_file
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return _check(path, config.reporting, list(csv.reader(fh)))
    except FileNotFoundError:
        raise CurrencyConfigError(f"{path}: no such rates file (sources.yml currency.rates)") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CurrencyConfigError(f"{path}: not a readable CSV file ({exc})") from None


def _check(path: Path, reporting: str, records: list[list[str]]) -> list[Rate]:
    if not records:
        raise CurrencyConfigError(f"{path}: line 1: empty file; expected the header {','.join(REQUIRED)}[,valid_to]")
    header = [h.strip().lower() for h in records[0]]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        raise CurrencyConfigError(f"{path}: line 1: the header must name {', '.join(REQUIRED)} and may name valid_to"
                                  + (f"; missing {', '.join(missing)}" if missing else "")
                                  + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    rates = []
    for line, record in enumerate(records[1:], start=2):
        if not any(v.strip() for v in record):
            continue
        if len(record) != len(header):
            raise CurrencyConfigError(f"{path}: line {line}: {len(record)} fields, the header has {len(header)}")
        row = {name: value.strip() for name, value in zip(header, record, strict=True)}
        rates.append(_rate(f"{path}: line {line}", reporting, row, line))
    ordered = sorted(rates, key=lambda r: (r.currency, r.valid_from))
    out = []
    for rate, after in zip(ordered, [*ordered[1:], None], strict=True):
        nxt = after if after is not None and after.currency == rate.currency else None
        if nxt is not None and (nxt.valid_from == rate.valid_from
                                or (rate.valid_to is not None and rate.valid_to >= nxt.valid_from)):
            raise CurrencyConfigError(
                f"{path}: line {nxt.line}: {nxt.currency} from {nxt.valid_from} overlaps line {rate.line} "
                f"({rate.valid_from} to {rate.valid_to or rate.valid_from}): one rate per currency and day")
        until = rate.valid_to or (nxt.valid_from - timedelta(days=1) if nxt is not None else date.max)
        out.append(replace(rate, valid_until=until))
    return sorted(out, key=lambda r: r.line)


def _rate(where: str, reporting: str, row: dict[str, str], line: int) -> Rate:
    currency = row["currency"].upper()
    if not CODE.match(currency):
        raise CurrencyConfigError(f"{where}: currency {row['currency']!r} is not a currency code (three letters)")
    if currency == reporting:
        raise CurrencyConfigError(f"{where}: {currency} is the reporting currency; it needs no rate")

    def day(name: str) -> date | None:
        value = row.get(name, "")
        if not value and name == "valid_to":
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise CurrencyConfigError(f"{where}: {name} {value!r} is not a date (YYYY-MM-DD)") from None

    valid_from, valid_to = day("valid_from"), day("valid_to")
    if valid_to is not None and valid_to < valid_from:
        raise CurrencyConfigError(f"{where}: valid_to {valid_to} is before valid_from {valid_from}")
    try:
        rate = Decimal(row["rate"])
    except InvalidOperation:
        rate = Decimal("NaN")
    if not rate.is_finite() or rate <= 0:
        raise CurrencyConfigError(f"{where}: rate {row['rate']!r} is not a positive number")
    return Rate(currency, valid_from, valid_to, rate, line)


def store_rates(conn: psycopg.Connection, config: CurrencyConfig, source_file: str) -> int:
    """Replace ``raw.currency_rates`` with the checked rates file (in the caller's transaction:
    a build reading rates sees the old ones or the new, never none)."""
    rates = read_rates(config)
    conn.execute("delete from raw.currency_rates")
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.currency_rates (currency, valid_from, valid_to, valid_until, rate, source_file, line) "
            "values (%s, %s, %s, %s, %s, %s, %s)",
            [(r.currency, r.valid_from, r.valid_to, r.valid_until, r.rate, source_file, r.line) for r in rates])
    return len(rates)


def missing_rate_rule(reporting: str, currency: sql.Composable, ordered_at: sql.Composable
                      ) -> tuple[sql.Composable, sql.Composable]:
    """The quarantine rule of an order: (the condition a bad row meets, its reason), in SQL on the raw
    text columns. Only a valid ``ordered_at`` is judged (a bad one has a reason of its own); the day is
    the UTC date, as staging's ``ordered_date``."""
    code = sql.SQL("upper(coalesce(nullif(btrim({}), ''), {}))").format(currency, sql.Literal(reporting))
    day = sql.SQL("(({}::timestamptz at time zone 'UTC')::date)").format(ordered_at)
    # the rates under names of their own: the order's columns (currency!) must not resolve to theirs
    covered = sql.SQL(
        "exists (select from (select currency as rate_currency, valid_from as rate_from, valid_until as rate_until "
        "from raw.currency_rates) r where r.rate_currency = {code} and {day} between r.rate_from and r.rate_until)"
    ).format(code=code, day=day)
    condition = sql.SQL(
        "case when {code} = {rep} or not raw._is_valid({at}, 'timestamptz') then false else not {covered} end"
    ).format(code=code, rep=sql.Literal(reporting), at=ordered_at, covered=covered)
    reason = sql.SQL("'no rate for ' || {code} || ' on ' || {day}::text").format(code=code, day=day)
    return condition, reason
