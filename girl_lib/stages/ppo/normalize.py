"""The score normaliser: the reward's mean and spread on the starting policy's own samples.

[detail] Reward normalisation (Huang et al., 2024). A Bradley–Terry reward model is defined up
to a shift and a scale, so RL standardises its score, ``(raw - mean) / std``; then β and the
missing-EOS penalty mean the same thing for any reward model (a penalty of 1.0 is one standard
deviation of its opinion). The statistics must come from the distribution RL starts on: JDs
*sampled from the SFT policy* for train seekers, with the very sampler of the rollouts
(:func:`girl_lib.stages.ppo.rollout.sample_responses`), before any update. Statistics of real
JDs (what the reward model trained on) describe another distribution: there the SFT policy's
first rollouts would start far from mean 0 / std 1.

Computed once per run, from ``ppo.score_norm_batches`` rollout batches, saved as
``<stage>/score_norm.json`` and read back on resume. The oracle reward source
(``ppo.reward_source=oracle``) is standardised the same way; ``ppo.normalize_scores=false``
turns it off (mean 0, std 1). PPO and the GRPO/RLOO arms call :func:`score_norm` alike.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ...rundir import atomic_write_json
from .rollout import sample_responses

SCORE_NORM = "score_norm.json"


def norm_seed(p, k: int) -> int:
    """Seed of the ``k``-th normaliser batch: not one of the iterations' seeds
    (``seed·1000003 + iteration·1009 + rank``: this one is 500 past a multiple of 1009)."""
    return p.seed * 1_000_003 + k * 1_009 + 500


def starting_policy_stats(policy, tok, pool: list[dict], cfg, raw_scores) -> dict:
    """``{"mean", "std", "n", ...}`` of ``raw_scores(seekers, texts)`` on samples of ``policy``.

    ``policy`` must be the starting policy (the SFT model: PPO passes its policy with the
    adapter disabled). The same seeds in every process, so every process gets the same numbers.
    """
    p = cfg.ppo
    raws = []
    for k in range(p.score_norm_batches):
        seekers, gen = sample_responses(policy, tok, pool, cfg, norm_seed(p, k))
        raws.append(torch.as_tensor(raw_scores(seekers, gen.texts), dtype=torch.float64))
    t = torch.cat(raws)
    return {"mean": float(t.mean()), "std": max(float(t.std(unbiased=False)), 1e-6), "n": int(t.numel()),
            "reward_source": p.reward_source, "batches": p.score_norm_batches, "temperature": p.temperature,
            "sampled_from": "the starting (SFT) policy, train seekers, the rollout sampler"}


def score_norm(out: Path, cfg, policy, tok, pool: list[dict], raw_scores, resume: bool, write: bool,
               log=print) -> tuple[float, float]:
    """``(mean, std)`` to standardise the scores with; ``(0, 1)`` when ``ppo.normalize_scores`` is off.

    Read from ``out/score_norm.json`` on resume; otherwise computed
    (:func:`starting_policy_stats`) and, where ``write``, saved there.
    """
    if not cfg.ppo.normalize_scores:
        return 0.0, 1.0
    path = Path(out) / SCORE_NORM
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        return float(saved["mean"]), float(saved["std"])
    stats = starting_policy_stats(policy, tok, pool, cfg, raw_scores)
    if write:
        atomic_write_json(path, stats)
    log(f"[girl] score normaliser on {stats['n']} samples of the starting policy: "
        f"mean {stats['mean']:+.4f}, std {stats['std']:.4f}")
    return stats["mean"], stats["std"]
