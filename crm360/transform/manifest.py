"""What the dbt project declares, read from dbt's manifest instead of being copied into Python.

dbt writes ``manifest.json`` when it parses a project: every model and source, its folder, its
materialisation, its documented columns and their ``meta``. crm360 reads from it:

- the marts: the models under ``models/marts/`` that dbt materialises as tables, the ones whose
  ``meta`` says ``row_count_gate: true`` compared with their published size by the marts gate;
- a mart's documented columns and their data types (what a segment filter may name);
- where personal data lives: every column tagged ``meta: {pii: ...}`` in the models' and
  sources' YAML, which the right to be forgotten (crm360.privacy) deletes by, and the columns
  named like personal data that carry no tag, which :func:`untagged` reports so a build refuses.

The tag convention (docs/privacy.md):

``pii: <kind>``
    the column holds an identifier of that kind (``email``, ``phone``, ``shop_customer_id``,
    ``visitor_id``, ``customer_key``): a row holding an erased person's identifier is deleted.
    A list names several kinds (a claim that is an e-mail or a shop id). A mapping names the kinds
    inside a JSON column, each by its key path (``{email: requester.email}``).
``pii: personal``
    personal data that is no identifier (a name, an address, a birth year, a list of e-mails):
    it leaves with its row, so its table must have an identifier column or ``erase_with``.
``pii: false``
    named like personal data, but is none (a segment's or a product's name).

Column ``country_column`` names a raw phone's country (the phone is normalised with it). Table
``meta``: ``erase_with: {parent: <source>.<table> or <model>, key: <column>}`` (rows that name
no one themselves but belong to a parent row that does: an order's lines), ``pii_key: <kind>``
(every identifier on a row belongs to the holder of the row's ``<kind>``: a row matched by any
of them adds its ``<kind>`` to the erased identifiers first).

The project is parsed (``dbt parse``, in a process of its own like every dbt invocation) into
CRM360_HOME/dbt/manifest/, under a digest of the project's files: it is parsed again only when a
file of the project changes, and read from disk, or memory, otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from crm360.core.errors import ConfigurationError
from crm360.core.settings import Settings, get_settings
from crm360.transform import dbt as dbt_process
from crm360.transform.dbt import dbt_command

log = logging.getLogger(__name__)

# the kinds of identifier a person is found by (crm360.privacy resolves a request to them)
IDENTIFIER_KINDS = ("email", "phone", "shop_customer_id", "visitor_id", "customer_key")
PERSONAL = "personal"
# where the project's files are not the project: dbt's output and installed packages
_NOT_PROJECT = {"target", "logs", "dbt_packages"}
# column names that suggest personal data: an e-mail, phone, name, address or birth date, and the
# identifiers crm360 resolves people by; each must carry a pii tag (pii: false where it is none)
PERSONAL_NAME = re.compile(
    r"^(?!.*_count$).*(^|_)(e_?mails?|phones?|mobile|(first_|last_|full_|given_|family_|sur)?names?|address(es)?|street"
    r"|postcode|zip_?code|birth(_\w+)?|date_of_birth|dob|ip_address|customer_key|visitor_ids?)($|_)")
# schema of a model folder's custom schema, where it is not the folder's name as given
PUBLISHED_SCHEMA = {"marts": "marts"}


class ManifestError(ConfigurationError):
    """The dbt project could not be parsed, or declares something crm360 cannot use."""


@dataclass(frozen=True)
class Identifier:
    """One identifier a table's rows hold: its kind, its column, and where in a JSON column."""

    kind: str
    column: str
    path: tuple[str, ...] = ()
    country_column: str | None = None

    def country(self) -> str:
        """SQL of a raw phone's country (``null``: none declared)."""
        return _quote(self.country_column) if self.country_column else "null"

    def expression(self) -> str:
        """The value's SQL: the column, or the key path's text inside a JSON column."""
        out = _quote(self.column)
        for n, key in enumerate(self.path):
            op = "->>" if n == len(self.path) - 1 else "->"
            out += f" {op} '{key}'"
        return out


