"""Stage 3 — the kit's PPO loop on the smoke profile (tiny random-weight LLaMA).

The maths (GAE, whitening, k1/k3, clipped losses) is tested in test_ppo_core.py; here: the loop's
own guarantees — masking, micro-batching, the first minibatch, LoRA moving, the log, resume,
and two real processes.
"""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from girl_lib.stages.ppo import loop as ppo_loop
from girl_lib.stages.ppo import normalize as ppo_normalize
from girl_lib import generators
from girl_lib import scoring
from girl_lib.rundir import link_stages
from girl_lib.stages import ppo
from girl_lib.config import apply_overrides
from conftest import fp_tol, head_scale

REPO = Path(__file__).resolve().parents[1]
TIME_KEYS = {k for k in ppo.LOG_KEYS if k.startswith("time/")} | {"generation_tokens_per_s"}


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stages_done(smoke_cfg, smoke_run):
    """The session's smoke run dir with data, sft and reward complete (skipped if already done)."""
    from girl_lib.pipeline import run_stage

    for stage in ("sft", "reward"):
        run_stage(stage, smoke_cfg, smoke_run, log=lambda *a: None)
    return smoke_run


def private_run(stages_done: Path, path: Path) -> Path:
    """A run dir of its own whose data/sft/reward are links to the session's."""
    link_stages(stages_done, path, ("data", "sft", "reward"))
    return path


@pytest.fixture(scope="module")
def tiny_policy(smoke_cfg):
    """The tiny LLaMA with a LoRA whose B matrices are non-zero (so every LoRA weight gets a gradient)."""
    from peft import get_peft_model

    from girl_lib.models import load_causal_lm
    from girl_lib.training import peft_lora_config

    base, tok = load_causal_lm(smoke_cfg.model)
    torch.manual_seed(0)
    policy = get_peft_model(base, peft_lora_config(smoke_cfg.ppo.lora)).eval()
    with torch.no_grad():
        for name, prm in policy.named_parameters():
            if "lora_B" in name:
                prm.normal_(0, 0.02)
    model = ppo.PolicyWithValueHead(policy, value_backbone_grad=True)  # gradients everywhere: a stricter test
    with torch.no_grad():
        model.value_head.weight.normal_(0, 0.1)
    return model, tok


