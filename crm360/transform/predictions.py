"""The customer value step: fit the models of :mod:`crm360.transform.value` on the purchase summary
and write the predictions.

``fit_and_predict`` reads ``intermediate.int_customer_purchase_summary`` (built by dbt), fits both
models, writes ``predictions.customer_value`` and records each fit in ``audit.value_model_fits``.
Too few buyers or a fit that does not converge never fails the pipeline: no predictions are
written (the dbt model shows nulls), the fit is recorded with converged = false and a warning is
logged.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from datetime import UTC, date, datetime

import numpy as np

from crm360.core.settings import Settings
from crm360.transform.value import (
    DAYS_PER_UNIT,
    Fit,
    conditional_expected_purchases,
    customer_lifetime_value,
    expected_average_spend,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
)

log = logging.getLogger(__name__)

SUMMARY = "intermediate.int_customer_purchase_summary"
PREDICTIONS = "predictions.customer_value"


def _settings_vars(settings: Settings | None) -> tuple[float, float]:
    from crm360.transform.dbt import project_vars

    project = project_vars(settings)
    horizon_days = float(project.get("clv_horizon_days", 365))
    rate = float(project.get("clv_annual_discount_rate", 0.0) or 0.0)
    if horizon_days <= 0:
        raise ValueError(f"dbt var clv_horizon_days must be positive, got {horizon_days}")
    return horizon_days, rate


def _read_summary(conn, as_of: date) -> dict[str, np.ndarray]:
    rows = conn.execute(f"""
        select customer_key, frequency::float8, recency_days::float8, tenure_days::float8,
               avg_repeat_value::float8, as_of_date
        from {SUMMARY}""").fetchall()  # noqa: S608 - fixed name
    stale = {r[5] for r in rows if r[5] != as_of}
    if stale:
        raise ValueError(f"{SUMMARY} was built as of {sorted(stale)}, not {as_of}: build it with this as_of_date")
    return {
        "customer_key": np.array([r[0] for r in rows], dtype=object),
        "frequency": np.array([r[1] for r in rows], dtype=float),
        "recency_days": np.array([r[2] for r in rows], dtype=float),
        "tenure_days": np.array([r[3] for r in rows], dtype=float),
        "avg_repeat_value": np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=float),
    }


def _copy_predictions(conn, keys: np.ndarray, columns: list[np.ndarray], as_of: date) -> None:
    """Binary COPY (psycopg's C row writer); a value that is not finite is written as null."""
    values = [np.where(np.isfinite(col), col, None).tolist() for col in columns]
    with conn.cursor().copy(f"""copy {PREDICTIONS} (customer_key, predicted_purchases, probability_alive,
            expected_order_value, predicted_clv, as_of_date) from stdin (format binary)""") as copy:  # noqa: S608
        copy.set_types(["text", "float8", "float8", "float8", "float8", "date"])
        for row in zip(keys.tolist(), *values, strict=True):
            copy.write_row((*row, as_of))


def _record_fit(conn, as_of: date, fit: Fit, fitted_at: datetime) -> None:
    conn.execute(
        """insert into audit.value_model_fits (as_of_date, model, params, log_likelihood, customers, converged,
                                                message, seconds, fitted_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (as_of_date, model) do update set params = excluded.params,
               log_likelihood = excluded.log_likelihood, customers = excluded.customers,
               converged = excluded.converged, message = excluded.message, seconds = excluded.seconds,
               fitted_at = excluded.fitted_at""",
        (as_of, fit.model, json.dumps(asdict(fit.params)) if fit.params else None, fit.log_likelihood,
         fit.customers, fit.converged, fit.message, round(fit.seconds, 3), fitted_at))


def fit_and_predict(wh, as_of: date, settings: Settings | None = None) -> dict:
    """Fit both models on the purchase summary and replace ``predictions.customer_value``.

    Idempotent for an as-of date: the predictions table holds one as-of date's predictions
    (int_customer_value joins only those of its own as_of_date) and the fit record is
    upserted per (as_of_date, model). When the BG/NBD cannot be fitted no predictions are
    written; when only the Gamma-Gamma cannot, purchases and P(alive) are written and the
    money columns are null.
    """
    started = time.perf_counter()
    horizon_days, rate = _settings_vars(settings)
    horizon = horizon_days / DAYS_PER_UNIT
    with wh.connect() as conn:
        with conn.transaction():
            data = _read_summary(conn, as_of)
            x = data["frequency"]
            t_x = data["recency_days"] / DAYS_PER_UNIT
            T = data["tenure_days"] / DAYS_PER_UNIT
            m = data["avg_repeat_value"]
            bg = fit_bgnbd(x, t_x, T)
            if bg.converged:
                gg = fit_gamma_gamma(x, m)
            else:
                gg = Fit("gamma_gamma", None, None, int(np.sum(x > 0)), False, "not fitted: the BG/NBD fit failed")
            for fit in (bg, gg):
                if not fit.converged:
                    log.warning("customer value: %s fit not usable as of %s: %s", fit.model, as_of, fit.message)
            conn.execute(f"truncate {PREDICTIONS}")  # noqa: S608 - fixed name; rolled back with the rest
            written = 0
            if bg.converged:
                purchases = conditional_expected_purchases(bg.params, horizon, x, t_x, T)
                alive = probability_alive(bg.params, x, t_x, T)
                nothing = np.full_like(x, np.nan)
                spend, clv = nothing, nothing
                if gg.converged:
                    spend = expected_average_spend(gg.params, x, m)
                    clv = customer_lifetime_value(bg.params, gg.params, x, t_x, T, m, horizon, rate)
                _copy_predictions(conn, data["customer_key"], [purchases, alive, spend, clv], as_of)
                written = len(x)
            fitted_at = datetime.now(UTC)
            for fit in (bg, gg):
                _record_fit(conn, as_of, fit, fitted_at)
    summary = {"as_of_date": as_of.isoformat(), "customers": len(x), "predictions": written,
               "time_unit_days": DAYS_PER_UNIT, "horizon_days": horizon_days, "annual_discount_rate": rate,
               "bgnbd": bg.as_dict(), "gamma_gamma": gg.as_dict(),
               "seconds": round(time.perf_counter() - started, 3)}
    log.info("customer value: %d predictions as of %s in %.2fs (bgnbd %s, gamma_gamma %s)", written, as_of,
             summary["seconds"], bg.message, gg.message)
    return summary
