"""girl_lib.stats: intervals against published values, coverage by simulation, verdicts on constructed cases."""
import math

import numpy as np
import pytest

from conftest import fp_tol
from girl_lib import stats

# Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Statistics in Medicine 17, Table I: the Wilson score interval, 4 decimals.
NEWCOMBE = [((81, 263), (0.2553, 0.3662)), ((15, 148), (0.0624, 0.1605)),
            ((0, 20), (0.0000, 0.1611)), ((1, 29), (0.0061, 0.1718))]


@pytest.mark.parametrize("kn, expected", NEWCOMBE)
def test_wilson_matches_the_published_intervals(kn, expected):
    r = stats.rate(*kn)
    assert r["rate"] == kn[0] / kn[1] and (r["k"], r["n"]) == kn
    assert r["ci"] == pytest.approx(list(expected), abs=5e-5)  # the table rounds to 4 decimals


def test_wilson_is_the_closed_form():
    k, n, z = 7, 40, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats.rate(k, n)["ci"] == pytest.approx([centre - half, centre + half], rel=1e-9)
    assert stats.rate(0, 0) == {"rate": None, "k": 0, "n": 0, "ci": [None, None]}


def test_mcnemar_exact_counts_only_the_discordant_pairs():
    # 2 pairs where only A says yes, 8 where only B does: p = 2 * P(Bin(10, 1/2) <= 2) = 112/1024.
    a = [1] * 2 + [0] * 8 + [1] * 30 + [0] * 60
    b = [0] * 2 + [1] * 8 + [1] * 30 + [0] * 60
    assert stats.mcnemar_exact(a, b) == pytest.approx(112 / 1024, rel=1e-12)
    assert stats.mcnemar_exact(b, a) == pytest.approx(112 / 1024, rel=1e-12)
    assert stats.mcnemar_exact([1, 0, 1], [1, 0, 1]) == 1.0  # no discordant pair: no evidence
    with pytest.raises(ValueError):
        stats.mcnemar_exact([1, 0], [1])


def test_paired_difference_picks_the_test_and_pairs_the_rows():
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.45, rng.random(300) < 0.25
    d = stats.paired_difference(a, b, seed=1)
    assert d["test"] == "mcnemar_exact" and d["n"] == 300
    assert d["diff"] == pytest.approx(a.mean() - b.mean())
    assert d["ci"][0] < d["diff"] < d["ci"][1] and d["ci"][0] > 0 and d["p_value"] < 1e-4
    assert stats.paired_difference(a, b, seed=1) == d  # seeded: a run reproduces its figures
    # Continuous outcomes: Wilcoxon. Pairing matters: a shared per-unit effect cancels in a - b.
    unit = rng.normal(0, 5, 200)
    x, y = unit + 0.3 + rng.normal(0, 0.1, 200), unit + rng.normal(0, 0.1, 200)
    c = stats.paired_difference(x, y)
    assert c["test"] == "wilcoxon" and c["ci"][1] - c["ci"][0] < 0.1  # unpaired, it would be ~1.4 wide
    same = stats.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0


def test_paired_bootstrap_interval_covers_the_truth_about_95_percent_of_the_time():
    """200 seeded simulations of paired yes/no outcomes with a known difference of 0.10."""
    rng = np.random.default_rng(2026)
    hits, n, sims = 0, 200, 200
    for s in range(sims):
        u = rng.random(n)
        a, b = u < 0.35, u < 0.25  # correlated, as paired arms are; true difference 0.10
        flip = rng.random(n) < 0.2  # some pairs move independently
        b = np.where(flip, rng.random(n) < 0.25, b)
        lo, hi = stats.paired_difference(a, b, seed=s, n_resamples=999)["ci"]
        hits += lo <= 0.10 <= hi
    # Binomial sd of the coverage over 200 simulations is 1.5 points: 0.90-0.99 is about +-3 sd
    # around 0.95, wide enough for the percentile bootstrap's small under-coverage at this n.
    assert 0.90 <= hits / sims <= 0.99, hits / sims


def test_cluster_bootstrap_resamples_units_not_rows():
    """Copying every unit's row 10 times must not shrink the interval: the unit is what varies."""
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, 50)
    once = stats.cluster_bootstrap(lambda idx: values[idx].mean(), np.arange(50), seed=0)
    tenfold = np.repeat(values, 10)
    groups = np.repeat(np.arange(50), 10)
    ten = stats.cluster_bootstrap(lambda idx: tenfold[idx].mean(), groups, seed=0)
    assert ten["n_groups"] == 50 and ten["value"] == pytest.approx(once["value"])
    # The same resampled units: the means differ only by float64 rounding of 500 vs 50 terms.
    assert ten["ci"] == pytest.approx(once["ci"], abs=fp_tol(np.float64, np.abs(values).max(), 500))
    naive = stats.cluster_bootstrap(lambda idx: tenfold[idx].mean(), np.arange(500), seed=0)
    assert naive["ci"][1] - naive["ci"][0] < 0.5 * (ten["ci"][1] - ten["ci"][0])  # rows as units: too narrow


