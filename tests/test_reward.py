"""Stage 2 — the reward model on the smoke profile (tiny random-weight LLaMA, real SmolLM2 tokenizer)."""
import json
import math
import shutil

import pytest
import torch

from girl_lib import training
from girl_lib import scoring
from girl_lib.stages import reward
from girl_lib.config import apply_overrides
from girl_lib.errors import DataError, GirlError
from girl_lib.models import cpu_has_native_bf16
from girl_lib.world import load_jsonl, make_prompt
from girl_lib.metrics.scores import binary_auc
from conftest import fp_tol, head_scale


def score_tol(model, dtype=torch.float32) -> float:
    """One reward score computed two ways: its terms are bounded by :func:`head_scale` (even where
    the score cancels to ~0). In float32 the ways differ in summation order: a few ulps of that, d
    times (its dot products' length). bfloat16 autocast rounds each operand once and sums in fp32:
    a few bf16 ulps of it."""
    n_terms = model.config.hidden_size if dtype == torch.float32 else 1
    return fp_tol(dtype, head_scale(model), n_terms=n_terms)


@pytest.fixture(scope="module")
def base(smoke_cfg):
    """The tiny base as a sequence classifier with a fresh (seeded) score head."""
    return scoring.load_base(smoke_cfg)


@pytest.fixture()
def run_copy(smoke_run, tmp_path):
    """A private run dir holding a copy of the session's complete data stage."""
    shutil.copytree(smoke_run / "data", tmp_path / "data")
    return tmp_path


def test_pairwise_loss_equals_hand_computation():
    chosen, rejected = [2.0, 0.0, -1.0], [1.0, 0.0, 1.0]
    # -log sigma(d) = log(1 + e^-d) for the margins d = 1, 0, -2
    hand = (math.log(1 + math.exp(-1)) + math.log(2) + math.log(1 + math.exp(2))) / 3
    # float32 against the float64 hand value: a few ulps of the largest term (2.13), 3 terms.
    f32 = fp_tol(torch.float32, math.log(1 + math.exp(2)), n_terms=3)
    assert reward.pairwise_loss(chosen, rejected).item() == pytest.approx(hand, abs=f32)
    assert hand == pytest.approx(1.0444, abs=1e-4)  # the value to the 4 decimals shown
    # Same as TRL's RewardTrainer formula, and finite where a naive log(sigmoid) underflows.
    c, r = torch.tensor([30.0, -60.0]), torch.tensor([-30.0, 60.0])
    assert reward.pairwise_loss(c, r).item() == pytest.approx(60.0, abs=fp_tol(torch.float32, 120.0, n_terms=2))
    c, r = torch.randn(16), torch.randn(16)
    ref = -torch.nn.functional.logsigmoid(c - r)  # another kernel: a few ulps of the largest term, 16 terms
    torch.testing.assert_close(reward.pairwise_loss(c, r), ref.mean(), rtol=0,
                               atol=fp_tol(torch.float32, ref.max(), n_terms=len(ref)))


def test_score_shape_dtype_and_mixed_length_batch_equals_one_by_one(base, smoke_run):
    model, tok = base
    seekers = load_jsonl(smoke_run / "data" / "seekers.jsonl", "seekers")[:3]
    jobs = load_jsonl(smoke_run / "data" / "jobs.jsonl", "jobs")[:2]
    cvs = [seekers[0]["cv_text"], seekers[1]["cv_text"][:80], seekers[2]["cv_text"], seekers[0]["cv_text"][:40],
           seekers[1]["cv_text"]]
    jds = [jobs[0]["jd_text"], jobs[1]["jd_text"], "Title: Tester", jobs[0]["jd_text"][:60], jobs[1]["jd_text"]]
    lengths = {len(scoring.chat_ids(tok, make_prompt(c), j)) for c, j in zip(cvs, jds)}
    assert len(lengths) == 5  # really mixed lengths: most rows of a batch carry padding
    batched = scoring.score(model, tok, cvs, jds, batch_size=5)
    assert batched.shape == (5,) and batched.dtype == torch.float32 and batched.device.type == "cpu"
    alone = torch.cat([scoring.score(model, tok, [c], [j], batch_size=1) for c, j in zip(cvs, jds)])
    # Equal up to rounding (other matmul shapes); padding that leaked in moves a padded row's
    # score by ~0.1, 1000x this tolerance.
    tol = score_tol(model)
    torch.testing.assert_close(batched, alone, atol=tol, rtol=0)
    assert batched.unique().numel() == 5  # the score depends on the text, not on the padding
    # The manual forward over the exact chat, without any padding, agrees.
    ids = torch.tensor([scoring.chat_ids(tok, make_prompt(cvs[2]), jds[2])])
    with torch.no_grad():
        manual = model(input_ids=ids).logits[0, 0]
    assert abs(manual.item() - batched[2].item()) <= tol
    assert scoring.score(model, tok, [], []).shape == (0,)


