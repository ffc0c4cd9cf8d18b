"""Rollouts: prompts and sampled responses as tensors, the no-grad forward passes, rewards and advantages."""
from __future__ import annotations

import random
from contextlib import nullcontext
from typing import Sequence

import torch

from ...errors import GirlError
from ...textgen import GenerationOutput, generate, left_pad
from ...world import SYSTEM_PROMPT, make_prompt, parse_jd
from .core import (compute_gae, compute_rewards, entropy_from_logits, first_true_indices,
                   logprobs_from_logits, masked_mean, masked_whiten, sequence_lengths, truncate_after_eos)
from .policy import PolicyWithValueHead


def sample_responses(policy, tok, pool: list[dict], cfg, seed: int) -> tuple[list[dict], GenerationOutput]:
    """``ppo.rollout_batch_size`` seekers drawn from ``pool`` and one sampled JD each: the sampler of PPO.

    [detail] Plain temperature sampling (``top_k=0``, ``top_p=1``) at ``ppo.temperature``, through
    the fast rollout path of ``generation.*`` (bf16 weights where native; the log-probs are then
    recomputed in float32). The score normaliser samples the starting policy with this same
    function (:mod:`girl_lib.stages.ppo.normalize`).

    With ``ppo.samples_per_prompt = k`` it draws ``rollout_batch_size / k`` seekers and lists each
    ``k`` times in a row (each row is sampled on its own): the groups of
    :func:`~girl_lib.stages.ppo.core.leave_one_out_baseline`.
    """
    p, g = cfg.ppo, cfg.generation
    k = p.samples_per_prompt
    drawn = random.Random(seed).sample(pool, min(p.rollout_batch_size // k, len(pool)))
    seekers = [s for s in drawn for _ in range(k)]
    gen = generate(policy, tok, [make_prompt(s["cv_text"]) for s in seekers], system_prompt=SYSTEM_PROMPT,
                   max_new_tokens=g.max_new_tokens, batch_size=g.batch_size, do_sample=True,
                   temperature=p.temperature, top_k=0, top_p=1.0, seed=seed, fast_dtype=g.fast_dtype,
                   num_threads=g.num_threads, fast_decode=g.fast_decode)
    return seekers, gen


def build_batch(query_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                pad_id: int, eos_id: int) -> dict:
    """Tensors for a batch of (prompt, sampled response) pairs.

    * ``query_responses`` ``[B, Q + R]``: the prompt **left**-padded to ``Q`` columns (so every
      response starts at column ``Q``), then the response **right**-padded to ``R``;
    * ``attention_mask`` the same shape, 0 on every pad;
    * ``responses`` ``[B, R]`` and ``response_mask`` (bool): [detail] the response is cut after
      its first EOS (:func:`truncate_after_eos`); tokens after it are padding, masked
      everywhere; the EOS itself is a real token (the policy chose to stop);
    * ``finished`` ``[B]``: the response contains an EOS (else it hit ``max_new_tokens``);
    * ``context_length``: ``Q``.
    """
    queries, query_mask = left_pad(query_ids, pad_id)
    width = max(len(r) for r in response_ids)
    responses = torch.full((len(response_ids), width), int(pad_id), dtype=torch.long)
    lengths = torch.tensor([len(r) for r in response_ids])
    for i, r in enumerate(response_ids):
        responses[i, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
    responses, mask = truncate_after_eos(responses, eos_id, pad_id)
    mask &= torch.arange(width) < lengths.unsqueeze(1)  # a row without EOS ends at its length
    if (sequence_lengths(mask) == 0).any():
        raise GirlError("an empty response cannot receive a score")
    return {
        "query_responses": torch.cat([queries, responses], dim=1),
        "attention_mask": torch.cat([query_mask, mask.long()], dim=1),
        "responses": responses,
        "response_mask": mask,
        "finished": (responses == eos_id).any(1),
        "context_length": queries.shape[1],
    }


PER_TOKEN = ("responses", "response_mask", "logprobs", "ref_logprobs", "values", "advantages", "returns")


def select_rows(batch: dict, idx: torch.Tensor | Sequence[int]) -> dict:
    """Rows ``idx`` of ``batch``, trimmed to the columns where at least one of them is real.

    Prompt columns that are padding in every selected row and response columns past the
    longest selected response are dropped: they change nothing (pads are masked out of
    attention, and a causal model never looks right), but cost compute.
    """
    idx = torch.as_tensor(idx, dtype=torch.long)
    ctx = batch["context_length"]
    am = batch["attention_mask"][idx]
    left = int(first_true_indices(am[:, :ctx].bool()).min())
    right = int(sequence_lengths(batch["response_mask"][idx]).max())
    out = {"input_ids": batch["query_responses"][idx][:, left:ctx + right],
           "attention_mask": am[:, left:ctx + right], "context_length": ctx - left}
    for k in PER_TOKEN:
        if k in batch:
            out[k] = batch[k][idx][:, :right]
    return out


def by_length(batch: dict, idx: torch.Tensor) -> torch.Tensor:
    """``idx`` sorted by real length (prompt + response): neighbours share little padding."""
    lengths = batch["attention_mask"][idx].sum(1)
    return idx[torch.argsort(lengths, stable=True)]


def to_device(mb: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in mb.items()}


@torch.no_grad()
def rollout_forward(model: PolicyWithValueHead, batch: dict, temperature: float, batch_size: int,
                    reference: bool = False) -> dict:
    """Log-probs (and values and entropy) of the sampled responses, without gradients.

    ``reference=True`` runs the same model with the PPO adapter disabled: the reference policy.
    [detail] Logits are divided by the sampling temperature before the log-softmax, so these are
    the probabilities of the distribution the tokens were actually drawn from.
    Returns ``[B, R]`` tensors (0 at padding): ``logprobs``, ``values``, ``entropy``.
    """
    n, width = batch["responses"].shape
    out = {k: torch.zeros(n, width) for k in ("logprobs", "values", "entropy")}
    device = next(model.parameters()).device
    ctx = model.policy.disable_adapter() if reference else nullcontext()
    order = by_length(batch, torch.arange(n))
    with ctx:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            mb = to_device(select_rows(batch, idx), device)
            logits, values = model(mb["input_ids"], mb["attention_mask"], mb["context_length"])
            r = logits.shape[1]
            out["logprobs"][idx, :r] = logprobs_from_logits(logits, mb["responses"], temperature).cpu()
            out["values"][idx, :r] = values.float().cpu()
            out["entropy"][idx, :r] = entropy_from_logits(logits.float() / temperature).cpu()
    mask = batch["response_mask"]
    return {k: torch.where(mask, v, torch.zeros_like(v)) for k, v in out.items()}


def apply_missing_eos_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """[detail] A response that never produced EOS gets ``score - penalty``.

    Subtracting (TRL's choice) keeps the reward model's ranking among unfinished responses;
    replacing the score by a constant would not. Without it, a policy can learn to ramble up to
    ``max_new_tokens`` whenever the reward model happens to like longer text.
    """
    return scores - penalty * (~finished).to(scores.dtype)


def apply_format_penalty(scores: torch.Tensor, texts: Sequence[str], penalty: float) -> torch.Tensor:
    """[detail] A JD the world's parser cannot read gets ``score - penalty`` (``ppo.format_penalty``).

    "Cannot read": :func:`girl_lib.world.parse_jd` finds no title that maps to an occupation, or
    misses a level, a must-have list, a location or a salary. That is the check a job board runs on
    a posting before a recruiter sees it; it reads neither the seeker nor the oracle's verdict. The
    reward model scores such JDs like parsed, rejected ones, so without this term an invented
    job title costs PPO nothing. Subtracted like the missing-EOS penalty, so the reward model's
    ranking among unreadable JDs is kept. ``penalty`` 0: the scores, untouched (nothing is parsed).
    """
    if penalty == 0:
        return scores
    readable = torch.tensor([parse_jd(t).ok for t in texts], dtype=torch.bool)
    return scores - penalty * (~readable).to(scores.dtype)


def mean_return(batch: dict, scores: torch.Tensor, kl_coef: float, p) -> float:
    """The mean Monte-Carlo return (reward-to-go, ``V = 0``, ``λ = 1``) over a batch's real tokens.

    Where ``ppo.value_head_init=mean_return`` starts the value head's bias: a zero head would
    leave GAE (``λ = 0.95``) a baseline off by the whole mean return at every token, and the
    clipped value loss could close only ``ppo.cliprange_value`` of that gap per iteration.
    """
    mask = batch["response_mask"]
    rewards, _, _ = compute_rewards(scores, batch["logprobs"], batch["ref_logprobs"], mask, kl_coef, p.kl_estimator)
    _, returns = compute_gae(rewards, torch.zeros_like(rewards), mask, p.gamma, 1.0)
    return float(masked_mean(returns, mask))


def compute_advantages(batch: dict, scores: torch.Tensor, kl_coef: float, p) -> dict:
    """Per-token rewards, GAE advantages (whitened) and returns, from a scored rollout batch.

    ``p`` is the profile's :class:`~girl_lib.config.PPOConfig`. Adds ``rewards``,
    ``non_score_reward``, ``kl``, ``advantages``, ``returns`` to a copy of ``batch``.
    """
    mask = batch["response_mask"]
    # [detail] per-token KL penalty; the score arrives at the last real token.
    rewards, non_score, kl = compute_rewards(scores, batch["logprobs"], batch["ref_logprobs"], mask,
                                             kl_coef, p.kl_estimator)
    # [detail] GAE with gamma = 1, lambda = 0.95; the returns are the value head's targets.
    advantages, returns = compute_gae(rewards, batch["values"], mask, p.gamma, p.lam)
    # [detail] advantage whitening over the whole batch (real tokens only).
    advantages = masked_whiten(advantages, mask)
    return {**batch, "rewards": rewards, "non_score_reward": non_score, "kl": kl,
            "advantages": advantages, "returns": returns, "scores": scores}