def fake_rollout(model, tok, cfg, lengths=(5, 2, 7, 3), seed=0):
    """A scored rollout batch built from random prompts/responses of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    queries = [torch.randint(10, 1000, (n,), generator=g).tolist() for n in (6, 9, 4, 8)][:len(lengths)]
    responses = [torch.randint(10, 1000, (n - 1,), generator=g).tolist() + [tok.eos_token_id] for n in lengths]
    batch = ppo.build_batch(queries, responses, tok.pad_token_id, tok.eos_token_id)
    out = ppo.rollout_forward(model, batch, cfg.ppo.temperature, batch_size=len(lengths))
    batch.update(logprobs=out["logprobs"], values=out["values"], ref_logprobs=out["logprobs"] - 0.05)
    scores = torch.randn(len(lengths), generator=g)
    return ppo.compute_advantages(batch, scores, kl_coef=0.1, p=cfg.ppo)


def scaled_error(a, b):
    """Largest absolute difference relative to the largest entry (float32 sums differ by ~1e-6)."""
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


# --------------------------------------------------------------------------------------------
# Tensors of a rollout
# --------------------------------------------------------------------------------------------
def test_samples_per_prompt_groups_each_seeker_k_times(smoke_cfg, monkeypatch):
    """k JDs per seeker: rollout_batch_size / k distinct seekers, each listed k times in a row (the
    groups the leave-one-out baseline reads); k = 1 draws exactly the seekers it always drew."""
    import random

    from girl_lib.stages.ppo import rollout
    from girl_lib.textgen import GenerationOutput

    asked = []

    def fake_generate(policy, tok, prompts, **kw):
        asked.append(list(prompts))
        return GenerationOutput(texts=[""] * len(prompts), response_ids=[[1]] * len(prompts),
                                num_tokens=[1] * len(prompts), finished=[True] * len(prompts))

    monkeypatch.setattr(rollout, "generate", fake_generate)
    pool = [{"id": f"s{i}", "cv_text": f"CV {i}"} for i in range(50)]
    cfg1 = apply_overrides(smoke_cfg, {"ppo.rollout_batch_size": 8})
    seekers, _ = rollout.sample_responses(None, None, pool, cfg1, seed=3)
    assert seekers == random.Random(3).sample(pool, 8)
    cfg4 = apply_overrides(smoke_cfg, {"ppo.rollout_batch_size": 8, "ppo.samples_per_prompt": 4})
    seekers, _ = rollout.sample_responses(None, None, pool, cfg4, seed=3)
    ids = [s["id"] for s in seekers]
    assert len(ids) == 8 and len(set(ids)) == 2
    assert ids[:4] == [ids[0]] * 4 and ids[4:] == [ids[4]] * 4
    assert len(asked[-1]) == 8  # one sampled JD per row: the group's JDs are drawn independently


def test_build_batch_left_pads_queries_right_pads_and_cuts_responses():
    eos, pad = 2, 0
    batch = ppo.build_batch([[5, 6, 7], [8]], [[9, eos, 11, 12], [13, 14, 15]], pad, eos)
    assert batch["context_length"] == 3
    assert batch["query_responses"].tolist() == [[5, 6, 7, 9, eos, pad, pad], [pad, pad, 8, 13, 14, 15, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 0]]
    # Tokens after the first EOS become padding; the EOS itself is a real (scored) token.
    assert batch["response_mask"].tolist() == [[True, True, False, False], [True, True, True, False]]
    assert batch["finished"].tolist() == [True, False]  # the second never stopped: EOS penalty
    penalised = ppo.apply_missing_eos_penalty(torch.tensor([1.0, 1.0]), batch["finished"], 0.5)
    assert penalised.tolist() == [1.0, 0.5]


def test_format_penalty_hits_exactly_the_jds_the_oracle_cannot_parse(smoke_cfg, smoke_run):
    """ppo.format_penalty: a JD with an invented title (the sampled JDs' commonest failure) or no
    JD at all loses the penalty, a readable one keeps its score; the missing-EOS penalty adds up
    on top; 0 leaves every score as the reward model gave it."""
    from girl_lib.textgen import GenerationOutput
    from girl_lib.world import Oracle, load_jsonl

    data = smoke_run / "data"
    seekers = load_jsonl(data / "seekers.jsonl", "seekers")[:3]
    job = next(j for j in load_jsonl(data / "jobs.jsonl", "jobs") if j["title"] in j["jd_text"])
    invented = job["jd_text"].replace(job["title"], "Galactic Wizard")
    texts = [job["jd_text"], invented, "not a job description"]
    ro = ppo_loop.Rollout(seekers, GenerationOutput(texts=texts), {"finished": torch.tensor([True, True, False])},
                          entropy=torch.zeros(3, 1))
    scorer = lambda s, t: (torch.zeros(len(t)), torch.full((len(t),), 0.5))  # the RM likes all three equally
    oracle = Oracle(noise=smoke_cfg.data.recruiter_noise)
    cfg = apply_overrides(smoke_cfg, {"ppo.format_penalty": 2.0, "ppo.missing_eos_penalty": 1.0,
                                      "ppo.samples_per_prompt": 1})
    sc = ppo_loop.score_rollout(ro, scorer, oracle, cfg.ppo)
    assert [oracle.score(x, t).parse_ok for x, t in zip(seekers, texts)] == [True, False, False]
    assert sc.scores.tolist() == [0.5, -1.5, -2.5] and torch.equal(sc.rewards, sc.scores)
    assert sc.oracle["parse_rate"] == pytest.approx(1 / 3)
    off = ppo_loop.score_rollout(ro, scorer, oracle, apply_overrides(cfg, {"ppo.format_penalty": 0}).ppo)
    assert off.scores.tolist() == [0.5, 0.5, -0.5]


def test_grpo_and_rloo_rewards_carry_the_same_penalties(smoke_cfg, smoke_run):
    """TRL's reward function (--algo grpo|rloo) subtracts the missing-EOS and format penalties as
    PPO's loop does (here on the oracle's p_accept, unnormalised, so every number is known)."""
    from girl_lib.stages.ppo.grpo_rloo import make_reward_fn
    from girl_lib.world import Oracle, load_jsonl

    data = smoke_run / "data"
    seeker = load_jsonl(data / "seekers.jsonl", "seekers")[0]
    job = next(j for j in load_jsonl(data / "jobs.jsonl", "jobs") if j["title"] in j["jd_text"])
    texts = [job["jd_text"], job["jd_text"].replace(job["title"], "Galactic Wizard"), job["jd_text"]]
    oracle = Oracle(noise=smoke_cfg.data.recruiter_noise)
    cfg = apply_overrides(smoke_cfg, {"ppo.reward_source": "oracle", "ppo.normalize_scores": False,
                                      "ppo.format_penalty": 2.0, "ppo.missing_eos_penalty": 1.0})
    eos = 7
    fn = make_reward_fn(cfg, None, None, eos, {seeker["id"]: seeker}, oracle)
    rewards = fn(["p"] * 3, texts, [[3, eos], [3, eos], [3, 4]], [seeker["id"]] * 3)
    p = [torch.tensor(oracle.score(seeker, t).p_accept).item() for t in texts]  # as float32, like the scorer
    assert rewards == pytest.approx([p[0], p[1] - 2.0, p[2] - 1.0], abs=1e-6)


# --------------------------------------------------------------------------------------------
# The loss: masking and micro-batching
# --------------------------------------------------------------------------------------------
def test_exact_kl_along_sums_the_full_vocabulary_kl_over_real_response_tokens(tiny_policy):
    """Against torch.distributions on each row alone; 0 where the adapter is off; micro-batches agree."""
    from torch.distributions import Categorical, kl_divergence

    model, tok = tiny_policy
    g = torch.Generator().manual_seed(1)
    queries = [torch.randint(10, 1000, (n,), generator=g).tolist() for n in (6, 9, 4)]
    responses = [torch.randint(10, 1000, (n,), generator=g).tolist() + [tok.eos_token_id] for n in (4, 1, 6)]
    batch = ppo.build_batch(queries, responses, tok.pad_token_id, tok.eos_token_id)
    kl = ppo.exact_kl_along(model, batch, batch_size=2)
    tols = []
    for i, (q, r) in enumerate(zip(queries, responses)):
        ids = torch.tensor([q + r])
        with torch.no_grad():
            pol = model.policy(input_ids=ids).logits[0, len(q) - 1:-1]
            with model.policy.disable_adapter():
                ref = model.policy(input_ids=ids).logits[0, len(q) - 1:-1]
        expected = kl_divergence(Categorical(logits=pol), Categorical(logits=ref)).sum()
        assert expected > 1e-4  # the LoRA really moves the policy
        # The KL is a sum of differences of nearly equal fp32 log-probs, and the batched forward
        # pass (padding, other matmul shapes) rounds differently from this one-row pass. Each
        # token's term is then off by a few ulps of the largest log-prob magnitude involved
        # (|logit| + log V), summed over the row's tokens: the tolerance follows from the dtype and
        # the magnitudes, not from one machine's result. It stays below one token's KL, so a
        # token counted twice or dropped would still fail.
        scale = float(pol.abs().max() + ref.abs().max()) + math.log(len(tok))
        tol = fp_tol(torch.float32, scale, n_terms=len(r))  # 8 ulps of scale per token
        assert tol < float(expected) / len(r)
        assert abs(float(kl[i]) - float(expected)) <= tol, (float(kl[i]), float(expected), tol)
        tols.append(tol)
    torch.testing.assert_close(ppo.exact_kl_along(model, batch, batch_size=3), kl, rtol=0, atol=max(tols))
    with model.policy.disable_adapter():
        # π = π_ref: both log-softmaxes come from the same forward on the same batch, so
        # log π - log π_ref is exactly 0 at every entry and so is the KL, on any machine.
        assert torch.equal(ppo.exact_kl_along(model, batch, batch_size=2), torch.zeros(len(queries)))


def test_masked_positions_contribute_nothing_to_the_ppo_loss(smoke_cfg, tiny_policy):
    model, tok = tiny_policy
    batch = fake_rollout(model, tok, smoke_cfg)
    mb = ppo.select_rows(batch, torch.arange(4))
    mask = mb["response_mask"]
    assert (~mask).any()  # there is padding to perturb
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(*mask.shape, len(tok), generator=g)
    values = torch.randn(*mask.shape, generator=g)

    def loss_and_grads(lg, v):
        lg, v = lg.clone().requires_grad_(), v.clone().requires_grad_()
        loss, _ = ppo.ppo_loss(lg, v, mb, smoke_cfg.ppo)
        loss.backward()
        return loss.detach(), lg.grad, v.grad

    loss, g_logits, g_values = loss_and_grads(logits, values)
    junk = ~mask
    logits2 = logits.clone()
    logits2[junk] = 50 * torch.randn(int(junk.sum()), len(tok), generator=g)
    values2 = torch.where(junk, 1e3 * torch.randn(values.shape, generator=g), values)
    loss2, g_logits2, g_values2 = loss_and_grads(logits2, values2)
    # Exact: every reduction of the loss takes torch.where(mask, x, 0), so the real positions' terms
    # and the zeros summed are the same floats in the same order, whatever sits under the mask.
    assert loss2.item() == loss.item()
    assert torch.equal(g_logits2, g_logits) and torch.equal(g_values2, g_values)
    assert g_logits[junk].abs().max() == 0 and g_values[junk].abs().max() == 0
    assert g_logits[mask].abs().max() > 0  # real tokens do get a gradient

    # Through the model: whatever token ids sit after the EOS, the loss is the same.
    def model_loss(b):
        m = ppo.select_rows(b, torch.arange(4))
        lg, v = model(m["input_ids"], m["attention_mask"], m["context_length"])
        return ppo.ppo_loss(lg, v, m, smoke_cfg.ppo)[0].item()

    scrambled = dict(batch)
    qr = batch["query_responses"].clone()
    resp_cols = qr[:, batch["context_length"]:]
    resp_cols[~batch["response_mask"]] = 777  # anything but the pad token
    scrambled["query_responses"] = qr
    with torch.no_grad():
        # Exact: post-EOS positions are masked out of attention (exactly 0 weight; and a causal
        # model never looks right) and out of every loss reduction, and matmuls treat positions
        # separately: a real position's floats never see a post-EOS token. One that leaked in
        # would change the loss by O(1/#tokens).
        assert model_loss(scrambled) == model_loss(batch)


def test_micro_batches_give_the_minibatch_gradient(smoke_cfg, tiny_policy):
    model, tok = tiny_policy
    batch = fake_rollout(model, tok, smoke_cfg, lengths=(9, 2, 6, 3))  # very different token counts
    idx = torch.tensor([2, 0, 3, 1])
    # Micro-batches change matmul shapes and summation order: results differ by rounding only.
    # Stats are means over the minibatch's N tokens: a few ulps of a term's size, N times (vf_loss
    # and ratio sum non-negative terms: their own value; pg_loss cancels to ~0, its floor is its
    # terms' size max|A|·(1 + clip)). A dropped token moves vf_loss by ~5%, far outside this.
    n_tok = int(batch["response_mask"][idx].sum())
    term = {"pg_loss": float(batch["advantages"][idx].abs().max()) * (1 + smoke_cfg.ppo.cliprange)}
    # A gradient entry sums a term per position (P), each built from d-term dot products: P·d
    # roundings, relative to the largest entry. A dropped token moves every LoRA gradient by >4%
    # (over 10x this), the naive mean of micro-batch means by >1000% (checked below).
    n_pos = int(batch["attention_mask"][idx].sum())
    grad_tol = fp_tol(torch.float32, 1.0, n_terms=n_pos * model.policy.config.hidden_size)
    grads = {}
    for micro in (4, 1, 3):
        p = apply_overrides(smoke_cfg, {"ppo.micro_batch_size": micro}).ppo
        model.zero_grad(set_to_none=True)
        stats = ppo.accumulate_minibatch(model, batch, idx, p)
        grads[micro] = lora_grads(model)
        if micro == 4:
            full_stats = stats
        else:
            for k in ("pg_loss", "vf_loss", "ratio"):
                tol = fp_tol(torch.float32, term.get(k, abs(full_stats[k].item())), n_terms=n_tok)
                assert abs(stats[k].item() - full_stats[k].item()) <= tol, (micro, k, tol)
    assert any("lora_A" in n for n in grads[4]) and any("lora_B" in n for n in grads[4]) and "value_head.weight" in grads[4]
    for micro in (1, 3):
        for name, g in grads[4].items():
            assert scaled_error(grads[micro][name], g) <= grad_tol, (micro, name, grad_tol)

    # The naive alternative (mean of the micro-batches' own token means) differs: the test can fail.
    model.zero_grad(set_to_none=True)
    for row in idx:
        mb = ppo.select_rows(batch, row.reshape(1))
        logits, values = model(mb["input_ids"], mb["attention_mask"], mb["context_length"])
        (ppo.ppo_loss(logits, values, mb, smoke_cfg.ppo)[0] / len(idx)).backward()
    naive = lora_grads(model)
    assert max(scaled_error(naive[n], g) for n, g in grads[4].items()) > 0.05
    model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------
# A smoke run, interrupted after iteration 2 was logged but before it was saved, then resumed
# --------------------------------------------------------------------------------------------
class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def smoke_ppo(smoke_cfg, stages_done, tmp_path_factory):
    from girl_lib.pipeline import run_stage

    run_dir = private_run(stages_done, tmp_path_factory.mktemp("ppo-run"))
    assert smoke_cfg.ppo.iterations == 2 and smoke_cfg.ppo.save_every == 1
    real_save = ppo_loop.save_checkpoint
    calls = []

    def save_then_die(*args, **kwargs):
        calls.append(args[-1]["iteration"])
        if len(calls) == 2:
            raise Killed("simulated kill: iteration 2 logged, not saved")
        return real_save(*args, **kwargs)

    ppo_loop.save_checkpoint = save_then_die  # where the loop looks it up
    try:
        with pytest.raises(Killed):
            run_stage("ppo", smoke_cfg, run_dir, log=lambda *a: None)
    finally:
        ppo_loop.save_checkpoint = real_save
    interrupted = ppo.read_log(run_dir)
    state = json.loads((run_dir / "ppo" / "checkpoint" / "state.json").read_text())
    assert not (run_dir / "ppo" / "manifest.json").exists()  # the stage is not complete
    norm_before = (run_dir / "ppo" / "score_norm.json").read_text()
    real_stats = ppo_normalize.starting_policy_stats

    def must_not_recompute(*args, **kwargs):
        raise AssertionError("a resumed run recomputed the score normaliser instead of reading score_norm.json")

    ppo_normalize.starting_policy_stats = must_not_recompute
    try:
        manifest = run_stage("ppo", smoke_cfg, run_dir, log=lambda *a: None)
    finally:
        ppo_normalize.starting_policy_stats = real_stats
    assert (run_dir / "ppo" / "score_norm.json").read_text() == norm_before
    return {"run_dir": run_dir, "interrupted": interrupted, "state_after_kill": state, "manifest": manifest}


def test_interrupted_run_resumes_from_its_last_checkpoint(smoke_ppo):
    assert [r["iteration"] for r in smoke_ppo["interrupted"]] == [1, 2]
    assert smoke_ppo["state_after_kill"]["iteration"] == 1
    rows = ppo.read_log(smoke_ppo["run_dir"])
    assert [r["iteration"] for r in rows] == [1, 2]  # one line per iteration: the stale line 2 was dropped
    assert rows[0] == smoke_ppo["interrupted"][0]  # iteration 1 was not redone
    metrics = json.loads((smoke_ppo["run_dir"] / "ppo" / "metrics.json").read_text())
    assert metrics["resumed_from_iteration"] == 1
    # Iteration 2 redone from the saved adapter, value head, optimizer and seeds gives the same
    # numbers as the interrupted run's iteration 2 (which ran on the weights in memory).
    # Exact: the same computation on the same floats (weights, optimizer state and RNG states are
    # saved and restored bit for bit; JSON round-trips floats exactly), on any machine.
    redone, lost = rows[1], smoke_ppo["interrupted"][1]
    for key in set(ppo.LOG_KEYS) - TIME_KEYS:
        assert redone[key] == lost[key], key
    assert json.loads((smoke_ppo["run_dir"] / "ppo" / "checkpoint" / "state.json").read_text())["iteration"] == 2


def test_log_has_every_metric_and_first_minibatch_is_on_policy(smoke_ppo, smoke_cfg):
    rows = ppo.read_log(smoke_ppo["run_dir"])
    assert len(rows) == smoke_cfg.ppo.iterations
    # The first minibatch recomputes the rollout's log-probs, maybe in other batch shapes: each
    # token's log-ratio is off by a few ulps of |log π| <= log V + 2·max|logit| (the output head
    # and final norm bound the logits; PPO's LoRA touches neither), and the ratio averages <= N
    # such tokens. An update before the first minibatch (log-ratios ~1e-3 a step) would give an
    # approxkl ~5e-7, thousands of times its tolerance.
    policy, tok = generators.load_ppo_model(smoke_cfg, smoke_ppo["run_dir"])
    logratio_tol = fp_tol(torch.float32, math.log(len(tok)) + 2 * head_scale(policy))
    n_tok = smoke_cfg.ppo.minibatch_size * smoke_cfg.generation.max_new_tokens
    for row in rows:
        missing = set(ppo.LOG_KEYS) - set(row)
        assert not missing, missing
        assert all(isinstance(row[k], (int, float)) and row[k] == row[k] for k in ppo.LOG_KEYS)  # no NaN
        # Nothing has been updated before the first minibatch: the policy IS the sampling policy.
        assert abs(row["debug/first_ratio"] - 1) <= logratio_tol + fp_tol(torch.float32, 1.0, n_terms=n_tok)
        assert 0 <= row["debug/first_approxkl"] <= 0.5 * logratio_tol ** 2  # 0.5·mean(log-ratio²)
        assert row["debug/first_clipfrac"] == 0.0
        assert row["episodes"] == row["iteration"] * smoke_cfg.ppo.rollout_batch_size
        assert 0 <= row["eos_rate"] <= 1 and 0 < row["response_length_mean"] <= smoke_cfg.generation.max_new_tokens
        assert row["time/iteration_s"] >= row["time/generation_s"] > 0
    # The value head is a constant (its weight 0, its bias the first batch's mean return) in
    # iteration 1: it explains none of the returns' spread. Computed in float64 from float32
    # values: a constant offset cancels up to a few float32 ulps of the returns' size.
    first = rows[0]
    assert abs(first["val/explained_variance"]) <= fp_tol(torch.float32, 1.0, n_terms=n_tok)
    # Iteration 1 starts from the SFT model itself (fresh LoRA, B = 0): no KL to the reference yet.
    # Exact: B = 0 adds exactly +0 to every LoRA layer and the policy and reference log-probs come
    # from the same forward batches: identical floats, so the KL and non_score_reward are exactly
    # 0 and rlhf_reward is the scores' own mean.
    assert rows[0]["objective/kl"] == 0.0
    assert rows[0]["objective/rlhf_reward"] == rows[0]["objective/scores"] + rows[0]["objective/non_score_reward"]


def test_smoke_run_moves_the_lora_and_saves_a_usable_policy(smoke_ppo, smoke_cfg):
    from safetensors.torch import load_file

    from girl_lib.generators import load_sft_model

    run_dir = smoke_ppo["run_dir"]
    assert smoke_ppo["manifest"]["result"]["iterations"] == smoke_cfg.ppo.iterations
    fresh, tok = generators.load_policy(smoke_cfg, run_dir)  # the same seeded initialisation the run started from
    before = {n: p.detach() for n, p in fresh.named_parameters() if "lora_" in n}
    after = load_file(str(run_dir / "ppo" / "adapter" / "adapter_model.safetensors"))
    assert len(after) == len(before) > 0
    changed = [k for k, v in after.items() if not torch.equal(v, before[k.replace(".weight", ".default.weight")])]
    assert changed and any("lora_B" in k for k in changed)
    assert all(before[k].abs().max() == 0 for k in before if "lora_B" in k)  # it started as the SFT model

    # load_ppo_model: adapter on = PPO, adapter off = exactly the SFT model (the reference).
    model, tok = generators.load_ppo_model(smoke_cfg, run_dir)
    sft_model, _ = load_sft_model(smoke_cfg, run_dir)
    ids = torch.tensor([tok("Title: Data engineer. Level: mid.").input_ids])
    with torch.no_grad():
        sft_logits = sft_model(input_ids=ids).logits
        with model.disable_adapter():
            ref_logits = model(input_ids=ids).logits
        ppo_logits = model(input_ids=ids).logits
    # Here the SFT LoRA is merged into the weights, in sft_model it runs beside them: the same
    # function rounded differently, a few ulps of a logit's terms per hidden feature. The bare
    # base model (SFT lost) is ~0.05 off (400x this); PPO's 2 iterations move the logits ~40x this.
    tol = fp_tol(torch.float32, head_scale(sft_model), n_terms=sft_model.config.hidden_size)
    torch.testing.assert_close(ref_logits, sft_logits, atol=tol, rtol=0)
    assert (ppo_logits - sft_logits).abs().max() > tol

    metrics = json.loads((run_dir / "ppo" / "metrics.json").read_text())
    n = smoke_cfg.sft.oracle_eval_seekers
    for arm in ("sft", "ppo"):
        assert metrics["eval"][arm]["report"]["n"] == n and "rm_score_mean" in metrics["eval"][arm]
    assert metrics["eval"]["sft_arm_source"] == "sft/oracle_val.json"  # same seekers and settings: reused
    assert metrics["num_processes"] == 1 and metrics["ranks"] == [0]
    assert set(metrics["seconds_per_iteration"]) >= {"generation_s", "scoring_s", "optimization_s"}
    assert metrics["eval"]["kl_exact_mean"] >= 0


# --------------------------------------------------------------------------------------------
# Two processes
# --------------------------------------------------------------------------------------------
LAUNCHERS = {
    # accelerate launch --cpu starts ONE process on a CPU-only machine (multi-CPU needs MPI); with
    # --multi_gpu it hands over to torchrun, and Accelerator(cpu=True) in each process uses gloo.
    "accelerate": [str(REPO / ".venv" / "bin" / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
    "torchrun": [str(REPO / ".venv" / "bin" / "torchrun"), "--nproc_per_node", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_really_run(launcher, stages_done, tmp_path):
    exe = Path(LAUNCHERS[launcher][0])
    if not exe.is_file():
        pytest.skip(f"{exe} not installed")
    run_dir = private_run(stages_done, tmp_path / "run")
    port = str(29500 + os.getpid() % 1000)  # not the default: another run may hold 29500
    cmd = [*LAUNCHERS[launcher], "--master_port" if launcher == "torchrun" else "--main_process_port", port,
           "-m", "girl_lib.cli", "ppo", "--profile", "smoke", "--run-dir", str(run_dir), "--set", "ppo.iterations=1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((run_dir / "ppo" / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["ranks"] == [0, 1]
    assert len(set(metrics["pids"])) == 2 and os.getpid() not in metrics["pids"]  # two other processes
    rows = ppo.read_log(run_dir)
    assert len(rows) == 1 and rows[0]["num_processes"] == 2
    assert rows[0]["episodes"] == 2 * 4  # each process sampled its own rollouts
    assert (run_dir / "ppo" / "manifest.json").is_file()


# --------------------------------------------------------------------------------------------
# Comparison arms: TRL's GRPO and RLOO on the same reward, evaluated the same way
# --------------------------------------------------------------------------------------------
def test_trl_arm_matches_the_ppo_budget(smoke_cfg, tmp_path):
    from girl_lib.stages.ppo import grpo_rloo as grpo
    from girl_lib.errors import GirlError

    cfg = apply_overrides(smoke_cfg, {"ppo.iterations": 3, "ppo.rollout_batch_size": 8, "ppo.minibatch_size": 4,
                                      "ppo.micro_batch_size": 2, "ppo.ppo_epochs": 2, "ppo.group_size": 4})
    for algo in grpo.ALGOS:
        args = grpo.trl_args(cfg, algo, tmp_path)
        assert args.per_device_train_batch_size * args.steps_per_generation == 8  # completions per rollout batch
        assert args.num_generations == 4 and args.num_iterations == 2 and args.gradient_accumulation_steps == 2
        assert args.max_steps == 3 * 2 * 2  # iterations x minibatches x epochs, as PPO's optimizer steps
        assert (args.top_k, args.top_p, args.beta, args.epsilon) == (0, 1.0, cfg.ppo.kl_coef, cfg.ppo.cliprange)
    with pytest.raises(GirlError, match="multiple"):
        grpo.trl_args(apply_overrides(cfg, {"ppo.group_size": 3}), "grpo", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_trl_arm_trains_and_is_evaluated_like_ppo(algo, stages_done, smoke_cfg, tmp_path):
    from girl_lib.cli import main

    run_dir = private_run(stages_done, tmp_path / "run")
    assert main(["ppo", "--algo", algo, "--profile", "smoke", "--run-dir", str(run_dir), "--set", "ppo.iterations=1"]) == 0
    out = run_dir / algo
    assert (out / "manifest.json").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    assert not (run_dir / "ppo").exists()  # its own folder: PPO's results are untouched
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["algo"] == algo and metrics["optimizer_steps"] == 2  # 1 iteration x 2 minibatches x 1 epoch
    for arm in ("sft", "ppo"):
        assert metrics["eval"][arm]["report"]["n"] == 4
    logs = json.loads((out / "log_history.json").read_text())
    assert any("oracle/accept_rate" in h for h in logs)  # the oracle watched the rollouts
    # Compared with PPO at equal achieved KL: measured the same way as PPO's (exact, greedy eval JDs).
    assert metrics["achieved_kl"] == metrics["eval"]["kl_exact_mean"] >= 0
    norm = json.loads((out / "score_norm.json").read_text())  # standardised as PPO is
    assert norm["n"] == smoke_cfg.ppo.score_norm_batches * smoke_cfg.ppo.rollout_batch_size


# --------------------------------------------------------------------------------------------
# What RL maximises: the reward model, or (ablation) the oracle
# --------------------------------------------------------------------------------------------
def test_oracle_reward_source_scores_jds_as_the_oracle_does(smoke_cfg, smoke_run):
    from girl_lib.errors import GirlError
    from girl_lib.world import Oracle, load_jsonl

    data = smoke_run / "data"
    seekers = {s["id"]: s for s in load_jsonl(data / "seekers.jsonl", "seekers")}
    jobs = {j["id"]: j for j in load_jsonl(data / "jobs.jsonl", "jobs")}
    apps = load_jsonl(data / "applications.jsonl", "applications")
    oracle = Oracle(noise=smoke_cfg.data.recruiter_noise)
    # One seeker with a job the oracle accepts them for and one it rejects them for.
    by_seeker = {}
    for a in apps:
        p = oracle.score_job(seekers[a["seeker_id"]], jobs[a["job_id"]]).p_accept
        by_seeker.setdefault(a["seeker_id"], []).append((p, jobs[a["job_id"]]["jd_text"]))
    sid, ranked = next((k, sorted(v)) for k, v in by_seeker.items() if sorted(v)[0][0] < 0.5 < sorted(v)[-1][0])
    (p_lo, jd_lo), (p_hi, jd_hi) = ranked[0], ranked[-1]

    cfg = apply_overrides(smoke_cfg, {"ppo.reward_source": "oracle"})
    mean, std = 0.3, 0.2  # the starting policy's statistics (ppo/score_norm.json), given here
    scorer = scoring.make_scorer(cfg, None, None, oracle, (mean, std))  # no reward model needed
    raw, standardised = scorer([seekers[sid]] * 3, [jd_hi, jd_lo, "not a job description"])
    expected = [oracle.score(seekers[sid], t).p_accept for t in (jd_hi, jd_lo, "not a job description")]
    assert torch.equal(raw, torch.tensor(expected))  # the oracle's own floats, as float32: exact
    assert raw[0] > 0.5 > raw[1] and raw[2] <= raw[1]  # accepted > rejected >= unparseable
    assert torch.equal(standardised, (raw - mean) / std)  # the same float32 operations: exact
    with pytest.raises(GirlError, match="normalize_scores"):  # normalising needs the statistics
        scoring.make_scorer(cfg, None, None, oracle)

    raw_only, same = scoring.make_scorer(apply_overrides(cfg, {"ppo.normalize_scores": False}), None, None,
                                         oracle)([seekers[sid]], [jd_hi])
    assert torch.equal(raw_only, same)


def test_unknown_reward_source_is_refused(smoke_cfg, smoke_run):
    from girl_lib.errors import GirlError

    with pytest.raises(GirlError, match="reward_source"):
        scoring.make_scorer(apply_overrides(smoke_cfg, {"ppo.reward_source": "vibes"}), None, None, None)


# --------------------------------------------------------------------------------------------
# The score normaliser (the critic, precision and refused settings: test_ppo_behaviour.py)
# --------------------------------------------------------------------------------------------
def test_scores_are_standardised_on_the_starting_policys_own_samples(smoke_ppo, smoke_cfg):
    """ppo/score_norm.json holds the raw scores' mean and std on JDs the SFT policy sampled for
    train seekers with the rollout sampler, before any update (a resumed run reads it back: the
    smoke_ppo fixture forbids recomputing it)."""
    from girl_lib.world import Oracle, load_split

    run_dir = smoke_ppo["run_dir"]
    saved = json.loads((run_dir / "ppo" / "score_norm.json").read_text())
    p = smoke_cfg.ppo
    assert saved["n"] == p.score_norm_batches * p.rollout_batch_size and saved["std"] > 0
    policy, tok = generators.load_policy(smoke_cfg, run_dir)  # fresh LoRA, B = 0: the SFT model
    rm, rm_tok = scoring.load_reward_model(smoke_cfg, run_dir)
    raw = scoring.raw_scorer(smoke_cfg, rm, rm_tok, Oracle(noise=smoke_cfg.data.recruiter_noise))
    pool = load_split(run_dir / "data", "seekers", "train")
    with policy.disable_adapter():
        again = ppo.starting_policy_stats(policy, tok, pool, smoke_cfg, raw)
    # Exact: the same seeds, model, sampler and scorer on the same floats; JSON keeps floats exactly.
    assert (again["mean"], again["std"]) == (saved["mean"], saved["std"])
