"""Behaviour tests of the kit's PPO: they fail on a sign error, and a mutation check proves it.

test_ppo_core.py checks each formula against hand-worked numbers; a sign error that is
consistent across formulas (advantages negated, new and old log-probs swapped in the ratio)
can pass every such test and still make PPO *unlearn*. Here the kit's own functions
(build_batch, rollout_forward, compute_advantages → compute_rewards, compute_gae, masked_whiten,
ppo_update → accumulate_minibatch → ppo_loss → policy_loss) drive a tiny policy:

(a) one update raises the log-probs of positive-advantage tokens and lowers the others;
(b) PPO on a toy task — emit a rule-rewarded token — raises the mean reward within seconds;
(c) the same two checks under each mutation (advantage sign flipped where the advantages are
    computed, or where the loss reads them; new and old log-probs swapped in the policy loss)
    must come out violated: the tests above really detect the sign error.

Then the critic (its warm start and warm-up; explained variance rising in the smoke loop's
log), float32 log-probs on a bf16-loaded model, and the settings that are refused.
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from conftest import fp_tol, head_scale
from girl_lib.config import PPOConfig, apply_overrides
from girl_lib.rundir import link_stages
from girl_lib.stages import ppo
from girl_lib.stages.ppo import build_batch, compute_advantages, ppo_update, rollout_forward
from girl_lib.stages.ppo import core, rollout, update
from girl_lib.stages.ppo import loop as ppo_loop

VOCAB = 4  # tokens 0..3; EOS and PAD ids lie outside: the toy never stops early
EOS, PAD = VOCAB, VOCAB + 1
TARGET = 2  # the rule: the reward is the share of response tokens equal to TARGET
RESPONSE_LEN = 4


class BigramPolicy(nn.Module):
    """The smallest policy with PolicyWithValueHead's interface: the next token's logits are the
    row of a learned table picked by the previous token; the value head reads that token, one-hot.

    ``forward(input_ids, attention_mask, context_length) -> (logits [B, R, V], values [B, R])``,
    position ``t`` holding the prediction of response token ``t`` (from the token before it).
    """

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(VOCAB, VOCAB))
        self.value_head = nn.Linear(VOCAB, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, context_length: int):
        prev = input_ids[:, context_length - 1:-1].clamp(max=VOCAB - 1)  # pads never reach a real position
        values = self.value_head(nn.functional.one_hot(prev, VOCAB).float()).squeeze(-1)
        return self.table[prev], values


def settings(**kw) -> PPOConfig:
    base = dict(temperature=1.0, rollout_batch_size=64, minibatch_size=16, micro_batch_size=8, ppo_epochs=4,
                kl_coef=0.01, cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, max_grad_norm=1.0)
    return replace(PPOConfig(), **{**base, **kw})


def optimizer_for(model: BigramPolicy, lr: float):
    groups = ([model.table], list(model.value_head.parameters()))
    return torch.optim.Adam([{"params": groups[0]}, {"params": groups[1]}], lr=lr, eps=1e-5), groups


@torch.no_grad()
def sample(model: BigramPolicy, n: int, gen: torch.Generator) -> tuple[list[list[int]], list[list[int]]]:
    """``n`` one-token prompts and a sampled response of RESPONSE_LEN tokens for each (T = 1)."""
    prompts = torch.randint(0, VOCAB, (n, 1), generator=gen)
    tokens = prompts[:, 0]
    out = []
    for _ in range(RESPONSE_LEN):
        tokens = torch.multinomial(torch.softmax(model.table[tokens], -1), 1, generator=gen)[:, 0]
        out.append(tokens)
    return prompts.tolist(), torch.stack(out, 1).tolist()


def rule_reward(responses: list[list[int]]) -> torch.Tensor:
    return torch.tensor([sum(t == TARGET for t in r) / len(r) for r in responses])


# --------------------------------------------------------------------------------------------
# (a) one update moves each token's log-prob the way its advantage says
# --------------------------------------------------------------------------------------------
def one_update_logprob_change() -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob change of each response token after one PPO update, and the advantages used.

    A toy batch whose (previous token, token) pairs each carry one sign: odd tokens +1, even
    tokens -1. Returns equal the values, so only the policy loss moves anything.
    """
    torch.manual_seed(0)
    model = BigramPolicy()
    with torch.no_grad():
        model.table.normal_(0, 0.5)
    queries = [[0], [3], [1], [2]]
    responses = [[1, 2, 3, 0], [0, 1, 2, 3], [3, 3, 0, 1], [2, 1, 0, 2]]
    batch = build_batch(queries, responses, PAD, EOS)
    p = settings(minibatch_size=4, micro_batch_size=2, ppo_epochs=1)
    fwd = rollout_forward(model, batch, p.temperature, batch_size=4)
    mask = batch["response_mask"]
    advantages = torch.where(batch["responses"] % 2 == 1, 1.0, -1.0) * mask
    batch.update(logprobs=fwd["logprobs"], ref_logprobs=fwd["logprobs"], values=fwd["values"],
                 advantages=advantages, returns=fwd["values"])
    opt, groups = optimizer_for(model, lr=0.05)
    ppo_update(model, opt, batch, p, seed=0, param_groups=groups)
    after = rollout_forward(model, batch, p.temperature, batch_size=4)["logprobs"]
    return (after - fwd["logprobs"])[mask], advantages[mask]


