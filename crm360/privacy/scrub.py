"""Where an erased person was quoted or exported: blanking their values out of free text (gate
samples, run records, report pages) and rewriting the logged CSV exports without their rows.
crm360.privacy.erasure calls both once a request's rows are deleted."""

from __future__ import annotations

import bisect
import csv
import hashlib
import html
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql
from psycopg.types.json import Jsonb

from crm360.privacy.requests import MIN_QUOTED_LENGTH, exists
from crm360.serve.segments import write_rows

log = logging.getLogger(__name__)

REDACTED = "[erased]"


class _Redactor:
    """Finds an erased person's values quoted in free text (gate samples and the messages built
    from them, run records, report pages) and blanks them out. Texts are compared as the
    warehouse compares them, lower-cased by PostgreSQL, not by Python; the values are looked
    for as written and as JSON, Python and HTML quote them."""

    def __init__(self, conn, values: set[str]):
        self.conn = conn
        forms: set[str] = set()
        for value in (v for v in values if len(v) >= MIN_QUOTED_LENGTH):
            quoted = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1], repr(value)[1:-1]}
            forms |= quoted | {html.escape(q) for q in quoted}
        self.needles = sorted({n for n in self.lower(sorted(forms)) if n}, key=len, reverse=True)

    def lower(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        return [r[0] for r in self.conn.execute(
            "select lower(t) from unnest(%s::text[]) with ordinality as u(t, i) order by i", (texts,)).fetchall()]

    def redact(self, texts: list[str]) -> list[str | None]:
        """Each text with the values blanked out, or None where it quotes none."""
        out: list[str | None] = []
        for text, low in zip(texts, self.lower(texts), strict=True):
            spans = sorted((start, start + len(n)) for n in self.needles for start in _finds(low, n))
            if spans and len(low) != len(text):
                # lower() changed the length (ICU maps İ to two characters): lower each character on
                # its own to learn where each one's lower-case form starts, and map the matches back
                pieces = self.lower(list(text))
                starts = [0]
                for piece in pieces:
                    starts.append(starts[-1] + len(piece))
                spans = sorted((bisect.bisect_right(starts, a) - 1, bisect.bisect_left(starts, b))
                               for n in self.needles for a, b in ((i, i + len(n)) for i in _finds("".join(pieces), n)))
            if not spans:
                out.append(None)
                continue
            parts, at = [], 0
            for start, end in spans:
                if start >= at:
                    parts += [text[at:start], REDACTED]
                at = max(at, end)
            out.append("".join(parts) + text[at:])
        return out

    def redact_json(self, document):
        """The document with every string in it redacted, and whether anything was."""
        strings: list[str] = []
        _strings(document, strings)
        redacted = dict(zip(strings, self.redact(strings), strict=True))
        changed = any(v is not None for v in redacted.values())
        return _replace(document, redacted), changed


def _finds(text: str, needle: str):
    start = text.find(needle)
    while start >= 0:
        yield start
        start = text.find(needle, start + 1)


def _strings(document, into: list[str]) -> None:
    if isinstance(document, str):
        into.append(document)
    elif isinstance(document, dict):
        for k, v in document.items():
            _strings(k, into)
            _strings(v, into)
    elif isinstance(document, list):
        for v in document:
            _strings(v, into)


def _replace(document, redacted: dict[str, str | None]):
    if isinstance(document, str):
        return redacted.get(document) or document
    if isinstance(document, dict):
        return {_replace(k, redacted): _replace(v, redacted) for k, v in document.items()}
    if isinstance(document, list):
        return [_replace(v, redacted) for v in document]
    return document


def _candidates(conn, table: str, column: str, redactor: _Redactor) -> list[tuple]:
    """(ctid, value) of the rows whose ``column`` (as text) may quote one of the values."""
    if not redactor.needles or not exists(conn, table):
        return []
    return conn.execute(sql.SQL("""select ctid::text, {col} from {table}
                                   where exists (select 1 from unnest(%s::text[]) as n
                                                 where strpos(lower({col}::text), n) > 0)""").format(
        col=sql.Identifier(column), table=sql.SQL(table)), (redactor.needles,)).fetchall()


def clear_quotes(conn, values: set[str], reports: Path) -> tuple[dict[str, int], list[str]]:
    """Blank out the person's values where runs recorded them in free text: gate samples (a sample
    row quoting them is dropped, the others kept) and observed values, the run health rows, the
    runs' summaries and failure messages, and the report pages and JSON summaries in ``reports``.
    Returns what was cleared where, and the report files that could not be read or written."""
    redactor = _Redactor(conn, values)
    cleared: dict[str, int] = {}
    for ctid, sample in _candidates(conn, "audit.gate_results", "sample", redactor):
        rows = sample if isinstance(sample, list) else [sample]
        kept = [row for row in rows if not redactor.redact_json(row)[1]]
        conn.execute("update audit.gate_results set sample = %s where ctid = %s::tid",
                     (Jsonb(kept) if kept else None, ctid))
        cleared["audit.gate_results"] = cleared.get("audit.gate_results", 0) + 1
    for table, column in (("audit.gate_results", "observed_value"), ("audit.run_health", "detail")):
        found = _candidates(conn, table, column, redactor)
        for (ctid, _), text in zip(found, redactor.redact([t for _, t in found]), strict=True):
            if text is not None:
                conn.execute(sql.SQL("update {} set {} = %s where ctid = %s::tid").format(
                    sql.SQL(table), sql.Identifier(column)), (text, ctid))
                cleared[table] = cleared.get(table, 0) + 1
    for ctid, summary in _candidates(conn, "audit.pipeline_run_history", "summary", redactor):
        document, changed = redactor.redact_json(summary)
        if changed:
            conn.execute("update audit.pipeline_run_history set summary = %s where ctid = %s::tid",
                         (Jsonb(document), ctid))
            cleared["audit.pipeline_run_history"] = cleared.get("audit.pipeline_run_history", 0) + 1
    problems = []
    for page in sorted(reports.glob("*")) if reports.is_dir() and redactor.needles else []:
        if page.suffix not in (".html", ".json") or not page.is_file() or page.is_symlink():
            continue
        try:
            text = page.read_text(encoding="utf-8")
            if page.suffix == ".json":
                document, changed = redactor.redact_json(json.loads(text))
                new = json.dumps(document, indent=2) + "\n" if changed else None
            else:
                new = redactor.redact([text])[0]
            if new is not None:
                part = page.with_name(f".{page.name}.erasing")
                part.write_text(new, encoding="utf-8")
                os.replace(part, page)
                cleared["reports"] = cleared.get("reports", 0) + 1
        except (OSError, UnicodeError, ValueError) as exc:
            problems.append(f"report {page} could not be cleared: {_why(exc)}; remove the person from it by hand")
            log.error("erasure: %s", problems[-1])
    return cleared, problems



@dataclass
class ExportScrub:
    """What rewriting the logged exports came to."""

    rows_removed: dict[str, int] = field(default_factory=dict)  # file -> rows taken out
    problems: list[str] = field(default_factory=list)  # one line per file that could not be rewritten
    not_rewritable: int = 0  # logged exports that are no file of the export folder: streams, paths elsewhere


def _export_file(destination: str, folder: Path) -> Path | None:
    """The file a logged destination names if it lies in the export folder (symbolic links
    resolved), else None: standard output, a web download, a path anywhere else. The log is
    written by the marketing role, which names the destination: it is never trusted further."""
    path = Path(destination)
    if not path.is_absolute():
        return None
    resolved = path.resolve()
    return resolved if resolved != folder and resolved.is_relative_to(folder) else None


def _without_keys(path: Path, key_hashes: set[str]) -> int:
    """Rewrite one export without the rows of the erased customers; returns the rows removed.
    Reads as it writes (an export may be large), never follows a symbolic link, and replaces the
    file only when whole."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with open(fd, encoding="utf-8", newline="") as source:
        mode = os.fstat(source.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError("not a regular file")
        reader = csv.reader(source)
        header = next(reader, None)
        if not header or "customer_key" not in header:
            return 0
        col = header.index("customer_key")
        part = path.with_name(f".{path.name}.erasing")
        part.unlink(missing_ok=True)
        removed = 0
        try:
            with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(mode)),
                      "w", encoding="utf-8", newline="") as target:
                def kept():
                    nonlocal removed
                    yield header
                    for row in reader:
                        if len(row) > col and hashlib.sha256(row[col].encode()).hexdigest() in key_hashes:
                            removed += 1
                            continue
                        yield row

                # as an export is written: a file left unneutralised (by an older crm360, by hand) comes out safe
                write_rows(target, kept())
            if removed:
                os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
    return removed


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text, so not a file crm360 wrote as it is"
    if isinstance(exc, csv.Error):
        return f"not CSV as crm360 writes it ({exc})"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def scrub_exports(conn, key_hashes: set[str], folder: Path) -> ExportScrub:
    """Rewrite the logged CSV exports that lie in the export folder without the erased customers.
    A file that cannot be read or written is reported, one line each, and does not stop the erasure."""
    out = ExportScrub()
    if not key_hashes or not exists(conn, "audit.segment_exports"):
        return out
    folder = folder.resolve()
    for (destination,) in conn.execute("""select distinct destination from audit.segment_exports
                                          where format = 'csv' and destination is not null
                                          order by destination""").fetchall():
        try:
            path = _export_file(destination, folder)
        except (OSError, RuntimeError, ValueError) as exc:  # a symbolic link loop, a name the system refuses
            out.problems.append(f"logged export {destination!r} could not be looked at: {exc}; check it by hand")
            log.error("erasure: %s", out.problems[-1])
            continue
        if path is None:
            out.not_rewritable += 1
            continue
        try:
            if not path.exists() and not path.is_symlink():
                continue  # deleted since: nothing left to rewrite
            removed = _without_keys(path, key_hashes)
        except (OSError, UnicodeError, csv.Error) as exc:
            out.problems.append(f"export {path} could not be rewritten: {_why(exc)}; remove the person from it by hand")
            log.error("erasure: %s", out.problems[-1])
            continue
        if removed:
            out.rows_removed[str(path)] = removed
            log.info("erasure: removed %d rows from export %s", removed, path)
    return out
