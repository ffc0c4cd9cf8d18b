"""``girl ppo``: train (or resume) PPO, evaluate it against SFT, save the final adapter."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ...config import Profile
from ...rundir import atomic_write_json
from ...training import save_adapter
from .checkpoint import ADAPTER, CHECKPOINT, read_log
from .evaluate import evaluate, versus_sft
from .loop import LOG_KEYS, train


def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl ppo``: train (or resume), evaluate PPO vs SFT, write ``metrics.json``; headline figures.

    In a multi-process launch every process trains; the main one evaluates and writes.
    """
    run_dir = Path(run_dir)
    out = run_dir / "ppo"
    t0 = time.time()
    res = train(cfg, run_dir)
    accelerator, model = res["accelerator"], res["model"]
    head: dict = {}
    if res["is_main"]:
        ev = evaluate(cfg, run_dir, model, res["tokenizer"], res["reward_model"], res["reward_tokenizer"], res["oracle"])
        # The final adapter (relative to the merged SFT model), for load_ppo_model and the evaluation stage.
        save_adapter(model.policy, res["tokenizer"], out / ADAPTER)
        shutil.copy2(out / CHECKPOINT / "value_head.safetensors", out / "value_head.safetensors")
        rows = read_log(run_dir)
        split_keys = ("generation_s", "forward_s", "scoring_s", "oracle_s", "optimization_s", "iteration_s")
        time_split = {k: round(sum(r[f"time/{k}"] for r in rows) / len(rows), 2) for k in split_keys} if rows else {}
        sft_r, ppo_r = ev["sft"]["report"], ev["ppo"]["report"]
        metrics = {
            "base_model": cfg.model.base_model, "reward_source": cfg.ppo.reward_source,
            "iterations": cfg.ppo.iterations, "episodes": res["episodes"],
            "num_processes": res["num_processes"], "ranks": res["ranks"], "pids": res["pids"],
            "resumed_from_iteration": res["resumed_from_iteration"],
            "train_seconds_this_run": round(res["train_seconds"], 1),
            "wall_seconds_this_run": round(time.time() - t0, 1),
            "seconds_per_iteration": time_split,
            "final_kl_coef": res["final_kl_coef"],
            "final_rollout": {k: rows[-1][k] for k in LOG_KEYS if k in rows[-1]} if rows else {},
            **versus_sft(ev),
        }
        atomic_write_json(out / "eval_texts.json", {"seeker_ids": ev["seeker_ids"], **ev["texts"]})
        atomic_write_json(out / "metrics.json", metrics)
        (out / "profile.json").write_text(cfg.to_json())
        head = {
            "iterations": cfg.ppo.iterations, "num_processes": res["num_processes"],
            "reward_source": cfg.ppo.reward_source,
            "sft_accept_rate": sft_r.get("accept_rate"), "ppo_accept_rate": ppo_r.get("accept_rate"),
            "accept_rate_gain": metrics["accept_rate_gain"],
            "accept_rate_gain_ci": ev["paired"]["accept_rate"]["ci"],
            "accept_rate_gain_p": ev["paired"]["accept_rate"]["p_value"], "n_eval_seekers": ev["n_seekers"],
            "sft_seeker_interest": sft_r.get("seeker_interest"), "ppo_seeker_interest": ppo_r.get("seeker_interest"),
            "sft_rm_score": ev["sft"]["rm_score_mean"], "ppo_rm_score": ev["ppo"]["rm_score_mean"],
            "final_rollout_kl": rows[-1]["objective/kl"] if rows else None,
            "kl_exact_eval": ev.get("kl_exact_mean"), "achieved_kl": ev.get("kl_exact_mean"),
            "seconds_per_iteration": time_split.get("iteration_s"),
        }
    accelerator.wait_for_everyone()
    return head
