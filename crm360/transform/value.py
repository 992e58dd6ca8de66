"""Predicted customer value: the BG/NBD and Gamma-Gamma models, fitted by maximum likelihood.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while
alive, a customer buys at a Poisson rate lambda ~ Gamma(r, alpha); after each
purchase they drop out with probability p ~ Beta(a, b). From a customer's repeat
purchases ``x`` (frequency), the time of the last one ``t_x`` (recency, measured
from the first purchase) and the time since the first purchase ``T`` (tenure),
the model gives the probability the customer is still alive and the expected
number of purchases in the next ``t``.

Gamma-Gamma (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"):
each transaction's value is Gamma(p, nu) with nu ~ Gamma(q, gamma) across
customers; fitted on the repeat buyers' mean repeat transaction value, it gives
each customer's expected average transaction value, shrinking their observed
mean towards the population's.

Both likelihoods are computed in log space with the parameters optimised as
logarithms (so they stay positive), over the distinct customer histories
weighted by how many customers share them: a customer base of 130,000 buyers
fits in well under a second.

Time unit: the warehouse step fits in **weeks** (days / 7), the unit of the
published CDNOW estimates; alpha is the only parameter that depends on the
unit, and every prediction is converted back, so predictions do not depend on it.

This module holds the models alone (arrays in, arrays out); the warehouse step that
reads the purchase summary, fits them and writes the predictions is
:mod:`crm360.transform.predictions`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

DAYS_PER_UNIT = 7.0  # the fit's time unit: weeks
DAYS_PER_YEAR = 365.25
MIN_BGNBD_CUSTOMERS = 30  # fewer buyers than this: no fit
MIN_BGNBD_REPEAT_BUYERS = 5
MIN_GAMMA_GAMMA_CUSTOMERS = 10  # repeat buyers with a positive mean repeat value
LOG_BOUND = 15.0  # log-parameters stay within [-15, 15]: 3e-7 .. 3e6

# -- parameters and fits


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


@dataclass(frozen=True)
class Fit:
    """A maximum-likelihood fit: parameters (None when none could be estimated), total log-likelihood,
    the customers it saw, whether the optimiser converged to an interior optimum, and why not."""

    model: str
    params: BgNbdParams | GammaGammaParams | None
    log_likelihood: float | None
    customers: int
    converged: bool
    message: str
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"model": self.model, "params": asdict(self.params) if self.params else None,
                "log_likelihood": self.log_likelihood, "customers": self.customers,
                "converged": self.converged, "message": self.message, "seconds": round(self.seconds, 3)}


def _as_arrays(*columns) -> list[np.ndarray]:
    """Float arrays of one shape (scalars broadcast), one value per customer."""
    try:
        arrays = np.broadcast_arrays(*(np.asarray(c, dtype=float) for c in columns))
    except ValueError as exc:
        raise ValueError(f"per-customer inputs differ in length: {exc}") from None
    if arrays[0].ndim > 1:
        raise ValueError(f"expected one value per customer (1-d), got shape {arrays[0].shape}")
    return arrays


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """Sum of the products, without BLAS: numpy's dot wakes OpenBLAS's thread pool, which on
    a busy machine costs more than the whole likelihood."""
    return float(np.multiply(u, v).sum())


@dataclass(frozen=True)
class _Histories:
    """Distinct customer histories, the number of customers sharing each (``weight``), and their
    frequencies as indexes ``at`` into the distinct frequencies ``levels`` with the weight of each
    level: terms that depend on the frequency alone are computed once per level."""

    columns: tuple[np.ndarray, ...]
    weight: np.ndarray
    levels: np.ndarray
    at: np.ndarray
    level_weight: np.ndarray

    @classmethod
    def of(cls, *columns: np.ndarray, dedupe: bool = True) -> _Histories:
        if dedupe and len(columns[0]):
            order = np.lexsort(columns[::-1])
            ordered = [c[order] for c in columns]
            new = np.ones(len(order), dtype=bool)
            new[1:] = np.any([np.diff(c) != 0 for c in ordered], axis=0)
            starts = np.flatnonzero(new)
            weight = np.diff(np.append(starts, len(order))).astype(float)
            columns = tuple(c[starts] for c in ordered)
        else:
            weight = np.ones(len(columns[0]))
        levels, at = np.unique(columns[0], return_inverse=True)
        return cls(tuple(columns), weight, levels, at, np.bincount(at, weights=weight, minlength=len(levels)))


def _minimize(objective, x0: np.ndarray, scale: float) -> tuple[optimize.OptimizeResult, bool, str]:
    """Maximise a log-likelihood over log-parameters; returns the result and whether it converged.

    BFGS on the mean log-likelihood per customer, with the analytic gradient. (Not L-BFGS-B: its
    LAPACK calls wake OpenBLAS's thread pool on every iteration, which costs 25 times the whole
    fit on a busy machine.) Outside the box |log-parameter| <= LOG_BOUND the objective is the one
    at the box's edge plus a quadratic penalty, so a line search never evaluates absurd values.
    Converged means: a finite optimum inside the box where the gradient vanishes.
    """

    def neg(v):
        inside = np.clip(v, -LOG_BOUND, LOG_BOUND)
        total, grad = objective(inside)
        outside = v - inside
        value = -total / scale + 0.5 * _dot(outside, outside)
        gradient = np.where(outside == 0, -grad / scale, 0.0) + outside
        if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
            return np.inf, np.zeros_like(v)
        return value, gradient

    result = optimize.minimize(neg, x0, jac=True, method="BFGS", options={"maxiter": 1000, "gtol": 1e-9})
    converged, message = _converged(neg, result)
    if not converged:  # one more start from where it stopped, with a derivative-free method
        retry = optimize.minimize(lambda v: neg(v)[0], result.x, method="Nelder-Mead",
                                  options={"maxiter": 4000, "xatol": 1e-10, "fatol": 1e-14})
        if retry.fun <= result.fun:
            result = retry
            converged, message = _converged(neg, result)
    result.fun = result.fun * scale
    return result, converged, message


def _finite(value: float) -> float | None:
    """A log-likelihood for the record: None rather than NaN or infinity (not JSON)."""
    return float(value) if np.isfinite(value) else None


def _converged(neg, result: optimize.OptimizeResult) -> tuple[bool, str]:
    value, gradient = neg(result.x)
    if not np.isfinite(value) or not np.all(np.isfinite(result.x)):
        return False, "the likelihood is not finite at the optimum"
    if np.any(np.abs(result.x) > LOG_BOUND - 1e-3):
        return False, "a parameter ran to its bound (the data do not identify the model)"
    if np.max(np.abs(gradient)) > 1e-5:
        return False, f"no optimum found ({result.message}; gradient {np.max(np.abs(gradient)):.1e})"
    return True, "ok"


# -- BG/NBD


def bgnbd_log_likelihood(params: BgNbdParams, frequency, recency, T) -> np.ndarray:
    """Each customer's log-likelihood (Fader, Hardie & Lee 2005, eq. 6), in log space."""
    x, t_x, T = (np.atleast_1d(a) for a in _as_arrays(frequency, recency, T))
    h = _Histories.of(x, t_x, T, dedupe=False)
    return _bgnbd_objective(np.log([params.r, params.alpha, params.a, params.b]), h)[2]


