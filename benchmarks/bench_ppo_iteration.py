"""One PPO iteration's time split: generation / forward (old + reference log-probs) / scoring /
optimisation, with the plain and the fast rollout path.

    python benchmarks/bench_ppo_iteration.py --profile cpu

Builds a small run dir (data; SFT and reward model with a few steps: their quality does not
matter for timing), then runs ``girl_lib.stages.ppo.loop.train`` for ``--iterations`` iterations per mode
and reads the ``time/*`` fields it logs (``ppo/log.jsonl``). The share of an iteration spent
generating is the figure the fast path attacks. Iterations after the first are averaged when
there are several (the first pays one-off costs).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import _common

SPLIT = ("generation_s", "forward_s", "scoring_s", "oracle_s", "optimization_s", "iteration_s")


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--modes", default="plain,fast", help="comma list of plain, dtype, decode, fast (see _common.GEN_MODES)")
    p.add_argument("--prep-steps", type=int, default=2, help="SFT and reward steps of the throwaway run dir")
    args = p.parse_args(argv)
    args.set = [f"sft.max_steps={args.prep_steps}", f"reward.max_steps={args.prep_steps}", "sft.max_eval_examples=4",
                "sft.oracle_eval_seekers=1", "reward.max_eval_pairs=4", "data.n_seekers=200", "data.n_jobs=100",
                f"ppo.iterations={args.iterations}", f"ppo.save_every={args.iterations}"] + args.set
    cfg = _common.load_profile(args)

    from girl_lib.config import apply_overrides
    from girl_lib.pipeline import run_stage
    from girl_lib.stages.ppo import LOG, train

    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="girl-bench-ppo-") as tmp:
        run_dir = Path(tmp)
        for stage in ("data", "sft", "reward"):
            run_stage(stage, cfg, run_dir, log=lambda *a: None)
        for mode in args.modes.split(","):
            if mode not in _common.GEN_MODES:
                p.error(f"--modes: unknown mode '{mode}'; choose from {', '.join(_common.GEN_MODES)}")
            fast_dtype, fast_decode = _common.GEN_MODES[mode]
            mcfg = apply_overrides(cfg, {"generation.fast_dtype": fast_dtype, "generation.fast_decode": fast_decode})
            shutil.rmtree(run_dir / "ppo", ignore_errors=True)
            train(mcfg, run_dir, log=lambda *a: None)
            log = [json.loads(x) for x in (run_dir / "ppo" / LOG).read_text().splitlines() if x.strip()]
            use = log[1:] if len(log) > 1 else log
            split = {k: round(sum(r[f"time/{k}"] for r in use) / len(use), 2) for k in SPLIT}
            split["generation_share"] = round(split["generation_s"] / split["iteration_s"], 3)
            split["episodes_per_s"] = round(cfg.ppo.rollout_batch_size / split["iteration_s"], 3)
            split["generation_tokens_per_s"] = round(sum(r["generation_tokens_per_s"] for r in use) / len(use), 1)
            results[mode] = split
            rows.append({"mode": mode, **split})
    result = {"model": cfg.model.base_model, "device": cfg.device, "rollout_batch_size": cfg.ppo.rollout_batch_size,
              "max_new_tokens": cfg.generation.max_new_tokens, "ppo_epochs": cfg.ppo.ppo_epochs,
              "iterations_per_mode": args.iterations, "by_mode": results}
    _common.emit("ppo_iteration", args, result, rows,
                 ["mode", *SPLIT, "generation_share", "episodes_per_s", "generation_tokens_per_s"])


if __name__ == "__main__":
    main()
