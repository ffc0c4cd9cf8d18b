"""The checks of chapters 03-04: the reward model and PPO.

Why these two together: both check the tensor arithmetic of the RLHF loop (the pairwise
reward loss, AUC and response pooling of chapter 03; per-token rewards, GAE, the KL estimators
and the clipped surrogate of chapter 04) against the stages' own implementations, on seeded
random tensors with padding masks.
"""
from __future__ import annotations

import numpy as np
import torch

from ..metrics.scores import binary_auc
from ..pooling import response_mask
from ..stages.ppo import core
from ..stages.reward.pairs import pairwise_loss
from ._common import N_CASES, Outcome, _assert_close, _prefix_mask, _run, tolerance

# --------------------------------------------------------------------------------------------
# Chapter 03 — the reward model
# --------------------------------------------------------------------------------------------
def check_bt_loss(fn, quiet: bool = False) -> Outcome:
    """Exercise 3.1: ``bt_loss(chosen, rejected) -> scalar``, the Bradley–Terry loss
    ``mean(-log σ(r+ − r−))`` (:func:`girl_lib.stages.reward.pairwise_loss`)."""
    gen = torch.Generator().manual_seed(31)

    def cases(call):
        for i in range(N_CASES):
            n = int(torch.randint(1, 9, (1,), generator=gen))
            scale = float(torch.tensor([0.1, 1.0, 5.0])[torch.randint(0, 3, (1,), generator=gen)])
            chosen, rejected = scale * torch.randn(n, generator=gen), scale * torch.randn(n, generator=gen)
            expected = pairwise_loss(chosen, rejected)
            got = call(chosen.clone(), rejected.clone())
            _assert_close(got, expected, tolerance(torch.float32, 1 + 2 * scale * 4, n), f"case {i}")
        return N_CASES
    return _run("3.1", "bt_loss", fn, cases, quiet)


def check_auc(fn, quiet: bool = False) -> Outcome:
    """Exercise 3.2: ``auc(labels, scores) -> float``, the probability that a random positive
    outscores a random negative, a tie counting one half (:func:`girl_lib.metrics.scores.binary_auc`)."""
    rng = np.random.default_rng(32)

    def cases(call):
        for i in range(N_CASES):
            n = int(rng.integers(2, 30))
            labels = rng.integers(0, 2, n)
            labels[:2] = [0, 1]  # both classes present
            rng.shuffle(labels)
            scores = rng.normal(size=n) + 0.8 * labels
            if i % 2:
                scores = np.round(scores, 0)  # ties
            expected = binary_auc(labels.tolist(), scores.tolist())
            got = call(labels.tolist(), scores.tolist())
            _assert_close(float(got), expected, 1e-9, f"case {i}: labels {labels.tolist()}, scores {scores.tolist()}")
        return N_CASES
    return _run("3.2", "auc", fn, cases, quiet)


