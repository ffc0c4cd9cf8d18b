"""The PPO loop, read top to bottom: rollout → score → advantages → update → log → checkpoint.

:func:`train` sets up a run (resume or start fresh, build the models) and runs
:func:`ppo_iterations`; each iteration calls one function per step, in the order they run. The
maths of every step lives in :mod:`girl_lib.stages.ppo.core`; the chapter-style overview is the
docstring of :mod:`girl_lib.stages.ppo`.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ...config import Profile
from ...errors import GirlError
from ...generators import load_policy
from ...oracle_eval import oracle_report
from ...rundir import require_complete
from ...scoring import load_reward_model, make_scorer, raw_scorer
from ...textgen import GenerationOutput, chat_prompt_ids
from ...world import SYSTEM_PROMPT, Oracle, load_split, make_prompt
from .checkpoint import (ADAPTER, LOG, _append_log, _fresh_start, _truncate_log, config_fingerprint,
                         find_checkpoint, load_value_head, save_checkpoint, save_snapshot)
from .core import (K3_IN_REWARD, AdaptiveKLController, FixedKLController, explained_variance,
                   leave_one_out_baseline, masked_mean, sequence_lengths)
from .normalize import score_norm
from .policy import PolicyWithValueHead
from .rollout import (apply_format_penalty, apply_missing_eos_penalty, build_batch, compute_advantages, mean_return,
                      rollout_forward, sample_responses)
from .update import ppo_update

# Every line of log.jsonl has these keys (TRL's names where TRL has one).
LOG_KEYS = (
    "iteration", "episodes", "beta",
    "objective/kl", "objective/entropy", "objective/non_score_reward", "objective/scores",
    "objective/rlhf_reward",
    "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg",
    "val/clipfrac_avg", "val/ratio", "val/ratio_var", "val/num_eos_tokens", "val/explained_variance", "eos_rate",
    "response_length_mean",
    "oracle/p_accept", "oracle/accept_rate", "oracle/seeker_interest", "oracle/two_sided_rate",
    "oracle/parse_rate",
    "debug/first_ratio", "debug/first_approxkl", "debug/first_clipfrac",
    "time/generation_s", "time/forward_s", "time/scoring_s", "time/oracle_s", "time/optimization_s",
    "time/iteration_s", "num_processes",
)


@dataclass
class _Context:
    """What one process knows about the run (built by :func:`train`)."""
    rank: int
    world: int
    is_main: bool
    accelerator: object  # accelerate.Accelerator
    out: Path  # <run_dir>/ppo
    fingerprint: str  # config_fingerprint: a checkpoint resumes only under the same settings
    say: Callable  # the log function on the main process, silent on the others


@dataclass
class _Models:
    """The trained model, its optimizer and β's controller, and the frozen reward model (:func:`build_models`)."""
    model: torch.nn.Module  # the PolicyWithValueHead as accelerate prepared it (DDP-wrapped when multi-process)
    unwrapped: PolicyWithValueHead
    optimizer: torch.optim.Optimizer
    param_groups: tuple[list, list]  # (policy LoRA, value head): gradients clipped group by group
    kl_ctl: AdaptiveKLController | FixedKLController
    tok: object
    rm: torch.nn.Module
    rm_tok: object


@dataclass
class Rollout:
    """One iteration's rollouts: the seekers, their sampled JDs, and the batch of :func:`build_batch`
    with the no-grad ``logprobs``, ``values`` and ``ref_logprobs`` added."""
    seekers: list[dict]
    gen: GenerationOutput
    batch: dict
    entropy: torch.Tensor  # [B, R] per token, of softmax(logits / T)
    times: dict[str, float] = field(default_factory=dict)


@dataclass
class Scored:
    """The rollouts' scores: what PPO maximises, the reward model's raw units, and the oracle's report.

    ``rewards`` is what enters the per-token rewards: ``scores``, minus each seeker's leave-one-out
    mean when ``ppo.samples_per_prompt > 1``.
    """
    scores: torch.Tensor
    raw_scores: torch.Tensor
    oracle: dict
    rewards: torch.Tensor
    times: dict[str, float] = field(default_factory=dict)


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


# --------------------------------------------------------------------------------------------
# Setup: settings, resume or start fresh, the models
# --------------------------------------------------------------------------------------------
VALUE_HEAD_INITS = ("zero", "mean_return")
VALUE_HEAD_INIT_REMOVED = ("ppo.value_head_init=reward was removed: the reward model's score head reads that model's "
                           "own (12-layer) features, not the policy's last layer; use mean_return (or zero)")


