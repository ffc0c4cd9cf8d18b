"""Stage 3 — PPO: the JD generator learns from the (learned) recruiter, with a leash to SFT.

TRL removed its ``PPOTrainer`` (huggingface/trl#7020), so the kit owns this loop. It is written
to be read top to bottom, like CleanRL's ``ppo.py``; the maths lives in :mod:`girl_lib.ppo_core`
(re-exported here) and every implementation detail of Huang et al. (2024), "The N
Implementation Details of RLHF with PPO", is marked ``[detail]`` where the code does it.

**The objective.** For a CV ``x`` the policy ``π_θ`` writes a JD ``y``; the reward model of
stage 2 scores it, ``r(x, y)``. We maximise the score without drifting far from the SFT model
``π_ref`` (which writes fluent, parseable JDs; the reward model was never trained on garbage)::

    max_θ  E_x E_{y ~ π_θ(.|x)} [ r(x, y) − β · KL(π_θ(.|x) || π_ref(.|x)) ]

The KL of a whole response is the sum of per-token log-ratios, so the objective becomes a
per-token reward (:func:`compute_rewards`): ``−β · (log π_θ − log π_ref)`` at every token, plus
the score at the last real token. Each token is an action, GAE turns those rewards into
advantages (:func:`compute_gae`), and PPO's clipped surrogate (:func:`policy_loss`) and clipped
value loss (:func:`value_loss`) update the policy and a value head for a few epochs.

**The models, and why only one copy of the LLM.**

* *Policy*: the SFT model. Its LoRA adapter is **merged** into the base weights, then a fresh
  LoRA is added for PPO (``B = 0`` at init, so the policy starts exactly as the SFT model).
* *Reference*: the same model inside ``with policy.disable_adapter():`` — the merged SFT
  weights. No second copy. (Training the SFT adapter itself would make "adapter disabled" the
  zero-shot base model, and the KL penalty would pull towards a model that cannot write a JD.)
* *Value head*: ``nn.Linear(hidden_size, 1)`` on the policy's last hidden state, so ONE forward
  pass gives the logits and the values. A separate value model (what InstructGPT and TRL's
  ``PPOTrainer`` used: a copy of the reward model) is a better critic — its own features, no
  interference with the policy — but costs a second LLM in memory and a second forward and
  backward per step: twice the compute on a 2-core CPU. By default the head reads the hidden
  state *detached* (``ppo.value_backbone_grad=False``): the value loss trains the head only,
  so a large early value error cannot push the policy's LoRA around (the classic failure of a
  shared trunk); the head is a linear probe of the policy's own features. It starts at zero
  (``ppo.value_head_init="zero"``) or from the reward model's score layer (``"reward"``, a
  heuristic: that layer was trained on another adapter's features) and has its own, larger
  learning rate (``ppo.value_head_lr``): at zero it knows nothing, and with ``λ = 0.95`` a
  useless critic leaves early tokens almost no credit (``0.95^100 ≈ 0.006``).
* *Reward*: the stage-2 model, :func:`girl_lib.reward.score` on the decoded JD.

**One iteration** (:func:`train`): draw seekers → sample JDs → score them → per-token rewards
and advantages → ``ppo_epochs`` passes over shuffled minibatches (micro-batched, gradients
accumulated) → adapt β. Logged to ``<run-dir>/ppo/log.jsonl`` with TRL's metric names.

**Scaling out.** The loop runs under 🤗 ``accelerate``: one process by default; under a
multi-process launcher every process samples its own rollouts (seed + rank), gradients are
averaged by DDP, metrics are averaged across processes and only the main process writes files::

    torchrun --nproc_per_node 2 -m girl_lib.ppo --profile smoke --run-dir D
    accelerate launch --multi_gpu --num_processes 2 -m girl_lib.ppo --profile smoke --run-dir D

Both start two processes, on GPUs or (``--profile`` cpu/smoke: ``Accelerator(cpu=True)``, the
gloo backend) on CPU cores. ``accelerate launch --cpu --num_processes 2`` starts only ONE
process: accelerate runs several CPU processes only through MPI (``--mpirun_hostfile``).

Outputs in ``<run-dir>/ppo/``: ``log.jsonl`` (one line per iteration), ``checkpoint/`` (the
last saved iteration: adapter, value head, optimizer, ``state.json``; a killed run resumes from
it), ``adapter/`` (the final policy LoRA, relative to the merged SFT model), ``metrics.json``
(PPO vs SFT on held-out seekers, through the oracle and the reward model) and ``profile.json``.
Comparison arms on the same reward and budget, TRL's GRPO and RLOO: :mod:`girl_lib.grpo`
(``girl ppo --algo grpo|rloo``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .config import Profile
from .errors import GirlError
from .ppo_core import (AdaptiveKLController, FixedKLController, compute_gae, compute_rewards,
                       entropy_from_logits, first_true_indices, kl_penalty, logprobs_from_logits,
                       masked_mean, masked_var, masked_whiten, policy_loss, sequence_lengths,
                       truncate_after_eos, value_loss)
from .rundir import atomic_write_json

__all__ = [
    # the maths, re-exported from ppo_core
    "masked_mean", "masked_var", "masked_whiten", "compute_gae", "kl_penalty", "compute_rewards",
    "policy_loss", "value_loss", "logprobs_from_logits", "entropy_from_logits", "truncate_after_eos",
    "AdaptiveKLController", "FixedKLController",
    # the loop
    "PolicyWithValueHead", "load_policy", "build_batch", "rollout_forward", "compute_advantages",
    "ppo_loss", "accumulate_minibatch", "ppo_update", "train", "evaluate", "run_stage",
    "load_ppo_model", "read_log", "beta_sweep", "LOG_KEYS",
]

ADAPTER = "adapter"
CHECKPOINT = "checkpoint"
LOG = "log.jsonl"

# Every line of log.jsonl has these keys (TRL's names where TRL has one).
LOG_KEYS = (
    "iteration", "episodes", "beta",
    "objective/kl", "objective/entropy", "objective/non_score_reward", "objective/scores",
    "objective/rlhf_reward",
    "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg",
    "val/clipfrac_avg", "val/ratio", "val/ratio_var", "val/num_eos_tokens", "eos_rate",
    "response_length_mean",
    "oracle/p_accept", "oracle/accept_rate", "oracle/seeker_interest", "oracle/two_sided_rate",
    "oracle/parse_rate",
    "debug/first_ratio", "debug/first_approxkl", "debug/first_clipfrac",
    "time/generation_s", "time/forward_s", "time/scoring_s", "time/oracle_s", "time/optimization_s",
    "time/iteration_s", "num_processes",
)


# ============================================================================================
# 1. The model: policy (LoRA over the merged SFT model) + value head, one backbone
# ============================================================================================
def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions ``0, 1, 2, ...`` counted over real tokens only (left pads get 0).

    ``generate`` numbers a left-padded prompt this way, so the forward passes of PPO must too, or
    the log-probabilities it recomputes are not those of the distribution it sampled from.
    (LLaMA's rotary embeddings only see *relative* positions, so for it a uniform shift happens
    to change nothing; a model with absolute position embeddings would be silently wrong.)
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class PolicyWithValueHead(nn.Module):
    """The PEFT policy and a scalar value head sharing one forward pass.

    ``forward(input_ids, attention_mask, context_length)`` takes prompt+response rows (prompt
    left-padded to ``context_length`` columns, response after it) and returns, for the response
    positions only, ``(logits [B, R, vocab], values [B, R])``. Position ``t`` holds the
    prediction *of* response token ``t`` (the hidden state of the token before it): the state
    in which the policy chose action ``t``, and that state's value.
    """

    def __init__(self, policy, value_backbone_grad: bool = False):
        super().__init__()
        self.policy = policy
        hidden_size = policy.get_base_model().config.hidden_size
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.value_backbone_grad = value_backbone_grad

    def forward(self, input_ids, attention_mask, context_length: int):
        lm = self.policy.get_base_model()  # the LoRA layers are injected in place: they run here too
        hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids_from_mask(attention_mask),
                                  use_cache=False).last_hidden_state
        # Logits at position i predict token i+1: the response tokens are predicted from
        # positions context_length-1 ... end-1. Slicing BEFORE the LM head skips the prompt's
        # logits (vocab 49k x ~250 prompt tokens: most of the head's cost and memory).
        h = hidden[:, context_length - 1: -1]
        logits = lm.get_output_embeddings()(h)
        v_in = h if self.value_backbone_grad else h.detach()
        values = self.value_head(v_in.float()).squeeze(-1)  # fp32 head, whatever the LLM's dtype
        return logits, values


def load_policy(cfg: Profile, run_dir: Path, adapter_dir: Path | None = None, is_trainable: bool = True):
    """``(PeftModel, tokenizer)``: SFT adapter merged into the base, then the PPO LoRA on top.

    ``adapter_dir=None`` adds a fresh LoRA (``ppo.lora``; ``B = 0``, so the model equals the SFT
    model); otherwise the PPO adapter saved there. ``with model.disable_adapter():`` is the SFT
    model — the reference policy.
    """
    from peft import PeftModel, get_peft_model

    from .seeding import set_seed
    from .sft import load_sft_model, peft_lora_config

    sft_model, tok = load_sft_model(cfg, run_dir)
    merged = sft_model.merge_and_unload()  # W <- W + (alpha/r) B A, the SFT model as plain weights
    if adapter_dir is None:
        set_seed(cfg.ppo.seed)  # the LoRA A matrices' initialisation
        model = get_peft_model(merged, peft_lora_config(cfg.ppo.lora))
    else:
        model = PeftModel.from_pretrained(merged, adapter_dir, is_trainable=is_trainable)
    model.eval()  # [detail] no dropout: eval mode throughout, training included (gradients still flow)
    return model, tok


def load_ppo_model(cfg: Profile, run_dir: Path):
    """``(PeftModel, tokenizer)`` of the trained PPO policy, for evaluation and generation.

    ``with model.disable_adapter():`` gives the SFT model, so one object serves both arms.
    """
    path = Path(run_dir) / "ppo" / ADAPTER
    if not (path / "adapter_config.json").is_file():
        raise GirlError(f"no PPO adapter in {path}; run 'girl ppo --profile {cfg.name}' first")
    return load_policy(cfg, run_dir, adapter_dir=path, is_trainable=False)


# ============================================================================================
# 2. Rollouts: prompts + sampled responses as tensors, and the no-grad forward passes
# ============================================================================================
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
    from .generate import left_pad

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


def score_normalizer(run_dir: Path) -> tuple[float, float]:
    """``(mean, std)`` of the reward model's scores on real val JDs (``reward/metrics.json``).

    [detail] Reward normalisation. A Bradley–Terry reward model is defined up to a shift and a
    scale: only differences count, and their size depends on training. Standardising the score
    (OpenAI's original RLHF code gave the reward model a gain and a bias for the same purpose)
    makes β and the missing-EOS penalty mean the same thing for any reward model: a penalty of
    1.0 is one standard deviation of the reward model's opinion.
    """
    try:
        m = json.loads((Path(run_dir) / "reward" / "metrics.json").read_text())
        mean, std = float(m["score_mean"]), float(m["score_std"])
    except (OSError, ValueError, KeyError, TypeError):
        raise GirlError(f"{Path(run_dir) / 'reward' / 'metrics.json'} has no score_mean/score_std; rerun "
                        "'girl reward --force' or set --set ppo.normalize_scores=false") from None
    return mean, max(std, 1e-6)


REWARD_SOURCES = ("rm", "oracle")


def oracle_normalizer(run_dir: Path, oracle) -> tuple[float, float]:
    """``(mean, std)`` of the oracle's acceptance probability on the val applications' real JDs.

    The same standardisation as :func:`score_normalizer`, for ``ppo.reward_source=oracle``.
    """
    from .world import load_jsonl, load_split

    data_dir = Path(run_dir) / "data"
    seekers = {s["id"]: s for s in load_split(data_dir, "seekers", "val")}
    jobs = {j["id"]: j for j in load_jsonl(data_dir / "jobs.jsonl", "jobs")}
    p = [oracle.score_job(seekers[a["seeker_id"]], jobs[a["job_id"]]).p_accept
         for a in load_jsonl(data_dir / "applications.jsonl", "applications") if a["seeker_id"] in seekers]
    if len(p) < 2:
        raise GirlError(f"{data_dir / 'applications.jsonl'} has fewer than 2 val applications to standardise "
                        "the oracle's reward; set --set ppo.normalize_scores=false")
    t = torch.tensor(p)
    return float(t.mean()), max(float(t.std()), 1e-6)


def make_scorer(cfg: Profile, run_dir: Path, rm, rm_tok, oracle):
    """``scorer(seekers, texts) -> (raw, standardised)``: what RL maximises, before the EOS penalty.

    [detail] ``ppo.reward_source`` picks the judge of a rollout:

    * ``rm`` (the GIRL recipe): the stage-2 reward model's score of (CV, generated JD);
    * ``oracle`` (an ablation only a synthetic world allows): the recruiter oracle's acceptance
      probability of the parsed JD — a *perfect* reward model. PPO against it shows what the
      loop can do when the reward is right; PPO against ``rm`` shows what a learned reward model
      lets it do. The gap between the two is the reward model's fault, not PPO's.

    Both are standardised with their own statistics on real val JDs (``ppo.normalize_scores``).
    PPO and TRL's GRPO/RLOO arms (:mod:`girl_lib.grpo`) call this one function.
    """
    from .reward import score

    p = cfg.ppo
    if p.reward_source not in REWARD_SOURCES:
        raise GirlError(f"ppo.reward_source must be one of {', '.join(REWARD_SOURCES)}, got '{p.reward_source}'")
    if p.reward_source == "oracle":
        mean, std = oracle_normalizer(run_dir, oracle) if p.normalize_scores else (0.0, 1.0)

        def raw_scores(seekers, texts):
            return torch.tensor([oracle.score(s, t).p_accept for s, t in zip(seekers, texts)], dtype=torch.float32)
    else:
        mean, std = score_normalizer(run_dir) if p.normalize_scores else (0.0, 1.0)
        bf16, bs = reward_scoring_bf16(cfg), max(1, cfg.reward.batch_size * 2)

        def raw_scores(seekers, texts):
            return score(rm, rm_tok, [s["cv_text"] for s in seekers], list(texts), batch_size=bs,
                         max_length=cfg.reward.max_length, bf16=bf16)

    def scorer(seekers, texts):
        raw = raw_scores(seekers, texts)
        return raw, (raw - mean) / std

    return scorer


def reward_scoring_bf16(cfg: Profile) -> bool:
    """Score under bf16 autocast exactly when the reward stage evaluated that way.

    The reward stage runs under bf16 autocast on bf16-capable hardware (about 2x faster); its
    ``score_mean``/``score_std`` come from those scores, so PPO scores the same way. (The
    policy's own forward passes stay fp32: PPO's ratios and KL need more than bf16's three
    significant digits.)
    """
    from .reward import reward_precision

    return bool(reward_precision(cfg).get("bf16"))


def apply_missing_eos_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """[detail] A response that never produced EOS gets ``score - penalty``.

    Subtracting (TRL's choice) keeps the reward model's ranking among unfinished responses;
    replacing the score by a constant would not. Without it, a policy can learn to ramble up to
    ``max_new_tokens`` whenever the reward model happens to like longer text.
    """
    return scores - penalty * (~finished).to(scores.dtype)


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


# ============================================================================================
# 3. The update: clipped losses over shuffled minibatches, micro-batched
# ============================================================================================
def ppo_loss(logits: torch.Tensor, values: torch.Tensor, mb: dict, p) -> tuple[torch.Tensor, dict]:
    """``policy_loss + vf_coef * value_loss`` for one micro-batch, as token means over its mask.

    ``logits`` ``[b, R, vocab]`` and ``values`` ``[b, R]`` come from the model's forward on the
    rows of ``mb`` (:func:`select_rows`); ``mb`` holds the rollout's ``logprobs``, ``values``,
    ``advantages``, ``returns``, ``responses`` and ``response_mask``. Masked positions change
    nothing: every reduction skips them.
    """
    mask = mb["response_mask"]
    new_logprobs = logprobs_from_logits(logits, mb["responses"], p.temperature)
    pg_loss, pg_stats = policy_loss(new_logprobs, mb["logprobs"], mb["advantages"], mask, p.cliprange)
    vf_loss, vf_stats = value_loss(values.float(), mb["values"], mb["returns"], mask, p.cliprange_value)
    loss = pg_loss + p.vf_coef * vf_loss
    stats = {"pg_loss": pg_loss.detach(), "vf_loss": vf_loss.detach(), **pg_stats, **vf_stats}
    return loss, stats


def accumulate_minibatch(model, batch: dict, idx: torch.Tensor, p, accelerator=None) -> dict:
    """Backpropagate the loss of one minibatch (rows ``idx``), ``p.micro_batch_size`` rows at a time.

    The minibatch loss is a mean over all its real tokens. A micro-batch holding ``n_m`` of the
    minibatch's ``N`` tokens contributes ``loss_m * n_m / N``, so the accumulated gradient is
    exactly the gradient of the minibatch loss, whatever the micro-batch size (averaging the
    micro-batch losses instead would weigh a token of a short micro-batch more). Returns the
    minibatch's statistics, token-weighted the same way. Gradients are left in ``.grad``.
    """
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    # The gradient is a sum over rows, so their order is free: sorted by length, a micro-batch
    # holds rows of similar length and wastes little compute on padding.
    idx = by_length(batch, torch.as_tensor(idx, dtype=torch.long))
    n_tokens = batch["response_mask"][idx].sum()
    starts = list(range(0, len(idx), p.micro_batch_size))
    stats: dict[str, torch.Tensor] = {}
    for k, start in enumerate(starts):
        mb = to_device(select_rows(batch, idx[start:start + p.micro_batch_size]), device)
        weight = mb["response_mask"].sum() / n_tokens.to(device)
        # Under DDP, synchronise gradients only on the minibatch's last micro-batch.
        last = k == len(starts) - 1
        sync = nullcontext() if (accelerator is None or last) else accelerator.no_sync(model)
        with sync:
            logits, values = model(mb["input_ids"], mb["attention_mask"], mb["context_length"])
            loss, s = ppo_loss(logits, values, mb, p)
            scaled = loss * weight
            if accelerator is not None:
                accelerator.backward(scaled)
            else:
                scaled.backward()
        for key, val in s.items():
            stats[key] = stats.get(key, 0.0) + val.float().cpu() * weight.cpu()
    return stats


def ppo_update(model, optimizer, batch: dict, p, seed: int, accelerator=None,
               param_groups: Sequence[Sequence[nn.Parameter]] = ()) -> list[dict]:
    """``p.ppo_epochs`` passes over the rollout batch in shuffled minibatches; one optimizer step each.

    [detail] Each epoch reshuffles (a seeded ``torch.Generator``); each minibatch's gradient
    is clipped to ``p.max_grad_norm`` — each group of ``param_groups`` on its own (the policy's
    LoRA and the value head: the head's gradient, large while it learns, must not shrink the
    policy's step) — before the AdamW step. Returns one stats dict per minibatch, in order; the
    first is the first minibatch of the first epoch, where the policy has not moved yet, so
    its ratio is 1, approxkl 0 and clipfrac 0.
    """
    n = batch["responses"].shape[0]
    gen = torch.Generator().manual_seed(seed)
    all_stats = []
    for _ in range(p.ppo_epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, p.minibatch_size):
            idx = order[start:start + p.minibatch_size]
            stats = accumulate_minibatch(model, batch, idx, p, accelerator)
            for i, group in enumerate(param_groups):
                clip = accelerator.clip_grad_norm_ if accelerator is not None else nn.utils.clip_grad_norm_
                stats[f"grad_norm_{i}"] = torch.as_tensor(clip(group, p.max_grad_norm)).float()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            all_stats.append(stats)
    return all_stats


# ============================================================================================
# 4. Checkpoints: saved atomically, resumed exactly
# ============================================================================================
def config_fingerprint(cfg: Profile, num_processes: int) -> str:
    """A hash of every setting a resumed run must share with the interrupted one.

    ``ppo.iterations``, ``ppo.save_every`` and the evaluation settings may change (resume a
    run and give it more iterations); anything else starts over.
    """
    ppo = {k: v for k, v in asdict(cfg.ppo).items() if k not in ("iterations", "save_every", "eval_seekers", "eval_kl")}
    key = {"ppo": ppo, "model": asdict(cfg.model), "generation": asdict(cfg.generation),
           "reward_max_length": cfg.reward.max_length, "num_processes": num_processes}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(out: Path, model: PolicyWithValueHead, optimizer, state: dict) -> Path:
    """Write ``out/checkpoint/`` atomically: a temp folder, then a rename.

    Holds ``adapter/`` (``save_pretrained``), ``value_head.safetensors``, ``optimizer.pt``
    (tensors and numbers only: reloaded with ``torch.load(weights_only=True)``, which refuses
    arbitrary pickled objects) and ``state.json`` (iteration, β, episodes, fingerprint). A kill
    at any moment leaves either the previous checkpoint or the new one, never half of one.
    """
    from safetensors.torch import save_file

    out = Path(out)
    tmp = out / f".{CHECKPOINT}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.policy.save_pretrained(tmp / ADAPTER)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()},
              str(tmp / "value_head.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    atomic_write_json(tmp / "state.json", state)
    final, old = out / CHECKPOINT, out / f"{CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(out: Path) -> Path | None:
    """The last complete checkpoint (``checkpoint/``, or ``checkpoint.old/`` after a kill mid-swap)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = Path(out) / name
        if (path / "state.json").is_file():
            return path
    return None


def load_value_head(model: PolicyWithValueHead, path: Path) -> None:
    from safetensors.torch import load_file

    model.value_head.load_state_dict(load_file(str(path)))


def read_log(run_dir: Path) -> list[dict]:
    """The rows of ``<run_dir>/ppo/log.jsonl`` (one per iteration)."""
    path = Path(run_dir) / "ppo" / LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_log(path: Path, last_iteration: int) -> None:
    """Keep the log lines of iterations ``<= last_iteration`` (a resumed run redoes the rest)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= last_iteration]
    from .rundir import atomic_write_text

    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _append_log(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fresh_start(out: Path) -> None:
    for name in (CHECKPOINT, f"{CHECKPOINT}.old", ADAPTER):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (LOG, "metrics.json", "value_head.safetensors", "eval_texts.json"):
        (out / name).unlink(missing_ok=True)


# ============================================================================================
# 5. The loop
# ============================================================================================
@dataclass
class _Context:
    """What one process knows about the run (built by :func:`train`)."""

    rank: int
    world: int
    is_main: bool


def iteration_seed(p, iteration: int, rank: int) -> int:
    """Seed of one process's iteration: a resumed run redraws exactly the same seekers and samples."""
    return p.seed * 1_000_003 + iteration * 1_009 + rank


def _reduce_mean(accelerator, values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over processes (all processes must pass the same keys)."""
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        t = accelerator.reduce(t, reduction="mean")
    return {k: float(v) for k, v in zip(keys, t.cpu().tolist())}


def train(cfg: Profile, run_dir: Path, log=print) -> dict:
    """Run (or resume) PPO for ``cfg.ppo.iterations`` iterations; return a summary.

    Needs complete ``data``, ``sft`` and ``reward`` stages in ``run_dir``. Call it in every
    process of a multi-process launch.
    """
    from accelerate import Accelerator

    from .generate import chat_prompt_ids, generate
    from .oracle_eval import oracle_report
    from .pipeline import require_complete
    from .reward import load_reward_model, score_head
    from .world import SYSTEM_PROMPT, Oracle, load_split, make_prompt

    p = cfg.ppo
    if p.minibatch_size < 1 or p.micro_batch_size < 1 or p.rollout_batch_size < 1 or p.ppo_epochs < 1:
        raise GirlError("ppo.rollout_batch_size, minibatch_size, micro_batch_size and ppo_epochs must be >= 1")
    if p.kl_estimator not in ("k1", "k3"):
        raise GirlError(f"ppo.kl_estimator must be k1 or k3, got '{p.kl_estimator}'")
    if p.value_head_init not in ("zero", "reward"):
        raise GirlError(f"ppo.value_head_init must be zero or reward, got '{p.value_head_init}'")
    run_dir = Path(run_dir)
    data_dir = require_complete(run_dir, "data")
    require_complete(run_dir, "sft")
    require_complete(run_dir, "reward")

    accelerator = Accelerator(cpu=cfg.device == "cpu")
    ctx = _Context(accelerator.process_index, accelerator.num_processes, accelerator.is_main_process)
    say = log if ctx.is_main else (lambda *a, **k: None)
    out = run_dir / "ppo"
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = config_fingerprint(cfg, ctx.world)

    # --- resume or start fresh (every process reads the same files, then the main one cleans) ---
    ckpt = find_checkpoint(out)
    state = json.loads((ckpt / "state.json").read_text()) if ckpt else None
    finished_before = (out / "metrics.json").is_file()  # a complete earlier run: redo from scratch
    resume = (state is not None and not finished_before and state.get("fingerprint") == fingerprint
              and state["iteration"] <= p.iterations)
    accelerator.wait_for_everyone()
    if ctx.is_main:
        if resume:
            _truncate_log(out / LOG, state["iteration"])
            say(f"[girl] ppo: resuming after iteration {state['iteration']} from {ckpt}")
        else:
            if state is not None and not finished_before:
                say("[girl] ppo: the checkpoint in this run dir has other settings; starting over")
            _fresh_start(out)
    accelerator.wait_for_everyone()
    start_iteration = state["iteration"] if resume else 0

    # --- models ---
    policy, tok = load_policy(cfg, run_dir, adapter_dir=(ckpt / ADAPTER) if resume else None)
    model = PolicyWithValueHead(policy, value_backbone_grad=p.value_backbone_grad)
    rm, rm_tok = load_reward_model(cfg, run_dir)
    rm.to(accelerator.device)
    if resume:
        load_value_head(model, ckpt / "value_head.safetensors")
    elif p.value_head_init == "reward":
        with torch.no_grad():
            model.value_head.weight.copy_(score_head(rm).detach().float().reshape(1, -1))
    lora_params = [prm for prm in model.policy.parameters() if prm.requires_grad]
    head_params = list(model.value_head.parameters())
    # [detail] AdamW on the LoRA and the value head only (the base weights stay frozen); eps as TRL.
    optimizer = torch.optim.AdamW([{"params": lora_params, "lr": p.learning_rate},
                                   {"params": head_params, "lr": p.value_head_lr}], eps=1e-5, weight_decay=0.0)
    if resume:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: PolicyWithValueHead = accelerator.unwrap_model(model)

    if p.adaptive_kl_target is not None:
        kl_ctl = AdaptiveKLController(p.kl_coef, p.adaptive_kl_target, p.adaptive_kl_horizon)
    else:
        kl_ctl = FixedKLController(p.kl_coef)
    if resume:
        kl_ctl.value = float(state["kl_coef"])
    episodes = int(state["episodes"]) if resume else 0

    pool = load_split(data_dir, "seekers", "train")
    if not pool:
        raise GirlError(f"{data_dir / 'seekers.jsonl'} has no train seekers")
    oracle = Oracle(noise=cfg.data.recruiter_noise)
    scorer = make_scorer(cfg, run_dir, rm, rm_tok, oracle)  # (5) below: the reward model, or the oracle
    ranks = [int(r) for r in accelerator.gather(torch.tensor([ctx.rank], device=accelerator.device)).cpu()]
    pids = [int(r) for r in accelerator.gather(torch.tensor([os.getpid()], device=accelerator.device)).cpu()]
    g = cfg.generation
    say(f"[girl] ppo: {ctx.world} process(es), ranks {ranks}; iterations {start_iteration + 1}..{p.iterations}, "
        f"{p.rollout_batch_size} rollouts per process per iteration")

    t_train = time.time()
    for iteration in range(start_iteration + 1, p.iterations + 1):
        t_iter = time.time()
        seed = iteration_seed(p, iteration, ctx.rank)
        # (1) a fresh batch of train seekers, each process its own
        seekers = random.Random(seed).sample(pool, min(p.rollout_batch_size, len(pool)))
        prompts = [make_prompt(s["cv_text"]) for s in seekers]

        # (2) sample a JD for each: [detail] plain temperature sampling, top_k=0, top_p=1
        t0 = time.time()
        gen = generate(unwrapped.policy, tok, prompts, system_prompt=SYSTEM_PROMPT, max_new_tokens=g.max_new_tokens,
                       batch_size=g.batch_size, do_sample=True, temperature=p.temperature, top_k=0, top_p=1.0,
                       seed=seed, fast_dtype=g.fast_dtype, num_threads=g.num_threads,
                       fast_decode=g.fast_decode)  # fp32 log-probs below
        t_gen = time.time() - t0

        # (3) prompt+response tensors, cut at EOS
        batch = build_batch(chat_prompt_ids(tok, prompts, SYSTEM_PROMPT), gen.response_ids,
                            tok.pad_token_id, tok.eos_token_id)

        # (4) old log-probs, values, entropy; reference log-probs (adapter disabled)
        t0 = time.time()
        fwd_bs = max(p.micro_batch_size, 1)
        pol = rollout_forward(unwrapped, batch, p.temperature, fwd_bs)
        ref = rollout_forward(unwrapped, batch, p.temperature, fwd_bs, reference=True)
        batch.update(logprobs=pol["logprobs"], values=pol["values"], ref_logprobs=ref["logprobs"])
        t_fwd = time.time() - t0

        # (5) the reward model's score of each decoded JD, minus the missing-EOS penalty
        t0 = time.time()
        raw_scores, std_scores = scorer(seekers, gen.texts)
        scores = apply_missing_eos_penalty(std_scores, batch["finished"], p.missing_eos_penalty)
        t_score = time.time() - t0
        t0 = time.time()
        orep = oracle_report(seekers, gen.texts, oracle)  # the ground truth, for monitoring only
        t_oracle = time.time() - t0

        # (6) per-token rewards, GAE, whitened advantages
        beta = kl_ctl.value
        batch = compute_advantages(batch, scores, beta, p)

        # (7) PPO epochs over shuffled, micro-batched minibatches
        t0 = time.time()
        mb_stats = ppo_update(model, optimizer, batch, p, seed, accelerator, (lora_params, head_params))
        t_opt = time.time() - t0

        # (8) statistics, averaged over processes; then adapt beta
        mask = batch["response_mask"]
        seq_kl = batch["kl"].sum(1)
        non_score = batch["non_score_reward"].sum(1)
        ratios = torch.stack([s["ratio"] for s in mb_stats])
        local = {
            "objective/kl": seq_kl.mean(),
            "objective/entropy": masked_mean(pol["entropy"], mask),  # per token, of softmax(logits / T)
            "objective/non_score_reward": non_score.mean(),
            "objective/scores": scores.mean(),
            "objective/scores_raw": raw_scores.mean(),  # the reward model's own units
            "objective/rlhf_reward": (scores + non_score).mean(),
            "policy/approxkl_avg": torch.stack([s["approxkl"] for s in mb_stats]).mean(),
            "policy/clipfrac_avg": torch.stack([s["clipfrac"] for s in mb_stats]).mean(),
            "loss/policy_avg": torch.stack([s["pg_loss"] for s in mb_stats]).mean(),
            "loss/value_avg": torch.stack([s["vf_loss"] for s in mb_stats]).mean(),
            "val/clipfrac_avg": torch.stack([s["vf_clipfrac"] for s in mb_stats]).mean(),
            "val/ratio": ratios.mean(),
            "val/ratio_var": ratios.var(unbiased=False),
            "val/num_eos_tokens": batch["finished"].sum(),
            "val/mean": masked_mean(batch["values"], mask),
            "eos_rate": batch["finished"].float().mean(),
            "response_length_mean": sequence_lengths(mask).float().mean(),
            "grad_norm/policy": torch.stack([s["grad_norm_0"] for s in mb_stats]).mean(),
            "grad_norm/value_head": torch.stack([s["grad_norm_1"] for s in mb_stats]).mean(),
            "debug/first_ratio": mb_stats[0]["ratio"],
            "debug/first_approxkl": mb_stats[0]["approxkl"],
            "debug/first_clipfrac": mb_stats[0]["clipfrac"],
            **{f"oracle/{k}": orep[k] for k in ("p_accept", "accept_rate", "seeker_interest",
                                                 "two_sided_rate", "parse_rate")},
            "time/generation_s": t_gen, "time/forward_s": t_fwd, "time/scoring_s": t_score,
            "time/oracle_s": t_oracle, "time/optimization_s": t_opt, "time/iteration_s": time.time() - t_iter,
        }
        row = _reduce_mean(accelerator, {k: float(v) for k, v in local.items()})
        kl_ctl.update(row["objective/kl"], p.rollout_batch_size * ctx.world)  # same value in every process
        episodes += p.rollout_batch_size * ctx.world
        row.update(iteration=iteration, episodes=episodes, beta=beta, num_processes=ctx.world,
                   lr=p.learning_rate, generation_tokens_per_s=round(gen.tokens_per_second, 1))
        if ctx.is_main:
            _append_log(out / LOG, row)
        say(f"[girl] ppo {iteration}/{p.iterations}: score {row['objective/scores']:+.3f}  "
            f"kl {row['objective/kl']:.3f}  accept {row['oracle/accept_rate']:.2f}  "
            f"interest {row['oracle/seeker_interest']:.2f}  eos {row['eos_rate']:.2f}  "
            f"len {row['response_length_mean']:.0f}  ({row['time/iteration_s']:.0f} s: gen {t_gen:.0f}, "
            f"fwd {t_fwd:.0f}, rm {t_score:.0f}, opt {t_opt:.0f})")

        if iteration % max(1, p.save_every) == 0 or iteration == p.iterations:
            accelerator.wait_for_everyone()
            if ctx.is_main:
                save_checkpoint(out, unwrapped, optimizer,
                                {"iteration": iteration, "kl_coef": kl_ctl.value, "episodes": episodes,
                                 "fingerprint": fingerprint, "num_processes": ctx.world,
                                 "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            accelerator.wait_for_everyone()

    train_seconds = time.time() - t_train
    return {"accelerator": accelerator, "model": unwrapped, "tokenizer": tok, "reward_model": rm,
            "reward_tokenizer": rm_tok, "oracle": oracle, "is_main": ctx.is_main, "num_processes": ctx.world,
            "ranks": ranks, "pids": pids, "resumed_from_iteration": start_iteration if resume else None,
            "train_seconds": train_seconds, "final_kl_coef": kl_ctl.value, "episodes": episodes}


# ============================================================================================
# 6. Evaluation on held-out seekers: PPO vs SFT, through the oracle and the reward model
# ============================================================================================
@torch.no_grad()
def exact_kl_along(model: PolicyWithValueHead, batch: dict, batch_size: int) -> torch.Tensor:
    """``sum_t KL(π(.|s_t) || π_ref(.|s_t))`` over each response, exactly (the full vocabulary).

    Along given (e.g. greedy) responses; ``[B]``. At temperature 1: the models' own
    distributions, independent of any sampling.
    """
    n = batch["responses"].shape[0]
    out = torch.zeros(n)
    device = next(model.parameters()).device
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        mb = to_device(select_rows(batch, idx), device)
        # [b, R, vocab] tensors (8 x 144 x 49k floats = 226 MB each): keep at most three alive.
        logits, _ = model(mb["input_ids"], mb["attention_mask"], mb["context_length"])
        logp = torch.log_softmax(logits.float(), -1)
        del logits
        with model.policy.disable_adapter():
            ref_logits, _ = model(mb["input_ids"], mb["attention_mask"], mb["context_length"])
        diff = torch.log_softmax(ref_logits.float(), -1)
        del ref_logits
        diff.neg_().add_(logp)  # log π - log π_ref, in place
        kl = torch.linalg.vecdot(logp.exp_(), diff)  # Σ_v π (log π - log π_ref), no [b, R, vocab] product
        out[idx] = torch.where(mb["response_mask"], kl, torch.zeros_like(kl)).sum(1).cpu()
    return out


def evaluate(cfg: Profile, run_dir: Path, model: PolicyWithValueHead, tok, rm, rm_tok, oracle=None) -> dict:
    """Greedy JDs of the PPO policy and of the SFT model for held-out (val) seekers.

    The SFT arm reuses the SFT stage's own greedy JDs (``sft/oracle_val.json``) when they were
    written for the same seekers with the same generation settings; otherwise it generates them
    with the PPO adapter disabled (= the SFT model). Both arms go through the oracle and the
    reward model; ``kl_exact_mean`` is :func:`exact_kl_along` the PPO's greedy JDs.
    """
    from .generate import chat_prompt_ids, generate_from_config
    from .oracle_eval import oracle_report
    from .reward import score
    from .sft import reusable_val_generations, val_seekers
    from .world import SYSTEM_PROMPT, make_prompt

    p = cfg.ppo
    n = p.eval_seekers or cfg.sft.oracle_eval_seekers
    seekers = val_seekers(Path(run_dir) / "data", n)
    prompts = [make_prompt(s["cv_text"]) for s in seekers]
    t0 = time.time()
    ppo_out = generate_from_config(model.policy, tok, prompts, cfg.generation, system_prompt=SYSTEM_PROMPT)
    reused = reusable_val_generations(cfg, run_dir, [s["id"] for s in seekers])
    sft_texts = reused["texts"] if reused else None
    sft_source = "sft/oracle_val.json"
    if sft_texts is None:
        with model.policy.disable_adapter():
            sft_texts = generate_from_config(model.policy, tok, prompts, cfg.generation, system_prompt=SYSTEM_PROMPT).texts
        sft_source = "generated (adapter disabled)"
    gen_seconds = time.time() - t0
    cvs = [s["cv_text"] for s in seekers]
    bs = max(1, cfg.reward.batch_size * 2)
    bf16 = reward_scoring_bf16(cfg)
    rm_ppo = score(rm, rm_tok, cvs, ppo_out.texts, batch_size=bs, max_length=cfg.reward.max_length, bf16=bf16)
    rm_sft = score(rm, rm_tok, cvs, sft_texts, batch_size=bs, max_length=cfg.reward.max_length, bf16=bf16)
    result = {
        "n_seekers": len(seekers), "seeker_ids": [s["id"] for s in seekers], "sft_arm_source": sft_source,
        "generation_seconds": round(gen_seconds, 1),
        "ppo": {"report": oracle_report(seekers, ppo_out.texts, oracle), "rm_score_mean": float(rm_ppo.mean()),
                "eos_rate": sum(ppo_out.finished) / max(1, len(seekers))},
        "sft": {"report": oracle_report(seekers, sft_texts, oracle), "rm_score_mean": float(rm_sft.mean())},
        "texts": {"ppo": ppo_out.texts, "sft": sft_texts},
    }
    if p.eval_kl and seekers:
        t0 = time.time()
        batch = build_batch(chat_prompt_ids(tok, prompts, SYSTEM_PROMPT), ppo_out.response_ids,
                            tok.pad_token_id, tok.eos_token_id)
        kl = exact_kl_along(model, batch, max(1, p.micro_batch_size))
        result["kl_exact_mean"] = float(kl.mean())
        result["kl_seconds"] = round(time.time() - t0, 1)
    return result


# ============================================================================================
# 7. The stage
# ============================================================================================
def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl ppo``: train (or resume), evaluate PPO vs SFT, write ``metrics.json``; headline figures.

    In a multi-process launch every process trains; the main one evaluates and writes.
    """
    run_dir = Path(run_dir)
    out = run_dir / "ppo"
    t0 = time.time()
    res = train(cfg, run_dir)
    accelerator, model = res["accelerator"], res["model"]
    head: dict = {}
    if res["is_main"]:
        ev = evaluate(cfg, run_dir, model, res["tokenizer"], res["reward_model"], res["reward_tokenizer"], res["oracle"])
        # The final adapter (relative to the merged SFT model), for load_ppo_model and the evaluation stage.
        tmp = out / f".{ADAPTER}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.policy.save_pretrained(tmp)
        res["tokenizer"].save_pretrained(tmp)
        shutil.rmtree(out / ADAPTER, ignore_errors=True)
        tmp.rename(out / ADAPTER)
        shutil.copy2(out / CHECKPOINT / "value_head.safetensors", out / "value_head.safetensors")
        rows = read_log(run_dir)
        split_keys = ("generation_s", "forward_s", "scoring_s", "oracle_s", "optimization_s", "iteration_s")
        time_split = {k: round(sum(r[f"time/{k}"] for r in rows) / len(rows), 2) for k in split_keys} if rows else {}
        sft_r, ppo_r = ev["sft"]["report"], ev["ppo"]["report"]
        metrics = {
            "base_model": cfg.model.base_model, "reward_source": cfg.ppo.reward_source,
            "iterations": cfg.ppo.iterations, "episodes": res["episodes"],
            "num_processes": res["num_processes"], "ranks": res["ranks"], "pids": res["pids"],
            "resumed_from_iteration": res["resumed_from_iteration"],
            "train_seconds_this_run": round(res["train_seconds"], 1),
            "wall_seconds_this_run": round(time.time() - t0, 1),
            "seconds_per_iteration": time_split,
            "final_kl_coef": res["final_kl_coef"],
            "final_rollout": {k: rows[-1][k] for k in LOG_KEYS if k in rows[-1]} if rows else {},
            "eval": {k: v for k, v in ev.items() if k != "texts"},
            "accept_rate_gain": ppo_r.get("accept_rate", 0) - sft_r.get("accept_rate", 0),
            "p_accept_gain": ppo_r.get("p_accept", 0) - sft_r.get("p_accept", 0),
            "seeker_interest_change": ppo_r.get("seeker_interest", 0) - sft_r.get("seeker_interest", 0),
            "rm_score_gain": ev["ppo"]["rm_score_mean"] - ev["sft"]["rm_score_mean"],
        }
        atomic_write_json(out / "eval_texts.json", {"seeker_ids": ev["seeker_ids"], **ev["texts"]})
        atomic_write_json(out / "metrics.json", metrics)
        (out / "profile.json").write_text(cfg.to_json())
        head = {
            "iterations": cfg.ppo.iterations, "num_processes": res["num_processes"],
            "reward_source": cfg.ppo.reward_source,
            "sft_accept_rate": sft_r.get("accept_rate"), "ppo_accept_rate": ppo_r.get("accept_rate"),
            "accept_rate_gain": metrics["accept_rate_gain"],
            "sft_seeker_interest": sft_r.get("seeker_interest"), "ppo_seeker_interest": ppo_r.get("seeker_interest"),
            "sft_rm_score": ev["sft"]["rm_score_mean"], "ppo_rm_score": ev["ppo"]["rm_score_mean"],
            "final_rollout_kl": rows[-1]["objective/kl"] if rows else None,
            "kl_exact_eval": ev.get("kl_exact_mean"),
            "seconds_per_iteration": time_split.get("iteration_s"),
        }
    accelerator.wait_for_everyone()
    return head


# ============================================================================================
# 8. A beta sweep: the reward-KL trade-off
# ============================================================================================
def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        return
    try:
        dst.symlink_to(src.resolve(), target_is_directory=True)
    except OSError:  # no symlinks (some Windows setups): a copy
        shutil.copytree(src, dst)


def beta_sweep(cfg: Profile, run_dir: Path, betas: Sequence[float], overrides: dict | None = None,
               force: bool = False, log=print) -> list[dict]:
    """One PPO run per KL coefficient β, into ``<run_dir>/beta_sweep/beta_<β>/``.

    Each sub-run dir links (or copies) the complete ``data``, ``sft`` and ``reward`` stages of
    ``run_dir``, so only PPO runs again. ``overrides`` (e.g. fewer iterations) apply to every
    run. Returns, per β, the last iteration's rollout KL, score and oracle acceptance plus the
    held-out PPO-vs-SFT figures.
    """
    from .config import apply_overrides
    from .pipeline import require_complete
    from .pipeline import run_stage as pipeline_run_stage

    run_dir = Path(run_dir)
    for stage in ("data", "sft", "reward"):
        require_complete(run_dir, stage)
    results = []
    for beta in betas:
        sub = run_dir / "beta_sweep" / f"beta_{beta:g}"
        sub.mkdir(parents=True, exist_ok=True)
        for stage in ("data", "sft", "reward"):
            _link_or_copy(run_dir / stage, sub / stage)
        cfg_b = apply_overrides(cfg, {**(overrides or {}), "ppo.kl_coef": beta, "ppo.adaptive_kl_target": None})
        pipeline_run_stage("ppo", cfg_b, sub, force=force, log=log)
        rows = read_log(sub)
        metrics = json.loads((sub / "ppo" / "metrics.json").read_text())
        last = rows[-1]
        results.append({
            "beta": beta, "run_dir": str(sub),
            "kl": last["objective/kl"], "score": last["objective/scores"], "rlhf_reward": last["objective/rlhf_reward"],
            "oracle_accept_rate": last["oracle/accept_rate"],
            "eval_kl_exact": metrics["eval"].get("kl_exact_mean"),
            "eval_rm_score": metrics["eval"]["ppo"]["rm_score_mean"],
            "eval_accept_rate": metrics["eval"]["ppo"]["report"].get("accept_rate"),
            "eval_accept_rate_gain": metrics["accept_rate_gain"],
        })
    return results


# ============================================================================================
# 9. ``python -m girl_lib.ppo``: the entry point for multi-process launchers
# ============================================================================================
def main(argv: list[str] | None = None) -> int:
    """``[torchrun --nproc_per_node N] python -m girl_lib.ppo --profile P --run-dir D [--set K=V]``.

    Like ``girl ppo``, but safe under a launcher: every process trains, only the main one
    touches the stage's manifest (a complete stage is skipped unless ``--force``).
    """
    from .config import apply_overrides, parse_override_args, resolve_profile
    from .errors import EXIT_USAGE
    from .pipeline import require_complete
    from .rundir import clear_manifest, default_run_dir, ensure_writable, is_complete, read_manifest, write_manifest

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser(prog="python -m girl_lib.ppo", description=main.__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="auto")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = apply_overrides(resolve_profile(args.profile), parse_override_args(args.overrides))
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg.name)
        rank = int(os.environ.get("RANK", "0"))
        out = run_dir / "ppo"
        if is_complete(out) and not args.force:
            if rank == 0:
                print(f"[girl] ppo: complete in {out}, skipped (use --force to redo)")
            return 0
        for stage in ("data", "sft", "reward"):
            require_complete(run_dir, stage)
        if rank == 0:
            ensure_writable(run_dir)
            clear_manifest(out)
        t0 = time.time()
        result = run_stage(cfg, run_dir)
        if rank == 0:
            write_manifest(out, "ppo", cfg.name, time.time() - t0, result)
            print(json.dumps(read_manifest(out)["result"], indent=2, sort_keys=True, default=str))
        return 0
    except GirlError as exc:
        print(f"python -m girl_lib.ppo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
