"""crm360's configuration: one typed model of every environment variable crm360 reads.

Each field of :class:`Settings` is the variable ``CRM360_<FIELD>`` (``PGOPTIONS`` is PostgreSQL's
own), read when a ``Settings`` is made: :func:`get_settings` reads the environment as it is at
that moment, so a changed variable counts from the next call. A value crm360 cannot use stops it
with a :class:`~crm360.core.errors.ConfigurationError` that names the variable and the value; an
empty variable counts as unset. The table in docs/configuration.md is generated from the fields
(``crm360 config reference``), so the page and the code cannot drift apart.

Not here: the ``${NAME}`` references in ``sources.yml`` (any variable the deployment chooses,
expanded by crm360.ingest.sources), and the variables crm360 sets for dbt (``CRM360_PG_*``,
``CRM360_AS_OF_DATE``...), which crm360 writes and dbt reads.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crm360.core.errors import ConfigurationError

ENV_PREFIX = "CRM360_"
WAREHOUSE_URL_ENV = "CRM360_WAREHOUSE_URL"

# The reference page's sections, in order: (title, what the page says under it).
GROUPS = {
    "paths": ("Where things are", "Relative defaults are under `CRM360_PROJECT_DIR`; `CRM360_HOME` also holds "
                                  "dbt's target, log and vars folders (`dbt/`) and the exports."),
    "loading": ("Loading", ""),
    "waiting": ("Waiting for others", ""),
    "dbt": ("dbt, alerts and roles", ""),
}


def _default_project_dir() -> Path:
    # crm360/core/settings.py -> repository root
    return Path(__file__).resolve().parents[2]


def _doc(group: str, default: str) -> dict[str, Any]:
    """What the reference page shows of a field beyond its description: its section, and its
    default as a person reads it (the model's default is often "derived from another setting")."""
    return {"group": group, "default_text": default}


def _number(name: str, kind: type, value: Any, not_a_number: str, out_of_range: str, ok) -> float | int:
    """``value`` as ``kind``, or ValueError with the message crm360 has always given for it."""
    env = ENV_PREFIX + name.upper()
    try:
        number = kind(value)
        if kind is int and isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{env} {not_a_number}, got {value!r}") from None
    if not ok(number):
        raise ValueError(f"{env} {out_of_range}, got {value!r}")
    return number


# name: (type, message when it is no number, message when it is out of range, the range)
_NUMBERS = {
    "max_bad_row_fraction": (float, "must be a number between 0 and 1", "must be between 0 and 1",
                             lambda x: 0 <= x <= 1),
    "load_workers": (int, "must be a whole number", "must be at least 1", lambda x: x >= 1),
    "max_record_bytes": (int, "must be a whole number of bytes", "must be positive", lambda x: x >= 1),
    "max_document_bytes": (int, "must be a whole number of bytes", "must be positive", lambda x: x >= 1),
    "run_lock_wait": (float, "must be a number of seconds", "must not be negative", lambda x: x >= 0),
    "migrate_wait": (float, "must be a number of seconds", "must be a number of seconds", lambda x: x == x),
    "ddl_lock_timeout": (float, *["must be a number of seconds above 0"] * 2, lambda x: x > 0),
    "ddl_lock_tries": (int, *["must be a whole number of tries, at least 1"] * 2, lambda x: x >= 1),
}


class Settings(BaseSettings):
    """Where things live and how crm360 behaves; every field overridable by its env var."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="ignore",
                                      populate_by_name=True, validate_default=False)

    # -- where things are
    warehouse_url: str | None = Field(None, description=(
        "PostgreSQL URL of the warehouse, e.g. `postgresql://user:pass@127.0.0.1:5432/crm360`"),
        json_schema_extra=_doc("paths", "unset: embedded server"))
    home: Path = Field(None, description="local state: embedded database, Airflow home, reports",
                       json_schema_extra=_doc("paths", "`.crm360/`"))
    project_dir: Path = Field(None, description=(
        "the repository root: the dbt project, the expectations, the DAGs and plugins, `sources.yml` "
        "and `segments.yml`"), json_schema_extra=_doc("paths", "the folder that holds the `crm360` package"))
    landing_dir: Path = Field(None, description="where sources drop their files",
                              json_schema_extra=_doc("paths", "`landing/`"))
    export_dir: Path | None = Field(None, description=(
        "where `crm360 segments export -o` writes; an erasure rewrites the logged exports here and no file "
        "anywhere else"), json_schema_extra=_doc("paths", "`CRM360_HOME/exports/`"))
    sources: Path | None = Field(None, description=(
        "the source configuration: where each source's records come from and their column names "
        "([docs/sources.md](sources.md))"), json_schema_extra=_doc("paths", "`sources.yml`"))
    segments: Path | None = Field(None, description="the segments file ([below](#segmentsyml))",
                                  json_schema_extra=_doc("paths", "`segments.yml`"))
    dbt_vars: Path | None = Field(None, description=(
        "a YAML file of dbt vars that override `dbt_project.yml`'s for every run: dbt gets them with the "
        "run's vars, and crm360's Python steps (the gates' tier bounds, the value model, freshness) read "
        "the same values ([below](#dbt-vars))"), json_schema_extra=_doc("paths", "unset: `dbt_project.yml`'s vars"))

    # -- loading
    max_bad_row_fraction: float = Field(0.01, description=(
        "share of malformed records a batch may have (they are quarantined) before the whole batch is "
        "taken back out"), json_schema_extra=_doc("loading", "`0.01`"))
    load_workers: int = Field(None, description="files of a source loaded at once, each on its own connection",
                              json_schema_extra=_doc("loading", "`2` (`1` on one CPU)"))
    max_record_bytes: int = Field(16 << 20, description=(
        "longest line of a CSV or JSON-lines file; a longer one fails its file, naming the line"),
        json_schema_extra=_doc("loading", "`16777216` (16 MiB)"))
    max_document_bytes: int = Field(256 << 20, description="largest JSON document file (read whole)",
                                    json_schema_extra=_doc("loading", "`268435456` (256 MiB)"))

    # -- waiting for others
    run_lock_wait: float = Field(0.0, description=(
        "seconds a run waits for a part of the warehouse another run holds before it stops, naming the holder"),
        json_schema_extra=_doc("waiting", "`0`: stop at once"))
    migrate_wait: float = Field(600.0, description=(
        "seconds `crm360 migrate` waits for runs in progress before applying revisions"),
        json_schema_extra=_doc("waiting", "`600`"))
    ddl_lock_timeout: float = Field(2.0, description=(
        "seconds one try of publish's and erasure's schema drops and renames waits for other "
        "sessions' locks"),
        json_schema_extra=_doc("waiting", "`2`"))
    ddl_lock_tries: int = Field(5, description=(
        "tries before the step fails (retryably), naming the sessions in the way"),
        json_schema_extra=_doc("waiting", "`5`"))

    # -- dbt, alerts and roles
    dbt_work_mem: str = Field("256MB", description=(
        "PostgreSQL `work_mem` for dbt's sessions (`PGOPTIONS`, if set, wins)"),
        json_schema_extra=_doc("dbt", "`256MB`"))
    pgoptions: str | None = Field(None, validation_alias="PGOPTIONS", description=(
        "PostgreSQL's own session options, handed to dbt as they are; unset, crm360 sets "
        "`-c work_mem=` from `CRM360_DBT_WORK_MEM`"), json_schema_extra=_doc("dbt", "unset"))
    alert_webhook: SecretStr | None = Field(None, description="URL that receives a JSON POST when a task fails",
                                            json_schema_extra=_doc("dbt", "unset: log only"))
    loader_password: SecretStr | None = Field(None, description=(
        "the `crm360_loader` role's password ([privacy.md](privacy.md#the-roles)): `crm360 migrate` sets it "
        "when set; crm360 connects with it as that role"), json_schema_extra=_doc("dbt", "unset: left as it is"))
    transformer_password: SecretStr | None = Field(None, description=(
        "the `crm360_transformer` role's password, likewise"), json_schema_extra=_doc("dbt", "unset: left as it is"))
    bi_reader_password: SecretStr | None = Field(None, description="the `bi_reader` role's password, likewise",
                                                 json_schema_extra=_doc("dbt", "unset: left as it is"))
    marketing_password: SecretStr | None = Field(None, description=(
        "the `marketing` role's password, likewise (the segment page and exports connect as `marketing`)"),
        json_schema_extra=_doc("dbt", "unset: left as it is"))

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError("; ".join(_message(e) for e in exc.errors())) from None

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        """The paths that default to a place under another one, and the CPU-dependent worker count."""
        data = {k: v for k, v in dict(data).items() if v is not None or k in ("warehouse_url",)}
        project = Path(data.get("project_dir") or _default_project_dir()).resolve()
        data["project_dir"] = project
        data["home"] = Path(data.get("home") or project / ".crm360").resolve()
        data["landing_dir"] = Path(data.get("landing_dir") or project / "landing").resolve()
        for key in ("export_dir", "sources", "segments", "dbt_vars"):
            if data.get(key):
                data[key] = Path(data[key]).resolve()
        data.setdefault("load_workers", min(2, os.cpu_count() or 1))
        return data

    @field_validator(*_NUMBERS, mode="before")
    @classmethod
    def _numbers(cls, value: Any, info) -> float | int:
        kind, not_a_number, out_of_range, ok = _NUMBERS[info.field_name]
        if isinstance(value, str):
            value = value.strip()
        return _number(info.field_name, kind, value, not_a_number, out_of_range, ok)

    @field_validator("warehouse_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: Any) -> Any:
        return value or None

    # -- names

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable a field is read from."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()

    def password(self, role_env: str) -> str | None:
        """The password set in ``role_env`` (``CRM360_<ROLE>_PASSWORD``), None if unset."""
        field = role_env.removeprefix(ENV_PREFIX).lower()
        secret = getattr(self, field)
        return secret.get_secret_value() if secret else None

    # -- places derived from the settings

    @property
    def exports_dir(self) -> Path:
        """Segment exports are written here and nowhere else, so that an erasure can find every one
        crm360 wrote and rewrite it; it rewrites no file outside (crm360.privacy)."""
        return self.export_dir or self.home / "exports"

    @property
    def sources_file(self) -> Path:
        return self.sources or self.project_dir / "sources.yml"

    @property
    def segments_file(self) -> Path:
        return self.segments or self.project_dir / "segments.yml"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_dir / "dbt_project"

    @property
    def expectations_dir(self) -> Path:
        return self.project_dir / "expectations"

    @property
    def dags_dir(self) -> Path:
        return self.project_dir / "dags"

    @property
    def plugins_dir(self) -> Path:
        return self.project_dir / "plugins"

    @property
    def pgdata_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def dbt_target_dir(self) -> Path:
        return self.home / "dbt" / "target"

    @property
    def dbt_vars_dir(self) -> Path:
        """The vars crm360 hands dbt, in files (crm360.transform.dbt.write_vars)."""
        return self.home / "dbt" / "vars"

    @property
    def dbt_log_dir(self) -> Path:
        return self.home / "dbt" / "logs"

    @property
    def dbt_pgoptions(self) -> str:
        """``PGOPTIONS`` for dbt's sessions: sorts and hashes over the event history fit in memory."""
        return self.pgoptions or f"-c work_mem={self.dbt_work_mem}"


class _AlertSettings(BaseSettings):
    """The webhook alone: an alert must go out when another setting is bad, which may be the very
    failure it reports."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")
    alert_webhook: SecretStr | None = Settings.model_fields["alert_webhook"]


def alert_webhook() -> str | None:
    """CRM360_ALERT_WEBHOOK, read whatever the other settings hold."""
    secret = _AlertSettings().alert_webhook
    return secret.get_secret_value() if secret else None


def _message(error: dict) -> str:
    """One validation error as crm360 words it: the variable, and what is wrong with its value."""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ValueError):
        return str(cause)
    field = str(error["loc"][0]) if error.get("loc") else "?"
    name = Settings.env_name(field) if field in Settings.model_fields else field
    return f"{name}: {error['msg']}, got {error.get('input')!r}"


def env_names() -> tuple[str, ...]:
    """Every environment variable the settings read."""
    return tuple(Settings.env_name(name) for name in Settings.model_fields)


def get_settings() -> Settings:
    """The settings as the environment has them now. Reading the environment into the model costs
    milliseconds, so the settings of the same values are made once and shared (they are frozen)."""
    names = set(env_names())  # matched regardless of case, as the model reads them
    values = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper() in names))
    return _settings_of(values, os.getcwd())  # relative paths resolve against the working directory


@lru_cache(maxsize=8)
def _settings_of(values: tuple[tuple[str, str], ...], cwd: str) -> Settings:  # the arguments: the cache's key
    return Settings()


def reference() -> str:
    """The environment-variable tables of docs/configuration.md, from the fields above."""
    out: list[str] = []
    for group, (title, note) in GROUPS.items():
        out += [f"### {title}", "", "| env var | meaning | default |", "| --- | --- | --- |"]
        for name, field in Settings.model_fields.items():
            extra = field.json_schema_extra or {}
            if extra.get("group") == group:
                out.append(f"| `{Settings.env_name(name)}` | {field.description} | {extra['default_text']} |")
        out.append("")
        if note:
            out += [note, ""]
    return "\n".join(out).rstrip("\n") + "\n"


REFERENCE_BEGIN = ("<!-- BEGIN environment reference: generated from crm360/core/settings.py by "
                   "`crm360 config reference`; edit the fields there, not this table -->")
REFERENCE_END = "<!-- END environment reference -->"


def with_reference(page: str, where: str = "the page") -> str:
    """``page`` with the text between its reference markers replaced by :func:`reference`; the
    prose around them stays as it is."""
    begin, end = page.find(REFERENCE_BEGIN), page.find(REFERENCE_END)
    if begin < 0 or end < begin:
        raise ConfigurationError(f"{where}: no reference markers ({REFERENCE_BEGIN!r} ... {REFERENCE_END!r}) "
                                 "to write the environment variables between")
    return page[:begin + len(REFERENCE_BEGIN)] + "\n\n" + reference() + "\n" + page[end:]


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:**********@{host}"))


def shown() -> list[tuple[str, str]]:
    """Each variable and the value crm360 uses (secrets masked), for ``crm360 config show``."""
    s = get_settings()
    out = []
    for name in Settings.model_fields:
        value = getattr(s, name)
        if isinstance(value, SecretStr):
            value = "**********"
        elif name == "warehouse_url" and value:
            value = _without_password(value)
        out.append((Settings.env_name(name), "(unset)" if value is None else str(value)))
    return out