def check_settings(p) -> None:
    """Refuse ``ppo.*`` settings the loop cannot run with, before anything is loaded."""
    if p.minibatch_size < 1 or p.micro_batch_size < 1 or p.rollout_batch_size < 1 or p.ppo_epochs < 1:
        raise GirlError("ppo.rollout_batch_size, minibatch_size, micro_batch_size and ppo_epochs must be >= 1")
    if p.snapshot_every < 0:
        raise GirlError(f"ppo.snapshot_every must be >= 0 (0 keeps no snapshots), got {p.snapshot_every}")
    if p.samples_per_prompt < 1 or p.rollout_batch_size % p.samples_per_prompt:
        raise GirlError(f"setting 'ppo.samples_per_prompt' is {p.samples_per_prompt}; it must be a divisor of "
                        f"ppo.rollout_batch_size ({p.rollout_batch_size})")
    if p.kl_estimator != "k1":
        raise GirlError(K3_IN_REWARD if p.kl_estimator == "k3" else f"ppo.kl_estimator must be k1, got '{p.kl_estimator}'")
    if p.value_head_init not in VALUE_HEAD_INITS:
        raise GirlError(VALUE_HEAD_INIT_REMOVED if p.value_head_init == "reward" else
                        f"ppo.value_head_init must be zero or mean_return, got '{p.value_head_init}'")


def resume_or_start(ctx: _Context, p) -> tuple[Path | None, dict | None]:
    """``(checkpoint folder, its state.json)`` to resume from, or ``(None, None)`` for a fresh start.

    A checkpoint is resumed only if it was written under the same settings (the fingerprint),
    is not past ``ppo.iterations``, and the earlier run did not finish (a finished run is redone
    from scratch). Every process reads the same files, then the main one truncates the log to
    the checkpoint (resume) or clears ``ppo/`` (fresh start).
    """
    out = ctx.out
    ckpt = find_checkpoint(out)
    state = json.loads((ckpt / "state.json").read_text()) if ckpt else None
    finished_before = (out / "metrics.json").is_file()  # a complete earlier run: redo from scratch
    resume = (state is not None and not finished_before and state.get("fingerprint") == ctx.fingerprint
              and state["iteration"] <= p.iterations)
    ctx.accelerator.wait_for_everyone()
    if ctx.is_main:
        if resume:
            _truncate_log(out / LOG, state["iteration"])
            ctx.say(f"[girl] ppo: resuming after iteration {state['iteration']} from {ckpt}")
        else:
            if state is not None and not finished_before:
                ctx.say("[girl] ppo: the checkpoint in this run dir has other settings; starting over")
            _fresh_start(out)
    ctx.accelerator.wait_for_everyone()
    return (ckpt, state) if resume else (None, None)


def build_models(cfg: Profile, run_dir: Path, accelerator, ckpt: Path | None, state: dict | None) -> _Models:
    """The policy with its value head, the reward model, AdamW and the KL controller.

    Fresh (``state is None``): a new PPO LoRA on the merged SFT model, the value head at zero
    (with ``mean_return`` its bias is set in iteration 1: :func:`warm_start_value_head`).
    Resumed: the checkpoint's adapter, value head, optimizer state and β.
    """
    p = cfg.ppo
    resume = state is not None
    policy, tok = load_policy(cfg, run_dir, adapter_dir=(ckpt / ADAPTER) if resume else None)
    model = PolicyWithValueHead(policy, value_backbone_grad=p.value_backbone_grad)
    rm, rm_tok = load_reward_model(cfg, run_dir)
    rm.to(accelerator.device)
    if resume:
        load_value_head(model, ckpt / "value_head.safetensors")
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
    return _Models(model, unwrapped, optimizer, (lora_params, head_params), kl_ctl, tok, rm, rm_tok)


# --------------------------------------------------------------------------------------------
# One iteration, step by step
# --------------------------------------------------------------------------------------------
def rollout(model: PolicyWithValueHead, tok, pool: list[dict], cfg: Profile, seed: int) -> Rollout:
    """Steps (1)-(4): draw seekers, sample a JD for each, tensorise, run the no-grad forward passes."""
    p = cfg.ppo
    times: dict[str, float] = {}
    # (1)-(2) a fresh batch of train seekers (each process its own), a sampled JD for each:
    # [detail] plain temperature sampling, top_k=0, top_p=1; the fast path may sample in bf16
    t0 = time.time()
    seekers, gen = sample_responses(model.policy, tok, pool, cfg, seed)
    prompts = [make_prompt(s["cv_text"]) for s in seekers]
    times["generation_s"] = time.time() - t0

    # (3) prompt+response tensors, cut at EOS
    batch = build_batch(chat_prompt_ids(tok, prompts, SYSTEM_PROMPT), gen.response_ids,
                        tok.pad_token_id, tok.eos_token_id)

    # (4) old log-probs, values, entropy; reference log-probs (adapter disabled): all float32
    t0 = time.time()
    fwd_bs = max(p.micro_batch_size, 1)
    pol = rollout_forward(model, batch, p.temperature, fwd_bs)
    ref = rollout_forward(model, batch, p.temperature, fwd_bs, reference=True)
    batch.update(logprobs=pol["logprobs"], values=pol["values"], ref_logprobs=ref["logprobs"])
    times["forward_s"] = time.time() - t0
    return Rollout(seekers, gen, batch, pol["entropy"], times)


