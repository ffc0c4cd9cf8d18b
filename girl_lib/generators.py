"""The JD generators of a run dir: which ones exist, loading any one of them, and their JDs.

A generator is one way of writing a JD for a CV:

========== =================================================== ==================================
name       model                                               exists when
========== =================================================== ==================================
zero_shot  the base model, no adapter (the paper's "base LLM") always (it needs no training)
sft        base + the SFT LoRA (``sft/adapter``)               the ``sft`` stage is complete
ppo        SFT merged into the base + the PPO LoRA             the ``ppo`` stage is complete
grpo/rloo  SFT merged + that algorithm's LoRA (same layout)    ``girl ppo --algo grpo|rloo`` ran
========== =================================================== ==================================

The zero-shot generator is the base model itself: the same weights as the SFT model inside
``with model.disable_adapter():``, loaded without needing an SFT adapter, so a run dir with
only ``data/`` can still be evaluated.

**Which one does ``girl recommend`` use?** :func:`best_generator`: the first trained one in
:data:`PREFERENCE` — PPO, then GRPO, then RLOO, then SFT. A fixed order, not "the best score in
``eval/metrics.json``": the oracle behind those scores exists only in this synthetic world, and
a command that picked a different model after every evaluation would be hard to reason about.
Pass ``--arm`` to choose another.

Later stages load earlier stages' models through this module (stage 3 starts from the SFT
model; evaluation loads every generator), so no stage imports another.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from .config import GenerationConfig, Profile
from .errors import GirlError
from .models import load_causal_lm
from .rundir import ADAPTER, is_complete
from .seeding import set_seed
from .textgen import generate_from_config
from .training import peft_lora_config
from .world import SYSTEM_PROMPT, make_prompt

GENERATORS = ("zero_shot", "sft", "ppo", "grpo", "rloo")
PREFERENCE = ("ppo", "grpo", "rloo", "sft")  # best_generator: the first of these that is trained
LABELS = {"zero_shot": "zero-shot base", "sft": "SFT", "ppo": "PPO", "grpo": "GRPO", "rloo": "RLOO"}


def adapter_dir(run_dir: Path, arm: str) -> Path | None:
    """Where the arm's LoRA lives (None for zero-shot, which has none)."""
    if arm not in GENERATORS:
        raise GirlError(f"unknown arm '{arm}'; choose one of {', '.join(GENERATORS)}")
    return None if arm == "zero_shot" else Path(run_dir) / arm / "adapter"


def is_trained(run_dir: Path, arm: str) -> bool:
    """True when the arm's stage is complete and its adapter is on disk (zero-shot: always)."""
    path = adapter_dir(run_dir, arm)
    if path is None:
        return True
    if not (is_complete(Path(run_dir) / arm) and (path / "adapter_config.json").is_file()):
        return False
    return arm == "sft" or is_trained(run_dir, "sft")  # RL arms sit on top of the SFT adapter


def trained_generators(run_dir: Path) -> list[str]:
    """Every arm that can generate from this run dir, in :data:`GENERATORS` order (zero-shot first)."""
    return [a for a in GENERATORS if is_trained(run_dir, a)]


def best_generator(run_dir: Path, profile: str = "P") -> str:
    """The first trained arm of :data:`PREFERENCE`; a one-line error when none is trained."""
    for arm in PREFERENCE:
        if is_trained(run_dir, arm):
            return arm
    raise GirlError(f"no trained generator in '{run_dir}' (looked for {', '.join(f'{a}/adapter' for a in PREFERENCE)}); "
                    f"run 'girl sft --profile {profile}' (and 'girl ppo') with this --run-dir first")


