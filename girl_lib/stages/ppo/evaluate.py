"""PPO (or GRPO/RLOO) against SFT on held-out seekers: the oracle, the reward model, the exact KL."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ...config import Profile
from ...generators import reusable_val_generations
from ...oracle_eval import compare_reports, oracle_report
from ...scoring import score, scoring_bf16
from ...textgen import chat_prompt_ids, generate_from_config
from ...training import split_seekers
from ...world import SYSTEM_PROMPT, make_prompt
from .policy import PolicyWithValueHead
from .rollout import build_batch, select_rows, to_device


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


def evaluate(cfg: Profile, run_dir: Path, model: PolicyWithValueHead, tok, rm, rm_tok, oracle=None,
             kl_seekers: int | None = None) -> dict:
    """Greedy JDs of the PPO policy and of the SFT model for held-out (val) seekers.

    The SFT arm reuses the SFT stage's own greedy JDs (``sft/oracle_val.json``) when they were
    written for the same seekers with the same generation settings; otherwise it generates them
    with the PPO adapter disabled (= the SFT model). Both arms go through the oracle and the
    reward model; ``paired`` holds PPO − SFT with paired intervals and tests (the oracle's rates
    and means); ``kl_exact_mean`` is :func:`exact_kl_along` the PPO's greedy JDs, over all of
    them or, with ``kl_seekers > 0`` (default ``ppo.eval_kl_seekers``), over the first
    ``kl_seekers`` of the (seeded, random) draw: the exact KL costs as much as the generation on a
    CPU, and its mean needs fewer seekers.
    """
    p = cfg.ppo
    n = p.eval_seekers or cfg.sft.oracle_eval_seekers
    seekers = split_seekers(Path(run_dir) / "data", n, seed=cfg.seed)
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
    bf16 = scoring_bf16(cfg)
    rm_ppo = score(rm, rm_tok, cvs, ppo_out.texts, batch_size=bs, max_length=cfg.reward.max_length, bf16=bf16)
    rm_sft = score(rm, rm_tok, cvs, sft_texts, batch_size=bs, max_length=cfg.reward.max_length, bf16=bf16)
    result = {
        "n_seekers": len(seekers), "seeker_ids": [s["id"] for s in seekers], "sft_arm_source": sft_source,
        "generation_seconds": round(gen_seconds, 1),
        "ppo": {"report": oracle_report(seekers, ppo_out.texts, oracle), "rm_score_mean": float(rm_ppo.mean()),
                "rm_scores": [round(float(v), 4) for v in rm_ppo], "eos_rate": sum(ppo_out.finished) / max(1, len(seekers))},
        "sft": {"report": oracle_report(seekers, sft_texts, oracle), "rm_score_mean": float(rm_sft.mean()),
                "rm_scores": [round(float(v), 4) for v in rm_sft]},
        "texts": {"ppo": ppo_out.texts, "sft": sft_texts},
    }
    # PPO minus SFT on the same seekers: paired intervals, n and p-values (exact McNemar on rates).
    result["paired"] = compare_reports(result["ppo"]["report"], result["sft"]["report"], seed=cfg.seed)
    if p.eval_kl and seekers:
        t0 = time.time()
        kl_seekers = p.eval_kl_seekers if kl_seekers is None else kl_seekers
        k = len(prompts) if kl_seekers <= 0 else min(kl_seekers, len(prompts))
        batch = build_batch(chat_prompt_ids(tok, prompts[:k], SYSTEM_PROMPT), ppo_out.response_ids[:k],
                            tok.pad_token_id, tok.eos_token_id)
        kl = exact_kl_along(model, batch, max(1, p.micro_batch_size))
        result["kl_exact_mean"] = float(kl.mean())
        result["kl_exact_n"] = k
        result["kl_seconds"] = round(time.time() - t0, 1)
    return result


def versus_sft(ev: dict) -> dict:
    """The figures of an RL arm against SFT that every arm's ``metrics.json`` holds (PPO, GRPO, RLOO)."""
    arm, sft = ev["ppo"]["report"], ev["sft"]["report"]
    return {
        "eval": {k: v for k, v in ev.items() if k != "texts"},
        "accept_rate_gain": arm.get("accept_rate", 0) - sft.get("accept_rate", 0),
        "accept_rate_diff": ev["paired"]["accept_rate"],  # the same, with its paired CI, n and p
        "p_accept_gain": arm.get("p_accept", 0) - sft.get("p_accept", 0),
        "seeker_interest_change": arm.get("seeker_interest", 0) - sft.get("seeker_interest", 0),
        "rm_score_gain": ev["ppo"]["rm_score_mean"] - ev["sft"]["rm_score_mean"],
        # The KL to the SFT model reached, measured the same way for every arm: compare arms at
        # equal achieved KL, not at equal beta.
        "achieved_kl": ev.get("kl_exact_mean"),
    }
