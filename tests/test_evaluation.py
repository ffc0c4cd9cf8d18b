"""Evaluation: metrics by hand, the pairwise judge (both orders, a stub OpenAI endpoint),
matching, grounding, the arms of a run dir, the stage's metrics.json, and `girl recommend`."""
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from girl_lib.stages.evaluate import report as eval_report
from girl_lib import generators
from girl_lib.stages.evaluate import grounding, judge, matching
from girl_lib.world import load_jsonl, load_split
from girl_lib.stages.evaluate import stage as evaluation
from girl_lib.embed import HashingEmbedder, cosine_rows, normalize_rows
from girl_lib.errors import GirlError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# A small hand-made world: one seeker, one job the recruiter accepts, one it rejects
# --------------------------------------------------------------------------------------------
SEEKER = {"id": "s1", "cv_text": "Cloud engineer in Berlin with Python and Kubernetes.", "occupation_id": None,
          "level": "mid", "skills": [], "location": "Berlin", "relocate": False, "salary_expectation": 60000}


@pytest.fixture(scope="module")
def world_pair():
    """A real seeker and two real job records: one whose recruiter accepts them, one that does not."""
    from girl_lib.world import Oracle, load_jsonl

    seekers = load_jsonl(REPO / "data_samples" / "seekers.jsonl")
    jobs = load_jsonl(REPO / "data_samples" / "jobs.jsonl")
    oracle = Oracle()
    for s in seekers:
        good = [j for j in jobs if oracle.accepts(s, j)]
        bad = [j for j in jobs if not oracle.accepts(s, j)]
        if good and bad:
            return s, good[0], bad[0], oracle
    pytest.skip("no seeker with both an accepting and a rejecting job in data_samples")


# --------------------------------------------------------------------------------------------
# The rubric judge and the protocol
# --------------------------------------------------------------------------------------------
def test_distinct_2_within_one_text_by_hand():
    assert judge.distinct_2_in("a b a b") == pytest.approx(2 / 3)  # bigrams ab, ba, ab
    assert judge.distinct_2_in("one") == 1.0


def test_rubric_scores_by_hand(world_pair):
    seeker, good, bad, oracle = world_pair
    rj = judge.RubricJudge(oracle, tie_margin=0.05, concise_words=10)
    ex = rj.explain(seeker, good["jd_text"])
    # A world JD states title, role, level, must-haves, location and salary; nice-to-haves too.
    assert ex["detail"] == pytest.approx(sum(ex["why"]["stated"].values()) / 7)
    assert ex["why"]["stated"]["must_have"] and ex["why"]["stated"]["salary"]
    sc = oracle.score(seeker, good["jd_text"])
    assert ex["relevance"] == pytest.approx(sc.p_accept * sc.seeker_interest)
    words = len(good["jd_text"].split())
    assert ex["conciseness"] == pytest.approx(min(1, 10 / words) * judge.distinct_2_in(good["jd_text"]))
    empty = rj.explain(seeker, "hello hello hello hello")
    assert empty["detail"] == 0 and empty["conciseness"] == pytest.approx(1 / 3)  # 4 words <= 10; distinct-2 = 1/3


def test_rubric_prefers_the_accepting_job_on_relevance(world_pair):
    seeker, good, bad, oracle = world_pair
    rj = judge.RubricJudge(oracle)
    assert rj(seeker, good["jd_text"], bad["jd_text"])["relevance"] == 1
    assert rj(seeker, bad["jd_text"], good["jd_text"])["relevance"] == -1
    assert rj(seeker, good["jd_text"], good["jd_text"]) == {d: 0 for d in judge.DIMENSIONS}


def longer_wins(seeker, first, second):
    """A fake judge: the longer text wins every dimension (no position bias)."""
    v = (len(first) > len(second)) - (len(first) < len(second))
    return {d: v for d in judge.DIMENSIONS}


def first_wins(seeker, first, second):
    """A fake judge with pure position bias: whatever comes first wins."""
    return {d: 1 for d in judge.DIMENSIONS}


