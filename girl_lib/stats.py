"""Intervals, paired tests and verdicts: how the kit says whether an effect is real.

A rate without an interval is not a result, and neither is a difference between two arms
without a paired test. Everything here delegates to ``scipy.stats``:

* :func:`rate` — a proportion with its 95 % Wilson interval (``binomtest(...).proportion_ci``);
* :func:`paired_difference` — the difference of the means of two arms measured on the *same*
  seekers (or users): a paired bootstrap interval (``scipy.stats.bootstrap(paired=True)``) and a
  p-value: the exact McNemar test when both outcomes are yes/no (a binomial test on the
  discordant pairs), the Wilcoxon signed-rank test otherwise;
* :func:`cluster_bootstrap` — an interval for any metric computed over groups of rows (AUC,
  LogLoss over the applications of resampled seekers; HR@K, NDCG@K over resampled users);
* :func:`verdict` — "reproduced", "not reproduced" or "inconclusive", computed from an interval;
* :func:`detectable_difference` — the smallest difference of two rates that n paired units
  detect with 80 % power: what an evaluation of that size can and cannot see.

Bootstrap intervals are seeded, so a run reproduces its own figures exactly.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
N_RESAMPLES = 2000
VERDICTS = ("reproduced", "not reproduced", "inconclusive")


def rate(successes: int, n: int, confidence: float = CONFIDENCE) -> dict:
    """``{"rate", "k", "n", "ci": [lo, hi]}``: a proportion with its Wilson score interval.

    Wilson rather than the normal approximation: it stays inside [0, 1] and keeps its coverage
    for small n and for rates near 0 or 1 (Brown, Cai and DasGupta, 2001). ``n = 0`` gives
    ``None`` for the rate and the interval.
    """
    k, n = int(successes), int(n)
    if n == 0:
        return {"rate": None, "k": 0, "n": 0, "ci": [None, None]}
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return {"rate": k / n, "k": k, "n": n, "ci": [float(ci.low), float(ci.high)]}


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value for paired yes/no outcomes of arms ``a`` and ``b``.

    Only the discordant pairs carry information: under "no difference" a pair where exactly
    one arm says yes is equally likely to be (yes, no) or (no, yes), so their count is
    Binomial(discordant, 1/2). No discordant pair: p = 1.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need equal lengths, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.isin(x, (0, 1)).all())


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int = 0,
                      confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES) -> dict:
    """``mean(a) - mean(b)`` over paired units, with its bootstrap CI, n and a paired p-value.

    ``a[i]`` and ``b[i]`` belong to the same seeker (or user). The interval resamples units,
    keeping each pair together (percentile bootstrap, ``scipy.stats.bootstrap(paired=True)``).
    The test: exact McNemar for yes/no outcomes, else the Wilcoxon signed-rank test.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-d arrays of equal length, got {a.shape} and {b.shape}")
    n = len(a)
    out = {"diff": float(a.mean() - b.mean()) if n else None, "n": n, "ci": [None, None], "p_value": None,
           "test": None}
    if n < 2:
        return out
    d = a - b
    if np.all(d == d[0]):  # every pair differs by the same amount: the interval is that point
        out["ci"] = [float(d[0]), float(d[0])]
    else:
        res = sps.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), paired=True,
                            vectorized=True, confidence_level=confidence, n_resamples=n_resamples,
                            method="percentile", random_state=np.random.default_rng(seed))
        out["ci"] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    if _is_binary(a) and _is_binary(b):
        out["test"], out["p_value"] = "mcnemar_exact", mcnemar_exact(a.astype(bool), b.astype(bool))
    elif np.all(d == 0):
        out["test"], out["p_value"] = "wilcoxon", 1.0
    else:
        out["test"], out["p_value"] = "wilcoxon", float(sps.wilcoxon(a, b).pvalue)
    return out


