"""Comparison arms for stage 3: TRL's ``GRPOTrainer`` and ``RLOOTrainer`` on the same reward model.

``girl ppo --algo grpo`` / ``--algo rloo`` train the same policy as the kit's PPO (the SFT model,
its adapter merged, a fresh LoRA on top; the reference is that model with the LoRA disabled)
against the same reward (the stage-2 reward model, standardised like PPO's, minus the same
missing-EOS penalty), on the same number of episodes, and evaluate it with the same function
(:func:`girl_lib.stages.ppo.evaluate.evaluate`). Only the algorithm differs:

* **PPO** (the kit's): a learned value head and GAE give every token its own advantage;
* **GRPO** (Shao et al., 2024): no critic; ``G`` completions per prompt, and each completion's
  advantage is its reward minus the mean of its group, divided by the group's std;
* **RLOO** (Ahmadian et al., 2024): no critic; the baseline of a completion is the mean reward
  of the *other* ``G - 1`` completions of its prompt (leave-one-out).

Both score whole completions, so every token of a completion shares its advantage: cheaper (no
value head, no GAE) but coarser credit assignment.

**Compare the arms at equal achieved KL, not at equal β.** The same number ``ppo.kl_coef`` is
not the same leash: PPO puts ``β · k1`` in the *reward*, summed over a response's tokens (and
carried back by GAE), while TRL's GRPO/RLOO put ``β · k3`` in the *loss*, averaged per token.
So each arm reports the KL it actually reached, measured the same way: ``achieved_kl`` (=
``eval.kl_exact_mean``), the exact ``KL(π || π_SFT)`` summed along its greedy eval JDs
(:func:`girl_lib.stages.ppo.evaluate.exact_kl_along`). A fair comparison plots the oracle's
gain against that KL (e.g. a β sweep per arm), not one β for all. TRL's own logged ``kl``
(``final_kl_trl``) is a per-token mean on the rollouts: not comparable with PPO's.

Outputs in ``<run-dir>/<algo>/``:
``adapter/``, ``metrics.json`` (same layout as PPO's: ``eval.sft``/``eval.ppo`` hold the SFT
arm and *this* algorithm's arm), ``score_norm.json`` (the reward's statistics on the SFT
policy's samples, computed as PPO does), ``log_history.json`` (TRL's log, with the oracle on
the rollouts), ``profile.json``, ``manifest.json``.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ...config import Profile
from ...errors import GirlError
from ...generators import load_sft_model
from ...oracle_eval import oracle_report
from ...rundir import ADAPTER, atomic_write_json, require_complete
from ...scoring import load_reward_model, make_scorer, raw_scorer
from ...seeding import set_seed
from ...training import peft_lora_config, precision_flags, save_adapter, to_chat
from ...world import Oracle, load_split, make_prompt
from .evaluate import evaluate, versus_sft
from .normalize import score_norm
from .policy import PolicyWithValueHead
from .rollout import apply_format_penalty

ALGOS = ("grpo", "rloo")


def _trl_classes(algo: str):
    if algo == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOConfig, GRPOTrainer
    if algo == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOConfig, RLOOTrainer
    raise GirlError(f"unknown algorithm '{algo}'; choose ppo, grpo or rloo")


def make_reward_fn(cfg: Profile, rm, rm_tok, eos_id: int, seekers_by_id: dict, oracle,
                   norm: tuple[float, float] | None = None):
    """The reward function TRL calls: PPO's reward, completion by completion.

    :func:`girl_lib.scoring.make_scorer`'s standardised score (as in PPO, with ``norm`` from
    :func:`girl_lib.stages.ppo.normalize.score_norm`), minus ``ppo.missing_eos_penalty``
    for a completion that never produced EOS and ``ppo.format_penalty`` for one the parser cannot
    read (:func:`~girl_lib.stages.ppo.rollout.apply_format_penalty`). As a side effect it logs
    the oracle's verdict on the rollouts (``oracle/accept_rate`` ...) through TRL's ``log_metric``.
    """
    p = cfg.ppo
    scorer = make_scorer(cfg, rm, rm_tok, oracle, norm)  # ppo.reward_source: the reward model or the oracle

    def reward_fn(prompts, completions, completion_ids, seeker_id, log_metric=None, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        seekers = [seekers_by_id[i] for i in seeker_id]
        raw, standardised = scorer(seekers, texts)
        finished = [eos_id in list(ids) for ids in completion_ids]
        rewards = [float(r) - (0.0 if f else p.missing_eos_penalty)
                   for r, f in zip(apply_format_penalty(standardised, texts, p.format_penalty), finished)]
        if log_metric is not None:
            rep = oracle_report(seekers, texts, oracle)
            for k in ("p_accept", "accept_rate", "seeker_interest", "two_sided_rate", "parse_rate"):
                log_metric(f"oracle/{k}", rep[k])
            log_metric("objective/scores_raw", float(raw.mean()))
            log_metric("objective/scores_raw_sq", float((raw ** 2).mean()))
            log_metric("eos_rate", sum(finished) / len(finished))
        return rewards

    return reward_fn


def trl_args(cfg: Profile, algo: str, output_dir: Path):
    """A ``GRPOConfig``/``RLOOConfig`` matched to the PPO profile: same episodes, batch, lr, β, ε.

    One PPO iteration = ``ppo.rollout_batch_size`` completions (here ``group_size`` per prompt),
    reused for ``ppo.ppo_epochs`` passes (TRL's ``num_iterations``) in minibatches of
    ``ppo.minibatch_size`` made of micro-batches of ``ppo.micro_batch_size`` (gradient
    accumulation).
    """
    p = cfg.ppo
    config_cls, _ = _trl_classes(algo)
    if p.rollout_batch_size % p.group_size or p.rollout_batch_size % p.minibatch_size or p.minibatch_size % p.micro_batch_size:
        raise GirlError("for grpo/rloo, ppo.rollout_batch_size must be a multiple of ppo.group_size and of "
                        "ppo.minibatch_size, itself a multiple of ppo.micro_batch_size")
    accum = p.minibatch_size // p.micro_batch_size
    steps_per_rollout = p.rollout_batch_size // p.minibatch_size
    kw = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=p.micro_batch_size,
        gradient_accumulation_steps=accum,
        steps_per_generation=steps_per_rollout * accum,  # micro-batches per generation batch
        num_generations=p.group_size,
        num_iterations=p.ppo_epochs,
        max_steps=p.iterations * steps_per_rollout * p.ppo_epochs,
        max_completion_length=cfg.generation.max_new_tokens,
        temperature=p.temperature, top_k=0, top_p=1.0,
        beta=p.kl_coef, epsilon=p.cliprange,
        learning_rate=p.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=p.max_grad_norm,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        seed=p.seed, data_seed=p.seed, gradient_checkpointing=False, dataloader_num_workers=0,
        **precision_flags(cfg),
    )
    return config_cls(**kw)


def prompt_dataset(pool: list[dict], p):
    """The prompts TRL samples from: ``iterations x rollout_batch_size / group_size`` train
    seekers, shuffled with ``ppo.seed``, each row carrying its ``seeker_id`` for the reward."""
    from datasets import Dataset

    n_prompts = p.iterations * p.rollout_batch_size // p.group_size
    rows = [{**to_chat(make_prompt(s["cv_text"])), "seeker_id": s["id"]} for s in pool]
    return Dataset.from_list(rows).shuffle(seed=p.seed).select(range(min(len(rows), max(n_prompts, 1))))


def run_stage(cfg: Profile, run_dir: Path, algo: str) -> dict:
    """``girl ppo --algo grpo|rloo``: train with TRL, evaluate like PPO, write ``<run_dir>/<algo>/``."""
    _, trainer_cls = _trl_classes(algo)
    run_dir = Path(run_dir)
    data_dir, _, _ = (require_complete(run_dir, stage) for stage in ("data", "sft", "reward"))
    out = run_dir / algo
    out.mkdir(parents=True, exist_ok=True)
    p = cfg.ppo

    merged, tok = load_sft_model(cfg, run_dir)
    merged = merged.merge_and_unload()  # the reference: TRL disables the LoRA it adds on top
    rm, rm_tok = load_reward_model(cfg, run_dir)
    oracle = Oracle(noise=cfg.data.recruiter_noise)
    pool = load_split(data_dir, "seekers", "train")
    dataset = prompt_dataset(pool, p)
    args = trl_args(cfg, algo, out / "trainer")
    # The same normaliser as PPO's: the merged SFT model is the starting policy, sampled the same way.
    norm = score_norm(out, cfg, merged, tok, pool, raw_scorer(cfg, rm, rm_tok, oracle), resume=False, write=True)
    reward_fn = make_reward_fn(cfg, rm, rm_tok, tok.eos_token_id, {s["id"]: s for s in pool}, oracle, norm)
    reward_fn.__name__ = "reward_model"
    set_seed(p.seed)
    trainer = trainer_cls(model=merged, reward_funcs=reward_fn, args=args, train_dataset=dataset,
                          processing_class=tok, peft_config=peft_lora_config(p.lora))
    t0 = time.time()
    trainer.train()
    train_seconds = time.time() - t0

    policy = trainer.model.eval()
    ev = evaluate(cfg, run_dir, PolicyWithValueHead(policy), tok, rm, rm_tok, oracle)
    save_adapter(policy, tok, out / ADAPTER)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    logs = trainer.state.log_history
    sft_r, arm_r = ev["sft"]["report"], ev["ppo"]["report"]
    metrics = {
        "algo": algo, "base_model": cfg.model.base_model, "iterations": p.iterations,
        "episodes": p.iterations * p.rollout_batch_size, "group_size": p.group_size,
        "optimizer_steps": trainer.state.global_step, "train_seconds": round(train_seconds, 1),
        "seconds_per_iteration": round(train_seconds / max(1, p.iterations), 2),
        **versus_sft(ev),
        "final_kl_trl": next((h.get("kl") for h in reversed(logs) if "kl" in h), None),  # TRL's per-token k3 mean
    }
    atomic_write_json(out / "eval_texts.json", {"seeker_ids": ev["seeker_ids"], **ev["texts"]})
    atomic_write_json(out / "log_history.json", logs)
    atomic_write_json(out / "metrics.json", metrics)
    (out / "profile.json").write_text(cfg.to_json())
    return {"algo": algo, "iterations": p.iterations, "sft_accept_rate": sft_r.get("accept_rate"),
            f"{algo}_accept_rate": arm_r.get("accept_rate"), "accept_rate_gain": metrics["accept_rate_gain"],
            "accept_rate_gain_ci": ev["paired"]["accept_rate"]["ci"],
            "accept_rate_gain_p": ev["paired"]["accept_rate"]["p_value"],
            "p_accept_gain": metrics["p_accept_gain"], "rm_score_gain": metrics["rm_score_gain"],
            "kl_exact_eval": ev.get("kl_exact_mean"), "achieved_kl": ev.get("kl_exact_mean"),
            "seconds_per_iteration": metrics["seconds_per_iteration"]}


def read_metrics(run_dir: Path, algo: str, missing_ok: bool = False) -> dict | None:
    """``<run_dir>/<algo>/metrics.json``. When the arm was not trained: ``None`` with ``missing_ok``,
    else a one-line error that says which command trains it."""
    path = Path(run_dir) / algo / "metrics.json"
    if not path.is_file():
        if missing_ok:
            return None
        raise GirlError(f"no {path}; run 'girl ppo --algo {algo}' first")
    return json.loads(path.read_text())