def test_cluster_bootstrap_drops_resamples_where_the_metric_is_undefined():
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    score = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.6, 0.4, 0.2])

    def auc(idx):
        yy, ss = y[idx], score[idx]
        if yy.min() == yy.max():
            return None  # one class: undefined
        pos, neg = ss[yy == 1], ss[yy == 0]
        return float((pos[:, None] > neg[None, :]).mean())

    out = stats.cluster_bootstrap(auc, np.arange(8), seed=0, n_resamples=500)
    assert out["value"] == 1.0 and out["ci"][0] is not None and out["ci"][1] == 1.0


@pytest.mark.parametrize("ci, expected", [
    ([0.05, 0.20], "reproduced"),  # a clear win
    ([-0.20, -0.05], "not reproduced"),  # a clear loss
    ([-0.03, 0.12], "inconclusive"),  # the interval straddles zero
    ([None, None], "inconclusive"),
])
def test_verdicts_on_constructed_intervals(ci, expected):
    assert stats.verdict(ci) == expected


def test_verdict_needs_the_test_to_agree_with_the_interval():
    # 5 discordant pairs of 32, all one way: the bootstrap interval excludes 0, the exact test does not.
    a, b = [1] * 5 + [0] * 27, [0] * 32
    d = stats.paired_difference(a, b)
    assert d["ci"][0] > 0 and d["p_value"] == pytest.approx(2 / 32)
    assert stats.verdict(d["ci"], p_value=d["p_value"]) == "inconclusive"
    assert stats.verdict(d["ci"]) == "reproduced"  # the interval alone would have said so


def test_verdict_with_a_minimum_effect():
    assert stats.verdict([0.02, 0.06], min_effect=0.10) == "not reproduced"  # rules out +10 points
    assert stats.verdict([0.12, 0.20], min_effect=0.10) == "reproduced"


def test_detectable_difference_follows_the_two_proportion_formula():
    z = 1.959963984540054 + 0.8416212335729143
    assert stats.detectable_difference(200, 0.2) == pytest.approx(z * math.sqrt(2 * 0.2 * 0.8 / 200), rel=1e-9)
    assert stats.detectable_difference(800, 0.2) == pytest.approx(stats.detectable_difference(200, 0.2) / 2)
    assert stats.detectable_difference(0, 0.2) is None


def test_formatting():
    assert stats.fmt_rate(stats.rate(8, 40)) == "20.0 % [10.5, 34.8]"
    d = {"diff": 0.075, "ci": [-0.025, 0.175], "n": 40, "p_value": 0.23}
    assert stats.fmt_diff(d) == "+7.5 [-2.5, +17.5] pts, n=40, p=0.23"
    assert stats.fmt_diff({**d, "p_value": 0.0}).endswith("n=40, p<0.001")  # never "p=0"
    assert stats.fmt_value({"value": 0.7123, "ci": [0.65, 0.77]}) == "0.712 [0.650, 0.770]"


def test_two_sample_cluster_bootstrap_and_its_p_value():
    """Two independent samples resampled separately; the p-value of "no difference"."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1, 120), rng.normal(0.0, 1, 150)
    out = stats.cluster_bootstrap(lambda i, j: a[i].mean() - b[j].mean(), np.arange(120), np.arange(150),
                                  seed=0, null=0.0)
    assert out["n_groups"] == [120, 150] and out["value"] == pytest.approx(a.mean() - b.mean())
    assert out["ci"][0] > 0 and out["p_value"] < 0.01
    same = stats.cluster_bootstrap(lambda i, j: a[i].mean() - a[j].mean(), np.arange(120), np.arange(120),
                                   seed=0, null=0.0)
    assert same["ci"][0] < 0 < same["ci"][1] and same["p_value"] > 0.2


def test_claims_verdicts_come_from_the_numbers():
    from girl_lib import claims

    def paired(diff, lo, hi):
        return {"diff": diff, "ci": [lo, hi], "n": 200, "p_value": 0.01, "test": "mcnemar_exact"}

    ev = {"paired": {"sft_vs_zero_shot": {"a": "sft", "b": "zero_shot", "accept_rate": paired(0.2, 0.15, 0.25)},
                     "ppo_vs_sft": {"a": "ppo", "b": "sft", "accept_rate": paired(0.02, -0.03, 0.07)}},
          "matching": {"gain": {"two_tower": {"test": {"auc": paired(-0.04, -0.07, -0.01)},
                                              "cold": {"auc": paired(0.01, -0.02, 0.04)}}}}}
    gr = {"paired": {"genrec_constrained_vs_sasrec": paired(-0.5, -0.58, -0.42)}}
    rows = claims.claims(ev, gr)
    assert [r["verdict"] for r in rows] == ["reproduced", "inconclusive", "not reproduced", "inconclusive",
                                            "not reproduced"]
    table = "\n".join(claims.claims_markdown(rows))
    assert "+20.0 [+15.0, +25.0] pts, n=200" in table and "inconclusive at this n" in table
    assert claims.claims(None, None) == [] and "No claim" in claims.claims_markdown([])[0]
