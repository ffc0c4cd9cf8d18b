"""Greedy checks of PPO snapshots: the budget and over-optimisation curves from the greedy policy.

Constructed checks where the answer is known, and a smoke long run whose snapshots must hold the
adapter of their iteration, each checked from its own files."""
import json

import pytest
import torch

from girl_lib.stages.ppo import greedy_checks, overopt


@pytest.fixture(scope="module")
def stages_done(smoke_cfg, smoke_run):
    """The session's smoke run dir with data, sft and reward complete (skipped if already done)."""
    from girl_lib.pipeline import run_stage

    for stage in ("sft", "reward"):
        run_stage(stage, smoke_cfg, smoke_run, log=lambda *a: None)
    return smoke_run


def report(accepted, interest=0.4):
    n = len(accepted)
    return {"n": n, "accept_rate": sum(accepted) / n, "seeker_interest": interest, "parse_rate": 1.0,
            "p_accept": sum(accepted) / n, "mean_words": 50.0, "outcomes": {"accepted": list(accepted)}}


def rows_for(gains_k, n=100, episodes_per_check=64, kl_step=0.5, rm_step=0.5):
    """Checks with ``gains_k[i]`` more accepted seekers than SFT (20 of ``n``) at check ``i + 1``."""
    sft = report([1] * 20 + [0] * (n - 20))
    rows = [greedy_checks.check_row(0, 0, sft, [0.0, 0.2, -0.2] * 10, 0.0, sft)]
    for i, k in enumerate(gains_k, start=1):
        arm = report([1] * (20 + k) + [0] * (n - 20 - k))
        rows.append(greedy_checks.check_row(i, i * episodes_per_check, arm,
                                            [rm_step * i, rm_step * i + 0.2, rm_step * i - 0.2] * 10,
                                            (kl_step * i) ** 2, sft))
    return rows


def write_checks(sub, rows):
    (sub / "ppo").mkdir(parents=True, exist_ok=True)
    (sub / "ppo" / "checks.json").write_text(json.dumps({"n_seekers": rows[0]["n"], "rows": rows}))


def test_a_check_row_pairs_the_snapshot_with_sft_on_the_same_seekers():
    rows = rows_for([10])
    sft, arm = rows
    assert sft["vs_sft"]["diff"] == 0 and sft["sqrt_kl"] == 0.0
    assert arm["vs_sft"]["diff"] == pytest.approx(0.10) and arm["vs_sft"]["test"] == "mcnemar_exact"
    # 10 discordant pairs, all one way: exact McNemar p = 2 / 2**10
    assert arm["vs_sft"]["p_value"] == pytest.approx(2 / 2 ** 10)
    assert arm["accept_rate"]["k"] == 30 and arm["accept_rate"]["ci"][0] < 0.30 < arm["accept_rate"]["ci"][1]
    assert arm["sqrt_kl"] == pytest.approx(0.5) and arm["rm_score"]["value"] == pytest.approx(0.5)


def test_the_projection_is_a_line_through_the_origin_and_refuses_a_falling_curve():
    ex = greedy_checks.extrapolate(rows_for([2, 4]))  # +2 pts at 64 episodes, +4 at 128
    assert ex["episodes"] == pytest.approx(320) and ex["slope_per_100_episodes"] == pytest.approx(100 * 0.02 / 64)
    assert greedy_checks.extrapolate(rows_for([-2, -4]))["episodes"] is None
    assert greedy_checks.extrapolate(rows_for([])[:1])["episodes"] is None


def test_greedy_curves_pool_the_proxy_runs_and_keep_the_oracle_run_for_the_budget(tmp_path):
    write_checks(tmp_path, rows_for([1, 3]))  # the stage: 2 checks
    write_checks(tmp_path / "long_run" / "rm", rows_for([2, 6, 12, 20, 30]))
    write_checks(tmp_path / "long_run" / "oracle", rows_for([1, 1, 1], kl_step=5.0))
    g = overopt.greedy_from_run(tmp_path)
    # the proxy curve: the stage's and the learned-RM long run's checks, SFT once, no oracle-reward point
    assert len(g["by_sqrt_kl"]) == 1 + 2 + 5
    assert max(b["sqrt_kl"] for b in g["by_sqrt_kl"]) == pytest.approx(2.5)  # not the oracle run's 15
    assert [b["sqrt_kl"] for b in g["by_sqrt_kl"]] == sorted(b["sqrt_kl"] for b in g["by_sqrt_kl"])
    assert set(g["by_episodes"]) == {"learned RM", "oracle reward"} and len(g["by_episodes"]["learned RM"]) == 6
    assert g["message"].startswith("no over-optimisation yet")  # RM score and acceptance both rise
    md = "\n".join(overopt.greedy_markdown(g))
    assert "**long run (rm)**" in md and "Budget, PPO on the learned RM" in md and "projection" in md