def score_rollout(ro: Rollout, scorer, oracle: Oracle, p) -> Scored:
    """Step (5): the reward model's score of each decoded JD, minus the missing-EOS penalty and
    (``ppo.format_penalty``) the penalty for a JD the parser cannot read.

    The oracle's report (the ground truth) is computed for monitoring only: PPO never sees it.
    """
    times: dict[str, float] = {}
    t0 = time.time()
    raw_scores, std_scores = scorer(ro.seekers, ro.gen.texts)
    scores = apply_missing_eos_penalty(std_scores, ro.batch["finished"], p.missing_eos_penalty)
    scores = apply_format_penalty(scores, ro.gen.texts, p.format_penalty)
    # [detail] with k JDs per seeker, each is rewarded against the seeker's other k - 1 (penalty included)
    rewards = leave_one_out_baseline(scores, p.samples_per_prompt)
    times["scoring_s"] = time.time() - t0
    t0 = time.time()
    orep = oracle_report(ro.seekers, ro.gen.texts, oracle)  # the ground truth, for monitoring only
    times["oracle_s"] = time.time() - t0
    return Scored(scores, raw_scores, orep, rewards, times)


def iteration_stats(batch: dict, ro: Rollout, sc: Scored, mb_stats: list[dict], times: dict[str, float],
                    t_iter: float) -> dict[str, float]:
    """This process's metrics of one iteration (TRL's names), as floats, before averaging over processes.

    ``batch`` is the one :func:`compute_advantages` returned; ``mb_stats`` what :func:`ppo_update`
    returned, one dict per minibatch. ``time/iteration_s`` runs from ``t_iter`` to now.
    """
    mask = batch["response_mask"]
    seq_kl = batch["kl"].sum(1)
    non_score = batch["non_score_reward"].sum(1)
    ratios = torch.stack([s["ratio"] for s in mb_stats])
    local = {
        "objective/kl": seq_kl.mean(),
        "objective/entropy": masked_mean(ro.entropy, mask),  # per token, of softmax(logits / T)
        "objective/non_score_reward": non_score.mean(),
        "objective/scores": sc.scores.mean(),
        "objective/scores_raw": sc.raw_scores.mean(),  # the reward model's own units
        "objective/scores_raw_sq": sc.raw_scores.square().mean(),  # with the mean: their spread (ppo.overopt)
        "objective/rlhf_reward": (sc.scores + non_score).mean(),
        "policy/approxkl_avg": torch.stack([s["approxkl"] for s in mb_stats]).mean(),
        "policy/clipfrac_avg": torch.stack([s["clipfrac"] for s in mb_stats]).mean(),
        "loss/policy_avg": torch.stack([s["pg_loss"] for s in mb_stats]).mean(),
        "loss/value_avg": torch.stack([s["vf_loss"] for s in mb_stats]).mean(),
        "val/clipfrac_avg": torch.stack([s["vf_clipfrac"] for s in mb_stats]).mean(),
        "val/ratio": ratios.mean(),
        "val/ratio_var": ratios.var(unbiased=False),
        "val/num_eos_tokens": batch["finished"].sum(),
        # the rollout's values (before this update) against the returns they helped compute
        "val/explained_variance": explained_variance(batch["values"], batch["returns"], mask),
        "val/mean": masked_mean(batch["values"], mask),
        "eos_rate": batch["finished"].float().mean(),
        "response_length_mean": sequence_lengths(mask).float().mean(),
        "grad_norm/policy": torch.stack([s["grad_norm_0"] for s in mb_stats]).mean(),
        "grad_norm/value_head": torch.stack([s["grad_norm_1"] for s in mb_stats]).mean(),
        # The first minibatch of the first epoch, before any step: ratio 1, approxkl 0 and
        # clipfrac 0, unless the rollout's log-probs and the update's disagree (a bug).
        "debug/first_ratio": mb_stats[0]["ratio"],
        "debug/first_approxkl": mb_stats[0]["approxkl"],
        "debug/first_clipfrac": mb_stats[0]["clipfrac"],
        **{f"oracle/{k}": sc.oracle[k] for k in ("p_accept", "accept_rate", "seeker_interest",
                                                  "two_sided_rate", "parse_rate")},
        **{f"time/{k}": v for k, v in times.items()}, "time/iteration_s": time.time() - t_iter,
    }
    return {k: float(v) for k, v in local.items()}