@dataclass(frozen=True)
class PersonalTable:
    """A table the YAML says holds personal data, and how erasure finds a person's rows in it."""

    name: str  # the model's name, or <source>.<table>
    relation: str  # schema.table
    yaml_file: str  # the YAML file declaring it, relative to the dbt project
    materialized: str  # table, incremental, view, ephemeral; or "source"
    identifiers: tuple[Identifier, ...]
    personal: tuple[str, ...]  # columns of personal data that are no identifier
    loaded_at: str | None = None  # a source's loaded_at_field: its rows arrive by loads
    parent: tuple[str, str] | None = None  # erase_with: (parent's name, key column)
    key: str | None = None  # pii_key

    @property
    def is_source(self) -> bool:
        return self.materialized == "source"

    @property
    def holds_rows(self) -> bool:
        """Whether it stores rows of its own (views and ephemeral models show their tables' rows)."""
        return self.materialized in ("source", "table", "incremental", "snapshot", "seed")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _yaml_file(node: dict) -> str:
    """The file that declares a model's or source's columns: a model's YAML, a source's YAML."""
    return (node.get("patch_path") or "").split("://")[-1] or node["original_file_path"]


def _meta(entry: dict) -> dict:
    """An entry's meta, wherever the YAML put it (``config.meta`` since dbt 1.10, top-level before)."""
    return {**(entry.get("meta") or {}), **((entry.get("config") or {}).get("meta") or {})}