def _bgnbd_objective(log_params: np.ndarray, h: _Histories) -> tuple[float, np.ndarray, np.ndarray]:
    """Total log-likelihood, its gradient with respect to the log-parameters, and each row's
    log-likelihood: ln L = ln Gamma(r + x) - ln Gamma(r) + r ln alpha + ln B(a, b + x) - ln B(a, b)
    + ln[(alpha + T)^-(r + x) + [x > 0] a / (b + x - 1) (alpha + t_x)^-(r + x)]."""
    r, alpha, a, b = np.exp(log_params)
    x, t_x, T = h.columns
    lv, at, w, wl = h.levels, h.at, h.weight, h.level_weight
    repeat = x > 0
    log_bx1 = np.log(np.where(lv > 0, b + lv - 1, 1.0))  # b + x - 1 > 0 for x >= 1
    log_a_T = np.log(alpha + T)
    log_a_tx = np.log(alpha + t_x)
    rx = r + x
    ln_a3 = -rx * log_a_T
    # the second term relative to the first; w4 is its share of the sum
    d = np.where(repeat, (math.log(a) - log_bx1)[at] - rx * log_a_tx - ln_a3, -np.inf)
    w4 = expit(d)
    w3 = 1.0 - w4
    ln_mix = ln_a3 + np.logaddexp(0.0, d)
    by_level = gammaln(r + lv) - gammaln(r) + r * math.log(alpha) + betaln(a, b + lv) - betaln(a, b)
    rows = by_level[at] + ln_mix
    total = _dot(by_level, wl) + _dot(w, ln_mix)
    ww3, ww4 = w * w3, w * w4
    psi_abx = digamma(a + b + lv)
    d_r = _dot(digamma(r + lv) - digamma(r) + math.log(alpha), wl) - _dot(ww3, log_a_T) - _dot(ww4, log_a_tx)
    d_alpha = r / alpha * w.sum() - _dot(ww3 * rx, 1.0 / (alpha + T)) - _dot(ww4 * rx, 1.0 / (alpha + t_x))
    d_a = _dot(digamma(a + b) - psi_abx, wl) + ww4.sum() / a
    d_b = _dot(digamma(b + lv) - psi_abx - digamma(b) + digamma(a + b), wl) - _dot(ww4, np.exp(-log_bx1)[at])
    return float(total), np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b]), rows


