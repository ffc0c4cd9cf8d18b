"""The math of PPO for RLHF, as pure tensor functions (no model, no optimiser, no loop).

``girl_lib.stages.ppo`` owns the training loop and re-exports these. Everything here follows the
conventions of TRL's original ``PPOTrainer`` and the checklist of Huang et al. (2024), "The N
Implementation Details of RLHF with PPO". Read it top to bottom; it is the order in which one
PPO step uses it:

1. sample responses, cut them at the first EOS ........ :func:`truncate_after_eos`
2. log-probabilities of the sampled tokens ............ :func:`logprobs_from_logits`
3. score + per-token KL penalty -> per-token rewards ... :func:`kl_penalty`, :func:`compute_rewards`
4. advantages and returns ............................. :func:`compute_gae`, :func:`masked_whiten`
5. a few epochs of minibatch updates .................. :func:`policy_loss`, :func:`value_loss`
6. adapt the KL coefficient ........................... :class:`AdaptiveKLController`

Shapes. Per-token tensors are ``[batch, response_len]`` and come with a ``mask`` of the same
shape (bool or float; 1 = a real response token, the EOS included; 0 = padding after the EOS).
A masked position never changes a result: reductions skip it and per-token outputs are 0 there.
Masks are *prefixes* (the real tokens come first), which is what :func:`truncate_after_eos`
produces.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "first_true_indices",
    "truncate_after_eos",
    "sequence_lengths",
    "logprobs_from_logits",
    "entropy_from_logits",
    "kl_penalty",
    "compute_rewards",
    "compute_gae",
    "explained_variance",
    "policy_loss",
    "value_loss",
    "AdaptiveKLController",
    "FixedKLController",
]


# --------------------------------------------------------------------------------------------
# 0. Masked statistics
# --------------------------------------------------------------------------------------------
def _zero_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` where ``mask`` is set, exactly 0 elsewhere.

    ``torch.where`` rather than ``x * mask``: padding may hold ``inf`` or ``nan`` (a log-prob of
    a pad token the model finds impossible), and ``nan * 0`` is still ``nan``.
    """
    return torch.where(mask.bool(), x, torch.zeros_like(x))


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is set.

    ``sum(x * mask) / sum(mask)``, over everything (``dim=None``, a scalar) or along ``dim``.
    This is how every per-token PPO quantity (loss, KL, clip fraction) becomes one number: each
    real token weighs the same, whatever the length of its response, and padding weighs nothing.
    """
    x = _zero_masked(x, mask)
    m = mask.to(x.dtype)
    if dim is None:
        return x.sum() / m.sum()
    return x.sum(dim) / m.sum(dim)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the masked-in positions (a scalar).

    ``mean((x - mean(x))**2)`` over the mask; with ``unbiased`` multiplied by Bessel's
    correction ``n / (n - 1)``, ``n`` = number of real tokens (needs ``n >= 2``).
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.to(x.dtype).sum()
        if n < 2:
            raise ValueError(f"unbiased masked_var needs at least 2 real tokens, got {int(n)}")
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Standardise ``x`` over the mask: ``(x - mean) / sqrt(var + 1e-8)``, padding set to 0.

    PPO whitens the advantages of a whole batch so the policy-gradient step has a stable scale
    whatever the reward scale (mean 0 and unbiased variance 1 over the real tokens afterwards).
    ``shift_mean=False`` adds the mean back (only rescales), as TRL does for rewards.
    Mean and variance use the real tokens only: padding zeros would drag both toward 0.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return _zero_masked(whitened, mask)


# --------------------------------------------------------------------------------------------
# 1. Responses: cut at the first EOS
# --------------------------------------------------------------------------------------------
def first_true_indices(bools: torch.Tensor, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """Index of the first ``True`` in each row of ``bools`` ``[batch, len]``; ``len`` if none.

    Vectorised (no Python loop): put ``len`` where the value is False and the position where it
    is True, then take the row minimum.
    """
    row_len = bools.size(-1)
    positions = torch.arange(row_len, dtype=dtype, device=bools.device)
    zero_or_index = row_len * (~bools.bool()).to(dtype) + positions
    return torch.min(zero_or_index, dim=-1).values


def truncate_after_eos(
    response_ids: torch.Tensor, eos_token_id: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace everything after the first EOS by ``pad_token_id``; return ``(ids, mask)``.

    ``response_ids`` ``[batch, response_len]`` are the generated tokens only (no prompt). The
    bool ``mask`` covers the tokens up to *and including* the first EOS: the policy must get
    credit for choosing to stop. A row without any EOS (generation hit ``max_new_tokens``) is
    kept whole and fully masked in; the PPO loop detects it with ``(ids == eos).any(1)`` and
    applies the missing-EOS penalty to its score.

    Pad and EOS must be different tokens (see girl_lib.models): with ``pad == eos`` the padding of a
    batch is indistinguishable from a stop, and an SFT model trained that way never stops.
    """
    eos_index = first_true_indices(response_ids == eos_token_id).unsqueeze(-1)  # [batch, 1]
    positions = torch.arange(response_ids.size(-1), device=response_ids.device)  # [len]
    mask = positions <= eos_index  # [batch, len]; no EOS -> eos_index == len -> all True
    ids = torch.masked_fill(response_ids, ~mask, pad_token_id)
    return ids, mask


