"""Range checks of a profile's settings: a setting no stage can run with is refused up front.

One rule table, by field name (any section) or by full dotted key; every failure is one line
that names the setting, what it must be, and the named profile's value as the fix.
"""
from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any, Callable

from .errors import GirlError


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _all_or_positive(v) -> bool:  # -1 means "all of them"
    return isinstance(v, int) and not isinstance(v, bool) and (v == -1 or v >= 1)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


POSITIVE = (_positive_int, "an integer >= 1")
# How GenRec names the world's jobs (girl_lib.stages.genrec.sequences.job_names).
JOB_NAME_FORMATS = ("title_at_company", "title")
NON_NEGATIVE = (_nonneg_int, "an integer >= 0")

# Rules by field name (any section) or by full dotted key (which wins): (test, what it must be).
_BY_NAME: dict[str, tuple[Any, str]] = {
    "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
    "num_epochs": (lambda v: _number(v) and v > 0, "a number > 0"),
    "max_steps": (lambda v: isinstance(v, int) and v >= -1, "-1 (use num_epochs) or a number of steps >= 1"),
    "batch_size": POSITIVE,
    "max_length": POSITIVE,
    "max_new_tokens": POSITIVE,
    "r": POSITIVE,
    "alpha": (lambda v: _number(v) and v > 0, "a number > 0"),
    "dropout": (lambda v: _number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    "temperature": (lambda v: _number(v) and v > 0, "a number > 0"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 32,
             "an integer in [0, 2**32 - 1] (numpy's range)"),
    "target_modules": (lambda v: isinstance(v, tuple) and len(v) > 0 and all(v), "a non-empty list of module names"),
}
_BY_KEY: dict[str, tuple[Any, str]] = {
    "device": (lambda v: v in ("cpu", "cuda", "mps"), "one of cpu, cuda, mps"),
    "data.n_seekers": POSITIVE,
    "data.n_jobs": POSITIVE,
    "data.recruiter_noise": (lambda v: _number(v) and 0 <= v <= 1, "a probability in [0, 1]"),
    "model.dtype": (lambda v: v in ("auto", "float32", "bfloat16", "float16"), "one of auto, float32, bfloat16, float16"),
    "model.tiny_hidden_size": POSITIVE,
    "model.tiny_layers": POSITIVE,
    "model.tiny_heads": POSITIVE,
    "sft.max_train_examples": POSITIVE,
    "sft.max_eval_examples": NON_NEGATIVE,
    "sft.grad_accum": POSITIVE,
    "sft.oracle_eval_seekers": NON_NEGATIVE,
    "reward.max_train_pairs": POSITIVE,
    "reward.max_eval_pairs": NON_NEGATIVE,
    "reward.num_layers": (_nonneg_int, "an integer >= 0 (0: all layers)"),
    "reward.generated_pairs": (_nonneg_int, "an integer >= 0 (0: no generated pairs)"),
    "reward.generated_samples": (_nonneg_int, "an integer >= 0 (0: greedy generated JDs only)"),
    "reward.eval_samples": (_nonneg_int, "an integer >= 0 (0: no AUC on sampled JDs)"),
    "generation.fast_dtype": (lambda v: v in ("auto", "off", "bfloat16", "float16", "int8", "fp16w"),
                              "one of auto, off, bfloat16, float16, int8, fp16w"),
    "generation.num_threads": (_nonneg_int, "an integer >= 0 (0: torch's setting)"),
    "ppo.iterations": POSITIVE,
    "ppo.rollout_batch_size": POSITIVE,
    "ppo.minibatch_size": POSITIVE,
    "ppo.micro_batch_size": POSITIVE,
    "ppo.ppo_epochs": POSITIVE,
    "ppo.value_head_lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "ppo.max_grad_norm": (lambda v: _number(v) and v > 0, "a number > 0"),
    "ppo.kl_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "ppo.kl_estimator": (lambda v: v == "k1", "k1 (k3 as a per-token reward barely penalises drift: its pull "
                         "vanishes near the reference; use k1, and a larger ppo.kl_coef for a tighter leash)"),
    "ppo.adaptive_kl_target": (lambda v: v is None or (_number(v) and v > 0), "none (a fixed beta) or a KL > 0"),
    "ppo.adaptive_kl_horizon": (lambda v: _number(v) and v > 0, "a number > 0"),
    "ppo.gamma": (lambda v: _number(v) and 0 <= v <= 1, "a discount in [0, 1]"),
    "ppo.lam": (lambda v: _number(v) and 0 <= v <= 1, "a GAE lambda in [0, 1]"),
    "ppo.cliprange": (lambda v: _number(v) and v > 0, "a number > 0"),
    "ppo.cliprange_value": (lambda v: _number(v) and v > 0, "a number > 0"),
    "ppo.value_warmup_iterations": (_nonneg_int, "an integer >= 0 (0: clip the value loss from the start)"),
    "ppo.score_norm_batches": POSITIVE,
    "ppo.vf_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "ppo.missing_eos_penalty": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "ppo.format_penalty": (lambda v: _number(v) and v >= 0, "a number >= 0 (0: off)"),
    "ppo.reward_source": (lambda v: v in ("rm", "oracle"), "rm or oracle"),
    "ppo.value_head_init": (lambda v: v in ("zero", "mean_return"), "zero or mean_return (reward was removed: the "
                            "reward model's score head reads its own 12-layer features, not the policy's)"),
    "ppo.save_every": POSITIVE,
    "ppo.snapshot_every": (_nonneg_int, "an integer >= 0 (0: keep no snapshots)"),
    "ppo.eval_seekers": (_nonneg_int, "an integer >= 0 (0: sft.oracle_eval_seekers)"),
    "ppo.eval_kl_seekers": (_nonneg_int, "an integer >= 0 (0: every eval seeker)"),
    "ppo.group_size": (lambda v: _positive_int(v) and v >= 2, "an integer >= 2"),
    "ppo.samples_per_prompt": POSITIVE,
    "eval.max_test_seekers": (_all_or_positive, "-1 (all) or an integer >= 1"),
    "eval.batch_size": (_nonneg_int, "an integer >= 0 (0: generation.batch_size)"),
    "eval.judge_pairs": (lambda v: isinstance(v, int) and v >= -1, "an integer >= 1, or 0 / -1 for all"),
    "eval.judge_tie_margin": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "eval.judge_concise_words": POSITIVE,
    "eval.judge_timeout_s": (lambda v: _number(v) and v > 0, "a number of seconds > 0"),
    "eval.matching_train_seekers": (_all_or_positive, "-1 (all) or an integer >= 1"),
    "eval.matching_cold_seekers": (lambda v: isinstance(v, int) and v >= -1, "-1 (all) or an integer >= 0"),
    "eval.matching_seeds": POSITIVE,
    "eval.matching_epochs": POSITIVE,
    "eval.matching_hidden": POSITIVE,
    "eval.matching_lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "eval.matching_weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "eval.top_k": POSITIVE,
    "genrec.min_sequence_length": (lambda v: _positive_int(v) and v >= 3, "an integer >= 3 (train, val and test each need an item)"),
    "genrec.max_history": POSITIVE,
    "genrec.job_name": (lambda v: v in JOB_NAME_FORMATS, " or ".join(JOB_NAME_FORMATS)),
    "genrec.max_train_examples": POSITIVE,
    "genrec.max_test_users": POSITIVE,
    "genrec.num_beams": POSITIVE,
    "genrec.beam_batch_size": POSITIVE,
    "genrec.sasrec_dim": POSITIVE,
    "genrec.sasrec_layers": POSITIVE,
    "genrec.sasrec_heads": POSITIVE,
    "genrec.sasrec_dropout": (lambda v: _number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    "genrec.sasrec_epochs": POSITIVE,
    "genrec.sasrec_learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
}


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            out |= _flat(value, f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _bad_setting(cfg, key: str, value: Any, need: str, factory: Callable[[], Any] | None = None) -> GirlError:
    """A one-line error naming the setting, what it must be, and the named profile's value as a fix."""
    hint = ""
    if factory is not None:
        default = _flat(factory()).get(key)
        if default is not None and default != value:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            hint = f" (the {cfg.name} profile has {shown}: --set {key}={shown})"
    shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return GirlError(f"setting '{key}' is {shown if shown != '' else 'empty'}; it must be {need}{hint}")


def validate_settings(cfg, factory: Callable[[], Any] | None = None):
    """Refuse settings no stage can run with; a one-line :class:`GirlError` naming the setting.

    Every number must be finite (no nan, no inf); probabilities lie in [0, 1]; the seeker split
    fractions (``data.*_fraction``) are each in [0, 1) and sum to less than 1, so some seekers are
    left to train on; counts are positive; ``data.applications_per_seeker`` is an ordered range
    ``lo,hi`` with ``1 <= lo <= hi``; each setting with a fixed set of values is one of them.
    ``factory`` builds the named profile the error quotes as a fix. Called through
    :func:`girl_lib.config.validate_profile` (so by every CLI command) and by ``pipeline.run_stage``.
    """
    flat = _flat(cfg)
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad_setting(cfg, key, value, "a finite number", factory)
        rule = _BY_KEY.get(key) or _BY_NAME.get(key.rsplit(".", 1)[-1])
        if rule and not rule[0](value):
            raise _bad_setting(cfg, key, value, rule[1], factory)
    fractions = {k: v for k, v in flat.items() if k.startswith("data.") and k.endswith("_fraction")}
    for key, value in fractions.items():
        if not (_number(value) and 0 <= value < 1):
            raise _bad_setting(cfg, key, value, "a fraction in [0, 1)", factory)
    if sum(fractions.values()) >= 1:
        parts = " + ".join(f"{k.split('.')[1]} {v:g}" for k, v in fractions.items())
        raise GirlError(f"settings {', '.join(fractions)} sum to {sum(fractions.values()):g} ({parts}); they must "
                        "sum to less than 1 so that some seekers are left for training: lower one of them")
    if cfg.model.tiny_hidden_size % cfg.model.tiny_heads:
        raise _bad_setting(cfg, "model.tiny_heads", cfg.model.tiny_heads,
                           f"a divisor of model.tiny_hidden_size ({cfg.model.tiny_hidden_size})", factory)
    if cfg.ppo.rollout_batch_size % cfg.ppo.samples_per_prompt:
        raise _bad_setting(cfg, "ppo.samples_per_prompt", cfg.ppo.samples_per_prompt,
                           f"a divisor of ppo.rollout_batch_size ({cfg.ppo.rollout_batch_size})", factory)
    rng = cfg.data.applications_per_seeker
    if not (isinstance(rng, tuple) and len(rng) == 2 and all(_positive_int(x) for x in rng) and rng[0] <= rng[1]):
        raise _bad_setting(cfg, "data.applications_per_seeker", rng,
                           "a range lo,hi of two integers with 1 <= lo <= hi", factory)
    return cfg