class Manifest:
    def __init__(self, data: dict, path: Path | None = None):
        self.data = data
        self.path = path
        self.models = {n["name"]: n for n in data.get("nodes", {}).values() if n.get("resource_type") == "model"}
        self.sources = {f"{s['source_name']}.{s['name']}": s for s in data.get("sources", {}).values()}

    # ------------------------------------------------------------ marts

    def marts(self) -> tuple[str, ...]:
        """The models dbt builds into the marts schema as tables (models/marts/), by name."""
        return tuple(sorted(name for name, n in self.models.items() if n["fqn"][1:2] == ["marts"]
                            and n["config"].get("materialized") in ("table", "incremental")))

    def counted_marts(self) -> tuple[str, ...]:
        """The marts whose size follows the customer base (``meta: {row_count_gate: true}``): the
        marts gate compares each with its published size."""
        return tuple(m for m in self.marts() if _meta(self.models[m]).get("row_count_gate") is True)

    def documented_columns(self, model: str) -> dict[str, str | None]:
        """A model's columns that have a description, with their data types (None where not declared)."""
        node = self.models.get(model)
        if node is None:
            raise ManifestError(f"the dbt project has no model {model}")
        return {c["name"]: c.get("data_type") for c in node.get("columns", {}).values() if c.get("description")}

    def incremental_models(self) -> dict[str, str]:
        """The incremental models (kept from build to build, a day adding to them): {name: relation}."""
        return {name: relation for name, _, relation, materialized, _ in self._entries()
                if materialized == "incremental"}

    # ------------------------------------------------------------ personal data

    def _entries(self):
        """(name, node, relation, materialized, loaded_at) of every model and source."""
        for name, node in sorted(self.models.items()):
            custom = node["config"].get("schema")
            schema = PUBLISHED_SCHEMA.get(custom, custom) if custom else node["schema"]
            yield name, node, f"{schema}.{node['alias'] or name}", node["config"].get("materialized"), None
        for name, node in sorted(self.sources.items()):
            yield name, node, f"{node['schema']}.{node['identifier'] or node['name']}", "source", \
                node.get("loaded_at_field")

    def personal_tables(self) -> list[PersonalTable]:
        """Every model and source with a column tagged as personal data, as the YAML declares it.
        Raises ManifestError naming the file and column of a tag it cannot read."""
        out = []
        for name, node, relation, materialized, loaded_at in self._entries():
            where = f"{_yaml_file(node)}: {name}"
            identifiers: list[Identifier] = []
            personal: list[str] = []
            for column in node.get("columns", {}).values():
                meta = _meta(column)
                if "pii" not in meta:
                    continue
                identifiers += _identifiers(f"{where}, column {column['name']}", column["name"], meta)
                if meta["pii"] == PERSONAL:
                    personal.append(column["name"])
            table_meta = _meta(node)
            parent = table_meta.get("erase_with")
            if parent is not None:
                if not (isinstance(parent, dict) and set(parent) == {"parent", "key"}):
                    raise ManifestError(f"{where}: erase_with needs a mapping of parent and key, not {parent!r}")
                parent = (str(parent["parent"]), str(parent["key"]))
            key = table_meta.get("pii_key")
            if key is not None and key not in {i.kind for i in identifiers}:
                raise ManifestError(f"{where}: pii_key {key!r} is none of the identifier kinds its columns hold")
            if identifiers or personal or parent:
                out.append(PersonalTable(name, relation, _yaml_file(node), materialized,
                                         tuple(identifiers), tuple(personal), loaded_at, parent, key))
        by_name = {t.name: t for t in out}
        for t in out:
            seen, at = [t.name], t
            while at.parent:
                if at.parent[0] not in by_name:
                    raise ManifestError(f"{at.yaml_file}: {at.name}: erase_with names {at.parent[0]}, which holds "
                                        "no tagged identifier")
                if at.parent[0] in seen:
                    raise ManifestError(f"{at.yaml_file}: {at.name}: erase_with goes round in a circle "
                                        f"({' -> '.join([*seen, at.parent[0]])})")
                at = by_name[at.parent[0]]
                seen.append(at.name)
        return out

    def unreachable(self) -> list[str]:
        """Tables with personal data erasure cannot find a person's rows in (no identifier, no parent)."""
        return [f"{t.yaml_file}: {t.name} holds personal data ({', '.join(t.personal)}) but no column tagged "
                f"with an identifier kind ({', '.join(IDENTIFIER_KINDS)}) and no erase_with, so erasure "
                "cannot find a person's rows in it"
                for t in self.personal_tables() if not t.identifiers and not t.parent]

    def untagged(self, actual: dict[str, list[str]] | None = None) -> list[str]:
        """Columns named like personal data that carry no pii tag, one line each naming the YAML file
        (or the SQL file, for a column the YAML does not declare). ``actual``: the columns each
        relation has in the warehouse (schema.table -> names), to find the undeclared ones too."""
        problems = []
        for name, node, relation, _, _ in self._entries():
            declared = node.get("columns", {})
            for column in sorted(set(declared) | set((actual or {}).get(relation, ()))):
                if not PERSONAL_NAME.search(column.lower()):
                    continue
                if column in declared and "pii" in _meta(declared[column]):
                    continue
                # a column the YAML does not declare is named by the model's SQL, where it comes from
                where = node["original_file_path"] if column not in declared else _yaml_file(node)
                problems.append(f"{where}: {name}.{column} is named like personal data but carries no "
                                "meta pii tag: tag it (pii: <identifier kind>, pii: personal) so erasure "
                                "reaches it, or pii: false if it is none")
        return problems


