"""The generator *arms* of a run dir: which JD writers exist, and loading any one of them.

An arm is one way of writing a JD for a CV:

========== =================================================== ==================================
arm        model                                               exists when
========== =================================================== ==================================
zero_shot  the base model, no adapter (the paper's "base LLM") always (it needs no training)
sft        base + the SFT LoRA (``sft/adapter``)               the ``sft`` stage is complete
ppo        SFT merged into the base + the PPO LoRA             the ``ppo`` stage is complete
grpo/rloo  SFT merged + that algorithm's LoRA (same layout)    ``girl ppo --algo grpo|rloo`` ran
========== =================================================== ==================================

The zero-shot arm is the base model itself: the same weights as the SFT model inside
``with model.disable_adapter():`` (what the SFT and PPO chapters use), loaded without needing
an SFT adapter, so a run dir with only ``data/`` can still be evaluated.

**Which arm does ``girl recommend`` use?** :func:`best_arm`: the first trained arm in
:data:`PREFERENCE` — PPO, then GRPO, then RLOO, then SFT. A fixed order, not "the arm with the
best score in ``eval/metrics.json``": the oracle behind those scores exists only in this
synthetic world, and a command that picked a different model after every evaluation would be
hard to reason about. Pass ``--arm`` to choose another.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .config import Profile
from .errors import GirlError
from .rundir import is_complete

ARMS = ("zero_shot", "sft", "ppo", "grpo", "rloo")
RL_ARMS = ("ppo", "grpo", "rloo")
PREFERENCE = ("ppo", "grpo", "rloo", "sft")  # best_arm: the first of these that is trained
LABELS = {"zero_shot": "zero-shot base", "sft": "SFT", "ppo": "PPO", "grpo": "GRPO", "rloo": "RLOO"}


def adapter_dir(run_dir: Path, arm: str) -> Path | None:
    """Where the arm's LoRA lives (None for zero-shot, which has none)."""
    if arm not in ARMS:
        raise GirlError(f"unknown arm '{arm}'; choose one of {', '.join(ARMS)}")
    return None if arm == "zero_shot" else Path(run_dir) / arm / "adapter"


def is_trained(run_dir: Path, arm: str) -> bool:
    """True when the arm's stage is complete and its adapter is on disk (zero-shot: always)."""
    path = adapter_dir(run_dir, arm)
    if path is None:
        return True
    if not (is_complete(Path(run_dir) / arm) and (path / "adapter_config.json").is_file()):
        return False
    return arm == "sft" or is_trained(run_dir, "sft")  # RL arms sit on top of the SFT adapter


def available_arms(run_dir: Path) -> list[str]:
    """Every arm that can generate from this run dir, in :data:`ARMS` order (zero-shot first)."""
    return [a for a in ARMS if is_trained(run_dir, a)]


def best_arm(run_dir: Path, profile: str = "P") -> str:
    """The first trained arm of :data:`PREFERENCE`; a one-line error when none is trained."""
    for arm in PREFERENCE:
        if is_trained(run_dir, arm):
            return arm
    raise GirlError(f"no trained generator in '{run_dir}' (looked for {', '.join(f'{a}/adapter' for a in PREFERENCE)}); "
                    f"run 'girl sft --profile {profile}' (and 'girl ppo') with this --run-dir first")


@contextmanager
def load_generator(cfg: Profile, run_dir: Path, arm: str):
    """``with load_generator(cfg, run_dir, arm) as (model, tokenizer):`` — a model ready to generate.

    zero_shot: :func:`girl_lib.models.load_causal_lm`; sft: :func:`girl_lib.sft.load_sft_model`;
    ppo/grpo/rloo: :func:`girl_lib.ppo.load_policy` with that arm's adapter (the SFT adapter
    merged, the RL LoRA on top). The model is dropped when the block ends.
    """
    if not is_trained(run_dir, arm):
        raise GirlError(f"arm '{arm}' is not trained in '{run_dir}' (no complete {arm}/ stage with an adapter); "
                        f"trained arms: {', '.join(available_arms(run_dir))}")
    if arm == "zero_shot":
        from .models import load_causal_lm

        model, tok = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    elif arm == "sft":
        from .sft import load_sft_model

        model, tok = load_sft_model(cfg, run_dir)
    else:
        from .ppo import load_policy

        model, tok = load_policy(cfg, run_dir, adapter_dir=adapter_dir(run_dir, arm), is_trainable=False)
    model.eval()
    try:
        yield model, tok
    finally:
        del model


def generate_jds(cfg: Profile, run_dir: Path, arm: str, cv_texts: list[str], progress: bool = False):
    """Greedy JDs of ``arm`` for each CV (a :class:`girl_lib.generate.GenerationOutput`)."""
    from .generate import generate_from_config
    from .world import SYSTEM_PROMPT, make_prompt

    with load_generator(cfg, run_dir, arm) as (model, tok):
        return generate_from_config(model, tok, [make_prompt(cv) for cv in cv_texts], cfg.generation,
                                    system_prompt=SYSTEM_PROMPT, progress=progress)
