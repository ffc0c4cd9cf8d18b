"""Stage 2 — the reward model: a learned recruiter that scores how well a JD fits a CV.

GIRL's second stage imitates the *other* side of the market. SFT learned "jobs this person would
apply to"; the reward model learns "jobs whose recruiter would accept this person". PPO (stage 3)
then pushes the generator towards JDs the reward model likes, so everything the reward model
gets wrong, PPO will eventually find and exploit.

**The model.** The same base LLM as the generator, loaded as a *sequence classifier*
(``AutoModelForSequenceClassification`` with ``num_labels=1``): the language-model head is
replaced by ``score``, a single linear layer ``hidden_size -> 1``. Which hidden states does it
read? ``reward.pooling`` (:mod:`girl_lib.pooling`) decides:

* ``response_mean`` (the default): ``score`` on every token of the JD, averaged. Each JD token
  has attended to the CV before it, so "this must-have is in the CV" is written in that token's
  state; the mean adds the per-token evidence up. The JD is found after the chat template's
  assistant header (``<|im_start|>assistant\n``), so padding and the CV stay out of the pool.
* ``last``: Hugging Face's stock head, the hidden state of the *last real token* (the
  InstructGPT recipe). That token must gather the comparison through attention alone; with a
  few hundred pairs it does not (held-out accuracy 0.64 on ``cpu``, measured).

``reward.num_layers`` keeps only the base's first N layers (the best features for this task sit
mid-network: see :mod:`girl_lib.pooling`), which also makes every score cheaper. The pad token
must differ from every token of real text (``girl_lib.models`` uses ``<|endoftext|>``, never
EOS), and :func:`score` pads on the right. LoRA adapters on attention projections plus the fully
trainable ``score`` head (PEFT ``modules_to_save=["score"]``) are what we train; the base weights
stay frozen.

**The loss (Bradley–Terry).** Recruiters give us *comparisons*, not calibrated numbers: for one
CV, a JD whose recruiter accepted the person (``jd+``, "chosen") and one that rejected them
(``jd-``, "rejected"). The Bradley–Terry model says the chosen one wins with probability
``σ(r(cv, jd+) − r(cv, jd−))``; maximising the likelihood of the observed winners gives

    L(θ) = − E_(cv, jd+, jd−) [ log σ( r_θ(cv, jd+) − r_θ(cv, jd−) ) ]

(:func:`pairwise_loss`). Only *differences* of scores matter, so the scale's zero point is
arbitrary: a score of 2.3 means nothing alone, "2.3 vs 0.4 for the same CV" does. The loss is
``log 2 ≈ 0.693`` when the model cannot tell the two apart and falls towards 0 as the margin
grows. TRL's ``RewardTrainer`` implements exactly this loss; held-out *pairwise accuracy* (how
often ``r(jd+) > r(jd−)``) is its natural metric.

**The pairs** (``rm_pairs.jsonl``, built by ``girl data``):

* ``feedback`` — observed recruiter decisions: an accepted vs a rejected application of the same
  seeker (kept only where the ground-truth oracle agrees, so recruiter noise is not a lesson);
* ``hard_negative`` — an acceptable job vs a job of the *same occupation* that fails on level or
  on a must-have skill. Feedback pairs often differ in topic (a seeker applied to a related
  occupation and was turned down), and a model can win them by matching *topics* alone. PPO
  would then learn to write "the right kind of job" with the wrong level or skills and still be
  rewarded. Hard negatives close that shortcut: same topic, different details, so the reward
  model must read the level line and the must-have list.

**One text format, everywhere.** The reward model is trained on, and :func:`score` computes, the
same chat: ``[system = the world's SYSTEM_PROMPT, user = make_prompt(CV), assistant = JD]``
through the tokenizer's chat template — exactly what the generator sees plus the JD it writes.
So PPO can score a generated JD by passing its decoded text to :func:`score`.

**What it costs, what it reaches.** Every pair is two forward and backward passes over ~260
tokens. The ``cpu`` profile keeps 12 of SmolLM2-135M's 30 layers, LoRA on the top 8 of them
(backpropagation stops there), bf16 autocast: 64 steps of 8 pairs at lr 5e-3 take ~3.6 s each on
2 cores, the stage ~5 min. Measured on 160 held-out pairs: pairwise accuracy 0.84 (feedback
0.89, hard negatives 0.73), AUC vs the oracle 0.70 on real JDs and 0.72 on SFT-generated ones.
The stock last-token head (all 30 layers, LoRA on the top 8, 256 pairs at lr 5e-4: the previous
recipe) reached 0.64 and an AUC of 0.47 on generated JDs; with everything else as the ``cpu``
profile (12 layers, lr 5e-3, 512 pairs) it stays at chance (0.52). Hard negatives remain the
weak spot, and the issue's 0.90 needs more pairs than 5 CPU minutes buy: the ``gpu`` profile
trains on 20 000.

Outputs in ``<run-dir>/reward/``: ``adapter/`` (LoRA + score head + tokenizer,
``save_pretrained``), ``metrics.json`` (held-out pairwise accuracy overall and per kind; AUC of
the score against the oracle's acceptance on val applications' real JDs and on JDs generated by
the SFT model), ``eval_scores.json`` (the per-example scores behind those figures, for plots),
``log_history.json`` (loss curve) and ``profile.json``.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from .config import Profile
from .errors import GirlError
from .rundir import atomic_write_json

ADAPTER = "adapter"
KINDS = ("feedback", "hard_negative")
MAX_GENERATED_EVAL = 64  # at most this many SFT-generated JDs are scored (generation is slow on a CPU)


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------
def pairwise_loss(chosen_scores, rejected_scores):
    """Bradley–Terry loss ``mean(-log σ(r+ − r−))`` over pairs (TRL's ``RewardTrainer`` loss).

    ``-log σ(x)`` is computed as ``softplus(-x)``, which stays finite for large ``|x|``.

    >>> import torch
    >>> round(float(pairwise_loss(torch.tensor([0.0]), torch.tensor([0.0]))), 4)  # log 2
    0.6931
    """
    import torch

    chosen = torch.as_tensor(chosen_scores, dtype=torch.float32)
    rejected = torch.as_tensor(rejected_scores, dtype=torch.float32)
    return torch.nn.functional.softplus(-(chosen - rejected)).mean()


# --------------------------------------------------------------------------------------------
# Data: rm_pairs.jsonl rows -> TRL's conversational preference format (explicit prompt)
# --------------------------------------------------------------------------------------------
def to_preference(prompt: str, chosen: str, rejected: str) -> dict:
    """One TRL preference row with an explicit prompt, in conversational form.

    ``prompt`` = [system, user], ``chosen``/``rejected`` = [assistant]. TRL concatenates
    ``prompt + chosen`` and ``prompt + rejected`` and applies the chat template to each, which
    is exactly the text :func:`score_prompts` builds at inference.
    """
    from .sft import to_chat

    return {**to_chat(prompt),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def load_pairs(data_dir: Path, split: str, limit: int | None = None) -> list[dict]:
    """Validated rows of ``rm_pairs.jsonl`` for one split, in file order, at most ``limit``.

    A malformed line raises the world loader's :class:`~girl_lib.errors.DataError` (file, line,
    field): nothing is silently dropped.
    """
    from .world import load_split

    return load_split(data_dir, "rm_pairs", split, limit)


def reward_datasets(data_dir: Path, cfg: Profile):
    """``(train, val)`` ``datasets.Dataset`` objects of preference rows (val may be ``None``)."""
    from datasets import Dataset

    train = load_pairs(data_dir, "train", cfg.reward.max_train_pairs)
    val = load_pairs(data_dir, "val", cfg.reward.max_eval_pairs)
    if not train:
        raise GirlError(f"{Path(data_dir) / 'rm_pairs.jsonl'} has no train pairs; "
                        "rebuild the data with 'girl data --force'")

    def pref(rows):
        return Dataset.from_list([to_preference(r["prompt"], r["chosen"], r["rejected"]) for r in rows])

    return pref(train), (pref(val) if val else None)


def chat_ids(tokenizer, prompt: str, jd: str) -> list[int]:
    """Token ids of ``[system, user=prompt, assistant=jd]`` through the chat template.

    The same call TRL makes when it tokenises a preference row, so training and scoring agree
    token for token (a test checks it).
    """
    from .sft import to_chat

    messages = to_chat(prompt)["prompt"] + [{"role": "assistant", "content": jd}]
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    return [int(t) for t in out["input_ids"]]


# --------------------------------------------------------------------------------------------
# Model pieces
# --------------------------------------------------------------------------------------------
def peft_reward_config(cfg: Profile):
    """LoRA on the attention projections + a fully trained (and saved) ``score`` head."""
    from .sft import peft_lora_config

    peft_cfg = peft_lora_config(cfg.reward.lora, task_type="SEQ_CLS")
    peft_cfg.modules_to_save = ["score"]
    return peft_cfg


def load_base(cfg: Profile):
    """``(model, tokenizer)``: the base LLM with a fresh, seeded 1-logit ``score`` head.

    Loading a causal-LM checkpoint as a sequence classifier reports ``score.weight`` as missing
    (it is new, that is the point) and ``lm_head`` as unused; TRL's context manager silences
    exactly those two expected messages.
    """
    from contextlib import nullcontext

    from .models import load_sequence_classifier
    from .seeding import set_seed

    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning
    except ImportError:  # pragma: no cover - older/newer TRL
        suppress_seqcls_warning = nullcontext
    from .pooling import prepare_reward_model

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


def reward_precision(cfg: Profile) -> dict:
    """The Trainer's precision flags for the reward model: the kit's one rule
    (:func:`girl_lib.models.train_precision`). With ``model.dtype=auto`` on a CPU that computes
    bf16 in hardware, training and scoring run under bf16 autocast: about 2x faster there, and
    a reward model only has to rank, which bf16's three significant digits do fine.
    ``--set model.dtype=float32`` turns it off.
    """
    from .sft import precision_flags

    return precision_flags(cfg)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------
def score_prompts(model, tokenizer, prompts: Sequence[str], jd_texts: Sequence[str], batch_size: int = 16,
                  max_length: int | None = None, bf16: bool = False):
    """Reward of each (user prompt, JD) pair: a float32 CPU tensor ``[n]``, in the input order.

    ``prompts`` are user messages as the generator sees them (``make_prompt(cv)``, the ``prompt``
    field of ``sft.jsonl``/``rm_pairs.jsonl``). Sequences are sorted by length, batched and
    **right-padded** with the pad token: the model pools the rightmost non-pad token, and with
    right padding the real tokens keep the positions they have alone, so a row's score does not
    depend on its batch mates. A sequence longer than ``max_length`` keeps its *last*
    ``max_length`` tokens (the JD and its closing tokens, where the score is read).
    ``bf16=True`` runs the forward under bfloat16 autocast (about 2x faster on GPUs and on
    bf16-capable CPUs; scores then differ from fp32 in the third significant digit).
    """
    import torch

    from .generate import right_pad

    prompts, jd_texts = list(prompts), list(jd_texts)
    if len(prompts) != len(jd_texts):
        raise ValueError(f"{len(prompts)} prompts but {len(jd_texts)} JDs")
    if batch_size < 1:
        raise GirlError(f"reward batch_size must be >= 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id
    if pad_id is None or pad_id == tokenizer.eos_token_id:
        raise GirlError("the reward tokenizer needs a pad token distinct from EOS; load it with girl_lib.models")
    seqs = [chat_ids(tokenizer, p, j) for p, j in zip(prompts, jd_texts)]
    if max_length:
        seqs = [s[-max_length:] for s in seqs]
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
    from .world import make_prompt

    return score_prompts(model, tokenizer, [make_prompt(cv) for cv in cv_texts], jd_texts,
                         batch_size=batch_size, max_length=max_length, bf16=bf16)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def make_trainer(cfg: Profile, model, tokenizer, train_ds, eval_ds, output_dir: Path):
    """A TRL ``RewardTrainer`` configured from the profile (pairwise loss, LoRA + score head, no saving)."""
    from trl import RewardConfig, RewardTrainer

    r = cfg.reward
    args = RewardConfig(
        output_dir=str(output_dir),
        num_train_epochs=r.num_epochs,
        max_steps=r.max_steps,
        learning_rate=r.learning_rate,
        per_device_train_batch_size=r.batch_size,  # pairs: the model sees 2 x batch_size sequences
        per_device_eval_batch_size=r.batch_size,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=r.max_length,  # TRL drops (does not truncate) longer pairs; we count them
        activation_checkpointing=False,  # TRL turns it on by default; for a 135M model it only costs time
        disable_dropout=True,
        logging_steps=1 if r.max_steps and 0 < r.max_steps <= 20 else 5,
        eval_strategy="no",  # evaluated once at the end with score() (below)
        save_strategy="no",  # the adapter is saved explicitly with save_pretrained
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        **reward_precision(cfg),
    )
    return RewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=peft_reward_config(cfg))


def _accuracy(chosen, rejected) -> float | None:
    return float((chosen > rejected).float().mean()) if len(chosen) else None


def evaluate_pairs(model, tokenizer, pairs: list[dict], batch_size: int = 16, max_length: int | None = None,
                   bf16: bool = False) -> tuple[dict, list[dict]]:
    """Held-out pairwise accuracy and loss, overall and per kind; plus the per-pair scores."""
    import torch

    if not pairs:
        return {"n_pairs": 0, "pairwise_accuracy": None, "pair_loss": None}, []
    prompts = [r["prompt"] for r in pairs]
    jds = [r["chosen"] for r in pairs] + [r["rejected"] for r in pairs]
    s = score_prompts(model, tokenizer, prompts + prompts, jds,
                      batch_size=batch_size, max_length=max_length, bf16=bf16)
    chosen, rejected = s[:len(pairs)], s[len(pairs):]
    m = {"n_pairs": len(pairs), "pairwise_accuracy": _accuracy(chosen, rejected),
         "pair_loss": float(pairwise_loss(chosen, rejected)),
         "mean_margin": float((chosen - rejected).mean())}
    for kind in KINDS:
        sel = torch.tensor([r["kind"] == kind for r in pairs])
        m[f"n_pairs_{kind}"] = int(sel.sum())
        m[f"pairwise_accuracy_{kind}"] = _accuracy(chosen[sel], rejected[sel])
    rows = [{"id": r["id"], "kind": r["kind"], "chosen": float(c), "rejected": float(x)}
            for r, c, x in zip(pairs, chosen, rejected)]
    return m, rows


def _auc(labels: list[int], scores: list[float]) -> float | None:
    from .metrics import binary_auc

    return binary_auc(labels, scores) if 0 < sum(labels) < len(labels) else None


def evaluate_real(model, tokenizer, data_dir: Path, limit: int, batch_size: int = 16,
                  max_length: int | None = None, bf16: bool = False, oracle=None) -> tuple[dict, list[dict]]:
    """Score val applications' real JDs; AUC against the oracle's label (p_accept > 0.5).

    Also the AUC against the recruiters' observed decision (``accepted``, which includes their
    noise), and the mean/std of the scores (PPO may use them to normalise rewards).
    """
    from .world import Oracle, load_jsonl

    seekers = {s["id"]: s for s in load_jsonl(Path(data_dir) / "seekers.jsonl", "seekers")}
    jobs = {j["id"]: j for j in load_jsonl(Path(data_dir) / "jobs.jsonl", "jobs")}
    apps = [a for a in load_jsonl(Path(data_dir) / "applications.jsonl", "applications") if a["split"] == "val"]
    apps = apps[:limit] if limit and limit > 0 else apps
    if not apps:
        return {"n_real": 0, "auc_real": None}, []
    oracle = oracle or Oracle()
    cvs = [seekers[a["seeker_id"]]["cv_text"] for a in apps]
    jds = [jobs[a["job_id"]]["jd_text"] for a in apps]
    s = score(model, tokenizer, cvs, jds, batch_size=batch_size, max_length=max_length, bf16=bf16).tolist()
    p = [oracle.score(seekers[a["seeker_id"]], jd).p_accept for a, jd in zip(apps, jds)]
    label = [int(x > 0.5) for x in p]
    rows = [{"seeker_id": a["seeker_id"], "job_id": a["job_id"], "score": si, "p_accept": pi,
             "oracle_accept": bool(li), "accepted": a["accepted"]} for a, si, pi, li in zip(apps, s, p, label)]
    mean = sum(s) / len(s)
    m = {"n_real": len(apps), "auc_real": _auc(label, s), "real_positive_rate": sum(label) / len(label),
         "auc_real_observed": _auc([int(a["accepted"]) for a in apps], s),
         "score_mean": mean, "score_std": math.sqrt(sum((x - mean) ** 2 for x in s) / len(s))}
    return m, rows


def evaluate_generated(cfg: Profile, run_dir: Path, model, tokenizer, n: int, bf16: bool = False,
                       oracle=None) -> tuple[dict, list[dict]]:
    """The same AUC on JDs the SFT model writes (greedy) for val seekers — where PPO will look.

    Skipped, with a note, when ``<run-dir>/sft`` is not complete.
    """
    from .generate import generate_from_config
    from .rundir import is_complete
    from .sft import load_sft_model, reusable_val_generations
    from .world import SYSTEM_PROMPT, Oracle, load_split, make_prompt

    if not is_complete(Path(run_dir) / "sft"):
        return {"n_generated": 0, "auc_generated": None,
                "generated_note": "skipped: no complete SFT stage in this run dir (run 'girl sft' first)"}, []
    seekers = load_split(Path(run_dir) / "data", "seekers", "val", n) if n > 0 else []
    if not seekers:
        return {"n_generated": 0, "auc_generated": None, "generated_note": "skipped: no val seekers"}, []
    # The SFT stage already wrote greedy JDs for the first val seekers: reuse them when they match.
    reused = reusable_val_generations(cfg, run_dir, [x["id"] for x in seekers])
    t0 = time.time()
    if reused is not None:
        texts, finished = reused["texts"], reused["finished"]
    else:
        gen_model, gen_tok = load_sft_model(cfg, run_dir)
        out = generate_from_config(gen_model, gen_tok, [make_prompt(x["cv_text"]) for x in seekers], cfg.generation,
                                   system_prompt=SYSTEM_PROMPT)
        texts, finished = out.texts, out.finished
        del gen_model
    oracle = oracle or Oracle()
    generation_seconds = time.time() - t0
    s = score(model, tokenizer, [x["cv_text"] for x in seekers], texts, batch_size=cfg.reward.batch_size * 2,
              bf16=bf16).tolist()
    sc = [oracle.score(x, t) for x, t in zip(seekers, texts)]
    label = [int(o.p_accept > 0.5) for o in sc]
    rows = [{"seeker_id": x["id"], "score": si, "p_accept": o.p_accept, "oracle_accept": bool(li),
             "parse_ok": o.parse_ok, "finished": f, "text": t}
            for x, si, o, li, f, t in zip(seekers, s, sc, label, finished, texts)]
    auc = _auc(label, s)
    m = {"n_generated": len(seekers), "auc_generated": auc, "generated_positive_rate": sum(label) / len(label),
         "generated_parse_rate": sum(o.parse_ok for o in sc) / len(sc),
         "generation_seconds": round(generation_seconds, 1), "reused_sft_generations": reused is not None}
    m["generated_note"] = ("greedy SFT JDs for val seekers, labelled by the oracle" if auc is not None else
                           "AUC undefined: the oracle put every generated JD in the same class")
    return m, rows


def n_generated_eval(cfg: Profile) -> int:
    """How many val seekers get an SFT-generated JD: half the eval pairs, at most 64, and no more
    than the SFT stage already generated (``sft.oracle_eval_seekers``), so they are reused."""
    return min(MAX_GENERATED_EVAL, max(1, cfg.reward.max_eval_pairs // 2), max(1, cfg.sft.oracle_eval_seekers))


def count_too_long(n_before: int, prepared) -> int:
    """Pairs TRL dropped because the chosen or the rejected chat exceeds ``max_length``."""
    return n_before - len(prepared)


def train(cfg: Profile, run_dir: Path) -> dict:
    """Train the reward model on ``<run_dir>/data/rm_pairs.jsonl``, evaluate it, save to ``<run_dir>/reward``."""
    from .pipeline import require_complete
    from .seeding import set_seed
    from .world import Oracle

    data_dir = require_complete(run_dir, "data")
    out = Path(run_dir) / "reward"
    out.mkdir(parents=True, exist_ok=True)
    r = cfg.reward
    train_ds, _ = reward_datasets(data_dir, cfg)  # eval below uses score(), not TRL's evaluate
    model, tokenizer = load_base(cfg)
    set_seed(cfg.seed)  # LoRA init and data order
    trainer = make_trainer(cfg, model, tokenizer, train_ds, None, out / "trainer")

    dropped = count_too_long(len(train_ds), trainer.train_dataset)
    if dropped:
        print(f"[girl] reward: warning: {dropped} of {len(train_ds)} training pairs are longer than "
              f"reward.max_length={r.max_length} tokens and were dropped; raise --set reward.max_length=...",
              file=sys.stderr)
    train_rows = load_pairs(data_dir, "train", r.max_train_pairs)
    prepared = trainer.train_dataset
    n_tokens = sum(len(a) + len(b) for a, b in zip(prepared["chosen_ids"], prepared["rejected_ids"]))
    t0 = time.time()
    result = trainer.train()
    train_seconds = time.time() - t0

    adapter_dir = out / ADAPTER
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    trainer.model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    shutil.rmtree(out / "trainer", ignore_errors=True)

    # Held-out evaluation, all through score(): the exact function PPO will call.
    model = trainer.model.eval()
    bs, bf16 = r.batch_size * 2, bool(reward_precision(cfg)["bf16"])
    oracle = Oracle(noise=cfg.data.recruiter_noise)
    t1 = time.time()
    val_pairs = load_pairs(data_dir, "val", r.max_eval_pairs)
    pair_m, pair_rows = evaluate_pairs(model, tokenizer, val_pairs, bs, r.max_length, bf16)
    real_m, real_rows = evaluate_real(model, tokenizer, data_dir, r.max_eval_pairs, bs, r.max_length, bf16, oracle)
    gen_m, gen_rows = evaluate_generated(cfg, run_dir, model, tokenizer, n_generated_eval(cfg), bf16, oracle)
    eval_seconds = time.time() - t1

    logs = trainer.state.log_history
    losses = [h["loss"] for h in logs if "loss" in h]
    train_acc = [h["accuracy"] for h in logs if "accuracy" in h and "loss" in h]
    metrics = {
        "base_model": cfg.model.base_model,
        "pooling": r.pooling,
        "num_layers": r.num_layers,
        "train_pairs": len(train_ds) - dropped,
        "train_pairs_by_kind": {k: sum(x["kind"] == k for x in train_rows) for k in KINDS},
        "train_pairs_dropped_too_long": dropped,
        "train_tokens": n_tokens,
        "global_steps": result.global_step,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "bf16_autocast": bf16,
        "train_tokens_per_second": round(n_tokens / max(1, len(trainer.train_dataset))
                                         * result.global_step * r.batch_size / train_seconds, 1),
        "first_loss": losses[0] if losses else None,
        "final_train_loss": losses[-1] if losses else None,
        "final_train_accuracy": train_acc[-1] if train_acc else None,
        **pair_m, **real_m, **gen_m,
    }
    atomic_write_json(out / "eval_scores.json", {"pairs": pair_rows, "real": real_rows, "generated": gen_rows})
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "log_history.json", logs)
    (out / "profile.json").write_text(cfg.to_json())
    return metrics


HEADLINE = ("train_pairs", "global_steps", "train_seconds", "final_train_loss", "pairwise_accuracy",
            "pairwise_accuracy_feedback", "pairwise_accuracy_hard_negative", "auc_real", "auc_generated")


def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl reward``: train and evaluate, then return the headline figures for the manifest."""
    m = train(cfg, run_dir)
    return {k: m.get(k) for k in HEADLINE}