@contextmanager
def load_generator(cfg: Profile, run_dir: Path, arm: str):
    """``with load_generator(cfg, run_dir, arm) as (model, tokenizer):`` — a model ready to generate.

    zero_shot: :func:`girl_lib.models.load_causal_lm`; sft: :func:`girl_lib.generators.load_sft_model`;
    ppo/grpo/rloo: :func:`girl_lib.generators.load_policy` with that arm's adapter (the SFT adapter
    merged, the RL LoRA on top). The model is dropped when the block ends.
    """
    if not is_trained(run_dir, arm):
        raise GirlError(f"arm '{arm}' is not trained in '{run_dir}' (no complete {arm}/ stage with an adapter); "
                        f"trained arms: {', '.join(trained_generators(run_dir))}")
    if arm == "zero_shot":
        model, tok = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    elif arm == "sft":
        model, tok = load_sft_model(cfg, run_dir)
    else:
        model, tok = load_policy(cfg, run_dir, adapter_dir=adapter_dir(run_dir, arm), is_trainable=False)
    model.eval()
    try:
        yield model, tok
    finally:
        del model


def generate_jds(cfg: Profile, run_dir: Path, arm: str, cv_texts: list[str], progress: bool = False,
                 gen_cfg: GenerationConfig | None = None):
    """Greedy JDs of ``arm`` for each CV (a :class:`girl_lib.textgen.GenerationOutput`), written
    with ``gen_cfg`` (default: the profile's ``generation``)."""
    with load_generator(cfg, run_dir, arm) as (model, tok):
        return generate_from_config(model, tok, [make_prompt(cv) for cv in cv_texts], gen_cfg or cfg.generation,
                                    system_prompt=SYSTEM_PROMPT, progress=progress)


def reusable_val_generations(cfg: Profile, run_dir: Path, seeker_ids: list[str]) -> dict | None:
    """The SFT stage's own greedy JDs for these val seekers, or ``None`` if it did not write them.

    :func:`compare_with_zero_shot` saved greedy SFT generations for the first val seekers in
    ``sft/oracle_val.json``. Later stages that need the SFT model's greedy JDs for the same (or
    the first few of those) seekers, with the same generation settings, reuse them instead of
    generating again: ``{"texts": [...], "finished": [...]}`` in ``seeker_ids`` order.
    """
    sft_dir = Path(run_dir) / "sft"
    try:
        comp = json.loads((sft_dir / "oracle_val.json").read_text())
        gen_then = json.loads((sft_dir / "profile.json").read_text())["generation"]
        saved_ids, arm = comp["seeker_ids"], comp["sft"]
    except (OSError, ValueError, KeyError):
        return None
    n = len(seeker_ids)
    def output_settings(gen: dict) -> dict:  # the thread count changes no output
        return {k: v for k, v in gen.items() if k != "num_threads"}

    if saved_ids[:n] != list(seeker_ids) or output_settings(gen_then) != output_settings(asdict(cfg.generation)):
        return None
    return {"texts": arm["texts"][:n], "finished": arm["finished"][:n]}


def sft_adapter_path(run_dir: Path) -> Path:
    return Path(run_dir) / "sft" / ADAPTER


def load_sft_model(cfg: Profile, run_dir: Path, is_trainable: bool = False):
    """``(PeftModel, tokenizer)``: the base model with the saved SFT adapter on top."""
    from peft import PeftModel

    path = sft_adapter_path(run_dir)
    if not (path / "adapter_config.json").is_file():
        raise GirlError(f"no SFT adapter in {path}; run 'girl sft --profile {cfg.name}' first")
    trained_on = json.loads((Path(run_dir) / "sft" / "metrics.json").read_text()).get("base_model")
    if trained_on and trained_on != cfg.model.base_model:
        raise GirlError(f"the SFT adapter in {path} was trained on '{trained_on}', not '{cfg.model.base_model}'; "
                        "use the same --base-model or retrain with --force")
    base, tokenizer = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    model = PeftModel.from_pretrained(base, path, is_trainable=is_trainable)
    model.eval()
    return model, tokenizer


def load_policy(cfg: Profile, run_dir: Path, adapter_dir: Path | None = None, is_trainable: bool = True):
    """``(PeftModel, tokenizer)``: SFT adapter merged into the base, then the PPO LoRA on top.

    ``adapter_dir=None`` adds a fresh LoRA (``ppo.lora``; ``B = 0``, so the model equals the SFT
    model); otherwise the PPO adapter saved there. ``with model.disable_adapter():`` is the SFT
    model — the reference policy.
    """
    from peft import PeftModel, get_peft_model

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