def sequence_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Number of real tokens per row, ``[batch]`` (long). The last real token is at ``len - 1``."""
    return mask.to(torch.long).sum(-1)


# --------------------------------------------------------------------------------------------
# 2. Log-probabilities and entropy of the policy
# --------------------------------------------------------------------------------------------
def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probability of each label token: ``log_softmax(logits / T)[..., label]``.

    ``logits`` ``[batch, len, vocab]`` must already be aligned with ``labels`` ``[batch, len]``
    (for a causal LM the logits at position ``t`` predict token ``t + 1``: slice
    ``logits[:, prompt_len - 1 : -1]`` for the response). Returns ``[batch, len]``.

    The temperature divides the logits *before* the softmax. Responses sampled at ``T != 1`` come
    from ``softmax(logits / T)``; scoring them with ``T = 1`` computes the probability under a
    different distribution, so the PPO ratio and the KL are wrong from the very first step
    (Huang et al., 2024, detail "temperature").
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return torch.gather(logp, -1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the next-token distribution at each position, ``[..., vocab] -> [...]``.

    ``H = -sum p log p = logsumexp(z) - sum p z`` with ``p = softmax(z)``. The ``logsumexp`` form
    never exponentiates a large logit; the guard makes a ``-inf`` logit (a banned token) add 0
    instead of ``0 * -inf = nan``. Pass ``logits / T`` for the entropy of the sampling
    distribution.
    """
    logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    p_times_z = torch.where(p > 0, p * logits, torch.zeros_like(p))
    return torch.logsumexp(logits, dim=-1) - p_times_z.sum(-1)