def update_follows_advantages(change: torch.Tensor, adv: torch.Tensor) -> bool:
    return bool((change[adv > 0] > 0).all() and (change[adv < 0] < 0).all())


def test_one_update_raises_positive_and_lowers_negative_advantage_tokens():
    change, adv = one_update_logprob_change()
    assert (adv > 0).sum() >= 4 and (adv < 0).sum() >= 4
    assert update_follows_advantages(change, adv), (change, adv)


# --------------------------------------------------------------------------------------------
# (b) PPO learns a rule-rewarded token
# --------------------------------------------------------------------------------------------
def learn_toy_task(iterations: int = 12) -> tuple[float, float]:
    """``(mean reward of the first rollout batch, mean of the last three)`` of a PPO run on the toy task.

    The starting policy is uniform (reward 1/4 on average); the reference is that policy.
    """
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model, p = BigramPolicy(), settings()
    reference = copy.deepcopy(model).requires_grad_(False)
    opt, groups = optimizer_for(model, lr=0.05)
    means = []
    for it in range(iterations):
        queries, responses = sample(model, p.rollout_batch_size, gen)
        batch = build_batch(queries, responses, PAD, EOS)
        fwd = rollout_forward(model, batch, p.temperature, batch_size=64)
        ref = rollout_forward(reference, batch, p.temperature, batch_size=64)
        batch.update(logprobs=fwd["logprobs"], values=fwd["values"], ref_logprobs=ref["logprobs"])
        scores = rule_reward(responses)
        means.append(float(scores.mean()))
        batch = compute_advantages(batch, scores, p.kl_coef, p)
        ppo_update(model, opt, batch, p, seed=it, param_groups=groups)
    return means[0], sum(means[-3:]) / 3


def learned(first: float, last: float) -> bool:
    return last > first + 0.3


def test_ppo_learns_a_rule_rewarded_token():
    first, last = learn_toy_task()
    assert abs(first - 1 / VOCAB) < 0.15  # a uniform start
    assert learned(first, last), (first, last)


# --------------------------------------------------------------------------------------------
# (c) mutation check: each sign error makes (a) and (b) fail
# --------------------------------------------------------------------------------------------
def _flip_in_advantage_computation(monkeypatch):
    real = rollout.masked_whiten
    monkeypatch.setattr(rollout, "masked_whiten", lambda x, mask, **kw: -real(x, mask, **kw))


def _flip_in_loss(monkeypatch):
    monkeypatch.setattr(update, "policy_loss", lambda new, old, adv, mask, eps: core.policy_loss(new, old, -adv, mask, eps))


def _swap_new_and_old(monkeypatch):
    monkeypatch.setattr(update, "policy_loss", lambda new, old, adv, mask, eps: core.policy_loss(old, new, adv, mask, eps))


MUTATIONS = {"advantage sign flipped (computation)": _flip_in_advantage_computation,
             "advantage sign flipped (loss)": _flip_in_loss,
             "new and old log-probs swapped": _swap_new_and_old}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_sign_mutation_breaks_learning(name, monkeypatch):
    MUTATIONS[name](monkeypatch)
    first, last = learn_toy_task()
    assert not learned(first, last)  # the learning test would fail ...
    assert last < first  # ... because the mutant unlearns: the reward falls below where it started


@pytest.mark.parametrize("name", ["advantage sign flipped (loss)", "new and old log-probs swapped"])
def test_each_sign_mutation_breaks_the_one_update_test(name, monkeypatch):
    MUTATIONS[name](monkeypatch)
    change, adv = one_update_logprob_change()
    assert not update_follows_advantages(change, adv)
    assert (change[adv > 0] < 0).all() and (change[adv < 0] > 0).all()  # every token moved the wrong way