# --------------------------------------------------------------------------------------------
# Loading the trained reward model
# --------------------------------------------------------------------------------------------
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


def load_eval_scores(run_dir: Path) -> dict:
    """The per-example scores behind ``metrics.json`` (``pairs``, ``real``, ``generated``)."""
    path = Path(run_dir) / "reward" / "eval_scores.json"
    if not path.is_file():
        raise GirlError(f"no {path}; run 'girl reward' first")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------
# Small analysis helpers for the notebook
# --------------------------------------------------------------------------------------------
def calibration_bins(scores: Sequence[float], labels: Sequence[int], n_bins: int = 5) -> list[dict]:
    """Equal-count bins of the score: mean score and the oracle's acceptance rate in each.

    A useful reward model gives a rising staircase: higher score, more often accepted.
    """
    pairs = sorted(zip(scores, labels))
    n_bins = max(1, min(n_bins, len(pairs)))
    out = []
    for b in range(n_bins):
        chunk = pairs[b * len(pairs) // n_bins:(b + 1) * len(pairs) // n_bins]
        if chunk:
            out.append({"score": sum(s for s, _ in chunk) / len(chunk),
                        "accept_rate": sum(int(y) for _, y in chunk) / len(chunk), "n": len(chunk)})
    return out


def plot_report(run_dir: Path, n_bins: int = 5):
    """Three panels from ``eval_scores.json``: score histograms by oracle label, calibration,
    and pairwise accuracy per pair kind. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    ev = load_eval_scores(run_dir)
    metrics = json.loads((Path(run_dir) / "reward" / "metrics.json").read_text())
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
    real = ev["real"]
    edges = np.histogram_bin_edges([r["score"] for r in real] or [0.0], bins=20)  # shared by both labels
    for label, color, name in ((True, "tab:green", "oracle accepts"), (False, "tab:red", "oracle rejects")):
        ax[0].hist([r["score"] for r in real if r["oracle_accept"] == label], bins=edges, alpha=0.6,
                   color=color, label=name)
    ax[0].set(title=f"val applications (AUC {_fmt(metrics.get('auc_real'))})", xlabel="reward score", ylabel="count")
    ax[0].legend()
    for rows, name, marker in ((real, "real JDs", "o"), (ev["generated"], "SFT-generated JDs", "s")):
        if rows:
            bins = calibration_bins([r["score"] for r in rows], [r["oracle_accept"] for r in rows], n_bins)
            ax[1].plot([b["score"] for b in bins], [b["accept_rate"] for b in bins], marker=marker, label=name)
    ax[1].set(title="calibration: score bin vs oracle acceptance", xlabel="mean score in bin",
              ylabel="oracle acceptance rate", ylim=(-0.05, 1.05))
    ax[1].legend()
    names = ["overall", *KINDS]
    accs = [metrics.get("pairwise_accuracy"), *(metrics.get(f"pairwise_accuracy_{k}") for k in KINDS)]
    ns = [metrics.get("n_pairs"), *(metrics.get(f"n_pairs_{k}") for k in KINDS)]
    ax[2].bar(names, [a or 0 for a in accs], color=["tab:gray", "tab:blue", "tab:orange"])
    for i, (a, n) in enumerate(zip(accs, ns)):
        ax[2].text(i, (a or 0) + 0.02, f"{_fmt(a)}\nn={n}", ha="center")
    ax[2].axhline(0.5, ls="--", color="k", lw=0.8)
    ax[2].set(title="held-out pairwise accuracy", ylim=(0, 1.15))
    fig.tight_layout()
    return fig


def token_report(model, tokenizer, cv_text: str, jd_texts: Sequence[str], labels: Sequence[str] = (),
                 words: bool = True):
    """Where a score comes from (``response_mean`` pooling): one bar chart per JD of its tokens'
    contributions ``w · h_t`` (the score is their mean), red below the JD's mean, green above.
    ``words=True`` averages the sub-word tokens of each word so the x axis stays readable.
    Returns the figure."""
    import matplotlib.pyplot as plt

    from .pooling import token_scores
    from .world import make_prompt

    fig, axes = plt.subplots(len(jd_texts), 1, figsize=(16, 2.6 * len(jd_texts)), squeeze=False)
    for k, jd in enumerate(jd_texts):
        toks = token_scores(model, tokenizer, chat_ids(tokenizer, make_prompt(cv_text), jd))
        mean = sum(s for _, s in toks) / len(toks)
        if words:  # a new word starts at a token that begins with a space or a newline
            merged: list[list] = []
            for t, s in toks:
                if merged and not t[:1].isspace() and t[:1] not in "·@;":
                    merged[-1][0] += t
                    merged[-1][1].append(s)
                else:
                    merged.append([t, [s]])
            toks = [(t, sum(v) / len(v)) for t, v in merged]
        ax = axes[k, 0]
        vals = [s - mean for _, s in toks]
        ax.bar(range(len(toks)), vals, color=["tab:green" if v >= 0 else "tab:red" for v in vals])
        ax.set_xticks(range(len(toks)), [t.strip() or repr(t) for t, _ in toks], rotation=90, fontsize=7)
        label = labels[k] if k < len(labels) else f"JD {k + 1}"
        ax.set(title=f"{label}: score {mean:+.2f}, the mean of its tokens' contributions "
                     "(bars: each word's contribution minus that mean)", ylabel="contribution − score")
    fig.tight_layout()
    return fig


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