def train_rows(cfg, smoke_run):
    return reward.load_pairs(smoke_run / "data", "train", cfg.reward.max_train_pairs, seed=cfg.seed)


def _trainer(cfg, smoke_run, tmp_path, n_pairs=8, **overrides):
    cfg = apply_overrides(cfg, overrides)
    train_ds, _ = reward.reward_datasets(smoke_run / "data", cfg)
    model, tok = scoring.load_base(cfg)
    return reward.make_trainer(cfg, model, tok, train_ds.select(range(n_pairs)), None, tmp_path / "trainer"), tok


def test_reward_model_sees_the_text_score_builds(smoke_cfg, smoke_run, tmp_path):
    trainer, tok = _trainer(smoke_cfg, smoke_run, tmp_path)
    rows = train_rows(smoke_cfg, smoke_run)  # the rows reward_datasets draws, in its order
    for i in range(3):
        assert trainer.train_dataset[i]["chosen_ids"] == scoring.chat_ids(tok, rows[i]["prompt"], rows[i]["chosen"])
        assert trainer.train_dataset[i]["rejected_ids"] == scoring.chat_ids(tok, rows[i]["prompt"], rows[i]["rejected"])
    text = tok.decode(trainer.train_dataset[0]["chosen_ids"])
    assert text.count("<|im_start|>") == 3 and "recruiting assistant" in text  # system, user, assistant
    assert tok.pad_token_id not in trainer.train_dataset[0]["chosen_ids"]  # pooling finds the real end


