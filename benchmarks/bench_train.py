"""Training speed of stages 1 and 2: SFT tokens/s and reward-model pairs/s, a few steps each.

    python benchmarks/bench_train.py --profile cpu --steps 8

Runs the stages' own ``train`` functions (TRL SFTTrainer / RewardTrainer with the profile's LoRA
and precision) on a small world in a temporary run dir, with ``max_steps`` = ``--steps`` and
small eval sets, and reads their reported figures.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import _common


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args(argv)
    args.set = [f"sft.max_steps={args.steps}", f"reward.max_steps={args.steps}", "sft.max_eval_examples=4",
                "reward.max_eval_pairs=4", "data.n_seekers=200", "data.n_jobs=100"] + args.set
    cfg = _common.load_profile(args)

    from girl_lib.pipeline import run_stage
    from girl_lib.stages import reward, sft

    with tempfile.TemporaryDirectory(prefix="girl-bench-train-") as tmp:
        run_dir = Path(tmp)
        run_stage("data", cfg, run_dir, log=lambda *a: None)
        s = sft.train(cfg, run_dir)
        r = reward.train(cfg, run_dir)
    pairs = r["global_steps"] * cfg.reward.batch_size
    rows = [
        {"stage": "sft", "steps": s["global_steps"], "batch": cfg.sft.batch_size, "seconds": s["train_seconds"],
         "rate": s["train_tokens_per_second"], "unit": "tokens/s"},
        {"stage": "reward", "steps": r["global_steps"], "batch": cfg.reward.batch_size, "seconds": r["train_seconds"],
         "rate": round(pairs / r["train_seconds"], 2), "unit": "pairs/s", "bf16_autocast": r["bf16_autocast"]},
    ]
    result = {"model": cfg.model.base_model, "device": cfg.device,
              "sft_tokens_per_s": s["train_tokens_per_second"], "sft_steps": s["global_steps"],
              "sft_seconds": s["train_seconds"],
              "reward_pairs_per_s": rows[1]["rate"], "reward_tokens_per_s": r["train_tokens_per_second"],
              "reward_steps": r["global_steps"], "reward_seconds": r["train_seconds"],
              "reward_bf16_autocast": r["bf16_autocast"], "results": rows}
    _common.emit("train", args, result, rows, ["stage", "steps", "batch", "seconds", "rate", "unit"])


if __name__ == "__main__":
    main()
