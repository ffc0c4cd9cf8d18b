"""Solutions to the exercises of chapter 05 (evaluation). Checked by tests/test_exercises.py."""
import math

from scipy import stats


def wilson(k, n):
    """Exercise 5.1: the Wilson score interval, z the exact 97.5 % normal quantile (not 1.96)."""
    z = stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def mcnemar(a, b):
    """Exercise 5.2: only discordant pairs count; under no difference they split 50/50."""
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    if only_a + only_b == 0:
        return 1.0
    return stats.binomtest(only_a, only_a + only_b, 0.5).pvalue


def verdict(ci, p_value):
    """Exercise 5.3: above zero and p < 0.05: reproduced; below zero: not reproduced; else inconclusive."""
    lo, hi = ci
    if lo is None or hi is None:
        return "inconclusive"
    if lo > 0 and (p_value is None or p_value < 0.05):
        return "reproduced"
    if hi < 0:
        return "not reproduced"
    return "inconclusive"
