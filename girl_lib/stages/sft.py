"""Stage 1 — supervised fine-tuning (SFT) of the JD generator.

The generator learns, from a job seeker's CV, to write the JD of a job that person would apply
to. Each training example is a chat: a system turn, a user turn holding the CV (``prompt`` in
``sft.jsonl``) and the assistant turn holding the JD (``completion``). The loss is the usual
next-token negative log-likelihood, **on the completion tokens only**:

    L(θ) = − 1/|C| · Σ_{t ∈ C} log π_θ(y_t | CV, y_<t)

where C is the set of JD tokens, the closing ``<|im_end|>`` included — that is how the model
learns to stop. Prompt tokens get the label −100, which PyTorch's cross-entropy ignores.

TRL's ``SFTTrainer`` does the tokenisation (chat template, completion mask) and the training
loop; PEFT's LoRA keeps the base weights frozen and trains small low-rank adapters, so the
reference model of stage 3 is simply "the same model with the adapter disabled".

Outputs in ``<run-dir>/sft/``: ``adapter/`` (``save_pretrained``: LoRA weights, adapter config,
tokenizer), ``metrics.json``, ``log_history.json`` (loss curves), ``profile.json``.
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from ..config import Profile
from ..errors import GirlError
from ..generators import load_sft_model
from ..models import load_causal_lm
from ..oracle_eval import compare_reports, oracle_report
from ..rundir import ADAPTER, atomic_write_json, require_complete
from ..seeding import set_seed
from ..textgen import generate_from_config
from ..training import peft_lora_config, save_adapter, split_seekers, to_chat, trainer_args
from ..world import SYSTEM_PROMPT, load_split, make_prompt

# --------------------------------------------------------------------------------------------
# Data: sft.jsonl rows -> conversational prompt/completion rows for TRL
# --------------------------------------------------------------------------------------------


def load_sft_rows(data_dir: Path, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """The validated records of ``sft.jsonl`` for one split: all, or a seeded random draw of ``limit``."""
    return load_split(data_dir, "sft", split, limit, seed=seed)


def sft_datasets(data_dir: Path, cfg: Profile):
    """(train, val) ``datasets.Dataset`` objects in conversational prompt/completion form."""
    from datasets import Dataset

    train = load_sft_rows(data_dir, "train", cfg.sft.max_train_examples, seed=cfg.seed)
    val = load_sft_rows(data_dir, "val", cfg.sft.max_eval_examples, seed=cfg.seed)
    if not train:
        raise GirlError(f"{Path(data_dir) / 'sft.jsonl'} has no train rows; rebuild the data with 'girl data --force'")
    chat = lambda rows: Dataset.from_list([to_chat(r["prompt"], r["completion"]) for r in rows])  # noqa: E731
    return chat(train), (chat(val) if val else None)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def make_trainer(cfg: Profile, model, tokenizer, train_ds, eval_ds, output_dir: Path):
    """A TRL ``SFTTrainer`` configured from the profile (completion-only loss, LoRA, no saving)."""
    from trl import SFTConfig, SFTTrainer

    s = cfg.sft
    # TRL does not truncate padding-free rows (it refuses a max_length there); `train` reports any
    # example longer than sft.max_length instead, trained whole.
    args = SFTConfig(**trainer_args(
        cfg, output_dir, num_epochs=s.num_epochs, max_steps=s.max_steps, learning_rate=s.learning_rate,
        batch_size=s.batch_size, max_length=None if s.padding_free else s.max_length,
        gradient_accumulation_steps=s.grad_accum,
        completion_only_loss=True,  # labels = -100 on prompt tokens
        packing=False,
        padding_free=s.padding_free,
        gradient_checkpointing=s.gradient_checkpointing,
    ))
    return SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, peft_config=peft_lora_config(s.lora))


def count_lost_eos(tokenized, eos_token_id: int, n_examples: int | None = None) -> int:
    """Examples that lost their EOS to truncation at ``max_length``.

    An example cut before its EOS teaches the model to go on writing where it should stop; one
    cut before its completion starts is dropped by TRL altogether ("fully masked"). We count
    both (pass ``n_examples``, the row count before TRL's preparation, to include the dropped
    ones) and report them, rather than let truncation pass unnoticed.
    """
    # TRL folds the completion mask into ``labels`` (-100 = not trained on).
    cut = sum(eos_token_id not in labels for labels in tokenized["labels"])
    dropped = (n_examples - len(tokenized)) if n_examples is not None else 0
    return cut + dropped


def train(cfg: Profile, run_dir: Path) -> dict:
    """Train the LoRA generator on ``<run_dir>/data/sft.jsonl`` and save it to ``<run_dir>/sft``."""
    data_dir = require_complete(run_dir, "data")
    out = Path(run_dir) / "sft"
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    train_ds, eval_ds = sft_datasets(data_dir, cfg)
    model, tokenizer = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    set_seed(cfg.seed)  # LoRA init and data order
    trainer = make_trainer(cfg, model, tokenizer, train_ds, eval_ds, out / "trainer")

    lost_eos = count_lost_eos(trainer.train_dataset, tokenizer.eos_token_id, len(train_ds))
    if lost_eos:
        print(f"[girl] sft: warning: {lost_eos} of {len(train_ds)} training examples are longer than "
              f"sft.max_length={cfg.sft.max_length} and lose their EOS; raise --set sft.max_length=...",
              file=sys.stderr)
    too_long = sum(len(x) > cfg.sft.max_length for x in trainer.train_dataset["input_ids"])
    if cfg.sft.padding_free and too_long:
        print(f"[girl] sft: warning: {too_long} of {len(train_ds)} training examples are longer than "
              f"sft.max_length={cfg.sft.max_length}; padding-free batches train them whole", file=sys.stderr)
    n_tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    n_completion = sum(sum(t != -100 for t in labels) for labels in trainer.train_dataset["labels"])
    t0 = time.time()
    result = trainer.train()
    train_seconds = time.time() - t0
    samples_seen = result.global_step * cfg.sft.batch_size * cfg.sft.grad_accum
    tokens_seen = n_tokens / max(1, len(train_ds)) * samples_seen

    eval_metrics = trainer.evaluate() if eval_ds is not None else {}
    save_adapter(trainer.model, tokenizer, out / ADAPTER)
    shutil.rmtree(out / "trainer", ignore_errors=True)

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "base_model": cfg.model.base_model,
        "train_examples": len(train_ds),
        "eval_examples": len(eval_ds) if eval_ds is not None else 0,
        "train_tokens": n_tokens,
        "examples_truncated_before_eos": lost_eos,
        "train_completion_tokens": n_completion,
        "global_steps": result.global_step,
        "train_seconds": round(train_seconds, 1),
        "train_tokens_per_second": round(tokens_seen / train_seconds, 1),
        "first_loss": losses[0] if losses else None,
        "final_train_loss": losses[-1] if losses else None,
        "eval_loss": eval_metrics.get("eval_loss"),
        "eval_perplexity": math.exp(eval_metrics["eval_loss"]) if "eval_loss" in eval_metrics else None,
    }
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "log_history.json", trainer.state.log_history)
    (out / "profile.json").write_text(cfg.to_json())
    return metrics


def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl sft``: train, compare with the zero-shot base through the oracle, save both."""
    m = train(cfg, run_dir)
    out = Path(run_dir) / "sft"
    comparison = compare_with_zero_shot(cfg, run_dir, n_seekers=cfg.sft.oracle_eval_seekers,
                                        n_zero_shot=cfg.sft.zero_shot_seekers)
    atomic_write_json(out / "oracle_val.json", comparison)
    m["oracle_val"] = {arm: {k: v for k, v in comparison[arm]["report"].items() if k != "outcomes"}
                       for arm in ("zero_shot", "sft")}
    m["oracle_val"]["sft_vs_zero_shot"] = comparison["sft_vs_zero_shot"]
    m["generation_tokens_per_second"] = comparison["sft"]["tokens_per_second"]
    atomic_write_json(out / "metrics.json", m)
    head = {k: m[k] for k in ("train_examples", "global_steps", "train_seconds", "train_tokens_per_second",
                              "final_train_loss", "eval_loss")}
    for arm in ("zero_shot", "sft"):
        r = comparison[arm]["report"]
        head[f"{arm}_parse_rate"], head[f"{arm}_accept_rate"] = r.get("parse_rate"), r.get("accept_rate")
    return head


