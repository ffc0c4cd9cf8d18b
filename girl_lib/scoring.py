"""The reward model as a scorer: build it, reload a trained one, score (CV, JD) pairs.

Stage 2 trains the reward model; stage 3 (PPO, GRPO, RLOO) and the evaluation stage only use
it. What they use lives here, below the stages: the sequence classifier with the kit's pooling
(:mod:`girl_lib.pooling`), the chat text it reads, batched scoring, reloading the trained
adapter and score head, the one rule that fits a chat into ``reward.max_length``
(:func:`fit_prompt`), and the standardised reward RL maximises (:func:`make_scorer`).
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import torch

from .config import Profile
from .errors import GirlError
from .models import load_sequence_classifier
from .pooling import prepare_reward_model
from .rundir import ADAPTER
from .seeding import set_seed
from .textgen import right_pad
from .training import precision_flags, to_chat
from .world import make_prompt


def chat_ids(tokenizer, prompt: str, jd: str) -> list[int]:
    """Token ids of ``[system, user=prompt, assistant=jd]`` through the chat template.

    The same call TRL makes when it tokenises a preference row, so training and scoring agree
    token for token (a test checks it).
    """
    messages = to_chat(prompt)["prompt"] + [{"role": "assistant", "content": jd}]
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    return [int(t) for t in out["input_ids"]]


CV_HEADER = make_prompt("")  # the user message before the CV: instruction + "Candidate CV:" header


def fit_prompt(tokenizer, prompt: str, jd_texts: Sequence[str], max_length: int | None) -> str:
    """``prompt`` with its CV shortened so that ``[system, prompt, jd]`` fits ``max_length`` tokens
    for every JD of ``jd_texts``: the kit's ONE truncation rule.

    The reward model is trained on (``girl_lib.stages.reward``, before TRL sees a pair) and
    scores (:func:`score_prompts`) the texts this returns. Only the CV *body* is cut, at its end,
    by whole tokens: never the system prompt, the instruction or the JD, where the score is read.
    (TRL's ``RewardTrainer`` would drop an over-long pair; cutting the left of the chat, as
    scoring once did, loses the system prompt.) A prompt that fits is returned unchanged; if
    even an empty CV leaves a JD over the limit, the CV is emptied and the rest kept whole.
    A prompt that is not ``make_prompt(cv)`` is cut as a whole.
    """
    if not max_length:
        return prompt
    longest = max((len(chat_ids(tokenizer, prompt, jd)) for jd in jd_texts), default=0)
    if longest <= max_length:
        return prompt
    head = CV_HEADER if prompt.startswith(CV_HEADER) else ""
    body = tokenizer(prompt[len(head):], add_special_tokens=False)["input_ids"]
    keep = max(0, len(body) - (longest - max_length))
    while True:  # re-tokenising a cut text may merge differently: re-check, cut one more token
        text = tokenizer.decode(body[:keep])
        while keep > 0 and text.endswith("\ufffd"):  # never end on half of a multi-byte character
            keep -= 1
            text = tokenizer.decode(body[:keep])
        fitted = (head + text).rstrip() if head else text
        if keep == 0 or max(len(chat_ids(tokenizer, fitted, jd)) for jd in jd_texts) <= max_length:
            return fitted
        keep -= 1


def fitted_chat_ids(tokenizer, prompt: str, jd: str, max_length: int | None) -> list[int]:
    """The token ids the reward model reads for (``prompt``, ``jd``): :func:`fit_prompt`, then
    :func:`chat_ids`. The same ids as TRL's for a training pair fitted the same way."""
    ids = chat_ids(tokenizer, prompt, jd)
    if not max_length or len(ids) <= max_length:  # fits: fit_prompt would return the prompt as it is
        return ids
    return chat_ids(tokenizer, fit_prompt(tokenizer, prompt, [jd], max_length), jd)