def fit_bgnbd(frequency, recency, T) -> Fit:
    """Maximum-likelihood BG/NBD fit on repeat purchases ``frequency``, ``recency`` (time of the
    last purchase since the first) and ``T`` (time since the first purchase), in one time unit."""
    started = time.perf_counter()
    x, t_x, T = (np.atleast_1d(a) for a in _as_arrays(frequency, recency, T))
    n = len(x)
    repeat_buyers = int(np.sum(x > 0))
    if n < MIN_BGNBD_CUSTOMERS or repeat_buyers < MIN_BGNBD_REPEAT_BUYERS:
        return Fit("bgnbd", None, None, n, False,
                   f"too few buyers to fit: {n} customers, {repeat_buyers} with repeat purchases "
                   f"(need {MIN_BGNBD_CUSTOMERS} and {MIN_BGNBD_REPEAT_BUYERS})", time.perf_counter() - started)
    bad = (x < 0) | (t_x < 0) | (T < t_x) | ((x == 0) & (t_x != 0)) | ~np.isfinite(x + t_x + T)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} customers have an impossible history (need 0 <= recency <= T, "
                         "and recency = 0 when frequency = 0)")
    h = _Histories.of(x, t_x, T)
    # start: r = 1, alpha from the mean repeat rate, a = b = 1
    rate = max(x.sum(), 1.0) / max(T.sum(), 1e-9)
    result, converged, message = _minimize(lambda v: _bgnbd_objective(v, h)[:2],
                                           np.log([1.0, 1.0 / rate, 1.0, 1.0]), n)
    params = BgNbdParams(*(float(v) for v in np.exp(result.x))) if np.all(np.isfinite(result.x)) else None
    return Fit("bgnbd", params, _finite(-result.fun), n, converged, message, time.perf_counter() - started)


