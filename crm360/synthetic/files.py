"""Writing the drops: each day's buffered and spooled records sorted into its files, with the planned
malformed records among them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tqdm import tqdm

from crm360.synthetic import parallel
from crm360.synthetic.config import GeneratorConfig
from crm360.synthetic.malformed import corrupt, malformed_plan
from crm360.synthetic.model import FILE_KINDS, Sink
from crm360.synthetic.text import CUSTOMER_COLUMNS, LINE_COLUMNS, ORDER_COLUMNS, PRODUCT_COLUMNS


def _day_lines(day: int, sinks: list[Sink], spool: Path | None, parts: int) -> list[str]:
    lines: list[str] = []
    for s in sinks:
        lines += s.lines.get(day, [])
    if spool is not None:
        for part in range(parts):
            path = spool / str(part) / f"{day:05d}.txt"
            if path.exists():
                lines += path.read_text(encoding="utf-8").splitlines()
                path.unlink()  # the day is about to be written: keep peak disk use near one copy
    lines.sort()
    return lines


def write_days(cfg: GeneratorConfig, landing: Path, n_days: int, only: int | None, sinks: list[Sink],
               spool: Path | None) -> None:
    """Sort each day's records into its files; days are independent, so workers share them out."""
    days = [only] if only is not None else list(range(n_days))
    parts = max(1, cfg.workers)
    with tqdm(total=len(days), disable=not parallel.show_progress(cfg.progress) or len(days) < 2, unit="day",
              desc="writing", mininterval=0.5) as bar:
        if parts == 1 or len(days) < 2 or any(s.lines for s in sinks):
            _write_some_days(cfg, landing, days, sinks, spool, bar)
            return
        counter = parallel.new_counter()
        with parallel.pool(parts, counter) as pool:
            futures = [pool.submit(_write_some_days, cfg, landing, days[p::parts], [], spool) for p in range(parts)]
            parallel.results_in_order(futures, bar, counter)


def _write_some_days(cfg: GeneratorConfig, landing: Path, days: list[int], sinks: list[Sink], spool: Path | None,
                     bar: tqdm | None = None) -> None:
    start = cfg.first_day
    for d in days:
        day = start + timedelta(days=d)
        by_kind: dict[str, list[str]] = {k: [] for k in FILE_KINDS}
        for line in _day_lines(d, sinks, spool, max(1, cfg.workers)):
            by_kind[line[0]].append(line[line.index("\t") + 1:])
        sales = landing / "sales" / day.isoformat()
        sales.mkdir(parents=True, exist_ok=True)
        if by_kind["p"]:
            _write_file(sales / "products.csv", PRODUCT_COLUMNS, by_kind["p"], [], "p")
        for kind, name, columns in (("c", "customers.csv", CUSTOMER_COLUMNS), ("o", "orders.csv", ORDER_COLUMNS),
                                    ("l", "order_lines.csv", LINE_COLUMNS)):
            plan = malformed_plan(cfg, day, kind, len(by_kind[kind]))
            _write_file(sales / name, columns, by_kind[kind], plan, kind)
        service = landing / "service"
        service.mkdir(parents=True, exist_ok=True)
        tickets = by_kind["t"]
        body = ",\n".join(tickets)
        text = (f'{{"exported_at": "{day.isoformat()}T23:59:59+00:00", "tickets": [\n{body}\n]}}\n' if tickets
                else f'{{"exported_at": "{day.isoformat()}T23:59:59+00:00", "tickets": []}}\n')
        (service / f"tickets_{day.isoformat()}.json").write_text(text, encoding="utf-8")
        web = landing / "web"
        web.mkdir(parents=True, exist_ok=True)
        plan = malformed_plan(cfg, day, "e", len(by_kind["e"]))
        _write_file(web / f"events_{day.isoformat()}.jsonl", None, by_kind["e"], plan, "e")
        parallel.advance(bar, 1)


def _write_file(path: Path, columns: tuple[str, ...] | None, payloads: list[str],
                plan: list[tuple[int, str, float]], kind: str) -> None:
    """Valid records in order, with the planned malformed records after their neighbours."""
    out: list[bytes] = [",".join(columns).encode("utf-8")] if columns else []
    if not plan:
        out += [p.encode("utf-8") for p in payloads]
    else:
        k = 0
        for r, payload in enumerate(payloads, start=1):
            out.append(payload.encode("utf-8"))
            while k < len(plan) and plan[k][0] == r:
                out.append(corrupt(kind, payload, plan[k][1], plan[k][2]))
                k += 1
    with open(path, "wb") as fh:
        if out:
            fh.write(b"\n".join(out))
            fh.write(b"\n")
