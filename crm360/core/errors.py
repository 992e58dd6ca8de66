"""The errors crm360 raises on purpose, and which of any error a retry can fix.

Every error crm360 raises for a reason it can name derives from :class:`Crm360Error`, whose
``retryable`` says whether running the same step again, unchanged, may succeed: a run lock
held by another run or a warehouse that cannot be reached, yes; a bad file, a failed gate, a
wrong configuration or a warehouse that needs ``crm360 migrate``, no. The CLI and the Airflow
glue both ask :func:`is_retryable`, so the two never disagree about what waiting can mend.
"""

from __future__ import annotations


class Crm360Error(RuntimeError):
    """An error crm360 raises on purpose; the message says what failed and why."""

    retryable = False


class ConfigurationError(Crm360Error, ValueError):
    """A setting, a configuration file or a run parameter crm360 cannot use."""


# What else a retry can fix: the server or the network failed, not the data or the code.
# (psycopg's OperationalError covers lost connections and server restarts; its subclasses
# for lock and serialization conflicts are the other side's transaction, not ours.)
def _transient_types() -> tuple[type[BaseException], ...]:
    import psycopg

    return (ConnectionError, TimeoutError, psycopg.OperationalError, psycopg.InterfaceError)


# Server errors no retry mends though psycopg counts them operational: a statement too complex or
# too deep for the server (class 54), a full disk and an exhausted memory (53100, 53200).
_LIMITS = ("54", "53100", "53200")


def is_retryable(exc: BaseException) -> bool:
    """Whether running the same step again, unchanged, may succeed."""
    if isinstance(exc, Crm360Error):
        return exc.retryable
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith(_LIMITS):
        return False
    return isinstance(exc, _transient_types())