def test_training_moves_the_score_head_and_saves_it(smoke_cfg, smoke_run, tmp_path):
    from peft import PeftModel

    trainer, tok = _trainer(smoke_cfg, smoke_run, tmp_path, **{"reward.max_steps": 6, "reward.learning_rate": 1e-2})
    rows = train_rows(smoke_cfg, smoke_run)[:8]  # the 8 pairs _trainer trains on
    prompts, chosen, rejected = [r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    head_before = scoring.score_head(trainer.model).detach().clone()
    trainer.train()
    head_after = scoring.score_head(trainer.model).detach()
    assert not torch.allclose(head_before, head_after)  # the head is trained, not frozen
    assert scoring.score_head(trainer.model).requires_grad
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6

    trained = scoring.score_prompts(trainer.model, tok, prompts + prompts, chosen + rejected)
    trainer.model.save_pretrained(tmp_path / "adapter")
    fresh, _ = scoring.load_base(smoke_cfg)
    fresh_scores = scoring.score_prompts(fresh, tok, prompts + prompts, chosen + rejected)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    # Exact: the saved floats, reloaded, run through the same computation in the same batches.
    assert torch.equal(scoring.score_prompts(reloaded, tok, prompts + prompts, chosen + rejected), trained)
    assert not torch.allclose(fresh_scores, trained)  # the saved adapter and head are not a no-op
    # Learning shows on the pairs it trained on: the loss falls below its starting point.
    after = reward.pairwise_loss(trained[:8], trained[8:]).item()
    assert after < losses[0] - 0.01, (losses[0], after)


def _fake_sft(cfg, run_dir):
    """A complete SFT stage in seconds: an untrained LoRA adapter on the tiny model, saved the
    way girl_lib.stages.sft saves it (training it is test_sft's business, not this file's)."""
    from peft import get_peft_model

    from girl_lib.models import load_causal_lm
    from girl_lib.rundir import write_manifest
    from girl_lib.training import peft_lora_config

    out = run_dir / "sft"
    model, tok = load_causal_lm(cfg.model)
    get_peft_model(model, peft_lora_config(cfg.sft.lora)).save_pretrained(out / "adapter")
    tok.save_pretrained(out / "adapter")
    (out / "metrics.json").write_text(json.dumps({"base_model": cfg.model.base_model}))
    write_manifest(out, "sft", cfg.name, 0.0, {})


def test_reward_stage_writes_metrics_and_reloads_to_identical_scores(smoke_cfg, run_copy):
    from girl_lib.pipeline import run_stage

    _fake_sft(smoke_cfg, run_copy)  # so the generated-JD part runs too
    # and one sampled SFT JD a seeker, in the training pairs and in the held-out AUC
    smoke_cfg = apply_overrides(smoke_cfg, {"reward.generated_samples": 1, "reward.eval_samples": 2})
    manifest = run_stage("reward", smoke_cfg, run_copy, log=lambda *a: None)
    out = run_copy / "reward"
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "manifest.json").is_file()
    assert (out / "log_history.json").is_file() and (out / "profile.json").is_file()
    m = json.loads((out / "metrics.json").read_text())
    for key in ("pairwise_accuracy", "pairwise_accuracy_feedback", "pairwise_accuracy_hard_negative",
                "n_pairs", "n_pairs_feedback", "n_pairs_hard_negative", "auc_real", "n_real",
                "auc_generated", "n_generated", "generated_note", "global_steps", "train_pairs"):
        assert key in m, key
    assert m["global_steps"] == smoke_cfg.reward.max_steps
    assert m["n_pairs"] == m["n_pairs_feedback"] + m["n_pairs_hard_negative"] > 0
    assert 0.0 <= m["pairwise_accuracy"] <= 1.0 and m["n_real"] > 0
    n_val = sum(s["split"] == "val" for s in load_jsonl(run_copy / "data" / "seekers.jsonl", "seekers"))
    assert m["n_generated"] == min(reward.n_generated_eval(smoke_cfg), n_val) > 0
    assert m["n_sampled"] == 2 * m["n_generated"] and "auc_sampled" in manifest["result"]
    # best of each seeker's 2 sampled JDs, from the rows eval_scores.json keeps
    assert m["best_of_n"] == reward.best_of_n(reward.load_eval_scores(run_copy)["sampled"], seed=smoke_cfg.seed)
    assert m["best_of_n"]["n"] == 2 and m["best_of_n"]["n_seekers"] == m["n_generated"]
    assert manifest["result"]["pairwise_accuracy"] == m["pairwise_accuracy"]
    # Generated pairs (reward.generated_pairs train seekers' zero-shot and SFT JDs, oracle-labelled)
    # joined the training rows; the blind-spot check scored zero-shot vs SFT JDs on val seekers.
    by_kind = m["train_pairs_by_kind"]
    assert by_kind["generated"] > 0 and m["generated_pairs_seekers"] == smoke_cfg.reward.generated_pairs
    assert m["train_pairs"] == sum(by_kind.values()) and m["train_pairs_dropped_too_long"] == 0
    assert sum(m["generated_pairs_rejected_by_arm"].values()) == by_kind["generated"]
    arms = {"zero_shot", "sft", reward.sample_arm(1)}
    assert set(m["generated_pairs_rejected_by_arm"]) == set(m["generated_pairs_accepted_by_arm"]) == arms
    for arm in arms:  # every seeker's JD of an arm is either accepted or a rejected side (or has no chosen)
        assert m["generated_pairs_accepted_by_arm"][arm] + m["generated_pairs_rejected_by_arm"][arm] \
            <= m["generated_pairs_seekers"]
    spot = m["blind_spot"]
    assert spot["n"] > 0 and spot["source"] == "generated"  # the fake SFT stage wrote no oracle_val.json
    assert {"zero_shot_rm_mean", "sft_rm_mean", "zero_shot_below_sft"} <= set(spot)
    assert manifest["result"]["blind_spot_zero_shot_rm"] == spot["zero_shot_rm_mean"]

    ev = reward.load_eval_scores(run_copy)
    assert (len(ev["pairs"]), len(ev["real"]), len(ev["generated"]), len(ev["sampled"])) \
        == (m["n_pairs"], m["n_real"], m["n_generated"], m["n_sampled"])
    assert [r["seeker_id"] for r in ev["sampled"]] == [r["seeker_id"] for r in ev["generated"]] * 2  # same seekers
    acc = sum(p["chosen"] > p["rejected"] for p in ev["pairs"]) / len(ev["pairs"])
    assert acc == pytest.approx(m["pairwise_accuracy"])
    # Reloaded from disk (LoRA + trained score head), the model gives the stage's scores again.
    model, tok = scoring.load_reward_model(smoke_cfg, run_copy)
    seekers = {s["id"]: s for s in load_jsonl(run_copy / "data" / "seekers.jsonl", "seekers")}
    jobs = {j["id"]: j for j in load_jsonl(run_copy / "data" / "jobs.jsonl", "jobs")}
    rows = ev["real"][:6]
    again = scoring.score(model, tok, [seekers[r["seeker_id"]]["cv_text"] for r in rows],
                         [jobs[r["job_id"]]["jd_text"] for r in rows])
    # The stage scored these in other batches (other padding, other matmul shapes): up to rounding.
    torch.testing.assert_close(again, torch.tensor([r["score"] for r in rows]), atol=score_tol(model), rtol=0)
    fig = reward.plot_report(run_copy)  # the notebook's figure builds from these files
    assert len(fig.axes) == 3