def log_iteration(ctx: _Context, p, row: dict, times: dict[str, float]) -> None:
    """Append ``row`` to ``ppo/log.jsonl`` (main process) and print the iteration's one-line summary."""
    if ctx.is_main:
        _append_log(ctx.out / LOG, row)
    ctx.say(f"[girl] ppo {row['iteration']}/{p.iterations}: score {row['objective/scores']:+.3f}  "
            f"kl {row['objective/kl']:.3f}  accept {row['oracle/accept_rate']:.2f}  "
            f"interest {row['oracle/seeker_interest']:.2f}  eos {row['eos_rate']:.2f}  "
            f"len {row['response_length_mean']:.0f}  ({row['time/iteration_s']:.0f} s: "
            f"gen {times['generation_s']:.0f}, fwd {times['forward_s']:.0f}, rm {times['scoring_s']:.0f}, "
            f"opt {times['optimization_s']:.0f})")


def warm_start_value_head(ctx: _Context, m: _Models, batch: dict, scores: torch.Tensor, beta: float, p) -> float:
    """``ppo.value_head_init=mean_return``, iteration 1 of a fresh run: the value head's bias becomes
    the mean return of this first rollout batch (averaged over processes), and the batch's values
    with it (the head's weight is still 0, so the head outputs exactly its bias)."""
    value = _reduce_mean(ctx.accelerator, {"v": mean_return(batch, scores, beta, p)})["v"]
    with torch.no_grad():
        m.unwrapped.value_head.bias.fill_(value)
    mask = batch["response_mask"]
    batch["values"] = torch.where(mask, torch.full_like(batch["values"], value), torch.zeros_like(batch["values"]))
    return value


def update_settings(p, iteration: int):
    """The ``ppo.*`` settings of this iteration's update: no value clipping while the value head
    warms up (iterations ``<= ppo.value_warmup_iterations``). A head that starts far from the
    returns (order 1) would otherwise close only ``ppo.cliprange_value`` of the gap per iteration."""
    return replace(p, cliprange_value=math.inf) if iteration <= p.value_warmup_iterations else p