def check_jd_mask(fn, quiet: bool = False) -> Outcome:
    """Exercise 3.3: ``jd_mask(input_ids, attention_mask, header) -> bool [B, T]``, the tokens the
    ``response_mean`` head averages over: the real tokens after the **last** assistant header
    (:func:`girl_lib.pooling.response_mask`)."""
    gen = torch.Generator().manual_seed(33)
    header = [1, 77, 88]

    def cases(call):
        for i in range(N_CASES):
            b = int(torch.randint(1, 5, (1,), generator=gen))
            rows, masks = [], []
            for _ in range(b):
                n = int(torch.randint(8, 16, (1,), generator=gen))
                row = torch.randint(100, 200, (n,), generator=gen)
                for _ in range(int(torch.randint(1, 3, (1,), generator=gen))):  # one header, sometimes two
                    at = int(torch.randint(0, n - len(header) - 1, (1,), generator=gen))
                    row[at:at + len(header)] = torch.tensor(header)
                real = int(torch.randint(0, 3, (1,), generator=gen))  # right padding
                rows.append(row)
                masks.append(torch.tensor([1] * (n - real) + [0] * real))
            width = max(len(r) for r in rows)
            ids = torch.stack([torch.cat([r, torch.zeros(width - len(r), dtype=torch.long)]) for r in rows])
            am = torch.stack([torch.cat([m, torch.zeros(width - len(m), dtype=torch.long)]) for m in masks])
            try:
                expected = response_mask(ids, am, header)
            except ValueError:
                continue  # a case where the padding swallowed every JD token: not a question
            got = torch.as_tensor(call(ids.clone(), am.clone(), list(header))).bool()
            assert got.tolist() == expected.tolist(), (f"case {i}: input_ids {ids.tolist()}, attention_mask "
                                                       f"{am.tolist()}\n  got      {got.int().tolist()}\n"
                                                       f"  expected {expected.int().tolist()}")
        return N_CASES
    return _run("3.3", "jd_mask", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# Chapter 04 — PPO
# --------------------------------------------------------------------------------------------
def _rollout_case(gen: torch.Generator):
    b = int(torch.randint(1, 5, (1,), generator=gen))
    t = int(torch.randint(1, 13, (1,), generator=gen))
    mask = _prefix_mask(gen, b, t)
    logprobs = -torch.rand(b, t, generator=gen) * 4
    ref_logprobs = logprobs + 0.5 * torch.randn(b, t, generator=gen)
    return b, t, mask, logprobs, ref_logprobs


def check_per_token_rewards(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.1: ``per_token_rewards(scores, logprobs, ref_logprobs, mask, beta) -> [B, T]``:
    ``-β·(log π − log π_ref)`` at every real token, plus the score at the last real one, 0 at
    padding (:func:`girl_lib.stages.ppo.compute_rewards`)."""
    gen = torch.Generator().manual_seed(41)

    def cases(call):
        for i in range(N_CASES):
            b, t, mask, lp, ref = _rollout_case(gen)
            scores = 2 * torch.randn(b, generator=gen)
            beta = float(torch.rand(1, generator=gen)) * 0.3
            expected, _, _ = core.compute_rewards(scores, lp, ref, mask, beta)
            got = call(scores.clone(), lp.clone(), ref.clone(), mask.clone(), beta)
            _assert_close(got, expected, tolerance(torch.float32, 10, 3), f"case {i} (mask {mask.int().tolist()})")
        return N_CASES
    return _run("4.1", "per_token_rewards", fn, cases, quiet)


def check_gae(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.2: ``gae(rewards, values, mask, gamma, lam) -> (advantages, returns)``,
    generalised advantage estimation over real tokens, 0 at padding (:func:`girl_lib.stages.ppo.compute_gae`)."""
    gen = torch.Generator().manual_seed(42)

    def cases(call):
        for i in range(N_CASES):
            b, t, mask, _, _ = _rollout_case(gen)
            rewards, values = torch.randn(b, t, generator=gen), torch.randn(b, t, generator=gen)
            gamma = 1.0 if i % 2 == 0 else 0.9
            lam = float(torch.tensor([0.0, 0.5, 0.95, 1.0])[i % 4])
            exp_adv, exp_ret = core.compute_gae(rewards, values, mask, gamma, lam)
            adv, ret = call(rewards.clone(), values.clone(), mask.clone(), gamma, lam)
            tol = tolerance(torch.float32, 8, 2 * t)
            _assert_close(adv, exp_adv, tol, f"case {i}: advantages (gamma {gamma}, lam {lam}, mask {mask.int().tolist()})")
            _assert_close(ret, exp_ret, tol, f"case {i}: returns (gamma {gamma}, lam {lam}, mask {mask.int().tolist()})")
        return N_CASES
    return _run("4.2", "gae", fn, cases, quiet)


def check_kl_estimates(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.3: ``kl_estimates(logprobs, ref_logprobs) -> (k1, k3)``, the two per-token
    estimators of KL(π ‖ π_ref) on tokens sampled from π (:func:`girl_lib.stages.ppo.kl_penalty`)."""
    gen = torch.Generator().manual_seed(43)

    def cases(call):
        for i in range(N_CASES):
            _, _, _, lp, ref = _rollout_case(gen)
            k1, k3 = call(lp.clone(), ref.clone())
            mag = float(torch.exp((ref - lp).abs()).max()) + 4
            _assert_close(k1, core.kl_penalty(lp, ref, "k1"), tolerance(torch.float32, mag), f"case {i}: k1")
            _assert_close(k3, core.kl_penalty(lp, ref, "k3"), tolerance(torch.float32, mag, 3), f"case {i}: k3")
        return N_CASES
    return _run("4.3", "kl_estimates", fn, cases, quiet)


def check_clipped_surrogate(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.4: ``clipped_surrogate(new_logprobs, old_logprobs, advantages, mask, eps) -> scalar``,
    PPO's clipped policy loss, a mean over the real tokens (:func:`girl_lib.stages.ppo.policy_loss`)."""
    gen = torch.Generator().manual_seed(44)

    def cases(call):
        for i in range(N_CASES):
            b, t, mask, old, _ = _rollout_case(gen)
            new = old + 0.4 * torch.randn(b, t, generator=gen)
            adv = torch.randn(b, t, generator=gen)
            eps = float(torch.tensor([0.1, 0.2, 0.3])[i % 3])
            expected, _ = core.policy_loss(new, old, adv, mask, eps)
            got = call(new.clone(), old.clone(), adv.clone(), mask.clone(), eps)
            mag = float((adv.abs() * torch.exp(new - old)).max()) + 1
            _assert_close(got, expected, tolerance(torch.float32, mag, b * t), f"case {i} (eps {eps})")
        return N_CASES
    return _run("4.4", "clipped_surrogate", fn, cases, quiet)