def test_generated_part_is_skipped_with_a_note_without_sft(smoke_cfg, run_copy, base):
    model, tok = base
    m, rows = reward.evaluate_generated(smoke_cfg, run_copy, model, tok, 4)
    assert m["n_generated"] == 0 and m["auc_generated"] is None and "skipped" in m["generated_note"] and rows == []
    m, rows = reward.evaluate_sampled(smoke_cfg, run_copy, model, tok, 4, samples=2)
    assert m["n_sampled"] == 0 and m["auc_sampled"] is None and "skipped" in m["sampled_note"] and rows == []
    m, rows = reward.evaluate_sampled(smoke_cfg, run_copy, model, tok, 4, samples=0)
    assert m["n_sampled"] == 0 and "off" in m["sampled_note"] and rows == []


def _fake_sampler(monkeypatch, answers):
    """Replace the SFT model's sampling: a prompt's ``c``-th draw in a call is ``answers(prompt, c)``.
    Returns the list of ``(do_sample, temperature, seed)`` of each call."""
    from girl_lib.stages.reward import pairs as pairs_mod

    calls = []

    def fake_generate(model_, tok, prompts, gen_cfg, *, do_sample=False, system_prompt=None, seed=None, **kw):
        calls.append((do_sample, gen_cfg.temperature, seed))
        counts: dict = {}
        out = []
        for p in prompts:
            counts[p] = counts.get(p, 0) + 1
            out.append(answers(p, counts[p]))
        return type("Out", (), {"texts": out})()

    monkeypatch.setattr(pairs_mod, "generate_from_config", fake_generate)
    return calls


def test_sampled_jds_are_scored_and_labelled_per_draw(smoke_cfg, run_copy, base, monkeypatch):
    """Each val seeker's draws become rows labelled by the oracle's verdict on that very text,
    drawn at PPO's temperature with a seed of their own (not the training pairs' seed)."""
    from girl_lib.stages.reward import evaluation
    from girl_lib.training import split_seekers
    from girl_lib.world import Oracle

    oracle = Oracle(noise=smoke_cfg.data.recruiter_noise)
    seekers = split_seekers(run_copy / "data", 3, seed=smoke_cfg.seed)
    real = reward.accepted_real_jds(run_copy / "data", {s["id"] for s in seekers}, oracle)
    by_prompt = {make_prompt(s["cv_text"]): s for s in seekers}
    # draw 1: an accepted real JD of the seeker's (where they have one); draw 2: not a JD at all
    calls = _fake_sampler(monkeypatch, lambda p, c: (real[by_prompt[p]["id"]] or ["no JD"])[0] if c == 1
                          else "Sure! Here is a job for you.")
    monkeypatch.setattr(evaluation, "is_complete", lambda path: True)
    monkeypatch.setattr(evaluation, "load_sft_model", lambda cfg, run_dir: (None, None))
    cfg = apply_overrides(smoke_cfg, {"ppo.temperature": 0.9})
    model, tok = base
    m, rows = reward.evaluate_sampled(cfg, run_copy, model, tok, 3, samples=2, oracle=oracle)
    assert calls == [(True, 0.9, cfg.seed + 1)]
    assert m["n_sampled"] == len(rows) == 2 * len(seekers)
    assert sorted((r["seeker_id"], r["sample"]) for r in rows) == sorted((s["id"], j) for s in seekers for j in (0, 1))
    by_id = {s["id"]: s for s in seekers}
    for r in rows:
        v = oracle.score(by_id[r["seeker_id"]], r["text"])
        assert r["oracle_accept"] == (v.parse_ok and v.p_accept > 0.5) and r["parse_ok"] == v.parse_ok
    n_pos = sum(r["oracle_accept"] for r in rows)
    assert 0 < n_pos < len(rows) and not any(r["oracle_accept"] for r in rows if r["sample"] == 1)
    assert m["sampled_positive_rate"] == pytest.approx(n_pos / len(rows))
    # The scores are the reward model's on (CV, text), as PPO computes them.
    again = scoring.score(model, tok, [by_id[r["seeker_id"]]["cv_text"] for r in rows], [r["text"] for r in rows],
                          max_length=cfg.reward.max_length)
    torch.testing.assert_close(again, torch.tensor([r["score"] for r in rows]), atol=score_tol(model), rtol=0)
    labels = [int(r["oracle_accept"]) for r in rows]
    assert m["auc_sampled"] == pytest.approx(binary_auc(labels, [r["score"] for r in rows]))