def _expected_from_time_zero(params: BgNbdParams, t, x, T) -> np.ndarray:
    """(a + b + x - 1) / (a - 1) * [1 - ((alpha + T) / (alpha + T + t))^(r + x)
    * 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))], the numerator of FHL eq. 10.

    Euler's transformation 2F1(A, B; C; z) = (1 - z)^(C - A - B) 2F1(C - A, C - B; C; z) turns the
    product into (1 - z)^(a - 1) 2F1(a + b - 1 - r, a - 1; a + b + x - 1; z): its upper parameters no
    longer grow with x, so the series stays accurate for heavy buyers.
    """
    r, alpha = params.r, params.alpha
    a = params.a
    if abs(a - 1.0) < 1e-7:  # removable singularity at a = 1
        a = 1.0 + 1e-7
    t = np.asarray(t, dtype=float)
    log1mz = np.log(alpha + T) - np.log(alpha + T + t)
    z = -np.expm1(log1mz)

    def numerator(b: float) -> np.ndarray:
        c = a + b + x - 1
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return c / (a - 1) * (1 - np.exp((a - 1) * log1mz) * hyp2f1(a + b - 1 - r, a - 1, c, z))

    result = numerator(params.b)
    failed = ~np.isfinite(result)
    if np.any(failed):  # c = a + b + x - 1 at a pole of 2F1 (0, -1, ...): the limit, from a nudged b
        result = np.where(failed, numerator(params.b * (1 + 1e-7)), result)
    return result


def expected_purchases(params: BgNbdParams, t) -> np.ndarray:
    """Expected repeat purchases in (0, t] of a customer who has just made their first (FHL eq. 9)."""
    t = np.asarray(t, dtype=float)
    return _expected_from_time_zero(params, t, np.zeros_like(t), np.zeros_like(t))


def _log_dead_odds(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """log of a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x), -inf when x = 0."""
    repeat = x > 0
    bx1 = np.where(repeat, params.b + x - 1, 1.0)
    return np.where(repeat, math.log(params.a) - np.log(bx1)
                    + (params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + t_x)), -np.inf)