def save_iteration(ctx: _Context, m: _Models, iteration: int, episodes: int) -> None:
    """Step (9): every process waits, the main one writes ``ppo/checkpoint/`` (atomically), all wait again."""
    ctx.accelerator.wait_for_everyone()
    if ctx.is_main:
        save_checkpoint(ctx.out, m.unwrapped, m.optimizer,
                        {"iteration": iteration, "kl_coef": m.kl_ctl.value, "episodes": episodes,
                         "fingerprint": ctx.fingerprint, "num_processes": ctx.world,
                         "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    ctx.accelerator.wait_for_everyone()


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def ppo_iterations(cfg: Profile, ctx: _Context, m: _Models, pool: list[dict], oracle: Oracle, scorer,
                   start_iteration: int, episodes: int) -> int:
    """Iterations ``start_iteration + 1 .. ppo.iterations``; returns the episode count at the end."""
    p = cfg.ppo
    for iteration in range(start_iteration + 1, p.iterations + 1):
        t_iter = time.time()
        seed = iteration_seed(p, iteration, ctx.rank)
        # (1)-(4) seekers → sampled JDs → tensors → old and reference log-probs, values
        ro = rollout(m.unwrapped, m.tok, pool, cfg, seed)
        # (5) scores (reward model or oracle, minus the missing-EOS penalty)
        sc = score_rollout(ro, scorer, oracle, p)
        # (6) per-token rewards, GAE, whitened advantages (a fresh value head first starts at the mean return)
        beta = m.kl_ctl.value
        if iteration == 1 and p.value_head_init == "mean_return":
            warm_start_value_head(ctx, m, ro.batch, sc.rewards, beta, p)
        batch = compute_advantages(ro.batch, sc.rewards, beta, p)
        # (7) PPO epochs over shuffled, micro-batched minibatches (value loss unclipped while it warms up)
        t0 = time.time()
        mb_stats = ppo_update(m.model, m.optimizer, batch, update_settings(p, iteration), seed, ctx.accelerator,
                              m.param_groups)
        times = {**ro.times, **sc.times, "optimization_s": time.time() - t0}
        # (8) statistics, averaged over processes; then adapt beta
        row = _reduce_mean(ctx.accelerator, iteration_stats(batch, ro, sc, mb_stats, times, t_iter))
        m.kl_ctl.update(row["objective/kl"], p.rollout_batch_size * ctx.world)  # same value in every process
        episodes += p.rollout_batch_size * ctx.world
        row.update(iteration=iteration, episodes=episodes, beta=beta, num_processes=ctx.world,
                   lr=p.learning_rate, generation_tokens_per_s=round(ro.gen.tokens_per_second, 1))
        log_iteration(ctx, p, row, times)
        # (9) checkpoint every ppo.save_every iterations, and after the last one
        if iteration % max(1, p.save_every) == 0 or iteration == p.iterations:
            save_iteration(ctx, m, iteration, episodes)
        # (10) keep this iteration's adapter for the greedy checks afterwards (ppo.snapshot_every)
        if p.snapshot_every > 0 and iteration % p.snapshot_every == 0 and ctx.is_main:
            save_snapshot(ctx.out, m.unwrapped, iteration)
    return episodes


def train(cfg: Profile, run_dir: Path, log=print) -> dict:
    """Run (or resume) PPO for ``cfg.ppo.iterations`` iterations; return a summary.

    Needs complete ``data``, ``sft`` and ``reward`` stages in ``run_dir``. Call it in every
    process of a multi-process launch.
    """
    from accelerate import Accelerator

    p = cfg.ppo
    check_settings(p)
    run_dir = Path(run_dir)
    data_dir = require_complete(run_dir, "data")
    require_complete(run_dir, "sft")
    require_complete(run_dir, "reward")

    accelerator = Accelerator(cpu=cfg.device == "cpu")
    world, is_main = accelerator.num_processes, accelerator.is_main_process
    ctx = _Context(accelerator.process_index, world, is_main, accelerator, out=run_dir / "ppo",
                   fingerprint=config_fingerprint(cfg, world), say=log if is_main else (lambda *a, **k: None))
    ctx.out.mkdir(parents=True, exist_ok=True)

    # --- resume or start fresh (every process reads the same files, then the main one cleans) ---
    ckpt, state = resume_or_start(ctx, p)
    start_iteration = state["iteration"] if state is not None else 0
    # --- models ---
    m = build_models(cfg, run_dir, accelerator, ckpt, state)
    episodes = int(state["episodes"]) if state is not None else 0
    # --- data, oracle, scorer ---
    pool = load_split(data_dir, "seekers", "train")
    if not pool:
        raise GirlError(f"{data_dir / 'seekers.jsonl'} has no train seekers")
    oracle = Oracle(noise=cfg.data.recruiter_noise)
    # step (5): the reward model (or the oracle), standardised on the starting (SFT) policy's own samples
    raw = raw_scorer(cfg, m.rm, m.rm_tok, oracle)
    with m.unwrapped.policy.disable_adapter():  # the SFT model, whatever the checkpoint holds
        norm = score_norm(ctx.out, cfg, m.unwrapped.policy, m.tok, pool, raw, resume=state is not None,
                          write=ctx.is_main, log=ctx.say)
    scorer = make_scorer(cfg, m.rm, m.rm_tok, oracle, norm)
    ranks = [int(r) for r in accelerator.gather(torch.tensor([ctx.rank], device=accelerator.device)).cpu()]
    pids = [int(r) for r in accelerator.gather(torch.tensor([os.getpid()], device=accelerator.device)).cpu()]
    ctx.say(f"[girl] ppo: {ctx.world} process(es), ranks {ranks}; iterations {start_iteration + 1}..{p.iterations}, "
            f"{p.rollout_batch_size} rollouts per process per iteration")

    t_train = time.time()
    episodes = ppo_iterations(cfg, ctx, m, pool, oracle, scorer, start_iteration, episodes)
    train_seconds = time.time() - t_train
    return {"accelerator": accelerator, "model": m.unwrapped, "tokenizer": m.tok, "reward_model": m.rm,
            "reward_tokenizer": m.rm_tok, "oracle": oracle, "is_main": ctx.is_main, "num_processes": ctx.world,
            "ranks": ranks, "pids": pids, "resumed_from_iteration": start_iteration if state is not None else None,
            "train_seconds": train_seconds, "final_kl_coef": m.kl_ctl.value, "episodes": episodes}
