"""The registry: every exercise, in chapter order, and the per-chapter lookup.

Why a module of its own: it is the one place that imports every chapter group's checks, so it
sits above :mod:`.basics`, :mod:`.rewards` and :mod:`.evaluation` (which import only
:mod:`._common`), and :mod:`girl_lib.exercises` re-exports it. ``tests/test_exercises.py``
walks :data:`EXERCISES` to run every solution and every wrong answer through its check.
"""
from __future__ import annotations

from ._common import Exercise
from .basics import (check_acceptance_by_step, check_chat_prompt, check_left_pad, check_level_factor,
                     check_lora_count, check_lora_merge, check_masked_nll, check_sft_batch, check_write_jd)
from .evaluation import (check_hit_rate_at_k, check_leave_one_out, check_mcnemar, check_ndcg_at_k,
                         check_verdict, check_wilson)
from .rewards import (check_auc, check_bt_loss, check_clipped_surrogate, check_gae, check_jd_mask,
                      check_kl_estimates, check_per_token_rewards)

# --------------------------------------------------------------------------------------------
# The list, in chapter order
# --------------------------------------------------------------------------------------------
EXERCISES: dict[str, Exercise] = {e.number: e for e in (
    Exercise("0.1", "00", "chat_prompt", "the chat template by hand", check_chat_prompt),
    Exercise("0.2", "00", "left_pad", "a left-padded batch of prompts", check_left_pad),
    Exercise("1.1", "01", "level_factor", "the recruiter's level check", check_level_factor),
    Exercise("1.2", "01", "write_jd", "a JD the oracle reads exactly", check_write_jd),
    Exercise("1.3", "01", "acceptance_by_step", "acceptance by level step", check_acceptance_by_step),
    Exercise("2.1", "02", "masked_nll", "the SFT loss on completion tokens", check_masked_nll),
    Exercise("2.2", "02", "sft_batch", "a padded SFT batch", check_sft_batch),
    Exercise("2.3", "02", "lora_merge", "the LoRA update W + (alpha/r) B A", check_lora_merge),
    Exercise("2.4", "02", "lora_count", "LoRA's trainable parameters", check_lora_count),
    Exercise("3.1", "03", "bt_loss", "the Bradley-Terry pairwise loss", check_bt_loss),
    Exercise("3.2", "03", "auc", "AUC with ties", check_auc),
    Exercise("3.3", "03", "jd_mask", "the tokens response_mean pools", check_jd_mask),
    Exercise("4.1", "04", "per_token_rewards", "per-token rewards with the KL penalty", check_per_token_rewards),
    Exercise("4.2", "04", "gae", "generalised advantage estimation", check_gae),
    Exercise("4.3", "04", "kl_estimates", "the k1 and k3 KL estimators", check_kl_estimates),
    Exercise("4.4", "04", "clipped_surrogate", "PPO's clipped surrogate", check_clipped_surrogate),
    Exercise("5.1", "05", "wilson", "the Wilson interval", check_wilson),
    Exercise("5.2", "05", "mcnemar", "the exact McNemar test", check_mcnemar),
    Exercise("5.3", "05", "verdict", "a verdict from an interval and a test", check_verdict),
    Exercise("6.1", "06", "ndcg_at_k", "NDCG@K", check_ndcg_at_k),
    Exercise("6.2", "06", "hit_rate_at_k", "HR@K", check_hit_rate_at_k),
    Exercise("6.3", "06", "leave_one_out_user", "the leave-one-out split", check_leave_one_out),
)}


def for_chapter(chapter: str) -> list[Exercise]:
    """The exercises of chapter ``"NN"``, in order."""
    return [e for e in EXERCISES.values() if e.chapter == chapter]
