"""The over-optimisation curve: points from PPO's log, equal-count bins with intervals, and a
sentence computed from those intervals (constructed logs where the answer is known)."""
import json

import pytest

from girl_lib.report import write_report
from girl_lib.stages.ppo import overopt


def log_rows(kls, scores, accepts, n=16, sq_spread=None):
    rows = []
    for i, (kl, s, a) in enumerate(zip(kls, scores, accepts), start=1):
        row = {"iteration": i, "episodes": n * i, "beta": 0.05, "objective/kl": kl, "objective/scores": s - 1,
               "objective/scores_raw": s, "oracle/accept_rate": a}
        if sq_spread is not None:
            row["objective/scores_raw_sq"] = s * s + sq_spread ** 2
        rows.append(row)
    return rows


def curve_of(rows, bins=4):
    return overopt.binned(overopt.points(rows), "sqrt_kl", bins)


def test_points_take_the_raw_score_the_rollouts_and_the_acceptances_of_each_iteration():
    pts = overopt.points(log_rows([0.0, 0.25, -0.01], [1.0, 2.0, 3.0], [0.25, 0.5, 0.0], n=8))
    assert [p["n"] for p in pts] == [8, 8, 8] and [p["accepted"] for p in pts] == [2, 4, 0]
    assert [p["sqrt_kl"] for p in pts] == [0.0, 0.5, 0.0]  # a slightly negative k1 estimate is KL 0
    assert [p["rm_score"] for p in pts] == [1.0, 2.0, 3.0]  # raw, not the normalised score


def test_bins_pool_acceptances_and_use_every_jd_when_the_spread_is_logged():
    rows = log_rows([0.1 * i for i in range(8)], [1.0] * 8, [0.5] * 8, n=16, sq_spread=2.0)
    curve = curve_of(rows, bins=2)
    assert [b["iterations"] for b in curve] == [4, 4] and [b["n"] for b in curve] == [64, 64]
    assert curve[0]["accept_rate"]["k"] == 32 and curve[0]["accept_rate"]["value"] == 0.5
    lo, hi = curve[0]["rm_score"]["ci"]
    # sd 2 over 64 JDs: half-width about 1.96 * 2 / 8 = 0.5 (not 0: the iterations' means agree)
    assert 0.45 < (hi - lo) / 2 < 0.55


def test_over_optimisation_is_named_when_the_gold_peaks_and_falls_beyond_noise():
    kls = [(0.2 * i) ** 2 for i in range(20)]
    scores = [0.1 * i for i in range(20)]  # the proxy keeps rising
    accepts = [0.1] * 4 + [0.8] * 8 + [0.05] * 8  # the gold rises, then collapses
    msg = overopt.message(curve_of(log_rows(kls, scores, accepts, n=32, sq_spread=0.3)))
    assert msg.startswith("over-optimisation") and "keeps rising" in msg


def test_a_proxy_that_rises_without_the_gold_is_called_so():
    kls = [(0.2 * i) ** 2 for i in range(20)]
    msg = overopt.message(curve_of(log_rows(kls, [0.1 * i for i in range(20)], [0.1] * 20, n=32, sq_spread=0.3)))
    assert "do not transfer" in msg


def test_both_rising_is_not_over_optimisation_and_noise_is_noise():
    kls = [(0.2 * i) ** 2 for i in range(20)]
    rising = [0.04 * i for i in range(20)]
    msg = overopt.message(curve_of(log_rows(kls, [0.1 * i for i in range(20)], rising, n=32, sq_spread=0.3)))
    assert msg.startswith("no over-optimisation yet")
    flat = overopt.message(curve_of(log_rows(kls, [1.0] * 20, [0.1] * 20, n=4, sq_spread=1.0)))
    assert flat.startswith("neither")


def test_the_report_shows_the_curve_of_the_run_and_of_a_beta_sweep(tmp_path):
    kls = [(0.1 * i) ** 2 for i in range(10)]
    for sub in (tmp_path / "ppo", tmp_path / "beta_sweep" / "beta_0.01" / "ppo"):
        sub.mkdir(parents=True)
        (sub / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log_rows(kls, [0.1] * 10, [0.2] * 10)) + "\n")
    curve = overopt.from_run(tmp_path)
    assert {p["source"] for p in curve["points"]} == {"ppo", "beta_0.01"} and len(curve["points"]) == 20
    assert list(curve["by_episodes"]) == ["learned RM"]  # the budget curve: the main run only
    assert sum(b["iterations"] for b in curve["by_episodes"]["learned RM"]) == 10
    text = write_report(tmp_path, "smoke").read_text()
    assert "## Over-optimisation" in text and (tmp_path / "ppo" / "overoptimisation.png").stat().st_size > 1000


def test_no_log_no_section(tmp_path):
    assert overopt.markdown(tmp_path) == []
    with pytest.raises(KeyError):
        overopt.points([{"iteration": 1}])


def test_long_runs_give_the_budget_curves_and_the_oracle_run_stays_off_the_proxy_curve(tmp_path):
    kls = [(0.1 * i) ** 2 for i in range(12)]
    for sub, n in ((tmp_path / "ppo", 4), (tmp_path / "long_run" / "rm" / "ppo", 12),
                   (tmp_path / "long_run" / "oracle" / "ppo", 12)):
        sub.mkdir(parents=True)
        rows = log_rows(kls[:n], [0.1] * n, [0.2] * n)
        (sub / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    curve = overopt.from_run(tmp_path)
    assert {p["source"] for p in curve["points"]} == {"ppo", "long run (rm)"}
    assert {k: sum(b["iterations"] for b in v) for k, v in curve["by_episodes"].items()} == {
        "learned RM": 12, "oracle reward": 12}
    assert "Budget, PPO on the oracle reward" in "\n".join(overopt.markdown(tmp_path))