def probability_alive(params: BgNbdParams, frequency, recency, T) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)).

    A customer without repeat purchases is alive with probability 1: in the BG/NBD a
    customer can only drop out right after a purchase.
    """
    x, t_x, T = _as_arrays(frequency, recency, T)
    return np.exp(-np.logaddexp(0.0, _log_dead_odds(params, x, t_x, T)))


def conditional_expected_purchases(params: BgNbdParams, t, frequency, recency, T) -> np.ndarray:
    """Expected purchases in (T, T + t] given the history (x, t_x, T) (FHL eq. 10)."""
    x, t_x, T = _as_arrays(frequency, recency, T)
    alive = np.exp(-np.logaddexp(0.0, _log_dead_odds(params, x, t_x, T)))
    # a dead-certain customer's expectation may round to -1e-17: an expectation of counts is >= 0
    return np.maximum(_expected_from_time_zero(params, t, x, T) * alive, 0.0)


# -- Gamma-Gamma


def _gg_objective(log_params: np.ndarray, h: _Histories) -> tuple[float, np.ndarray, np.ndarray]:
    """Total log-likelihood, gradient with respect to the log-parameters and each row's
    log-likelihood: ln Gamma(px + q) - ln Gamma(px) - ln Gamma(q) + q ln gamma + (px - 1) ln m
    + px ln x - (px + q) ln(gamma + x m)."""
    p, q, g = np.exp(log_params)
    x, m = h.columns
    lv, at, w, wl = h.levels, h.at, h.weight, h.level_weight
    px = p * x
    log_m = np.log(m)
    log_xm = log_m + np.log(x)
    log_g_xm = np.log(g + x * m)
    pl = p * lv
    by_level = gammaln(pl + q) - gammaln(pl) - gammaln(q) + q * math.log(g)
    rows = by_level[at] + px * log_xm - log_m - (px + q) * log_g_xm
    total = _dot(by_level, wl) + _dot(w * px, log_xm) - _dot(w, log_m) - _dot(w * (px + q), log_g_xm)
    psi = digamma(pl + q)
    wx = w * x
    d_p = _dot((psi - digamma(pl)) * lv, wl) + _dot(wx, log_xm - log_g_xm)
    d_q = _dot(psi - digamma(q) + math.log(g), wl) - _dot(w, log_g_xm)
    d_g = q / g * w.sum() - _dot(w * (px + q), 1.0 / (g + x * m))
    return float(total), np.array([d_p * p, d_q * q, d_g * g]), rows


def gamma_gamma_log_likelihood(params: GammaGammaParams, frequency, monetary) -> np.ndarray:
    """Each repeat buyer's log-likelihood of their mean repeat value ``monetary`` over ``frequency``
    transactions (Fader & Hardie 2013)."""
    x, m = (np.atleast_1d(a) for a in _as_arrays(frequency, monetary))
    return _gg_objective(np.log([params.p, params.q, params.gamma]), _Histories.of(x, m, dedupe=False))[2]


def fit_gamma_gamma(frequency, monetary) -> Fit:
    """Maximum-likelihood Gamma-Gamma fit on the customers with repeat purchases (frequency > 0)
    and a positive mean repeat value; other customers are ignored."""
    started = time.perf_counter()
    x, m = (np.atleast_1d(a) for a in _as_arrays(frequency, monetary))
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    n = len(x)
    if n < MIN_GAMMA_GAMMA_CUSTOMERS:
        return Fit("gamma_gamma", None, None, n, False,
                   f"too few repeat buyers to fit: {n} (need {MIN_GAMMA_GAMMA_CUSTOMERS})",
                   time.perf_counter() - started)
    h = _Histories.of(x, m)
    # start: p = 1, q = 2 (a finite population mean), gamma matching the mean value
    result, converged, message = _minimize(lambda v: _gg_objective(v, h)[:2],
                                           np.log([1.0, 2.0, float(np.mean(m))]), n)
    params = GammaGammaParams(*(float(v) for v in np.exp(result.x))) if np.all(np.isfinite(result.x)) else None
    if converged and params.q <= 1:
        converged, message = False, f"q = {params.q:.3f} <= 1: the population's mean spend is infinite"
    return Fit("gamma_gamma", params, _finite(-result.fun), n, converged, message, time.perf_counter() - started)


def expected_average_spend(params: GammaGammaParams, frequency, monetary) -> np.ndarray:
    """E(transaction value | x, mean repeat value m) = (gamma + x m) p / (p x + q - 1).

    A weighted mean of the population mean p gamma / (q - 1) and the customer's own mean;
    customers without repeat purchases (or without a value) get the population mean.
    """
    x, m = _as_arrays(frequency, monetary)
    known = (x > 0) & np.isfinite(m)
    x = np.where(known, x, 0.0)
    m = np.where(known, m, 0.0)
    return (params.gamma + x * m) * params.p / (params.p * x + params.q - 1)


# -- lifetime value


def customer_lifetime_value(bgnbd: BgNbdParams, gamma_gamma: GammaGammaParams, frequency, recency, T, monetary,
                            horizon: float, annual_discount_rate: float = 0.0,
                            days_per_unit: float = DAYS_PER_UNIT) -> np.ndarray:
    """Expected purchases in the next ``horizon`` (model time units) times the expected spend.

    With an annual discount rate, the horizon is cut into steps of about a month and each
    step's expected purchases are discounted to today from the step's midpoint:
    sum_k (E[Y(t_k)] - E[Y(t_k-1)]) * spend / (1 + rate)^(midpoint_k in years).
    """
    x, t_x, T, m = _as_arrays(frequency, recency, T, monetary)
    spend = expected_average_spend(gamma_gamma, x, m)
    if annual_discount_rate == 0 or horizon <= 0:
        return conditional_expected_purchases(bgnbd, horizon, x, t_x, T) * spend
    if annual_discount_rate <= -1:
        raise ValueError(f"annual discount rate must be > -1, got {annual_discount_rate}")
    years = horizon * days_per_unit / DAYS_PER_YEAR
    steps = max(1, math.ceil(years * 12 - 1e-9))
    edges = np.linspace(0.0, horizon, steps + 1)
    total = np.zeros_like(x)
    previous = np.zeros_like(x)
    for k in range(1, steps + 1):
        current = conditional_expected_purchases(bgnbd, edges[k], x, t_x, T)
        middle_years = (edges[k - 1] + edges[k]) / 2 * days_per_unit / DAYS_PER_YEAR
        total += np.maximum(current - previous, 0.0) / (1 + annual_discount_rate) ** middle_years
        previous = current
    return total * spend