def test_compare_counts_by_hand_and_swapping_flips_win_and_lose():
    seekers = [SEEKER] * 4
    a = ["long text here", "x", "same", "longer one"]
    b = ["short", "longer b", "same", "y"]
    res = judge.compare(longer_wins, seekers, a, b)
    r = res["detail"]
    assert (r["win"], r["tie"], r["lose"]) == (0.5, 0.25, 0.25) and r["advantage"] == 0.25
    assert r["order_agreement"] == 1.0 and res["n"] == 4
    swapped = judge.compare(longer_wins, seekers, b, a)["detail"]
    assert (swapped["win"], swapped["tie"], swapped["lose"]) == (r["lose"], r["tie"], r["win"])
    assert swapped["advantage"] == -r["advantage"]


def test_position_bias_cancels_out_in_both_orders():
    res = judge.compare(first_wins, [SEEKER] * 3, ["a"] * 3, ["b"] * 3)
    assert res["relevance"]["tie"] == 1.0 and res["relevance"]["order_agreement"] == 0.0


def test_parse_verdict():
    assert judge.parse_verdict('Sure! {"detail": "1", "relevance": "2", "conciseness": "tie"}') == \
        {"detail": 1, "relevance": -1, "conciseness": 0}
    assert judge.parse_verdict("I cannot decide") is None
    assert judge.parse_verdict('{"detail": "1", "relevance": "maybe", "conciseness": "tie"}') is None