# --------------------------------------------------------------------------------------------
# 3. Rewards: sequence score + per-token KL penalty
# --------------------------------------------------------------------------------------------
def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of ``KL(pi || pi_ref)`` from tokens sampled from ``pi``.

    With ``log r = logp_ref - logp`` at a sampled token (Schulman, "Approximating KL
    divergence", 2020):

    * ``"k1"``: ``logp - logp_ref = -log r``. Unbiased, but a single token can be negative.
    * ``"k3"``: ``(r - 1) - log r``. Its *value* is also an unbiased estimate of the KL
      (``E_pi[r] = 1``), never negative (``log r <= r - 1``) and of lower variance when the two
      policies are close: a good number to *log*. As a *reward* it is a poor leash: it is second
      order in ``log r`` (``≈ (log r)**2 / 2``), so its pull back towards the reference vanishes
      near the reference and the policy drifts almost unpunished (the per-sample gradient of
      k1, the score-function term, is first order). :func:`compute_rewards` refuses it.

    Shapes are kept: ``[batch, len]`` in, ``[batch, len]`` out.
    """
    if kind == "k1":
        return logprobs - ref_logprobs
    if kind == "k3":
        log_r = ref_logprobs - logprobs
        return torch.expm1(log_r) - log_r  # expm1(x) = exp(x) - 1, exact for small x
    raise ValueError(f"unknown KL estimator {kind!r}; use 'k1' or 'k3'")


K3_IN_REWARD = ("ppo.kl_estimator=k3 is refused: as a per-token reward k3 barely penalises drift (its pull "
                "vanishes near the reference); use ppo.kl_estimator=k1 (a larger ppo.kl_coef for a tighter leash)")


def _check_prefix_mask(mask: torch.Tensor) -> None:
    lengths = sequence_lengths(mask)
    positions = torch.arange(mask.size(-1), device=mask.device)
    if not torch.equal(mask.bool(), positions < lengths.unsqueeze(-1)):
        raise ValueError("mask must be a prefix mask (real tokens first, padding after)")
    if (lengths == 0).any():
        raise ValueError("every response needs at least one real token to receive its score")


def compute_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    kind: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn one score per response into a reward per token; return ``(rewards, non_score, kl)``.

    ``scores`` ``[batch]`` (the reward model's judgement of a whole response), per-token
    ``logprobs`` / ``ref_logprobs`` / ``mask`` ``[batch, len]``:

    * ``kl = kl_penalty(logprobs, ref_logprobs, kind)`` at every real token (``kind`` must be
      ``"k1"``: k3 as a reward is refused, see :func:`kl_penalty`);
    * ``non_score_reward = -kl_coef * kl`` (the price of moving away from the SFT model);
    * ``rewards = non_score_reward``, plus ``score`` at the **last real token** of each row
      (index ``mask.sum(1) - 1``; the EOS when there is one). The reward model saw the whole
      response, so its verdict arrives when the response ends; GAE carries it backwards.

    All three outputs are 0 at padding. The sequence-level KL is ``kl.sum(1)``; the RLHF
    objective TRL logs is ``score + non_score_reward.sum(1)``.
    """
    if kind != "k1":
        raise ValueError(K3_IN_REWARD if kind == "k3" else f"unknown KL estimator {kind!r}; use 'k1'")
    _check_prefix_mask(mask)
    kl = _zero_masked(kl_penalty(logprobs, ref_logprobs, kind), mask)
    non_score_reward = -kl_coef * kl
    last = (sequence_lengths(mask) - 1).unsqueeze(-1)  # [batch, 1]
    rewards = non_score_reward.scatter_add(
        -1, last, scores.to(non_score_reward.dtype).unsqueeze(-1)
    )
    return rewards, non_score_reward, kl


def leave_one_out_baseline(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """[detail] Each score minus the mean of the other scores of its group (RLOO's baseline).

    ``scores`` ``[batch]`` holds ``group_size`` consecutive responses per prompt. Their prompt's
    difficulty (a CV whose every JD scores high) cancels: what is left says which response is
    better for that prompt. The baseline never uses the response it is subtracted from, so the
    policy gradient stays unbiased (Kool et al., 2019; Ahmadian et al., 2024). ``group_size``
    1: the scores unchanged.
    """
    if group_size == 1:
        return scores
    if group_size < 1 or scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    g = scores.reshape(-1, group_size)
    others = (g.sum(1, keepdim=True) - g) / (group_size - 1)
    return (g - others).reshape(scores.shape)


# --------------------------------------------------------------------------------------------
# 4. Advantages: generalised advantage estimation
# --------------------------------------------------------------------------------------------
def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016); return ``(advantages, returns)``.

    Per token, walking backwards from the end of the response::

        delta_t = r_t + gamma * V_{t+1} - V_t          # one-step TD error
        A_t     = delta_t + gamma * lam * A_{t+1}       # exponentially weighted sum of deltas
        R_t     = A_t + V_t                             # the value head's regression target

    Each token is an action, the state is the prompt plus the tokens so far, and the episode
    ends at the last real token: its ``V_{t+1}`` is 0 (rewards and values beyond the mask are
    treated as 0, whatever they hold). ``gamma = 1`` (no discount inside a short response) and
    ``lam = 0.95`` trade variance (``lam -> 1``: Monte-Carlo returns) for bias (``lam -> 0``:
    trust the value head). Outputs are 0 at padding and *not* whitened: call
    :func:`masked_whiten` on the advantages as a separate step (returns stay unwhitened).
    """
    rewards = _zero_masked(rewards, mask)
    values = _zero_masked(values, mask)
    response_len = rewards.size(-1)
    next_advantage = torch.zeros_like(rewards[:, 0])
    advantages_reversed = []
    for t in reversed(range(response_len)):
        next_value = values[:, t + 1] if t + 1 < response_len else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages_reversed.append(next_advantage)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    advantages = _zero_masked(advantages, mask)
    returns = _zero_masked(advantages + values, mask)
    return advantages.detach(), returns.detach()


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var[returns - values] / Var[returns]`` over the real tokens: how much of the returns'
    spread the value head predicts.

    1: a perfect critic; 0: no better than a constant (any constant: the measure ignores an
    offset); below 0: worse than one. A critic that never rises above ~0 leaves GAE to work on
    a useless baseline. 0 when the returns do not vary at all (nothing to explain). Computed in
    float64 so that nearly equal returns do not turn rounding into a variance.
    """
    v, r = values.double(), returns.double()
    var_returns = masked_var(r, mask, unbiased=False)
    if var_returns <= 0:
        return 0.0
    return float(1.0 - masked_var(r - v, mask, unbiased=False) / var_returns)


# --------------------------------------------------------------------------------------------
# 5. The two losses of the update
# --------------------------------------------------------------------------------------------
def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate objective, as a loss to minimise; return ``(loss, stats)``.

    ``ratio = exp(new - old) = pi_new(a|s) / pi_old(a|s)`` per token, then::

        pg_losses1 = -A * ratio
        pg_losses2 = -A * clip(ratio, 1 - eps, 1 + eps)
        loss       = masked_mean(max(pg_losses1, pg_losses2))

    The max of the two *losses* is the pessimistic bound: once the ratio has moved past
    ``1 +- eps`` in the direction the advantage rewards, the clipped term wins, its gradient is 0,
    and the update stops pushing that token. ``stats`` (detached scalars):

    * ``clipfrac``: share of real tokens where the clipped term is active (``pg_losses2 > pg_losses1``);
    * ``approxkl``: ``0.5 * masked_mean((new - old)**2)``, how far this epoch has moved the policy;
    * ``ratio``: masked mean of the ratio (1 at the first minibatch of the first epoch).
    """
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_losses1, pg_losses2), mask)
    stats = {
        "clipfrac": masked_mean((pg_losses2 > pg_losses1).to(ratio.dtype), mask).detach(),
        "approxkl": (0.5 * masked_mean(log_ratio**2, mask)).detach(),
        "ratio": masked_mean(ratio, mask).detach(),
    }
    return loss, stats


def value_loss(
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss; return ``(loss, stats)``.

    ``v_clipped = clip(v_new, v_old - eps, v_old + eps)``, then::

        loss = 0.5 * masked_mean(max((v_new - R)**2, (v_clipped - R)**2))

    The same pessimism as the policy loss: the value head may not move more than ``eps`` away
    from the values the advantages were computed with in one rollout. ``stats["vf_clipfrac"]``
    is the share of real tokens where the clipped error is the larger one.
    """
    v_clipped = torch.max(torch.min(new_values, old_values + cliprange_value), old_values - cliprange_value)
    losses1 = (new_values - returns) ** 2
    losses2 = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(losses1, losses2), mask)
    stats = {"vf_clipfrac": masked_mean((losses2 > losses1).to(losses1.dtype), mask).detach()}
    return loss, stats


# --------------------------------------------------------------------------------------------
# 6. The KL coefficient beta
# --------------------------------------------------------------------------------------------
class FixedKLController:
    """A constant KL coefficient ``beta``; ``update`` does nothing."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:  # noqa: ARG002 - same interface
        """Nothing to adapt."""


class AdaptiveKLController:
    """Ziegler et al. (2019)'s proportional controller: steer the measured KL toward ``target``.

    After each rollout batch of ``n_steps`` samples with mean sequence KL ``current_kl``::

        error = clip(current_kl / target - 1, -0.2, 0.2)
        beta  = beta * (1 + error * n_steps / horizon)

    KL above target -> beta grows (a stronger leash); below -> beta shrinks. The clip bounds the
    change per update, ``horizon`` sets how many samples it takes to react.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be > 0")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move ``self.value`` by the clipped proportional error."""
        current_kl = float(current_kl)
        if not math.isfinite(current_kl):
            raise ValueError(f"current_kl must be finite, got {current_kl}")
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
