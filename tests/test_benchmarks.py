"""The benchmark scripts run under the smoke profile and report sane figures (never timed asserts).

Each script runs in a subprocess, as a user would run it; its last stdout line is its JSON
result. We check structure and consistency (counts add up, shares are shares, every stage
exited 0), not speed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# One thread while generating: on a busy CI machine two threads per small op mostly wait.
FAST = ["--set", "generation.num_threads=1"]


def run_bench(script: str, *args: str, tmp_path: Path) -> dict:
    out_file = tmp_path / f"{script}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--profile", "smoke", *args,
                           "--json-out", str(out_file)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert json.loads(out_file.read_text()) == result  # --json-out holds the same object
    assert any(set(x) == {"-", " "} for x in lines[:-1])  # the table for people came before the JSON
    assert result["profile"] == "smoke" and result["peak_rss_mb"] > 50
    assert result["machine"]["cores"] >= 1 and "load_avg_1m_start" in result["machine"]
    return result


def test_bench_generate(tmp_path):
    r = run_bench("bench_generate.py", "--batch-sizes", "1,3", "--max-new-tokens", "5", "--threads", "1", "--ops",
                  *FAST, tmp_path=tmp_path)
    rows = r["results"]
    assert [(x["batch_size"], x["mode"]) for x in rows] == [(1, "plain"), (1, "fast"), (3, "plain"), (3, "fast")]
    for x in rows:
        assert 1 <= x["new_tokens"] <= 5 * x["batch_size"] and x["threads"] == 1
        # seconds carry 4 decimals (a smoke call takes ~0.02 s), tokens/s one: allow both roundings
        lo, hi = x["new_tokens"] / (x["seconds"] + 5e-5), x["new_tokens"] / max(x["seconds"] - 5e-5, 1e-9)
        assert lo - 0.05 <= x["tokens_per_s"] <= hi + 0.05
    assert rows[0]["dtype"] == "model"
    assert [x["fast_decode"] for x in rows] == [False, True, False, True]
    assert set(r["speedup_fast_over_plain"]) == {"b1_t1", "b3_t1"}
    for ops in r["decode_ops"].values():  # the per-step op split adds up to (at most) the profiled step
        assert set(r["decode_ops"]) == {"plain", "fast"} and ops["prefill_s"] > 0 and 1 <= ops["decode_steps"] <= 16
        # each op is rounded to 0.01 ms and the step to 0.1 ms: that is all the slack the sum needs
        assert 0 < sum(o["ms"] for o in ops["top"]) <= ops["profiled_step_ms"] + 0.005 * len(ops["top"]) + 0.05
        assert [o["ms"] for o in ops["top"]] == sorted((o["ms"] for o in ops["top"]), reverse=True)
    c = r["check"]
    assert 0.0 <= c["greedy_identical_share"] <= 1.0 and c["tokens"] > 0
    assert 0.0 <= c["logprob_gap_mean"] <= c["logprob_gap_max"] < 0.1
    assert r["checks"] == {"fast": c}  # only the fast path was run besides plain
    assert "kernel_limits" in r["machine"] and "avx2" in r["machine"]["features"]


def test_bench_generate_int8_mode_is_checked_against_fp32(tmp_path):
    r = run_bench("bench_generate.py", "--batch-sizes", "2", "--max-new-tokens", "4", "--threads", "1",
                  "--modes", "plain,int8,int8_nohead", *FAST, tmp_path=tmp_path)
    assert [(x["mode"], x["dtype"], x["fast_decode"]) for x in r["results"]] == [
        ("plain", "model", False), ("int8", "int8", True), ("int8_nohead", "int8", True)]
    assert set(r["checks"]) == {"fast", "int8", "int8_nohead"} and r["check"] == r["checks"]["fast"]
    for c in r["checks"].values():
        assert 0.0 <= c["greedy_identical_share"] <= 1.0 and c["tokens"] > 0
        assert 0.0 <= c["logprob_gap_mean"] <= c["logprob_gap_max"]
    assert set(r["speedup_over_plain"]) == {"int8_b2_t1", "int8_nohead_b2_t1"}


def test_bench_generate_dyncache_mode_switches_the_static_cache_off_and_back(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_generate

    from girl_lib import textgen

    assert textgen.STATIC_CACHE == {"cache_implementation": "static"}
    with bench_generate.mode_variant("fast_dyncache"):
        assert textgen.STATIC_CACHE == {}
    with bench_generate.mode_variant("fast"):
        assert textgen.STATIC_CACHE == {"cache_implementation": "static"}
    assert textgen.STATIC_CACHE == {"cache_implementation": "static"}
    _, args = bench_generate.parse_args(["--modes", "fast,fast_dyncache"])
    assert args.modes == "fast,fast_dyncache"


def test_bench_train(tmp_path):
    r = run_bench("bench_train.py", "--steps", "1", tmp_path=tmp_path)
    assert r["sft_steps"] == 1 and r["reward_steps"] == 1
    assert r["sft_tokens_per_s"] > 0 and r["reward_pairs_per_s"] > 0
    assert [x["stage"] for x in r["results"]] == ["sft", "reward"]


def test_bench_ppo_iteration(tmp_path):
    r = run_bench("bench_ppo_iteration.py", "--modes", "plain,fast", *FAST, tmp_path=tmp_path)
    assert set(r["by_mode"]) == {"plain", "fast"}
    for split in r["by_mode"].values():
        parts = sum(split[k] for k in ("generation_s", "forward_s", "scoring_s", "oracle_s", "optimization_s"))
        assert 0 < parts <= split["iteration_s"] + 0.05  # the parts fit inside the iteration
        assert 0 < split["generation_share"] < 1
        assert split["episodes_per_s"] == pytest.approx(r["rollout_batch_size"] / split["iteration_s"], rel=0.02)


def test_bench_pipeline(tmp_path):
    from girl_lib.pipeline import STAGES

    r = run_bench("bench_pipeline.py", *FAST, tmp_path=tmp_path)
    assert [x["stage"] for x in r["stages"]] == [s.name for s in STAGES if s.in_run]
    assert r["failed_stage"] is None and all(x["exit_code"] == 0 for x in r["stages"])
    assert all(x["seconds"] > 0 and x["peak_rss_mb"] > 10 for x in r["stages"])
    assert r["max_stage_peak_rss_mb"] == max(x["peak_rss_mb"] for x in r["stages"])


def test_bench_pipeline_stops_at_a_failing_stage(tmp_path):
    """A stage that fails (here: SFT without its data stage) ends the run with exit 1 and says which."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_pipeline.py"), "--profile", "smoke",
                           "--stages", "sft,reward"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["failed_stage"] == "sft" and [x["stage"] for x in r["stages"]] == ["sft"]
    assert r["stages"][0]["exit_code"] == 2  # the CLI's "bad input" code: the data stage is missing


