"""Unit tests of girl_lib.stages.ppo.core against numbers worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from girl_lib.stages.ppo.core import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    compute_rewards,
    entropy_from_logits,
    explained_variance,
    first_true_indices,
    kl_penalty,
    leave_one_out_baseline,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    sequence_lengths,
    truncate_after_eos,
    value_loss,
)

from conftest import fp_tol

T = torch.tensor


def close(a, b, magnitude=1.0, n_terms=1):
    """``a`` (computed in float32) equals the hand value ``b`` up to float32 rounding.

    :func:`fp_tol` at the larger of ``|b|`` and ``magnitude`` (the size of the terms summed, the
    floor where they cancel; the hand inputs here are O(1)), over ``n_terms`` terms.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    scale = max(magnitude, float(b.abs().max()))
    return torch.allclose(a, b, rtol=0, atol=fp_tol(torch.float32, scale, n_terms=n_terms))


# --------------------------------------------------------------------------------------------
# masked statistics
# --------------------------------------------------------------------------------------------
def test_masked_mean_and_var_ignore_padding():
    x = T([[1.0, 2.0, 3.0, 100.0], [5.0, float("nan"), float("inf"), -7.0]])
    mask = T([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    # real values: 1, 2, 3, 5 -> mean 11/4 = 2.75
    assert close(masked_mean(x, mask), 2.75)
    # per row: [2.0, 5.0]
    assert close(masked_mean(x, mask, dim=1), [2.0, 5.0])
    # squared deviations: 3.0625, 0.5625, 0.0625, 5.0625 -> sum 8.75; biased 8.75/4, unbiased 8.75/3
    assert close(masked_var(x, mask, unbiased=False), 8.75 / 4)
    assert close(masked_var(x, mask), 8.75 / 3)


def test_masked_whiten_mean0_var1_over_mask_and_padding_excluded():
    x = T([[1.0, 2.0, 3.0, 1000.0], [4.0, 6.0, -50.0, 77.0]])
    mask = T([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.float32)
    w = masked_whiten(x, mask)
    # 5 real values: means and variances sum 5 terms of the inputs' size (x up to 6: 6/σ ≈ 3.1 in
    # whitened units, its square ≈ 9.7); a padding value leaking in would move these by O(1).
    n, big = 5, float(x[mask == 1].abs().max())
    assert close(masked_mean(w, mask), 0.0, magnitude=big / math.sqrt(3.7), n_terms=n)
    assert close(masked_var(w, mask), 1.0, magnitude=big ** 2 / 3.7, n_terms=n)
    assert torch.all(w[mask == 0] == 0)
    # hand: real values 1,2,3,4,6 -> mean 3.2; sq dev 4.84,1.44,0.04,0.64,7.84 = 14.8; var 14.8/4 = 3.7
    assert close(w[0, 0], (1 - 3.2) / math.sqrt(3.7 + 1e-8), magnitude=big, n_terms=n)
    # padding values do not matter
    x2 = x.clone()
    x2[mask == 0] = -123.0
    assert torch.equal(masked_whiten(x2, mask), w)
    # shift_mean=False keeps the mean: only rescales
    w_keep = masked_whiten(x, mask, shift_mean=False)
    assert close(masked_mean(w_keep, mask), 3.2, magnitude=big, n_terms=n)


# --------------------------------------------------------------------------------------------
# KL estimators and rewards
# --------------------------------------------------------------------------------------------
def test_kl_k1_k3_known_values():
    logp, ref = T([math.log(0.5)]), T([math.log(0.25)])
    # k1 = log 0.5 - log 0.25 = log 2
    assert close(kl_penalty(logp, ref, "k1"), math.log(2))
    # r = exp(ref - logp) = 0.25 / 0.5 = 0.5 ; k3 = (0.5 - 1) - log 0.5 = -0.5 + 0.6931 = 0.1931
    assert close(kl_penalty(logp, ref, "k3"), (0.5 - 1) - math.log(0.5))
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k2")


def test_k3_is_never_negative_while_k1_can_be():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(64, 16, generator=g) * 5
    ref = -torch.rand(64, 16, generator=g) * 5
    assert (kl_penalty(logp, ref, "k1") < 0).any()
    assert (kl_penalty(logp, ref, "k3") >= 0).all()
    assert (kl_penalty(logp, logp, "k3") == 0).all()


def test_compute_rewards_score_at_last_real_token():
    logp = T([[-1.0, -1.0, -1.0, -1.0], [-2.0, -2.0, -9.0, -9.0]])
    ref = T([[-1.5, -1.0, -0.5, -1.0], [-2.5, -2.0, 0.0, 0.0]])
    mask = T([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    scores = T([10.0, 20.0])
    rewards, non_score, kl = compute_rewards(scores, logp, ref, mask, kl_coef=0.1, kind="k1")
    # k1 = logp - ref: row 0 [0.5, 0, -0.5, 0]; row 1 [0.5, 0, (pad), (pad)]
    assert close(kl, [[0.5, 0.0, -0.5, 0.0], [0.5, 0.0, 0.0, 0.0]])
    assert close(non_score, [[-0.05, 0.0, 0.05, 0.0], [-0.05, 0.0, 0.0, 0.0]])
    # score added at index len-1: row 0 -> 3, row 1 -> 1
    assert close(rewards, [[-0.05, 0.0, 0.05, 10.0], [-0.05, 20.0, 0.0, 0.0]])


def test_k3_is_refused_as_a_reward_with_the_fix():
    """k3's value estimates the KL, but as a per-token reward it is second order in log r: its
    pull towards the reference vanishes where k1's does not. compute_rewards refuses it."""
    logp, ref, mask = T([[-1.0, -2.0]]), T([[-1.1, -1.9]]), torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="kl_estimator=k1"):
        compute_rewards(T([1.0]), logp, ref, mask, 0.1, kind="k3")
    # Near the reference k3 = e^{-d} - 1 + d ~ d^2 / 2 (d = log pi - log pi_ref): at d = 0.02 about
    # 100x smaller than k1 = d. A per-token penalty that small barely pushes back.
    d = 0.02
    k3, k1 = kl_penalty(T([0.0]), T([-d]), "k3").item(), kl_penalty(T([0.0]), T([-d]), "k1").item()
    assert k3 == pytest.approx(math.expm1(-d) + d, abs=fp_tol(torch.float32, d))
    assert k1 == pytest.approx(d, abs=fp_tol(torch.float32, d)) and k3 < k1 / 90


def test_compute_rewards_rejects_non_prefix_or_empty_masks():
    z = torch.zeros(1, 3)
    with pytest.raises(ValueError):
        compute_rewards(T([1.0]), z, z, T([[1, 0, 1]]), 0.1)
    with pytest.raises(ValueError):
        compute_rewards(T([1.0]), z, z, T([[0, 0, 0]]), 0.1)


# --------------------------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------------------------
# Hand computation, gamma = 1, lam = 0.95, rewards [0, 0, 1], values [0.5, 0.6, 0.7]:
#   t=2: delta = 1 + 1*0   - 0.7 = 0.3    A2 = 0.3
#   t=1: delta = 0 + 1*0.7 - 0.6 = 0.1    A1 = 0.1 + 0.95*0.3   = 0.385
#   t=0: delta = 0 + 1*0.6 - 0.5 = 0.1    A0 = 0.1 + 0.95*0.385 = 0.46575
#   returns = A + V = [0.96575, 0.985, 1.0]
GAE_ADV = [0.46575, 0.385, 0.3]
GAE_RET = [0.96575, 0.985, 1.0]


def test_gae_matches_hand_computation():
    rewards, values = T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    assert close(adv, [GAE_ADV])
    assert close(ret, [GAE_RET])


def test_gae_with_discount_hand_computation():
    # gamma = 0.5, lam = 1: A2 = 1 - 0.7 = 0.3; delta1 = 0 + 0.5*0.7 - 0.6 = -0.25, A1 = -0.25 + 0.5*0.3 = -0.1
    # delta0 = 0 + 0.5*0.6 - 0.5 = -0.2, A0 = -0.2 + 0.5*(-0.1) = -0.25 ; returns = [0.25, 0.5, 1.0]
    adv, ret = compute_gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]]), torch.ones(1, 3), gamma=0.5, lam=1.0)
    assert close(adv, [[-0.25, -0.1, 0.3]])
    assert close(ret, [[0.25, 0.5, 1.0]])