# --------------------------------------------------------------------------------------------
# A stub OpenAI-compatible server on localhost
# --------------------------------------------------------------------------------------------
class StubChat(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions: the JD containing 'GOOD' wins every dimension."""
    requests: list = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).status != 200:
            self.send_response(type(self).status)
            self.end_headers()
            return
        prompt = body["messages"][-1]["content"]
        first = prompt.split("Job description 1:")[1].split("Job description 2:")[0]
        second = prompt.split("Job description 2:")[1].split("Compare them")[0]
        if "GARBLE" in prompt:
            content = "no idea"
        else:
            v = "1" if "GOOD" in first else "2" if "GOOD" in second else "tie"
            content = json.dumps({"detail": v, "relevance": v, "conciseness": v})
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    StubChat.requests, StubChat.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), StubChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_endpoint_judge_speaks_the_chat_protocol(stub_server, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    ej = judge.EndpointJudge(stub_server, "judge-model", api_key_env="MY_JUDGE_KEY", timeout_s=10)
    res = judge.compare(ej, [SEEKER] * 3, ["GOOD jd", "plain", "GARBLE"], ["plain", "GOOD jd", "plain"])
    assert (res["detail"]["win"], res["detail"]["lose"], res["detail"]["tie"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert ej.unparsed == 2 and ej.calls == 6  # the GARBLE pair, in both orders
    req = StubChat.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "judge-model" and req["body"]["temperature"] == 0
    assert SEEKER["cv_text"] in req["body"]["messages"][-1]["content"]


def test_endpoint_errors_are_one_line(stub_server, monkeypatch):
    monkeypatch.delenv("GIRL_JUDGE_API_KEY", raising=False)
    StubChat.status = 401
    with pytest.raises(GirlError, match=r"HTTP 401 .*GIRL_JUDGE_API_KEY"):
        judge.EndpointJudge(stub_server, "m")(SEEKER, "a", "b")
    with pytest.raises(GirlError, match="failed"):
        judge.EndpointJudge("http://127.0.0.1:9/v1", "m", timeout_s=2)(SEEKER, "a", "b")


# --------------------------------------------------------------------------------------------
# Embeddings, grounding, matching
# --------------------------------------------------------------------------------------------
def test_hashing_embedder_is_deterministic_and_unit_length():
    e = HashingEmbedder()
    x = e.encode(["python cloud engineer berlin", "python cloud engineer berlin", "nurse in lisbon", ""])
    assert x.shape == (4, e.dim) and np.allclose(np.linalg.norm(x[:3], axis=1), 1)
    assert np.array_equal(x[0], x[1]) and not x[3].any()  # same text, same computation: exact
    assert cosine_rows(x[:1], x[1:2])[0] == pytest.approx(1) and cosine_rows(x[:1], x[2:3])[0] < 0.9


def test_top_k_and_ranking_scores_by_hand():
    items = normalize_rows(np.array([[1, 0], [0, 1], [1, 1]], dtype=float))
    idx, sims = grounding.top_k(normalize_rows(np.array([[1.0, 0.1]])), items, k=2)
    assert idx.tolist() == [[0, 2]] and sims[0, 0] > sims[0, 1]
    ranked = [["j1", "j2", "j3"], ["j3", "j1", "j2"], ["j1", "j2", "j3"]]
    relevant = [{"j2"}, {"j1", "j3"}, set()]
    r = grounding.ranking_scores(ranked, relevant, k=2)
    # seeker 1: hit at rank 2 -> 1/log2(3); seeker 2: hits at ranks 1, 2 -> IDCG equal -> 1; seeker 3 left out
    assert r["n"] == 2 and r["n_without_relevant"] == 1
    assert r["hr@2"] == 1.0 and r["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1) / 2)


def test_build_features_by_hand():
    e = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    rows = [{"seeker_id": "a", "job_id": "b", "accepted": True}, {"seeker_id": "b", "job_id": "b", "accepted": False}]
    f = matching.build_features(rows, e, e, None)
    assert f["user"].shape == (2, 2) and f["pair"][:, 0].tolist() == [0.0, 1.0] and f["y"].tolist() == [1, 0]
    g = matching.build_features(rows, e, e, {"a": np.array([0.0, 1.0]), "b": np.array([1.0, 0.0])})
    assert g["user"].shape == (2, 4) and g["pair"].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def synthetic_matching(n_seekers=60, n_jobs=30, d=8, seed=0):
    """Labels depend on a seeker's hidden 'wish' that only the generated JD reveals."""
    rng = np.random.default_rng(seed)
    jobs = normalize_rows(rng.normal(size=(n_jobs, d)))
    wish = rng.integers(0, n_jobs, size=n_seekers)
    cv = {f"s{i}": normalize_rows(rng.normal(size=(1, d)))[0] for i in range(n_seekers)}
    gen = {f"s{i}": normalize_rows(jobs[wish[i]][None] + 0.1 * rng.normal(size=(1, d)))[0] for i in range(n_seekers)}
    jd = {f"j{k}": jobs[k] for k in range(n_jobs)}
    rows = []
    for i in range(n_seekers):
        for k in rng.choice(n_jobs, size=6, replace=False):
            rows.append({"seeker_id": f"s{i}", "job_id": f"j{k}", "accepted": bool(jobs[k] @ jobs[wish[i]] > 0.5)})
    return rows, cv, gen, jd


def test_generated_features_help_when_they_carry_the_signal():
    rows, cv, gen, jd = synthetic_matching()
    train = [r for r in rows if int(r["seeker_id"][1:]) < 40]
    test = [r for r in rows if int(r["seeker_id"][1:]) >= 40]
    out = matching.run_matching(train, {"test": test}, cv, jd, gen, seeds=2, epochs=60)
    assert out["logistic"]["cv+generated"]["test"]["auc"]["value"] > 0.9
    gain = out["gain"]["logistic"]["test"]["auc"]
    assert gain["diff"] > 0.2  # the CV alone is noise here
    # The paired interval over the 20 test seekers excludes zero, and the bootstrap test agrees.
    assert gain["ci"][0] > 0 and gain["p_value"] < 0.05 and gain["n"] == 20
    assert out["gain"]["logistic"]["test"]["logloss"]["ci"][1] < 0
    # The MLP's towers can memorise 40 seekers, so it gains less, but it gains.
    assert out["gain"]["two_tower"]["test"]["auc"]["diff"] > 0.05
    assert out["n"] == {"train": len(train), "test": len(test)} and out["seeds"] == 2


def test_matching_gain_is_inconclusive_when_the_generated_jd_carries_nothing():
    rows, cv, gen, jd = synthetic_matching()
    rng = np.random.default_rng(5)
    noise = {k: normalize_rows(rng.normal(size=(1, len(v))))[0] for k, v in gen.items()}  # the wish is gone
    train = [r for r in rows if int(r["seeker_id"][1:]) < 40]
    test = [r for r in rows if int(r["seeker_id"][1:]) >= 40]
    out = matching.run_matching(train, {"test": test}, cv, jd, noise, seeds=2, epochs=60, models=("logistic",))
    lo, hi = out["gain"]["logistic"]["test"]["auc"]["ci"]
    assert lo < 0.1 and hi > -0.3 and not lo > 0


# --------------------------------------------------------------------------------------------
# Arms of a run dir
# --------------------------------------------------------------------------------------------
def fake_stage(run_dir: Path, arm: str):
    (run_dir / arm / "adapter").mkdir(parents=True)
    (run_dir / arm / "adapter" / "adapter_config.json").write_text("{}")
    (run_dir / arm / "manifest.json").write_text("{}")


def test_arms_found_and_best_arm_order(tmp_path):
    assert generators.trained_generators(tmp_path) == ["zero_shot"]
    with pytest.raises(GirlError, match="no trained generator"):
        generators.best_generator(tmp_path)
    fake_stage(tmp_path, "grpo")
    assert generators.trained_generators(tmp_path) == ["zero_shot"]  # an RL arm needs the SFT adapter under it
    fake_stage(tmp_path, "sft")
    assert generators.best_generator(tmp_path) == "grpo" and generators.trained_generators(tmp_path) == ["zero_shot", "sft", "grpo"]
    fake_stage(tmp_path, "ppo")
    assert generators.best_generator(tmp_path) == "ppo"
    (tmp_path / "ppo" / "manifest.json").unlink()  # an interrupted PPO run does not count
    assert generators.best_generator(tmp_path) == "grpo"


def test_text_metrics_through_evaluate_by_hand():
    out = evaluation.text_metrics(["the cat sat on the mat", "a b c"], [["the cat sat on the mat", "x y"], []])
    assert out == {"rouge_l": pytest.approx(1.0), "bleu": pytest.approx(100.0), "n_with_reference": 1}


# --------------------------------------------------------------------------------------------
# The stage on the smoke profile, and `girl recommend`
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(smoke_cfg, smoke_run, tmp_path_factory):
    """A private smoke run dir with data, sft, reward and ppo complete, then evaluated."""
    from girl_lib.pipeline import run_stage
    from girl_lib.rundir import link_stages

    for stage in ("sft", "reward"):
        run_stage(stage, smoke_cfg, smoke_run, log=lambda *a: None)
    run_dir = tmp_path_factory.mktemp("eval-run")
    link_stages(smoke_run, run_dir, ("data", "sft", "reward"))
    run_stage("ppo", smoke_cfg, run_dir, log=lambda *a: None)
    manifest = run_stage("evaluate", smoke_cfg, run_dir, log=lambda *a: None)
    return run_dir, manifest


def test_metrics_json_schema(evaluated, smoke_cfg):
    run_dir, manifest = evaluated
    m = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert {"profile", "base_model", "arms", "trained_arms", "best_arm", "embedder", "n_test_seekers",
            "test_seeker_ids", "quality", "paired", "judge", "matching", "grounding", "timing"} <= set(m)
    assert m["arms"] == ["zero_shot", "sft", "ppo"] and m["best_arm"] == "ppo" and m["embedder"] == "hashing"
    assert m["n_test_seekers"] == smoke_cfg.eval.max_test_seekers
    for arm in m["arms"]:
        row = m["quality"][arm]
        assert set(eval_report.QUALITY_KEYS) <= set(row) and row["n"] == m["n_test_seekers"]
        assert row["rm_score"] is not None  # the reward model is trained in this run dir
        for key in ("accept_rate", "parse_rate", "two_sided_rate"):  # every rate with its Wilson interval
            ci = row["intervals"][key]
            assert ci["n"] == row["n"] and ci["rate"] == pytest.approx(row[key]) and ci["ci"][0] <= row[key] <= ci["ci"][1]
        assert len(row["outcomes"]["accepted"]) == row["n"]
    for c in m["paired"].values():  # every arm-vs-arm difference: paired CI, n, p-value
        d = c["accept_rate"]
        assert d["n"] == m["n_test_seekers"] and d["test"] == "mcnemar_exact" and 0 <= d["p_value"] <= 1
        assert d["diff"] == pytest.approx(m["quality"][c["a"]]["accept_rate"] - m["quality"][c["b"]]["accept_rate"])
        saved = json.loads((run_dir / "eval" / "texts" / f"{arm}.json").read_text())["by_seeker"]
        assert set(m["test_seeker_ids"]) <= set(saved)
    assert set(m["judge"]["comparisons"]) == {"sft_vs_zero_shot", "ppo_vs_zero_shot", "ppo_vs_sft"}
    for c in m["judge"]["comparisons"].values():
        for d in (*judge.DIMENSIONS, judge.ORACLE_FREE):  # the rubric adds one dimension the oracle does not drive
            assert c[d]["win"] + c[d]["tie"] + c[d]["lose"] == pytest.approx(1)
            assert c[d]["advantage_test"]["n"] == c["n"] and c[d]["win_ci"][0] <= c[d]["win"] <= c[d]["win_ci"][1]
    mt = m["matching"]
    assert mt["arm"] == "ppo" and mt["seekers"]["train"] == smoke_cfg.eval.matching_train_seekers
    # No seeker that SFT or the reward model trained on is in the matching model's training set.
    data = run_dir / "data"
    used = {r["seeker_id"] for kind in ("sft", "rm_pairs") for r in load_split(data, kind, "train")}
    assert len(mt["train_seeker_ids"]) == mt["seekers"]["train"] and not used & set(mt["train_seeker_ids"])
    splits = {s["id"]: s["split"] for s in load_jsonl(data / "seekers.jsonl", "seekers")}
    assert {splits[i] for i in mt["train_seeker_ids"]} == {"match"}
    for model in matching.MODELS:
        for fs in matching.FEATURE_SETS:
            assert set(mt[model][fs]) == {"test", "cold"}
        for split in ("test", "cold"):
            assert {"diff", "ci", "p_value", "n"} <= set(mt["gain"][model][split]["auc"])
    k = smoke_cfg.eval.top_k
    assert set(m["grounding"]["by_query"]) == {"cv", "zero_shot", "sft", "ppo"} and m["grounding"]["k"] == k
    for name in eval_report.PLOTS.values():
        assert (run_dir / "eval" / name).stat().st_size > 1000
    assert manifest["result"]["ppo_two_sided_rate"] == m["quality"]["ppo"]["two_sided_rate"]


def test_evaluation_reuses_saved_texts_and_can_use_an_endpoint_judge(evaluated, smoke_cfg, stub_server, monkeypatch):
    from girl_lib.config import apply_overrides

    run_dir, _ = evaluated

    def no_generation(*a, **k):
        raise AssertionError("texts were saved: nothing should be generated again")

    monkeypatch.setattr(evaluation, "generate_jds", no_generation)
    cfg = apply_overrides(smoke_cfg, {"eval.judge_url": stub_server, "eval.judge_pairs": 2})
    m = evaluation.run_evaluation(cfg, run_dir, log=lambda *a: None)
    assert m["judge"]["kind"] == "endpoint" and len(StubChat.requests) == 3 * 2 * 2  # 3 pairs of arms, 2 seekers, 2 orders
    assert m["judge"]["comparisons"]["ppo_vs_sft"]["n"] == 2


def test_report_has_the_evaluation_tables(evaluated):
    from girl_lib.report import write_report

    run_dir, _ = evaluated
    text = write_report(run_dir, "smoke").read_text()
    assert "## Evaluation" in text and "| two_sided_rate |" in text and "![judge](eval/judge.png)" in text
    assert "CV only" in text and "cv+generated" in text


def test_recommend_cli_on_a_sample_cv(evaluated, tmp_path):
    run_dir, _ = evaluated
    cv = tmp_path / "cv.txt"
    cv.write_text("Senior cloud engineer in Berlin, 7 years. Skills: Python, Kubernetes, AWS, Terraform.\n")
    proc = subprocess.run([sys.executable, "-m", "girl_lib.cli", "recommend", "--profile", "smoke", "--run-dir",
                           str(run_dir), "--cv", str(cv), "--top-k", "3", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["arm"] == "ppo" and isinstance(rec["generated_jd"], str)
    jobs = {json.loads(line)["id"] for line in (run_dir / "data" / "jobs.jsonl").read_text().splitlines()}
    sims = [p["similarity"] for p in rec["postings"]]
    assert len(rec["postings"]) == 3 and all(p["job_id"] in jobs for p in rec["postings"])
    assert sims == sorted(sims, reverse=True) and [p["rank"] for p in rec["postings"]] == [1, 2, 3]


def test_recommend_without_a_trained_generator_exits_2(smoke_run, tmp_path):
    from girl_lib.cli import main
    from girl_lib.rundir import link_stages

    link_stages(smoke_run, tmp_path, ("data",))
    cv = tmp_path / "cv.txt"
    cv.write_text("Data analyst in Paris.")
    proc = subprocess.run([sys.executable, "-m", "girl_lib.cli", "recommend", "--profile", "smoke", "--run-dir",
                           str(tmp_path), "--cv", str(cv)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no trained generator" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert main(["recommend", "--profile", "smoke", "--run-dir", str(tmp_path), "--cv", str(tmp_path / "nope.txt")]) == 2


@pytest.mark.slow
def test_minilm_loads_offline_and_ranks_by_meaning():
    from girl_lib.embed import load_embedder

    e = load_embedder("minilm")
    x = e.encode(["Senior Python developer, backend services", "Backend software engineer writing Python",
                  "Nurse for the night shift in a hospital"])
    # float32 unit vectors, their norms recomputed over 384 terms: a few ulps of 1, 384 times
    # (an unnormalised embedding is off by O(1))
    from conftest import fp_tol

    assert x.shape == (3, 384) and np.allclose(np.linalg.norm(x, axis=1), 1, rtol=0,
                                               atol=fp_tol(np.float32, 1.0, n_terms=x.shape[1]))
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_evaluation_writes_in_batches_of_eval_batch_size_and_a_new_width_writes_again(smoke_cfg, tmp_path, monkeypatch):
    """eval.batch_size sets the width of the stage's generation batches (0: generation.batch_size);
    saved texts are reused at the same width and written again at another (bf16 can flip a near-tie)."""
    from girl_lib.config import apply_overrides
    from girl_lib.textgen import GenerationOutput

    widths = []

    def fake_generate_jds(cfg, run_dir, arm, cv_texts, progress=False, gen_cfg=None):
        widths.append(gen_cfg.batch_size)
        n = len(cv_texts)
        return GenerationOutput(texts=[f"JD for {cv}" for cv in cv_texts], response_ids=[[7]] * n,
                                num_tokens=[1] * n, finished=[True] * n)

    monkeypatch.setattr(evaluation, "generate_jds", fake_generate_jds)
    seekers = [{"id": f"s{i}", "cv_text": f"cv {i}"} for i in range(3)]
    quiet = dict(log=lambda *a: None)
    wide = apply_overrides(smoke_cfg, {"eval.batch_size": 5})
    got, _ = evaluation.ensure_texts(wide, tmp_path, "zero_shot", seekers, **quiet)
    assert widths == [5] and [r["text"] for r in got] == ["JD for cv 0", "JD for cv 1", "JD for cv 2"]
    evaluation.ensure_texts(wide, tmp_path, "zero_shot", seekers, **quiet)
    assert widths == [5]  # saved at this width: reused
    evaluation.ensure_texts(apply_overrides(smoke_cfg, {"eval.batch_size": 0}), tmp_path, "zero_shot", seekers, **quiet)
    assert widths == [5, smoke_cfg.generation.batch_size]