def test_an_oracle_run_alone_gives_a_budget_and_says_why_there_is_no_over_optimisation_curve(tmp_path):
    write_checks(tmp_path / "long_run" / "oracle", rows_for([6, 1, -3]))
    g = overopt.greedy_from_run(tmp_path)
    assert g["by_sqrt_kl"] == [] and set(g["by_episodes"]) == {"oracle reward"}
    assert g["message"].startswith("no greedy check of a run against the reward model")
    assert g["extrapolation"]["oracle reward"]["episodes"] is None  # the gains fall: nothing to project
    md = "\n".join(overopt.greedy_markdown(g))
    assert "**long run (oracle)**" in md and "no budget for +10 points can be projected" in md


def test_a_peak_then_a_fall_in_the_greedy_checks_reads_as_over_optimisation(tmp_path):
    write_checks(tmp_path, rows_for([40, 120, 40], n=400))
    assert overopt.greedy_from_run(tmp_path)["message"].startswith("over-optimisation")


def test_the_report_draws_its_plots_from_the_greedy_checks_when_there_are_any(tmp_path):
    write_checks(tmp_path, rows_for([2, 4]))
    rows = [{"iteration": i, "episodes": 16 * i, "beta": 0.05, "objective/kl": 0.1 * i, "objective/scores": 0.0,
             "oracle/accept_rate": 0.1} for i in (1, 2)]
    (tmp_path / "ppo" / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    md = "\n".join(overopt.markdown(tmp_path))
    assert "both panels from the greedy checks" in md and (tmp_path / "ppo" / "overoptimisation.png").is_file()


def test_snapshot_every_does_not_change_the_resume_fingerprint(smoke_cfg):
    from girl_lib.overrides import apply_overrides
    from girl_lib.stages.ppo.checkpoint import config_fingerprint

    with_snaps = apply_overrides(smoke_cfg, {"ppo.snapshot_every": 3})
    assert config_fingerprint(with_snaps, 1) == config_fingerprint(smoke_cfg, 1)
    assert config_fingerprint(apply_overrides(smoke_cfg, {"ppo.kl_coef": 0.5}), 1) != config_fingerprint(smoke_cfg, 1)


@pytest.mark.slow
def test_a_long_run_keeps_snapshots_whose_greedy_jds_are_the_policys(smoke_cfg, stages_done, tmp_path, monkeypatch):
    from girl_lib.pipeline import long_run
    from girl_lib.rundir import link_stages
    from girl_lib.stages.ppo.checkpoint import list_snapshots

    link_stages(stages_done, tmp_path, ("data", "sft", "reward"))
    res = long_run(smoke_cfg, tmp_path, 2, snapshot_every=1, kl_seekers=2, log=lambda *a: None)
    sub = tmp_path / "long_run" / "rm"
    snaps = list_snapshots(sub / "ppo")
    assert [i for i, _ in snaps] == [1, 2]
    checks = res["checks"]
    assert [r["iteration"] for r in checks] == [0, 1, 2]
    assert [r["episodes"] for r in checks] == [0, smoke_cfg.ppo.rollout_batch_size, 2 * smoke_cfg.ppo.rollout_batch_size]
    assert checks[0]["kl_exact"] == 0 and all(r["kl_exact"] >= 0 for r in checks[1:])
    # Each snapshot holds the adapter of its iteration: the last one is the stage's final adapter.
    from safetensors.torch import load_file

    weights = [load_file(str(path / "adapter_model.safetensors")) for _, path in snaps]
    final_w = load_file(str(sub / "ppo" / "adapter" / "adapter_model.safetensors"))
    assert weights[1].keys() == final_w.keys() and all(torch.equal(weights[1][k], final_w[k]) for k in final_w)
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in final_w)  # iteration 2 moved the LoRA
    # Every check's JDs are kept, and the digest in its row is theirs.
    kept = json.loads((sub / "ppo" / "checks_texts.json").read_text())
    assert sorted(kept["texts"], key=int) == ["0", "1", "2"]
    assert all(r["texts_digest"] == greedy_checks.texts_digest(kept["texts"][str(r["iteration"])]) for r in checks)
    metrics = json.loads((sub / "ppo" / "metrics.json").read_text())
    # the stage's exact KL on ppo.eval_kl_seekers of its eval seekers; the checks' on kl_seekers
    assert metrics["eval"]["kl_exact_n"] == min(smoke_cfg.ppo.eval_kl_seekers, metrics["eval"]["n_seekers"])
    assert json.loads((sub / "ppo" / "checks.json").read_text())["kl_seekers"] == min(2, metrics["eval"]["n_seekers"])
    # Resumable: checked snapshots are not checked again.
    real_evaluate = greedy_checks.evaluate
    monkeypatch.setattr(greedy_checks, "evaluate", lambda *a, **k: pytest.fail("a checked snapshot was redone"))
    assert greedy_checks.check_snapshots(smoke_cfg, sub, log=lambda *a: None) == checks
    # Checked from scratch, every snapshot's own adapter is loaded, in order.
    monkeypatch.setattr(greedy_checks, "evaluate", real_evaluate)
    loaded, real_load = [], greedy_checks.load_policy
    monkeypatch.setattr(greedy_checks, "load_policy",
                        lambda cfg, run_dir, adapter_dir, **k: loaded.append(adapter_dir) or real_load(cfg, run_dir, adapter_dir, **k))
    (sub / "ppo" / "checks.json").unlink()
    again = greedy_checks.check_snapshots(smoke_cfg, sub, kl_seekers=2, log=lambda *a: None)
    assert loaded == [path for _, path in snaps]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in again] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in checks]