def load_base(cfg: Profile):
    """``(model, tokenizer)``: the base LLM with a fresh, seeded 1-logit ``score`` head.

    Loading a causal-LM checkpoint as a sequence classifier reports ``score.weight`` as missing
    (it is new, that is the point) and ``lm_head`` as unused; TRL's context manager silences
    exactly those two expected messages.
    """
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning
    except ImportError:  # pragma: no cover - older/newer TRL
        suppress_seqcls_warning = nullcontext

    set_seed(cfg.seed)  # the head's initialisation
    with suppress_seqcls_warning():
        model, tokenizer = load_sequence_classifier(cfg.model, device=cfg.device, seed=cfg.seed)
    return prepare_reward_model(model, tokenizer, cfg.reward.pooling, cfg.reward.num_layers), tokenizer


def score_head(model):
    """The ``score`` weight that is actually used: PEFT's trainable copy when wrapped."""
    for name, module in model.named_modules():
        if name.endswith("score.modules_to_save.default"):
            return module.weight
    return model.get_submodule("score").weight


def score_prompts(model, tokenizer, prompts: Sequence[str], jd_texts: Sequence[str], batch_size: int = 16,
                  max_length: int | None = None, bf16: bool = False):
    """Reward of each (user prompt, JD) pair: a float32 CPU tensor ``[n]``, in the input order.

    ``prompts`` are user messages as the generator sees them (``make_prompt(cv)``, the ``prompt``
    field of ``sft.jsonl``/``rm_pairs.jsonl``). Sequences are sorted by length, batched and
    **right-padded** with the pad token: the model pools the rightmost non-pad token, and with
    right padding the real tokens keep the positions they have alone, so a row's score does not
    depend on its batch mates. A sequence longer than ``max_length`` has its CV shortened
    (:func:`fit_prompt`, the rule the reward model was trained under).
    ``bf16=True`` runs the forward under bfloat16 autocast (about 2x faster on GPUs and on
    bf16-capable CPUs; scores then differ from fp32 in the third significant digit).
    """
    prompts, jd_texts = list(prompts), list(jd_texts)
    if len(prompts) != len(jd_texts):
        raise ValueError(f"{len(prompts)} prompts but {len(jd_texts)} JDs")
    if batch_size < 1:
        raise GirlError(f"reward batch_size must be >= 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id
    if pad_id is None or pad_id == tokenizer.eos_token_id:
        raise GirlError("the reward tokenizer needs a pad token distinct from EOS; load it with girl_lib.models")
    seqs = [fitted_chat_ids(tokenizer, p, j, max_length) for p, j in zip(prompts, jd_texts)]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out = torch.zeros(len(seqs), dtype=torch.float32)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    try:
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                ids, mask = right_pad([seqs[i] for i in idx], pad_id)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                out[idx] = logits[:, 0].float().cpu()
    finally:
        model.train(was_training)
    return out


def score(model, tokenizer, cv_texts: Sequence[str], jd_texts: Sequence[str], batch_size: int = 16,
          max_length: int | None = None, bf16: bool = False):
    """Reward of each (CV, JD) pair: a float32 CPU tensor ``[n]``. **Takes CV texts.**

    Each CV is wrapped with the world's ``make_prompt`` (instruction + CV), then scored by
    :func:`score_prompts`. PPO and the evaluation stage call this with the seekers' ``cv_text``
    and the decoded JDs. Higher is better; only differences between scores of the same CV are
    meaningful (Bradley–Terry), although on this world scores also rank well across CVs (see
    the AUC in ``metrics.json``).
    """
    return score_prompts(model, tokenizer, [make_prompt(cv) for cv in cv_texts], jd_texts,
                         batch_size=batch_size, max_length=max_length, bf16=bf16)


def adapter_path(run_dir: Path) -> Path:
    return Path(run_dir) / "reward" / ADAPTER


def load_reward_model(cfg: Profile, run_dir: Path, is_trainable: bool = False):
    """``(PeftModel, tokenizer)``: base + fresh head, then the saved LoRA **and score head** on top.

    The base's freshly initialised ``score`` layer is replaced by the trained copy stored in the
    adapter (``modules_to_save``), so the reloaded model gives the trained scores exactly.
    """
    from peft import PeftModel

    path = adapter_path(run_dir)
    if not (path / "adapter_config.json").is_file():
        raise GirlError(f"no reward adapter in {path}; run 'girl reward --profile {cfg.name}' first")
    saved = json.loads((Path(run_dir) / "reward" / "metrics.json").read_text())
    trained_on = saved.get("base_model")
    if trained_on and trained_on != cfg.model.base_model:
        raise GirlError(f"the reward adapter in {path} was trained on '{trained_on}', not '{cfg.model.base_model}'; "
                        "use the same --base-model or retrain with --force")
    # The pooling and the backbone's depth are not stored in the adapter: they must match. An
    # adapter from before they existed used the stock last-token head on the full model.
    for key, now, legacy in (("pooling", cfg.reward.pooling, "last"), ("num_layers", cfg.reward.num_layers, 0)):
        if saved.get(key, legacy) != now:
            then = saved.get(key, legacy)
            raise GirlError(f"the reward adapter in {path} was trained with reward.{key}={then}, not {now}; "
                            f"use --set reward.{key}={then} or retrain with --force ('girl reward --force')")
    base, tokenizer = load_base(cfg)
    model = PeftModel.from_pretrained(base, path, is_trainable=is_trainable)
    model.eval()
    return model, tokenizer


REWARD_SOURCES = ("rm", "oracle")


def raw_scorer(cfg: Profile, rm, rm_tok, oracle):
    """``raw(seekers, texts) -> float32 [n]``: the judge of a rollout, in its own units.

    [detail] ``ppo.reward_source`` picks it:

    * ``rm`` (the GIRL recipe): the stage-2 reward model's score of (CV, generated JD);
    * ``oracle`` (an ablation only a synthetic world allows): the recruiter oracle's acceptance
      probability of the parsed JD — a *perfect* reward model. PPO against it shows what the
      loop can do when the reward is right; PPO against ``rm`` shows what a learned reward model
      lets it do. The gap between the two is the reward model's fault, not PPO's.
    """
    p = cfg.ppo
    if p.reward_source not in REWARD_SOURCES:
        raise GirlError(f"ppo.reward_source must be one of {', '.join(REWARD_SOURCES)}, got '{p.reward_source}'")
    if p.reward_source == "oracle":
        def raw(seekers, texts):
            return torch.tensor([oracle.score(s, t).p_accept for s, t in zip(seekers, texts)], dtype=torch.float32)
        return raw
    bf16, bs = scoring_bf16(cfg), max(1, cfg.reward.batch_size * 2)

    def raw(seekers, texts):
        return score(rm, rm_tok, [s["cv_text"] for s in seekers], list(texts), batch_size=bs,
                     max_length=cfg.reward.max_length, bf16=bf16)
    return raw


def make_scorer(cfg: Profile, rm, rm_tok, oracle, norm: tuple[float, float] | None = None):
    """``scorer(seekers, texts) -> (raw, standardised)``: what RL maximises, before the EOS penalty.

    ``raw`` is :func:`raw_scorer`'s; ``standardised = (raw - mean) / std`` with ``norm = (mean,
    std)``, the raw scores' statistics on samples of the starting policy
    (:mod:`girl_lib.stages.ppo.normalize`; ``(0, 1)`` when ``ppo.normalize_scores=false``).
    PPO and TRL's GRPO/RLOO arms (:mod:`girl_lib.stages.ppo.grpo_rloo`) call this one function.
    """
    raw_scores = raw_scorer(cfg, rm, rm_tok, oracle)
    if norm is None:
        if cfg.ppo.normalize_scores:
            raise GirlError("ppo.normalize_scores is on: pass the starting policy's score statistics "
                            "(girl_lib.stages.ppo.normalize.score_norm), or set --set ppo.normalize_scores=false")
        norm = (0.0, 1.0)
    mean, std = float(norm[0]), float(norm[1])

    def scorer(seekers, texts):
        raw = raw_scores(seekers, texts)
        return raw, (raw - mean) / std

    return scorer


def scoring_bf16(cfg: Profile) -> bool:
    """Score under bf16 autocast exactly when the reward model trained that way
    (:func:`girl_lib.training.precision_flags`): its saved score statistics come from those
    scores, so every later scorer must match them. (The policy's own forward passes in PPO stay
    fp32: its ratios and KL need more than bf16's three significant digits.)
    """
    return bool(precision_flags(cfg)["bf16"])