# --------------------------------------------------------------------------------------------
# The critic: warm start, warm-up, and explained variance rising in the smoke loop's log
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_stages(smoke_cfg, smoke_run):
    """The session's smoke run dir with data, sft and reward complete (each skipped if done)."""
    from girl_lib.pipeline import run_stage

    for stage in ("sft", "reward"):
        run_stage(stage, smoke_cfg, smoke_run, log=lambda *a: None)
    return smoke_run


def test_value_head_starts_at_the_mean_return(smoke_cfg):
    # Two rows, k1 = logp - ref = 0.1 per token, beta 0.5: reward -0.05 a token, plus the score at the end.
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    logp = torch.full((2, 3), -1.0)
    batch = {"response_mask": mask, "logprobs": logp, "ref_logprobs": logp - 0.1}
    p = replace(smoke_cfg.ppo, gamma=1.0)
    # returns-to-go (V = 0, lambda = 1): row 0 [0.85, 0.9, 0.95]; row 1 [3.9, 3.95] -> mean 10.55 / 5
    got = ppo.mean_return(batch, torch.tensor([1.0, 4.0]), 0.5, p)
    assert got == pytest.approx(10.55 / 5, abs=fp_tol(torch.float32, 4.0, n_terms=5))
    # Warm-up: no value clipping in iterations 1..value_warmup_iterations, then ppo.cliprange_value.
    assert ppo_loop.update_settings(p, p.value_warmup_iterations).cliprange_value == math.inf
    assert ppo_loop.update_settings(p, p.value_warmup_iterations + 1).cliprange_value == p.cliprange_value


def seeker_rule_run(trained_stages, tmp_path, monkeypatch):
    """A run dir on the smoke stages whose PPO reward is a rule of the seeker alone: +1 for half
    of 16 fixed train seekers, -1 for the others, whatever the JD (the reward model is bypassed)."""
    run_dir = tmp_path / "run"
    link_stages(trained_stages, run_dir, ("data", "sft", "reward"))
    pool = ppo_loop.load_split(run_dir / "data", "seekers", "train")[:16]
    sign = {s["id"]: 1.0 if i % 2 == 0 else -1.0 for i, s in enumerate(pool)}

    def rule(seekers, texts):
        return torch.tensor([sign[s["id"]] for s in seekers])

    monkeypatch.setattr(ppo_loop, "load_split", lambda *a, **k: pool)
    monkeypatch.setattr(ppo_loop, "raw_scorer", lambda *a, **k: rule)
    monkeypatch.setattr(ppo_loop, "make_scorer", lambda *a, **k: (lambda seekers, texts: (rule(seekers, texts),) * 2))
    return run_dir


def test_explained_variance_rises_as_the_value_head_learns(smoke_cfg, trained_stages, tmp_path, monkeypatch):
    """val/explained_variance in log.jsonl, on the smoke loop with a reward the critic can learn.

    On the smoke profile's random-weight model the reward model's score of random text is
    unpredictable from the policy's features, so no critic can explain it (measured: ~0 ± 0.1
    whatever the settings). Here the reward is a rule of the prompt (+1 for half of 16 fixed
    seekers, -1 for the others), responses are one token (the value reads the prompt's last
    state) and the policy barely moves, so the returns are learnable and stationary: the value
    head, warm-started at the mean return and unclipped while it warms up, must explain more of
    them every iteration. Iteration 1 explains nothing (a constant head).
    """
    run_dir = seeker_rule_run(trained_stages, tmp_path, monkeypatch)
    cfg = apply_overrides(smoke_cfg, {
        "ppo.iterations": 4, "ppo.rollout_batch_size": 16, "ppo.minibatch_size": 4, "ppo.micro_batch_size": 4,
        "ppo.ppo_epochs": 4, "ppo.value_head_lr": 5e-2, "ppo.learning_rate": 1e-9, "ppo.normalize_scores": False,
        "generation.max_new_tokens": 1})
    ppo_loop.train(cfg, run_dir, log=lambda *a, **k: None)
    ev = [r["val/explained_variance"] for r in ppo.read_log(run_dir)]
    n_tok = cfg.ppo.rollout_batch_size * cfg.generation.max_new_tokens
    assert abs(ev[0]) <= fp_tol(torch.float32, 1.0, n_terms=n_tok), ev
    assert all(b > a for a, b in zip(ev, ev[1:])) and ev[-1] > 0.3, ev