def _identifiers(where: str, column: str, meta: dict) -> list[Identifier]:
    tag = meta["pii"]
    country = meta.get("country_column")
    if tag is False or tag == PERSONAL:
        return []
    if isinstance(tag, str):
        tag = [tag]
    if isinstance(tag, list):
        pairs = [(kind, ()) for kind in tag]
    elif isinstance(tag, dict):
        pairs = [(kind, tuple(str(path).split("."))) for kind, path in tag.items()]
    else:
        raise ManifestError(f"{where}: pii must be an identifier kind, a list or mapping of them, "
                            f"{PERSONAL!r} or false, not {tag!r}")
    out = []
    for kind, path in pairs:
        if kind not in IDENTIFIER_KINDS:
            raise ManifestError(f"{where}: unknown pii kind {kind!r}; one of {', '.join(IDENTIFIER_KINDS)}, "
                                f"{PERSONAL!r} or false")
        if any(not re.fullmatch(r"\w+", p) for p in path):
            raise ManifestError(f"{where}: the JSON path of {kind} must be keys joined by dots, not {path!r}")
        out.append(Identifier(kind, column, path, country if kind == "phone" else None))
    return out


# ---------------------------------------------------------------- reading and parsing

_cache: dict[str, Manifest] = {}
_lock = threading.Lock()


def fingerprint(project_dir: Path) -> str:
    """A digest of the dbt project's files (not its output): what a parse depends on."""
    digest = hashlib.sha256()
    for path in sorted(project_dir.rglob("*")):
        rel = path.relative_to(project_dir)
        if rel.parts[0] in _NOT_PROJECT or not path.is_file():
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def manifest_dir(settings: Settings) -> Path:
    return settings.home / "dbt" / "manifest"


def load(settings: Settings | None = None) -> Manifest:
    """The manifest of the dbt project as it is now: parsed once per change of its files."""
    settings = settings or get_settings()
    project = settings.dbt_project_dir
    key = fingerprint(project)
    with _lock:
        if key in _cache:
            return _cache[key]
        path = manifest_dir(settings) / key / "manifest.json"
        if not path.exists():
            _parse(project, path)
        try:
            manifest = Manifest(json.loads(path.read_text(encoding="utf-8")), path)
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: not a dbt manifest crm360 can read ({exc}); "
                                "delete it to parse the project again") from None
        _cache[key] = manifest
        return manifest


def _parse(project: Path, path: Path) -> None:
    """``dbt parse`` into a folder of its own, the manifest then moved into place whole (two
    processes parsing at once each write their own, the same)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".parse-", dir=path.parent))
    try:
        cmd = [*dbt_command(), "parse", "--project-dir", str(project), "--profiles-dir", str(project),
               "--target-path", str(work), "--log-path", str(work)]
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"}
        log.info("parsing the dbt project for its manifest")
        proc = dbt_process.start_process(cmd, env, project)
        if proc.returncode != 0 or not (work / "manifest.json").exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise ManifestError(f"dbt parse of {project} failed (exit {proc.returncode}):\n{tail}")
        os.replace(work / "manifest.json", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def actual_columns(conn, relations: list[str]) -> dict[str, list[str]]:
    """The columns each of ``relations`` (schema.table) has in the warehouse; absent ones are left out."""
    out: dict[str, list[str]] = {}
    for schema, table, column in conn.execute(
            """select table_schema, table_name, column_name from information_schema.columns
               where table_schema || '.' || table_name = any(%s) order by ordinal_position""",
            (relations,)).fetchall():
        out.setdefault(f"{schema}.{table}", []).append(column)
    return out


def check_personal_data(conn, settings: Settings | None = None, build_schema: str | None = None) -> list[str]:
    """What keeps erasure from reaching every personal column: columns named like personal data,
    declared or in the warehouse, without a pii tag, and tables with personal data but no way to
    find a person's rows. ``build_schema``: where the marts are built (read in place of ``marts``)."""
    manifest = load(settings)
    relations = {relation: relation for _, _, relation, _, _ in manifest._entries()}
    if build_schema:
        relations = {r: (f"{build_schema}.{r.split('.', 1)[1]}" if r.startswith("marts.") else r) for r in relations}
    found = actual_columns(conn, list(relations.values()))
    actual = {r: found.get(where, []) for r, where in relations.items()}
    return manifest.untagged(actual) + manifest.unreachable()
