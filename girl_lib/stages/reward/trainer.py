"""Training the reward model with TRL's ``RewardTrainer``, and the stage itself (``girl reward``)."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from ...config import Profile
from ...rundir import ADAPTER, atomic_write_json, require_complete
from ...scoring import load_base, scoring_bf16
from ...seeding import set_seed
from ...training import peft_lora_config, save_adapter, trainer_args
from ...world import Oracle
from .evaluation import evaluate_held_out
from .pairs import GENERATED, KINDS, generated_pairs, load_pairs, reward_datasets


# --------------------------------------------------------------------------------------------
# Model pieces
# --------------------------------------------------------------------------------------------
def peft_reward_config(cfg: Profile):
    """LoRA on the attention projections + a fully trained (and saved) ``score`` head."""
    peft_cfg = peft_lora_config(cfg.reward.lora, task_type="SEQ_CLS")
    peft_cfg.modules_to_save = ["score"]
    return peft_cfg


def make_trainer(cfg: Profile, model, tokenizer, train_ds, eval_ds, output_dir: Path):
    """A TRL ``RewardTrainer`` configured from the profile (pairwise loss, LoRA + score head, no saving)."""
    from trl import RewardConfig, RewardTrainer

    r = cfg.reward
    args = RewardConfig(**trainer_args(
        cfg, output_dir, num_epochs=r.num_epochs, max_steps=r.max_steps, learning_rate=r.learning_rate,
        batch_size=r.batch_size,  # pairs: the model sees 2 x batch_size sequences
        # The rows' CVs are already cut to fit (scoring.fit_prompt); TRL would drop (not truncate)
        # a pair still too long (a JD alone over the limit); train() counts them.
        max_length=r.max_length,
        activation_checkpointing=False,  # TRL turns it on by default; for a 135M model it only costs time
        disable_dropout=True,
    ))
    return RewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=peft_reward_config(cfg))


def count_too_long(n_before: int, prepared) -> int:
    """Pairs TRL dropped because the chosen or the rejected chat exceeds ``max_length``."""
    return n_before - len(prepared)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def _fit(cfg: Profile, run_dir: Path, out: Path) -> tuple:
    """Build the training rows (real pairs + generated pairs), train; ``(trainer, tokenizer, info)``."""
    data_dir = require_complete(run_dir, "data")
    r = cfg.reward
    real_rows = load_pairs(data_dir, "train", r.max_train_pairs, seed=cfg.seed)  # a bad line fails here, first
    t0 = time.time()
    extra, gen_summary = generated_pairs(cfg, run_dir, Oracle(noise=cfg.data.recruiter_noise))
    gen_seconds = time.time() - t0
    model, tokenizer = load_base(cfg)
    train_ds, _ = reward_datasets(data_dir, cfg, tokenizer, extra)  # eval below uses score(), not TRL's evaluate
    set_seed(cfg.seed)  # LoRA init and data order
    trainer = make_trainer(cfg, model, tokenizer, train_ds, None, out / "trainer")
    dropped = count_too_long(len(train_ds), trainer.train_dataset)
    if dropped:
        print(f"[girl] reward: warning: {dropped} of {len(train_ds)} training pairs are longer than "
              f"reward.max_length={r.max_length} tokens even with their CV emptied and were dropped; "
              "raise --set reward.max_length=...", file=sys.stderr)
    rows, prepared = real_rows + extra, trainer.train_dataset
    n_tokens = sum(len(a) + len(b) for a, b in zip(prepared["chosen_ids"], prepared["rejected_ids"]))
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    info = {"train_pairs": len(train_ds) - dropped,
            "train_pairs_by_kind": {k: sum(x["kind"] == k for x in rows) for k in (*KINDS, GENERATED)},
            "train_pairs_dropped_too_long": dropped, "train_tokens": n_tokens,
            "global_steps": result.global_step, "train_seconds": round(seconds, 1),
            "train_tokens_per_second": round(n_tokens / max(1, len(prepared)) * result.global_step * r.batch_size
                                             / max(seconds, 1e-9), 1),
            "generated_pairs_seconds": round(gen_seconds, 1), **gen_summary}
    return trainer, tokenizer, info


def train(cfg: Profile, run_dir: Path) -> dict:
    """Train the reward model on ``<run_dir>/data/rm_pairs.jsonl`` (plus ``reward.generated_pairs``
    generated pairs), evaluate it, save to ``<run_dir>/reward``."""
    out = Path(run_dir) / "reward"
    require_complete(run_dir, "data")
    out.mkdir(parents=True, exist_ok=True)
    trainer, tokenizer, info = _fit(cfg, Path(run_dir), out)
    save_adapter(trainer.model, tokenizer, out / ADAPTER)
    shutil.rmtree(out / "trainer", ignore_errors=True)

    t1 = time.time()
    eval_m, eval_rows = evaluate_held_out(cfg, run_dir, trainer.model.eval(), tokenizer)
    eval_seconds = time.time() - t1

    logs = trainer.state.log_history
    losses = [h["loss"] for h in logs if "loss" in h]
    train_acc = [h["accuracy"] for h in logs if "accuracy" in h and "loss" in h]
    metrics = {
        "base_model": cfg.model.base_model, "pooling": cfg.reward.pooling, "num_layers": cfg.reward.num_layers,
        **info,
        "eval_seconds": round(eval_seconds, 1),
        "bf16_autocast": scoring_bf16(cfg),
        "first_loss": losses[0] if losses else None,
        "final_train_loss": losses[-1] if losses else None,
        "final_train_accuracy": train_acc[-1] if train_acc else None,
        **eval_m,
    }
    atomic_write_json(out / "eval_scores.json", eval_rows)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "log_history.json", logs)
    (out / "profile.json").write_text(cfg.to_json())
    return metrics


HEADLINE = ("train_pairs", "global_steps", "train_seconds", "final_train_loss", "pairwise_accuracy",
            "pairwise_accuracy_feedback", "pairwise_accuracy_hard_negative", "auc_real", "auc_generated",
            "auc_sampled")


def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl reward``: train and evaluate, then return the headline figures for the manifest
    (with the blind-spot check: mean score of zero-shot vs SFT JDs on val seekers)."""
    m = train(cfg, run_dir)
    head = {k: m.get(k) for k in HEADLINE}
    spot = m.get("blind_spot", {})
    head.update(blind_spot_zero_shot_rm=spot.get("zero_shot_rm_mean"), blind_spot_sft_rm=spot.get("sft_rm_mean"),
                generated_train_pairs=m["train_pairs_by_kind"].get(GENERATED, 0))
    return head