def cluster_bootstrap(metric: Callable[..., float | None], *groups: Sequence, seed: int = 0,
                      confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                      null: float | None = None) -> dict:
    """``{"value", "ci", "n_groups"}`` for ``metric(rows, ...)``, resampling whole groups.

    ``groups[i]`` names the unit row ``i`` belongs to (a seeker for AUC over applications, a
    user for HR@K). Rows of one unit are not independent, so the bootstrap draws units with
    replacement and takes all their rows. Several group arrays are independent samples (e.g.
    the test and the cold-start seekers), each resampled on its own, and ``metric`` receives one
    row-index array per sample. A resample where the metric is undefined (``None`` or NaN, e.g.
    an AUC with one class) is dropped and counted; with more than half of them undefined, or
    fewer than 2 units in a sample, there is no interval. With ``null`` set, ``p_value`` is the
    two-sided bootstrap p-value of "the metric equals ``null``" (twice the smaller share of
    resamples on either side of it).
    """
    samples = []
    for g in groups:
        units, inverse = np.unique(np.asarray(g), return_inverse=True)
        samples.append([np.flatnonzero(inverse == u) for u in range(len(units))])
    value = metric(*[np.arange(len(g)) for g in groups])
    n_groups = [len(rows) for rows in samples]
    out = {"value": None if value is None else float(value), "ci": [None, None],
           "n_groups": n_groups[0] if len(n_groups) == 1 else n_groups}
    if null is not None:
        out["p_value"] = None
    if min(n_groups) < 2 or value is None:
        return out

    def stat(*unit_idx):
        rows = [np.concatenate([sample[int(u)] for u in idx]) for sample, idx in zip(samples, unit_idx)]
        v = metric(*rows)
        return np.nan if v is None else float(v)

    with warnings.catch_warnings():  # NaN resamples are expected here: handled below
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        res = sps.bootstrap(tuple(np.arange(n) for n in n_groups), stat, paired=False, vectorized=False,
                            confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                            random_state=np.random.default_rng(seed))
    # scipy's percentile interval is NaN as soon as one resample is; take the percentiles of the
    # resamples where the metric is defined, and say how many were dropped.
    dist = np.asarray(res.bootstrap_distribution, float)
    ok = dist[~np.isnan(dist)]
    out["undefined_resamples"] = int(len(dist) - len(ok))
    if len(ok) >= 0.5 * len(dist):
        tail = 100 * (1 - confidence) / 2
        out["ci"] = [float(np.percentile(ok, tail)), float(np.percentile(ok, 100 - tail))]
        if null is not None:
            out["p_value"] = float(min(1.0, 2 * min((ok <= null).mean(), (ok >= null).mean())))
    return out


def verdict(ci: Sequence[float | None], min_effect: float = 0.0, p_value: float | None = None,
            alpha: float = 0.05) -> str:
    """The claim "the effect is positive" judged from the effect's interval ``ci`` (and its test).

    * ``reproduced``: the whole interval lies above ``min_effect`` (and so above zero) and, when
      a paired test's ``p_value`` is given, it is below ``alpha`` too: with few discordant pairs
      a percentile bootstrap interval can exclude zero while the exact test cannot;
    * ``not reproduced``: the whole interval lies below ``min_effect``: the data rule out an
      effect of the claimed size, or show it going the other way;
    * ``inconclusive``: anything else: this n cannot tell.
    """
    lo, hi = ci
    if lo is None or hi is None:
        return "inconclusive"
    if lo > min_effect and (p_value is None or p_value < alpha):
        return "reproduced"
    if hi < min_effect:
        return "not reproduced"
    return "inconclusive"


def detectable_difference(n: int, base_rate: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest difference of two rates around ``base_rate`` that ``n`` units per arm detect.

    The two-proportion normal approximation, ``(z_{1-α/2} + z_{power}) · sqrt(2 p (1 - p) / n)``,
    which ignores the pairing: a paired design detects at least this much, so it is a safe
    statement of what an evaluation of size n can see.
    """
    if n <= 0:
        return None
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(z * math.sqrt(2 * base_rate * (1 - base_rate) / n))


def fmt_rate(r: dict, digits: int = 1) -> str:
    """``"20.0 % [12.1, 31.2]"`` from :func:`rate`'s dict (``"n/a"`` when empty)."""
    if r.get("rate") is None:
        return "n/a"
    lo, hi = r["ci"]
    return f"{100 * r['rate']:.{digits}f} % [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]"


def fmt_diff(d: dict, digits: int = 1, percent: bool = True) -> str:
    """``"+7.5 [-2.5, +17.5] pts, n=40, p=0.23"`` from :func:`paired_difference`'s dict."""
    if d.get("diff") is None or d["ci"][0] is None:
        return "n/a"
    k = 100 if percent else 1
    unit = " pts" if percent else ""
    p = "" if d.get("p_value") is None else f", p={d['p_value']:.2g}" if d["p_value"] >= 1e-3 else ", p<0.001"
    return (f"{k * d['diff']:+.{digits}f} [{k * d['ci'][0]:+.{digits}f}, {k * d['ci'][1]:+.{digits}f}]{unit}, "
            f"n={d['n']}{p}")


def fmt_value(v: dict, digits: int = 3) -> str:
    """``"0.712 [0.655, 0.768]"`` from :func:`cluster_bootstrap`'s dict."""
    if v.get("value") is None:
        return "n/a"
    lo, hi = v["ci"]
    if lo is None or hi is None:
        return f"{v['value']:.{digits}f}"
    return f"{v['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