@pytest.mark.parametrize("k", [1, 2])
def test_group_baseline_cancels_a_reward_that_only_ranks_seekers(k, smoke_cfg, trained_stages, tmp_path, monkeypatch):
    """ppo.samples_per_prompt through the real loop: a reward that says only which seeker is easy
    (+1 for half the seekers, -1 for the others, whatever the JD) moves the policy with one JD per
    seeker, and teaches nothing with two: each JD's reward minus its seeker's other JD is 0, the
    KL is 0 in iteration 1, so every advantage, gradient and LoRA step is exactly 0."""
    run_dir = seeker_rule_run(trained_stages, tmp_path, monkeypatch)
    cfg = apply_overrides(smoke_cfg, {
        "ppo.iterations": 1, "ppo.rollout_batch_size": 8, "ppo.minibatch_size": 4, "ppo.micro_batch_size": 4,
        "ppo.samples_per_prompt": k, "ppo.normalize_scores": False, "ppo.missing_eos_penalty": 0.0,
        "generation.max_new_tokens": 2})
    out = ppo_loop.train(cfg, run_dir, log=lambda *a, **k: None)
    lora_b = [prm for name, prm in out["model"].policy.named_parameters() if "lora_B" in name]
    assert lora_b
    moved = max(float(prm.detach().abs().max()) for prm in lora_b)
    assert (moved > 0) if k == 1 else (moved == 0.0), moved


def test_ppo_log_probs_are_float32_on_a_bf16_loaded_model(smoke_cfg):
    """PolicyWithValueHead upcasts a half-precision policy: every PPO pass (rollout, reference,
    update, exact KL) computes float32 log-probs, those of the same weights computed in fp32."""
    from peft import get_peft_model

    from girl_lib.models import load_causal_lm
    from girl_lib.training import peft_lora_config

    cfg = apply_overrides(smoke_cfg, {"model.dtype": "bfloat16"})
    base, tok = load_causal_lm(cfg.model)
    assert next(base.parameters()).dtype == torch.bfloat16
    as_fp32, as_bf16 = copy.deepcopy(base).float(), copy.deepcopy(base)  # the same weights, two precisions
    model = ppo.PolicyWithValueHead(get_peft_model(base, peft_lora_config(cfg.ppo.lora)))
    assert {prm.dtype for prm in model.parameters()} == {torch.float32}
    g = torch.Generator().manual_seed(3)
    queries = [torch.randint(10, 1000, (n,), generator=g).tolist() for n in (7, 4)]
    responses = [torch.randint(10, 1000, (n,), generator=g).tolist() + [tok.eos_token_id] for n in (5, 3)]
    batch = ppo.build_batch(queries, responses, tok.pad_token_id, tok.eos_token_id)
    T = cfg.ppo.temperature
    with torch.no_grad():
        logits, _ = model(batch["query_responses"], batch["attention_mask"], batch["context_length"])
    assert logits.dtype == torch.float32
    got = ppo.rollout_forward(model, batch, T, batch_size=2)["logprobs"]
    # Two fp32 computations of one log-prob (another batch shape, the LM head on a slice) differ by
    # a few ulps of |log π| <= log V + 2·max|logit|, max|logit| <= head_scale (the rule of the
    # first-minibatch check above). bf16 rounds the same logits to 8 bits: ~100x this.
    tol = fp_tol(torch.float32, math.log(len(tok)) + 2 * head_scale(as_fp32))
    worst_bf16 = 0.0
    for i, (q, r) in enumerate(zip(queries, responses)):
        ids = torch.tensor([q + r])
        with torch.no_grad():
            fp32 = ppo.logprobs_from_logits(as_fp32(input_ids=ids).logits[:, len(q) - 1:-1], ids[:, len(q):], T)[0]
            bf16 = ppo.logprobs_from_logits(as_bf16(input_ids=ids).logits[:, len(q) - 1:-1], ids[:, len(q):], T)[0]
        torch.testing.assert_close(got[i, :len(r)], fp32, rtol=0, atol=tol)
        worst_bf16 = max(worst_bf16, float((bf16 - fp32).abs().max()))
    assert worst_bf16 > 10 * tol, (worst_bf16, tol)


def test_refused_settings_name_the_fix(smoke_cfg):
    from girl_lib.config import resolve_profile
    from girl_lib.errors import GirlError

    for key, value, fix in (("ppo.kl_estimator", "k3", "use (ppo.kl_estimator=)?k1"), ("ppo.value_head_init", "reward", "removed"),
                            ("ppo.snapshot_every", -1, ">= 0"),
                            ("ppo.samples_per_prompt", 3, "divisor of ppo.rollout_batch_size")):
        with pytest.raises(GirlError, match=fix) as err:
            resolve_profile("smoke", {key: value})
        assert "\n" not in str(err.value)
        with pytest.raises(GirlError, match=fix):  # the loop refuses them too (apply_overrides does not validate)
            ppo_loop.check_settings(apply_overrides(smoke_cfg, {key: value}).ppo)