def test_grpo_and_rloo_are_paired_with_the_ppo_check_nearest_their_own_kl(tmp_path):
    rows = rows_for([5, 10, 15], kl_step=0.5)  # KL 0.25, 1.0, 2.25 at checks 1, 2, 3
    write_checks(tmp_path, rows)

    def arm(algo, kl, k, n=100):
        (tmp_path / algo).mkdir()
        rep = report([1] * k + [0] * (n - k))
        (tmp_path / algo / "metrics.json").write_text(json.dumps({
            "achieved_kl": kl, "accept_rate_diff": {"diff": (k - 20) / n, "ci": [0.0, 0.1], "n": n, "p_value": 0.5},
            "eval": {"ppo": {"report": rep, "rm_score_mean": 0.0}}}))

    arm("grpo", 1.2, 25)  # nearest PPO check: iteration 2 (KL 1.0, 30 accepted)
    arm("rloo", 0.1, 22, n=50)  # other seekers: no paired comparison
    got = overopt.greedy_from_run(tmp_path)["arms_at_equal_kl"]
    assert [a["algo"] for a in got] == ["grpo"]
    g = got[0]
    assert g["ppo_iteration"] == 2 and g["ppo_kl"] == pytest.approx(1.0)
    assert g["vs_ppo_at_kl"]["diff"] == pytest.approx(-0.05) and g["vs_ppo_at_kl"]["n"] == 100
    assert g["within_range"]
    md = "\n".join(overopt.greedy_markdown(overopt.greedy_from_run(tmp_path)))
    assert "GRPO and RLOO at equal achieved KL" in md and "outside the PPO checks' range" not in md
    (tmp_path / "rloo").rename(tmp_path / "rloo_other_seekers")
    arm("rloo", 4.0, 22)  # far beyond the longest check's KL (2.25): flagged, not called equal
    far = overopt.greedy_from_run(tmp_path)["arms_at_equal_kl"]
    assert [a["within_range"] for a in far] == [True, False] and far[1]["ppo_iteration"] == 3
    assert "RLOO reached a KL outside the PPO checks' range" in "\n".join(overopt.equal_kl_markdown(far))


def test_the_greedy_sentence_pairs_the_seekers_where_overlapping_intervals_cannot_tell():
    rows = rows_for([10])  # 20 -> 30 of the same 100 seekers, all ten changes one way: McNemar p = 0.002
    curve = greedy_checks.as_curve(rows)
    assert curve[0]["accept_rate"]["ci"][1] > curve[1]["accept_rate"]["ci"][0]  # the Wilson intervals overlap
    assert overopt.message(curve).startswith("the reward model's score rises")  # unpaired: gold within noise
    assert overopt.greedy_message(curve).startswith("no over-optimisation yet")  # paired: both rise
    flat = greedy_checks.as_curve(rows_for([2]))  # two seekers more: not beyond noise, paired or not
    assert overopt.greedy_message(flat).startswith("the reward model's score rises")
