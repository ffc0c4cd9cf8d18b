"""What every trainer of the kit shares: chat rows, LoRA, the precision rule, TRL arguments.

SFT, the reward model, GenRec and TRL's GRPO/RLOO arms all fine-tune the same kind of model
the same way: conversational rows through the chat template, a PEFT LoRA on a frozen base,
one rule for numeric precision, TRL's trainer with checkpoints off, and an adapter saved with
``save_pretrained``. Each of those lives here once, so a stage module shows only what is
particular to its stage.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .config import LoraConfig as KitLoraConfig
from .config import Profile
from .models import train_precision
from .world import SYSTEM_PROMPT, load_split


def to_chat(prompt: str, completion: str | None = None, system_prompt: str | None = None) -> dict:
    """One row in TRL's conversational prompt/completion format (system, user[, assistant])."""
    system = SYSTEM_PROMPT if system_prompt is None else system_prompt
    row = {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
    if completion is not None:
        row["completion"] = [{"role": "assistant", "content": completion}]
    return row


def peft_lora_config(lora: KitLoraConfig, task_type: str = "CAUSAL_LM"):
    """PEFT's ``LoraConfig`` from the kit's: ``W + (alpha / r) · B A`` on ``target_modules``."""
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), task_type=task_type, bias="none")


def lora_trainable_count(model, r: int, target_modules) -> int:
    """How many parameters a LoRA of rank ``r`` on ``target_modules`` trains in ``model``.

    A LoRA on a linear layer ``in -> out`` adds ``A`` (``r x in``) and ``B`` (``out x r``), so
    ``r · (in + out)`` per adapted layer, summed over every ``nn.Linear`` whose name ends with
    one of ``target_modules`` (PEFT's rule: a suffix match on the module's dotted name), on a plain
    model or one PEFT has already wrapped. Chapter 02 compares it with PEFT's own count.
    """
    import torch

    total = 0
    for name, module in model.named_modules():
        if not any(name == t or name.endswith("." + t) for t in target_modules):
            continue
        linear = getattr(module, "base_layer", module)  # a layer PEFT already wrapped keeps its Linear here
        if isinstance(linear, torch.nn.Linear):
            total += r * (linear.in_features + linear.out_features)
    return total


def precision_flags(cfg: Profile) -> dict:
    """The kit's one precision rule, as the Trainer's flags (``bf16``, ``fp16``, ``use_cpu``).

    With ``model.dtype=auto`` (every profile) the master weights stay fp32 and the Trainer
    runs autocast in the device's half type (:func:`girl_lib.models.half_dtype`):

    * CUDA with native bf16 (compute capability 8.0+: A100, L4, H100): ``bf16=True``;
    * CUDA without it (a T4, a V100): ``fp16=True``, and the Trainer adds a gradient scaler;
    * CPU with native bf16 (AVX512-BF16 or AMX): bf16 *autocast*, about 2x faster there;
    * any other CPU, or ``model.dtype=float32``: plain fp32.

    Every trainer and the reward model's scoring follow it (``--set model.dtype=float32`` turns
    half precision off everywhere). The kit's own PPO does not: its passes stay fp32, so its
    ratios and KL do too. The rule itself is :func:`girl_lib.models.train_precision`.
    """
    return train_precision(cfg.device, cfg.model.dtype)


def trainer_args(cfg: Profile, output_dir: Path, *, num_epochs: float, max_steps: int, learning_rate: float,
                 batch_size: int, max_length: int, **extra) -> dict:
    """Keyword arguments shared by the kit's TRL configs (``SFTConfig``, ``RewardConfig``).
    Cosine schedule with 5 % warm-up; no checkpoints (adapters are saved explicitly with
    :func:`save_adapter`) and no periodic evaluation (each stage evaluates once at the end,
    cheaper on a CPU); seeded data order; the precision of :func:`precision_flags`. ``extra``
    adds or overrides fields.
    """
    args = dict(
        output_dir=str(output_dir),
        num_train_epochs=num_epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=max_length,
        logging_steps=1 if 0 < max_steps <= 20 else 5,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        **precision_flags(cfg),
    )
    args.update(extra)
    return args


def save_adapter(model, tokenizer, target: Path) -> Path:
    """``save_pretrained`` the adapter and tokenizer into ``target``, swapped in whole.
    Written to a hidden sibling folder first and renamed, so a kill mid-save never leaves a
    half-written adapter that a later stage would load.
    """
    target = Path(target)
    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def split_seekers(data_dir: Path, n: int, split: str = "val", seed: int = 0) -> list[dict]:
    """A seeded random draw of ``n`` seekers of ``split``; ``[]`` for ``n <= 0``.

    Prefix-stable (:func:`girl_lib.world.draw`): with the same seed, a draw of fewer seekers is
    the start of a draw of more, so a later stage can reuse an earlier stage's generations.
    """
    return load_split(data_dir, "seekers", split, n, seed=seed) if n > 0 else []
