"""The HTML crm360 shows people, rendered from the Jinja2 templates in ``templates/``.

One environment for every page (the segment browser, the run-health page and its charts):
autoescape is on for every template, so every value is escaped (the charts' macros return
markup already escaped, which the health page places as it is), and an undefined name is an
error, not an empty string. The pages load nothing and run no scripts.
"""

from __future__ import annotations

import functools

import jinja2


def number(value) -> str:
    """A count with thousands separators; nothing for a missing one."""
    return "" if value is None else f"{int(value):,}"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("crm360.serve", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = number
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