def test_probe_reward_features(tmp_path):
    r = run_bench("probe_reward_features.py", "--train-pairs", "12", "--val-pairs", "6", "--layers", "1,2",
                  tmp_path=tmp_path)
    rows = r["results"]
    assert [(x["pooling"], x["layer"]) for x in rows] == [("last", 1), ("last", 2), ("response_mean", 1),
                                                         ("response_mean", 2)]
    assert r["train_pairs"] == 12 and r["val_pairs"] == 6
    for x in rows:  # accuracies over 2n symmetric examples: multiples of 1/(2n)
        assert 0.0 <= x["val_acc"] <= 1.0 and abs(x["val_acc"] * 12 - round(x["val_acc"] * 12)) < 0.01
    assert r["best"] in rows


def test_bench_matmul(tmp_path):
    r = run_bench("bench_matmul.py", "--rows", "2,5", "--threads", "1", tmp_path=tmp_path)
    rows = r["results"]
    assert [(x["rows"], x["product"]) for x in rows][:2] == [(2, "q/o"), (2, "k/v")] and len(rows) == 10
    for x in rows:
        k, n = (int(v) for v in x["shape"].split("x"))
        for label in ("fp32", "bf16"):  # GFLOP/s is 2*m*k*n over the time per call (both rounded)
            assert x[f"{label}_gflops"] == pytest.approx(2 * x["rows"] * k * n / x[f"{label}_us"] / 1e3, rel=0.05, abs=0.1)
        assert x["bf16_speedup"] == pytest.approx(x["bf16_gflops"] / x["fp32_gflops"], rel=0.05, abs=0.01)


def test_bench_genrec_trie(tmp_path):
    r = run_bench("bench_genrec_trie.py", "--titles", "10000", "--users", "2", "--threads", "1", tmp_path=tmp_path)
    assert r["titles"] == 10_000 and r["trie_nodes"] >= r["titles"]  # every title ends in its own EOS leaf
    assert r["trie_build_s"] > 0 and 0 < r["trie_tracemalloc_held_mb"] <= r["trie_tracemalloc_peak_mb"]
    assert r["users"] == 2 and r["constrained_beams"] == 2 * r["num_beams"]  # no beam lost to a dead end
    assert r["constrained_valid_share"] == 1.0  # a constrained beam is always a catalogue title
    assert r["constrained_s_per_user"] > 0 and r["free_s_per_user"] > 0
    assert r["allowed_us"] > 0 and r["allowed_us_tenth_catalogue"] > 0 and r["threads"] == 1


def test_bench_genrec_recipe(tmp_path):
    r = run_bench("bench_genrec_recipe.py", "--users", "4", "--threads", "1", "--run-dir", str(tmp_path / "run"),
                  "--variant", "base", "--variant", "prompt loss: genrec.loss_on_prompt=true; genrec.max_steps=2",
                  "--variant", "3 beams: genrec.loss_on_prompt=true; genrec.max_steps=2; genrec.num_beams=3",
                  tmp_path=tmp_path)
    assert set(r["variants"]) == {"base", "prompt loss", "3 beams"} and r["n_users"] == 4
    # a decoding-only change reuses the adapter just trained; a training change does not
    reused = {name: v["adapter_reused"] for name, v in r["variants"].items()}
    assert reused == {"base": False, "prompt loss": False, "3 beams": True}
    assert r["variants"]["3 beams"]["train_seconds"] == r["variants"]["prompt loss"]["train_seconds"]
    assert r["variants"]["prompt loss"]["overrides"] == ["genrec.loss_on_prompt=true", "genrec.max_steps=2"]
    assert r["variants"]["prompt loss"]["global_steps"] == 2 != r["variants"]["base"]["global_steps"]
    markov = r["baselines_hr@10"]["markov"]["rate"]
    for v in r["variants"].values():
        assert v["n_users"] == 4 and v["hr@5"]["k"] <= v["hr@10"]["k"] <= 4
        assert v["hr@10"]["ci"][0] <= v["hr@10"]["rate"] <= v["hr@10"]["ci"][1]
        assert v["hr@10_minus_markov"]["diff"] == pytest.approx(v["hr@10"]["rate"] - markov)
