"""What a deployment expects of its data: the ``quality:`` section of ``sources.yml``.

The shipped suites (``expectations/``) say what crm360 checks; a few of their checks depend on the
company, and a suite marks each of those with ``meta.crm360.setting``:

- ``filled``: an optional column most rows should have (an e-mail, a contact address). The
  deployment says which share of rows must have it (GX ``mostly``); 0 means it is not expected
  at all (a company without e-mails), and the check is dropped.
- ``bounds``: a value range (unit prices, revenue per customer, the day's change of the customer
  base against the published marts), as ``min`` and/or ``max``.
- ``row_count``: how many rows a suite's table must have, as ``min`` and/or ``max``.

::

    quality:
      raw_sales_customers:
        filled: {email: 0}
      marts_customer_360:
        filled: {contact_email: 0}
        bounds: {revenue: {max: 50000000}}

Only marked checks can be configured, so the keys of a table and the checks that protect the
marts' contracts stay as shipped. Without a ``quality:`` section every suite runs as shipped:
the defaults are the strict ones. Errors name the file and the entry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from crm360.core.errors import ConfigurationError

if TYPE_CHECKING:
    from crm360.quality.gates import Suite

SETTINGS = ("filled", "bounds", "row_count")


class QualityConfigError(ConfigurationError):
    """The ``quality:`` section names a suite, check or value crm360 cannot use; the message names the entry."""


@dataclass(frozen=True)
class Expectations:
    """The deployment's settings: suite -> setting -> column (``None`` for a row count) -> value."""

    path: Path | None
    suites: dict[str, dict[str, dict[str | None, object]]]

    def apply(self, suite: Suite) -> Suite:
        """``suite`` with this deployment's settings in place of the shipped values."""
        settings = self.suites.get(suite.name)
        if not settings:
            return suite
        out = []
        for exp in suite.expectations:
            kind, column = marked(exp)
            if kind is None or column not in settings.get(kind, {}):
                out.append(exp)
                continue
            value = settings[kind][column]
            if kind == "filled":
                if value == 0:
                    continue  # not expected at all: no check
                exp = _with(exp, mostly=value)
            else:
                exp = _with(exp, **{f"{side}_value": v for side, v in value.items()})
            out.append(exp)
        return replace(suite, expectations=out)


NONE = Expectations(None, {})


def marked(exp: dict) -> tuple[str | None, str | None]:
    """(setting, column) of a check a deployment may configure, else (None, None)."""
    kind = ((exp.get("meta") or {}).get("crm360") or {}).get("setting")
    if kind is None:
        return None, None
    return kind, (exp.get("kwargs") or {}).get("column")


def _with(exp: dict, **kwargs) -> dict:
    exp = copy.deepcopy(exp)
    exp.setdefault("kwargs", {}).update(kwargs)
    return exp


def configurable(suites: list[Suite]) -> dict[str, dict[str, set[str | None]]]:
    """suite -> setting -> the columns (None: the row count) the suites let a deployment configure."""
    out: dict[str, dict[str, set[str | None]]] = {}
    for suite in suites:
        for exp in suite.expectations:
            kind, column = marked(exp)
            if kind is not None:
                if kind not in SETTINGS:
                    raise ValueError(f"{suite.path.name}: meta.crm360.setting {kind!r} is not one of {SETTINGS}")
                out.setdefault(suite.name, {}).setdefault(kind, set()).add(column)
    return out


def load(path: Path, suites: list[Suite]) -> Expectations:
    """Read and check the ``quality:`` section of ``path`` against the shipped ``suites`` (both stages)."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return NONE
    except yaml.YAMLError as exc:
        raise QualityConfigError(f"{path}: not valid YAML: {exc}") from None
    section = document.get("quality") if isinstance(document, dict) else None
    if section is None:
        return NONE
    if not isinstance(section, dict):
        raise QualityConfigError(f"{path}: quality: expected a mapping of suite name to settings")
    allowed = configurable(suites)
    parsed: dict[str, dict[str, dict[str | None, object]]] = {}
    for name, entry in section.items():
        where = f"{path}: quality.{name}"
        if name not in allowed:
            raise QualityConfigError(f"{where}: no configurable suite of that name; configurable: "
                                     f"{', '.join(sorted(allowed))}")
        if not isinstance(entry, dict):
            raise QualityConfigError(f"{where}: expected a mapping of {' / '.join(SETTINGS)} to values")
        for kind, value in entry.items():
            if kind not in allowed[name]:
                raise QualityConfigError(f"{where}.{kind}: {name} has no {kind!r} setting; it has "
                                         f"{', '.join(sorted(allowed[name]))}")
            parsed.setdefault(name, {})[kind] = _setting(f"{where}.{kind}", kind, value, allowed[name][kind])
    return Expectations(Path(path), parsed)


def _setting(where: str, kind: str, value: object, columns: set[str | None]) -> dict[str | None, object]:
    if kind == "row_count":
        return {None: _range(where, value, whole=True)}
    if not isinstance(value, dict):
        raise QualityConfigError(f"{where}: expected a mapping of column to value")
    out: dict[str | None, object] = {}
    for column, setting in value.items():
        if column not in columns:
            raise QualityConfigError(f"{where}.{column}: not a configurable column; configurable: "
                                     f"{', '.join(sorted(c for c in columns if c))}")
        if kind == "filled":
            if isinstance(setting, bool) or not isinstance(setting, (int, float)) or not 0 <= setting <= 1:
                raise QualityConfigError(f"{where}.{column}: the share of rows that must have a value, from 0 "
                                         f"(not expected) to 1 (every row); got {setting!r}")
            out[column] = float(setting)
        else:
            out[column] = _range(f"{where}.{column}", setting)
    return out


def _range(where: str, value: object, whole: bool = False) -> dict[str, float | int]:
    if not isinstance(value, dict) or not value or set(value) - {"min", "max"}:
        raise QualityConfigError(f"{where}: expected {{min: ..., max: ...}} (one or both); got {value!r}")
    out = {}
    for side, v in value.items():
        number_ok = isinstance(v, int) if whole else isinstance(v, (int, float))
        if isinstance(v, bool) or not number_ok or (whole and v < 0):
            kind = "a whole number of rows" if whole else "a number"
            raise QualityConfigError(f"{where}.{side}: {kind}; got {v!r}")
        out[side] = v
    if "min" in out and "max" in out and out["min"] > out["max"]:
        raise QualityConfigError(f"{where}: min {out['min']} is above max {out['max']}")
    return out