# --------------------------------------------------------------------------------------------
# The oracle's view: zero-shot base vs SFT on held-out seekers
# --------------------------------------------------------------------------------------------


def compare_with_zero_shot(cfg: Profile, run_dir: Path, n_seekers: int, model=None, tokenizer=None,
                           n_zero_shot: int | None = None) -> dict:
    """Greedy JDs of the SFT model for ``n_seekers`` held-out seekers, and of the base model for the
    first ``n_zero_shot`` of them (all by default).

    The base model is the SFT model with its adapter disabled (``disable_adapter()``). Returns,
    per arm, the texts, the oracle's report (:func:`girl_lib.oracle_eval.oracle_report`, every
    rate with its Wilson interval) and generation speed; ``sft_vs_zero_shot`` holds the paired
    differences on the seekers both arms wrote for. The zero-shot model rambles to the token
    limit, so it is the expensive arm: the evaluation stage compares it properly on test seekers.
    """
    if model is None:
        model, tokenizer = load_sft_model(cfg, run_dir)
    seekers = split_seekers(Path(run_dir) / "data", n_seekers, seed=cfg.seed)
    n0 = len(seekers) if n_zero_shot is None else min(n_zero_shot, len(seekers))
    result: dict = {"seeker_ids": [s["id"] for s in seekers]}
    for arm, arm_seekers in (("zero_shot", seekers[:n0]), ("sft", seekers)):
        prompts = [make_prompt(s["cv_text"]) for s in arm_seekers]
        with (model.disable_adapter() if arm == "zero_shot" else nullcontext()):
            out = generate_from_config(model, tokenizer, prompts, cfg.generation, system_prompt=SYSTEM_PROMPT,
                                       progress=True)
        result[arm] = {"texts": out.texts, "finished": out.finished, "num_tokens": out.num_tokens,
                       "tokens_per_second": round(out.tokens_per_second, 1),
                       "eos_rate": sum(out.finished) / max(1, len(out.finished)),
                       "report": oracle_report(arm_seekers, out.texts)}
    sft_prefix = oracle_report(seekers[:n0], result["sft"]["texts"][:n0])
    result["sft_vs_zero_shot"] = compare_reports(sft_prefix, result["zero_shot"]["report"], seed=cfg.seed)
    return result


def label_view(tokenizer, input_ids, labels, width: int = 12) -> str:
    """The tail of the prompt and the start of the completion, with the training mask shown.

    Tokens the loss ignores (label -100) are shown in ``[brackets]``; trained tokens plainly.
    """
    toks = tokenizer.convert_ids_to_tokens(list(input_ids))
    first = next(i for i, lab in enumerate(labels) if lab != -100)
    lo, hi = max(0, first - width), min(len(toks), first + width)
    show = [f"[{t}]" if lab == -100 else t for t, lab in zip(toks[lo:hi], labels[lo:hi])]
    eos = [t for t, lab in zip(toks, labels) if lab != -100][-2:]
    return " ".join(show).replace("Ċ", "\\n").replace("Ġ", "·") + f"   ...   last trained tokens: {eos}"


# --------------------------------------------------------------------------------------------
# Loading the trained generator
# --------------------------------------------------------------------------------------------