def _corrupt(run_dir, line_no=3, field="chosen"):
    path = run_dir / "data" / "rm_pairs.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    rec = json.loads(lines[line_no - 1])
    del rec[field]
    lines[line_no - 1] = json.dumps(rec) + "\n"
    path.write_text("".join(lines))
    return path


def test_bad_pair_file_fails_with_file_line_and_field(smoke_cfg, run_copy, capsys):
    from girl_lib.cli import main

    path = _corrupt(run_copy)
    with pytest.raises(DataError) as err:
        reward.train(smoke_cfg, run_copy)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 3, "chosen")
    assert not (run_copy / "reward" / "manifest.json").exists()

    assert main(["reward", "--profile", "smoke", "--run-dir", str(run_copy)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert f"{path}:3" in lines[0] and "'chosen'" in lines[0]


def test_reward_without_data_names_the_fix(smoke_cfg, tmp_path):
    with pytest.raises(GirlError, match="run 'girl data'"):
        reward.train(smoke_cfg, tmp_path)


def test_calibration_bins():
    bins = reward.calibration_bins([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 0, 0, 1, 1, 1], n_bins=3)
    assert [b["n"] for b in bins] == [2, 2, 2]
    assert [b["accept_rate"] for b in bins] == [0.0, 0.5, 1.0]
    assert bins[0]["score"] == pytest.approx(0.15)


def _eval_scores(run_dir, pair_right, real_scores, gen_scores, sampled_scores=(), sampled_text="jd"):
    """A reward stage's ``eval_scores.json`` by hand: which val pairs it ranks right, and its scores
    of four seekers' real, generated and sampled (two a seeker) JDs (labels: the oracle accepts
    seekers 0 and 1's JDs)."""
    (run_dir / "reward").mkdir(parents=True)
    kinds = ("feedback", "hard_negative")
    pairs = [{"id": f"p{i}", "kind": kinds[i % 2], "chosen": 1.0 if ok else 0.0, "rejected": 0.5}
             for i, ok in enumerate(pair_right)]
    real = [{"seeker_id": f"s{i // 2}", "job_id": f"j{i}", "score": s, "oracle_accept": i // 2 < 2}
            for i, s in enumerate(real_scores)]
    gen = [{"seeker_id": f"s{i}", "score": s, "oracle_accept": i < 2} for i, s in enumerate(gen_scores)]
    smp = [{"seeker_id": f"s{i // 2}", "sample": i % 2, "score": s, "oracle_accept": i // 2 < 2,
            "text": f"{sampled_text} {i}"} for i, s in enumerate(sampled_scores)]
    (run_dir / "reward" / "eval_scores.json").write_text(
        json.dumps({"pairs": pairs, "real": real, "generated": gen, "sampled": smp}))
    return run_dir


def test_compare_reward_models_is_paired_and_signed(tmp_path):
    # a ranks every pair right and separates accepted from rejected JDs; b gets half the pairs
    # wrong and ranks the JDs backwards.
    n = 40
    a = _eval_scores(tmp_path / "a", [True] * n, [3, 2.5, 2, 1.5, 1, 0.5, 0, -0.5], [2, 1, 0, -1],
                     [3, 2.5, 2, 1.5, 1, 0.5, 0, -0.5])
    b = _eval_scores(tmp_path / "b", [i % 2 == 0 for i in range(n)], [-0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3],
                     [-1, 0, 1, 2], [-0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3])
    ab = reward.compare_reward_models(a, b)
    assert ab["pairwise_accuracy"]["diff"] == pytest.approx(0.5)
    assert ab["pairwise_accuracy"]["n"] == n and ab["pairwise_accuracy"]["test"] == "mcnemar_exact"
    assert ab["pairwise_accuracy"]["p_value"] < 1e-5  # 20 discordant pairs, all one way
    assert ab["pairwise_accuracy_feedback"]["diff"] == pytest.approx(0.0)  # b is right on the even pairs
    assert ab["pairwise_accuracy_hard_negative"]["diff"] == pytest.approx(1.0)
    assert ab["auc_real"]["diff"] == pytest.approx(1.0) and ab["auc_real"]["n_seekers"] == 4
    assert ab["auc_generated"]["diff"] == pytest.approx(1.0)  # AUC 1 against AUC 0
    assert ab["auc_sampled"]["diff"] == pytest.approx(1.0) and ab["auc_sampled"]["n_seekers"] == 4
    ba = reward.compare_reward_models(b, a)  # the order of the arguments is the sign
    assert ba["pairwise_accuracy"]["diff"] == pytest.approx(-0.5)
    assert ba["auc_real"]["diff"] == pytest.approx(-1.0)
    same = reward.compare_reward_models(a, a)
    assert same["pairwise_accuracy"]["diff"] == 0 and same["pairwise_accuracy"]["p_value"] == 1.0
    assert ba["auc_sampled"]["diff"] == pytest.approx(-1.0)
    other = _eval_scores(tmp_path / "c", [True] * (n - 1), [0] * 8, [0] * 4)
    with pytest.raises(GirlError, match="not evaluated on the same examples"):
        reward.compare_reward_models(a, other)
    # Without sampled JDs on one side there is no sampled comparison; sampled JDs that differ are refused.
    greedy_only = _eval_scores(tmp_path / "d", [True] * n, [0] * 8, [0] * 4)
    assert reward.compare_reward_models(a, greedy_only)["auc_sampled"] is None
    resampled = _eval_scores(tmp_path / "e", [True] * n, [0] * 8, [0] * 4, [0] * 8, sampled_text="another jd")
    with pytest.raises(GirlError, match="8 of 8 texts differ"):
        reward.compare_reward_models(a, resampled)


def test_best_of_n_picks_by_score_and_is_signed():
    """Three seekers, three draws each; only the oracle knows which are accepted."""
    acc = [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    rows = lambda scores: [{"seeker_id": f"s{i}", "score": scores[i][j], "oracle_accept": bool(acc[i][j])}
                           for i in range(3) for j in range(3)]
    right = reward.best_of_n(rows([[3, 1, 0], [0, 1, 2], [1, 2, 3]]))  # ranks each seeker's accepted JD first
    wrong = reward.best_of_n(rows([[0, 1, 3], [2, 1, 0], [1, 2, 3]]))  # ranks it last
    assert right["n"] == 3 and right["n_seekers"] == 3
    assert right["kl_bound"] == pytest.approx(math.log(3) - 2 / 3)
    assert right["random_draw"] == pytest.approx(2 / 9) and right["oracle_pick"] == pytest.approx(2 / 3)
    assert right["best_of_n"] == pytest.approx(2 / 3) and wrong["best_of_n"] == 0
    assert right["gain"]["diff"] == pytest.approx(2 / 3 - 2 / 9)
    assert wrong["gain"]["diff"] == pytest.approx(0 - 2 / 9)  # a model that ranks backwards loses to chance
    with pytest.raises(GirlError, match="different numbers"):
        reward.best_of_n(rows([[3, 1, 0], [0, 1, 2], [1, 2, 3]])[:-1])
    with pytest.raises(GirlError, match="eval_samples"):
        reward.best_of_n([])


def test_precision_follows_the_profile(smoke_cfg, base, smoke_run):
    # smoke pins float32: exact scores in the tests; dtype=auto on a bf16-capable CPU autocasts.
    assert training.precision_flags(smoke_cfg)["bf16"] is False
    auto = apply_overrides(smoke_cfg, {"model.dtype": "auto"})
    assert training.precision_flags(auto)["bf16"] is cpu_has_native_bf16()
    model, tok = base
    rows = reward.load_pairs(smoke_run / "data", "val")[:4]
    args = ([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    fp32 = scoring.score_prompts(model, tok, *args)
    bf16 = scoring.score_prompts(model, tok, *args, bf16=True)
    assert bf16.dtype == torch.float32 and not torch.equal(fp32, bf16)  # autocast really ran
    # bf16 keeps 8 significant bits; a score read at the wrong token moves by ~0.36, past this.
    torch.testing.assert_close(bf16, fp32, atol=score_tol(model, torch.bfloat16), rtol=0)


# --------------------------------------------------------------------------------------------
# One truncation rule, and the generated pairs
# --------------------------------------------------------------------------------------------
def test_one_truncation_rule_cuts_the_cv_for_training_and_scoring_alike(smoke_cfg, smoke_run, tmp_path, base,
                                                                        monkeypatch):
    """A pair over reward.max_length: TRL keeps it (its CV cut, nothing else) and reads exactly the
    token ids that scoring reads, through the one function scoring.fit_prompt."""
    from girl_lib.stages.reward import pairs as reward_pairs
    from girl_lib.world import SYSTEM_PROMPT

    _, tok = base
    row = max(reward.load_pairs(smoke_run / "data", "train"), key=lambda r: len(r["prompt"]))
    full = {k: scoring.chat_ids(tok, row["prompt"], row[k]) for k in ("chosen", "rejected")}
    longer = max(full, key=lambda k: len(full[k]))
    max_length = len(full[longer]) - 25  # 25 tokens too long: the CV must lose at least that much
    cfg = apply_overrides(smoke_cfg, {"reward.max_length": max_length})
    assert reward_pairs.fit_prompt is scoring.fit_prompt  # the training rows use scoring's own function
    calls = []
    real_fit = scoring.fit_prompt

    def spy(*a, **k):
        calls.append(a[1])
        return real_fit(*a, **k)

    monkeypatch.setattr(scoring, "fit_prompt", spy)
    monkeypatch.setattr(reward_pairs, "fit_prompt", spy)
    ds, _ = reward.reward_datasets(smoke_run / "data", cfg, tok, extra=[{**row, "kind": "generated"}])
    trainer = reward.make_trainer(cfg, scoring.load_base(cfg)[0], tok, ds.select([len(ds) - 1]), None, tmp_path / "t")
    assert len(trainer.train_dataset) == 1  # kept, not dropped
    assert row["prompt"] in calls  # the training row went through it
    trained = trainer.train_dataset[0]
    # Scoring the pair (as evaluate_pairs does) feeds the model exactly the ids TRL trained on.
    fed = []
    real_ids = scoring.fitted_chat_ids
    monkeypatch.setattr(scoring, "fitted_chat_ids", lambda *a: fed.append(real_ids(*a)) or fed[-1])
    model, _ = base
    reward.evaluate_pairs(model, tok, [row], max_length=max_length)
    assert fed == [trained["chosen_ids"], trained["rejected_ids"]]
    # ... and so does scoring the longer JD alone with the raw prompt (score / score_prompts, PPO's path).
    fed.clear()
    scoring.score_prompts(model, tok, [row["prompt"]], [row[longer]], max_length=max_length)
    assert fed == [trained[f"{longer}_ids"]]
    assert len(trained[f"{longer}_ids"]) <= max_length
    # What was cut: the end of the CV. The system prompt, the instruction and both JDs are whole.
    fitted = reward.fitted_pair_prompt(tok, row, max_length)
    assert row["prompt"].startswith(fitted) and len(fitted) < len(row["prompt"])
    assert fitted.startswith(scoring.CV_HEADER)
    text = tok.decode(trained["rejected_ids"])
    assert SYSTEM_PROMPT in text and row["rejected"] in text
    # A chat that fits is left alone.
    assert scoring.fit_prompt(tok, row["prompt"], [row["chosen"]], 10_000) == row["prompt"]


def test_generated_pairs_are_labelled_by_the_oracle(smoke_cfg, smoke_run):
    from girl_lib.world import Oracle

    oracle = Oracle(noise=smoke_cfg.data.recruiter_noise)
    data = smoke_run / "data"
    seekers = load_jsonl(data / "seekers.jsonl", "seekers")
    real = reward.accepted_real_jds(data, {s["id"] for s in seekers}, oracle)
    s0, s1 = [s for s in seekers if real[s["id"]]][:2]
    good = real[s0["id"]][0]  # a JD the oracle accepts for s0, standing in for a good generation
    assert oracle.score(s0, good).p_accept > 0.5
    texts = {"zero_shot": ["Sure! Here is a great job for you.", "blah"], "sft": [good, "also not a JD"]}
    pairs = reward.label_generated([s0, s1], texts, real, oracle, seed=0)
    by = {(p["prompt"] == make_prompt(s0["cv_text"]), p["rejected_arm"]): p for p in pairs}
    # s0: the zero-shot ramble loses to s0's own accepted SFT JD; the accepted SFT JD is no rejected side.
    assert set(by) == {(True, "zero_shot"), (False, "zero_shot"), (False, "sft")}
    assert by[True, "zero_shot"]["chosen"] == good and by[True, "zero_shot"]["chosen_source"] == "generated"
    # s1: neither generation is acceptable: each loses to one of s1's accepted real JDs.
    for arm in ("zero_shot", "sft"):
        p = by[False, arm]
        assert p["chosen_source"] == "real" and p["chosen"] in real[s1["id"]] and p["rejected"] == texts[arm][1]
        assert not p["rejected_parse_ok"] or p["rejected_p_accept"] <= 0.5
    assert all(p["kind"] == "generated" for p in pairs)


def test_a_sampled_jd_the_oracle_accepts_beats_the_rejected_greedy_ones(smoke_cfg, smoke_run):
    from girl_lib.world import Oracle

    oracle = Oracle(noise=smoke_cfg.data.recruiter_noise)
    data = smoke_run / "data"
    seekers = load_jsonl(data / "seekers.jsonl", "seekers")
    real = reward.accepted_real_jds(data, {s["id"] for s in seekers}, oracle)
    s0 = next(s for s in seekers if len(real[s["id"]]) >= 1)
    good = real[s0["id"]][0]
    assert oracle.score(s0, good).p_accept > 0.5
    texts = {"zero_shot": ["Sure! Here is a job."], "sft": ["not a JD"],
             reward.sample_arm(1): ["still not a JD"], reward.sample_arm(2): [good]}
    pairs = reward.label_generated([s0], texts, real, oracle, seed=0)
    # The accepted sample is the chosen side of every other arm's pair, and is no rejected side itself.
    assert sorted(p["rejected_arm"] for p in pairs) == sorted(["zero_shot", "sft", reward.sample_arm(1)])
    assert all(p["chosen"] == good and p["chosen_source"] == "generated" for p in pairs)


def test_generated_pairs_judge_each_jd_once(smoke_cfg, smoke_run, monkeypatch):
    """The oracle reads every generated JD once: the pairs and the summary's counts share its verdicts."""
    from girl_lib.stages.reward import pairs as pairs_mod
    from girl_lib.world import Oracle

    class CountingOracle(Oracle):
        calls = 0

        def score(self, seeker, text):
            CountingOracle.calls += 1
            return super().score(seeker, text)

    arms = ("zero_shot", "sft", reward.sample_arm(1))
    monkeypatch.setattr(pairs_mod, "is_complete", lambda path: True)
    monkeypatch.setattr(pairs_mod, "generate_arms", lambda cfg, run_dir, seekers, samples=0: {
        arm: ["Sure! Here is a job."] * len(seekers) for arm in arms})
    cfg = apply_overrides(smoke_cfg, {"reward.generated_pairs": 5, "reward.generated_samples": 1})
    pairs, summary = reward.generated_pairs(cfg, smoke_run, CountingOracle(noise=cfg.data.recruiter_noise))
    n = summary["generated_pairs_seekers"]
    assert n == 5 and CountingOracle.calls == n * len(arms)
    assert summary["generated_pairs_accepted_by_arm"] == {arm: 0 for arm in arms}  # no ramble is accepted
    assert sum(summary["generated_pairs_rejected_by_arm"].values()) == len(pairs) > 0


def test_generate_arms_samples_each_seeker_as_ppo_does(smoke_cfg, monkeypatch):
    """The sampled arms hold each seeker's own samples, drawn with PPO's temperature and the run's seed."""
    import contextlib
    from girl_lib.stages.reward import pairs as pairs_mod

    calls = []

    class FakeModel:
        adapter = True

        @contextlib.contextmanager
        def disable_adapter(self):
            self.adapter = False
            yield
            self.adapter = True

    model = FakeModel()

    def fake_generate(model_, tok, prompts, gen_cfg, *, do_sample=False, system_prompt=None, seed=None, **kw):
        calls.append((do_sample, gen_cfg.temperature, seed, model_.adapter))
        counts: dict = {}
        out = []
        for p in prompts:  # text = "<prompt>#<how often this prompt was seen in this call>"
            counts[p] = counts.get(p, 0) + 1
            out.append(f"{p}#{counts[p]}")
        return type("Out", (), {"texts": out})()

    monkeypatch.setattr(pairs_mod, "load_sft_model", lambda cfg, run_dir: (model, None))
    monkeypatch.setattr(pairs_mod, "generate_from_config", fake_generate)
    cfg = apply_overrides(smoke_cfg, {"ppo.temperature": 0.9, "generation.temperature": 0.3})
    seekers = [{"id": f"s{i}", "cv_text": f"CV number {i}"} for i in range(3)]
    out = reward.generate_arms(cfg, None, seekers, samples=2)
    assert list(out) == ["zero_shot", "sft", reward.sample_arm(1), reward.sample_arm(2)]
    for j in (1, 2):
        assert out[reward.sample_arm(j)] == [f"{make_prompt(s['cv_text'])}#{j}" for s in seekers]
    assert out["sft"] == [f"{make_prompt(s['cv_text'])}#1" for s in seekers]
    # zero-shot: greedy, adapter off; SFT: greedy; samples: PPO's temperature, the run's seed, adapter on.
    assert calls == [(False, 0.3, None, False), (False, 0.3, None, True), (True, 0.9, cfg.seed, True)]
    assert list(reward.generate_arms(cfg, None, seekers)) == ["zero_shot", "sft"]  # no samples by default