def test_gae_padded_row_equals_unpadded_and_padding_is_inert():
    # row 0: the hand example padded with two positions; row 1: a one-token response
    rewards = T([[0.0, 0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0]])
    values = T([[0.5, 0.6, 0.7, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0]])
    mask = T([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    adv, ret = compute_gae(rewards, values, mask)
    assert close(adv[0, :3], GAE_ADV) and close(ret[0, :3], GAE_RET)
    # one token: A = 2 - 0.5 = 1.5, R = 2
    assert close(adv[1, 0], 1.5) and close(ret[1, 0], 2.0)
    assert torch.all(adv[mask == 0] == 0) and torch.all(ret[mask == 0] == 0)
    # garbage under mask = 0 changes nothing
    rewards2, values2 = rewards.clone(), values.clone()
    rewards2[mask == 0] = 5.0
    values2[mask == 0] = -3.0
    adv2, ret2 = compute_gae(rewards2, values2, mask)
    assert torch.equal(adv2, adv) and torch.equal(ret2, ret)


def test_explained_variance_hand_values_and_padding():
    returns = T([[1.0, 2.0, 3.0, 99.0], [4.0, 0.0, 0.0, 0.0]])
    mask = T([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    # real returns 1, 2, 3, 4: variance 1.25 (biased). A constant critic explains nothing, at any level.
    assert explained_variance(torch.full_like(returns, 7.0), returns, mask) == 0.0
    assert explained_variance(returns.clone(), returns, mask) == 1.0  # a perfect critic
    # values 1, 2, 3, 3 -> residuals 0, 0, 0, 1: variance 3/16 -> 1 - 0.1875 / 1.25 = 0.85
    values = T([[1.0, 2.0, 3.0, -50.0], [3.0, 0.0, 0.0, 0.0]])
    assert explained_variance(values, returns, mask) == pytest.approx(0.85, abs=fp_tol(torch.float64, 16.0, 4))
    assert explained_variance(-returns, returns, mask) < 0  # worse than a constant
    assert explained_variance(values, torch.ones_like(returns), mask) == 0.0  # nothing to explain


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
def test_policy_loss_on_policy_is_minus_mean_advantage():
    logp = T([[-1.0, -2.0, -3.0], [-0.5, -0.1, -7.0]])
    adv = T([[1.0, -2.0, 0.5], [3.0, 4.0, 100.0]])
    mask = T([[1, 1, 1], [1, 1, 0]])
    loss, stats = policy_loss(logp, logp.clone(), adv, mask, cliprange=0.2)
    # real advantages 1, -2, 0.5, 3, 4 -> mean 6.5/5 = 1.3 -> loss -1.3
    assert close(loss, -1.3)
    assert close(stats["ratio"], 1.0) and close(stats["approxkl"], 0.0) and close(stats["clipfrac"], 0.0)


def test_policy_loss_clips_ratio():
    old = T([[0.0]])
    new = T([[math.log(1.5)]])  # ratio 1.5
    mask = torch.ones(1, 1)
    # A = +1, eps = 0.2: losses -1.5 (unclipped) vs -1.2 (clipped); max = -1.2, the clipped one
    loss, stats = policy_loss(new, old, T([[1.0]]), mask, cliprange=0.2)
    assert close(loss, -1.2) and close(stats["clipfrac"], 1.0) and close(stats["ratio"], 1.5)
    # approxkl = 0.5 * log(1.5)^2
    assert close(stats["approxkl"], 0.5 * math.log(1.5) ** 2)
    # the clipped term has no gradient w.r.t. the new logprob
    new.requires_grad_(True)
    policy_loss(new, old, T([[1.0]]), mask, cliprange=0.2)[0].backward()
    assert new.grad.abs().item() == 0.0
    # with A = -1 the ratio 1.5 is NOT clipped (pessimistic side): loss = 1.5, clipfrac 0
    loss_neg, stats_neg = policy_loss(new.detach(), old, T([[-1.0]]), mask, cliprange=0.2)
    assert close(loss_neg, 1.5) and close(stats_neg["clipfrac"], 0.0)


def test_value_loss_clipping():
    old = T([[1.0, 1.0]])
    new = T([[2.0, 1.1]])
    ret = T([[3.0, 0.0]])
    mask = torch.ones(1, 2)
    # token 0: (2-3)^2 = 1; clipped v = 1.2 -> (1.2-3)^2 = 3.24 -> max 3.24 (clipped active)
    # token 1: (1.1-0)^2 = 1.21; clipped v = 1.1 (within 1 +- 0.2) -> 1.21 -> max 1.21 (not active)
    loss, stats = value_loss(new, old, ret, mask, cliprange_value=0.2)
    assert close(loss, 0.5 * (3.24 + 1.21) / 2)
    assert close(stats["vf_clipfrac"], 0.5)
    # The value head's warm-up (ppo.value_warmup_iterations) runs it with no clip: the plain loss.
    loss, stats = value_loss(new, old, ret, mask, cliprange_value=math.inf)
    assert close(loss, 0.5 * (1.0 + 1.21) / 2) and stats["vf_clipfrac"] == 0.0


# --------------------------------------------------------------------------------------------
# logits -> logprobs / entropy
# --------------------------------------------------------------------------------------------
def test_logprobs_temperature_scaling():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 7, generator=g) * 3
    labels = torch.randint(0, 7, (2, 3), generator=g)
    for temp in (1.0, 0.7, 2.0):
        expected = torch.log_softmax(logits / temp, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        # log-softmax: |logit|/T against a logsumexp of 7 terms
        scale = float(logits.abs().max()) / temp + math.log(7)
        assert close(logprobs_from_logits(logits, labels, temperature=temp), expected, scale, n_terms=7)
    # T matters: scoring T=0.7 samples at T=1 gives different numbers (by O(1), not by rounding)
    scale = float(logits.abs().max()) / 0.7 + math.log(7)
    assert not close(logprobs_from_logits(logits, labels, 0.7), logprobs_from_logits(logits, labels, 1.0), scale, 7)
    with pytest.raises(ValueError):
        logprobs_from_logits(logits, labels, temperature=0.0)


def test_entropy_from_logits():
    # uniform over 4 -> log 4; a one-hot (other logits -inf) -> 0; two equal of three (third -inf) -> log 2
    logits = T([[0.0, 0.0, 0.0, 0.0], [5.0, -math.inf, -math.inf, -math.inf], [1.0, 1.0, -math.inf, -math.inf]])
    assert close(entropy_from_logits(logits), [math.log(4), 0.0, math.log(2)])
    g = torch.Generator().manual_seed(2)
    z = torch.randn(5, 11, generator=g) * 10
    p = torch.softmax(z.double(), -1)
    # float32 logsumexp(z) - Σ p·z: a difference of two numbers of size max|z|, 11 terms each
    assert close(entropy_from_logits(z), -(p * p.log()).sum(-1), float(z.abs().max()), n_terms=11)


# --------------------------------------------------------------------------------------------
# KL controllers
# --------------------------------------------------------------------------------------------
def test_adaptive_kl_controller_moves_beta():
    ctl = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=12.0, n_steps=256)  # error = clip(12/6-1) = 0.2 -> *(1 + 0.2*256/10000)
    assert close(ctl.value, 0.1 * (1 + 0.2 * 256 / 10000))
    up = ctl.value
    ctl.update(current_kl=3.0, n_steps=256)  # error = 3/6-1 = -0.5 -> clipped -0.2
    assert ctl.value < up
    assert close(ctl.value, up * (1 - 0.2 * 256 / 10000))
    ctl2 = AdaptiveKLController(0.1, 6.0, 10000)
    ctl2.update(6.0, 256)  # on target: unchanged
    assert close(ctl2.value, 0.1)
    fixed = FixedKLController(0.05)
    fixed.update(100.0, 256)
    assert fixed.value == 0.05


# --------------------------------------------------------------------------------------------
# EOS truncation
# --------------------------------------------------------------------------------------------
def test_first_true_indices():
    b = T([[False, True, True], [False, False, False], [True, False, False]])
    assert first_true_indices(b).tolist() == [1, 3, 0]


def test_truncate_after_eos_mixed_batch():
    eos, pad = 2, 0
    ids = T([
        [5, 6, 2, 7, 8],  # EOS at 2, junk after it
        [5, 6, 7, 8, 9],  # no EOS -> kept whole, fully masked in
        [2, 5, 2, 6, 7],  # EOS first -> only the EOS
        [5, 6, 7, 8, 2],  # EOS last
    ])
    out, mask = truncate_after_eos(ids, eos_token_id=eos, pad_token_id=pad)
    assert out.tolist() == [[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0], [5, 6, 7, 8, 2]]
    assert mask.int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert sequence_lengths(mask).tolist() == [3, 5, 1, 5]
    assert (out == eos).any(1).tolist() == [True, False, True, True]
    assert ids[0, 3] == 7  # input untouched


def test_leave_one_out_baseline_by_hand():
    # two seekers, three JDs each: the first seeker is "easy" (every JD scores high)
    scores = T([5.0, 6.0, 7.0, -1.0, 0.0, 4.0])
    got = leave_one_out_baseline(scores, 3)
    want = T([5 - 6.5, 6 - 6.0, 7 - 5.5, -1 - 2.0, 0 - 1.5, 4 - (-0.5)])
    torch.testing.assert_close(got, want)
    # a seeker's difficulty (a constant shared by its group) cancels exactly
    shifted = scores + T([10.0, 10.0, 10.0, -3.0, -3.0, -3.0])
    torch.testing.assert_close(leave_one_out_baseline(shifted, 3), want)
    # the best JD of each group is rewarded, the worst penalised
    assert got.reshape(2, 3).argmax(1).tolist() == [2, 2] and got.reshape(2, 3).argmin(1).tolist() == [0, 0]
    assert torch.equal(leave_one_out_baseline(scores, 1), scores)
    with pytest.raises(ValueError, match="groups of 4"):
        leave_one_out_baseline(scores, 4)
