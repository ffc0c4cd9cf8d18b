"""The kit's PPO side by side with TRL 1.12's PPOTrainer, same models, same settings, one run.

    python benchmarks/bench_trl_ppo.py --profile cpu --run-dir runs/cpu --iterations 4
    python benchmarks/bench_trl_ppo.py --profile smoke                       # a quick check of the plumbing

TRL removed ``PPOTrainer`` after 1.12.0, so this script builds its own environment for it:
``.bench-venv/`` (gitignored) with ``trl==1.12.0`` installed ``--no-deps`` on top of the kit's
environment (a ``.pth`` file adds the kit's site-packages behind it; TRL 1.12 needs
transformers>=4.56.2, accelerate>=1.4, datasets>=4.7, which the kit's pins satisfy). TRL then runs
in a child process that imports nothing from the kit.

Both sides start from the same SFT policy (adapter merged) with a fresh LoRA (r=16 on
q/k/v/o), the same reward model (LoRA merged), raw scores, the same missing-EOS penalty, KL
coefficient, temperature, learning rate, batch (16 rollouts), 2 PPO epochs, 1 minibatch and
``--max-new-tokens`` (64). TRL's value model is a full copy of the reward model (its usual
set-up); the kit's value head shares the policy's trunk and its bias starts at the first batch's
mean return (``ppo.value_head_init=mean_return``). We
report episodes/s and the per-iteration mean score (raw reward-model score minus the
missing-EOS penalty, the quantity both log as ``objective/scores``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import _common

VENV = _common.ROOT / ".bench-venv"
TRL_SPEC = "trl==1.12.0"


def trl_python(venv: Path = VENV) -> Path:
    """The TRL 1.12 interpreter; creates the venv on first use (needs the package index once)."""
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "girl_kit_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # the kit's packages, behind
    probe = [str(py), "-c", "import trl;print(trl.__version__)"]
    have = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
    if have != TRL_SPEC.split("==")[1]:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", TRL_SPEC], check=True)
        have = subprocess.run(probe, check=True, capture_output=True, text=True).stdout.strip()
    print(f"[bench] TRL {have} in {venv}", file=sys.stderr)
    return py


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path,
                   help="a run dir with complete data/sft/reward stages, copied, never written (default: build a small one)")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--venv", type=Path, default=VENV)
    p.add_argument("--threads", type=int, default=0, help="torch threads for BOTH sides (0: torch's default)")
    args = p.parse_args(argv)
    b = args.batch_size
    args.set = [f"ppo.iterations={args.iterations}", f"ppo.rollout_batch_size={b}", f"ppo.minibatch_size={b}",
                "ppo.ppo_epochs=2", f"generation.max_new_tokens={args.max_new_tokens}", f"generation.batch_size={b}",
                "ppo.normalize_scores=false", f"ppo.save_every={args.iterations}",
                "ppo.lora.r=16", "ppo.lora.alpha=32", "ppo.lora.target_modules=q_proj,k_proj,v_proj,o_proj"] + args.set
    cfg = _common.load_profile(args)
    py = trl_python(args.venv)

    from girl_lib.generators import load_sft_model
    from girl_lib.pipeline import run_stage
    from girl_lib.scoring import load_reward_model
    from girl_lib.stages.ppo import LOG, train
    from girl_lib.textgen import chat_prompt_ids
    from girl_lib.world import SYSTEM_PROMPT, load_jsonl, make_prompt

    tmp = tempfile.TemporaryDirectory(prefix="girl-bench-trl-")
    work = Path(tmp.name)
    run_dir = work / "run"  # the kit's PPO writes here; a given --run-dir is only read (copied)
    if args.run_dir is not None:
        import shutil

        for stage in ("data", "sft", "reward"):
            shutil.copytree(args.run_dir / stage, run_dir / stage)
    else:
        small = _common.load_profile(type(args)(profile=args.profile, set=args.set + [
            "sft.max_steps=2", "reward.max_steps=2", "sft.max_eval_examples=4", "sft.oracle_eval_seekers=1",
            "reward.max_eval_pairs=4", "data.n_seekers=200", "data.n_jobs=100"]))
        for stage in ("data", "sft", "reward"):
            run_stage(stage, small, run_dir, log=lambda *a: None)
    # Plain merged copies for TRL: the SFT policy and the reward model.
    sft_model, tok = load_sft_model(cfg, run_dir)
    sft_model.merge_and_unload().save_pretrained(work / "policy")
    tok.save_pretrained(work / "policy")
    rm, rm_tok = load_reward_model(cfg, run_dir)
    rm.merge_and_unload().save_pretrained(work / "reward")
    rm_tok.save_pretrained(work / "reward")
    del sft_model, rm
    pool = [s for s in load_jsonl(run_dir / "data" / "seekers.jsonl", "seekers") if s["split"] == "train"]
    prompt_ids = chat_prompt_ids(tok, [make_prompt(s["cv_text"]) for s in pool], SYSTEM_PROMPT)
    pp, lora = cfg.ppo, cfg.ppo.lora
    settings = {"batch_size": b, "num_mini_batches": 1, "ppo_epochs": 2, "max_new_tokens": args.max_new_tokens,
                "iterations": args.iterations, "temperature": pp.temperature, "kl_coef": pp.kl_coef,
                "kl_estimator": pp.kl_estimator, "cliprange": pp.cliprange, "cliprange_value": pp.cliprange_value,
                "vf_coef": pp.vf_coef, "gamma": pp.gamma, "lam": pp.lam, "learning_rate": pp.learning_rate,
                "missing_eos_penalty": pp.missing_eos_penalty, "seed": pp.seed, "lora_r": lora.r,
                "lora_alpha": lora.alpha, "lora_targets": list(lora.target_modules)}
    spec = {"policy": str(work / "policy"), "reward": str(work / "reward"), "prompt_ids": prompt_ids,
            "settings": settings, "output_dir": str(work / "trl-out"), "threads": args.threads}
    (work / "spec.json").write_text(json.dumps(spec))

    # --- TRL 1.12, in its own environment ---
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    guard = os.environ.get("PYTHONPATH", "")
    if "netguard" in guard:  # keep the tests' network guard in the child
        env["PYTHONPATH"] = os.pathsep.join(x for x in guard.split(os.pathsep) if "netguard" in x)
    t0 = time.time()
    subprocess.run([str(py), str(Path(__file__).with_name("_trl_ppo_child.py")), str(work / "spec.json"),
                    str(work / "trl.json")], check=True, env=env, stdout=sys.stderr)
    trl_res = json.loads((work / "trl.json").read_text())
    trl_res["process_seconds"] = round(time.time() - t0, 1)

    # --- the kit's PPO on the same run dir ---
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    train(cfg, run_dir, log=lambda *a: print(*a, file=sys.stderr))
    kit_wall = time.time() - t0
    log = [json.loads(x) for x in (run_dir / "ppo" / LOG).read_text().splitlines() if x.strip()]
    kit_train = sum(r["time/iteration_s"] for r in log)
    kit_res = {"train_seconds": kit_train, "episodes": b * len(log), "episodes_per_s": b * len(log) / kit_train,
               "process_seconds": round(kit_wall, 1),
               "iterations": [{"iteration": r["iteration"], "episodes": r["episodes"], "scores": r["objective/scores"],
                               "kl": r["objective/kl"], "iteration_s": r["time/iteration_s"],
                               "generation_s": r["time/generation_s"]} for r in log]}
    tmp.cleanup()

    rows = []
    for i in range(args.iterations):
        k = kit_res["iterations"][i] if i < len(kit_res["iterations"]) else {}
        t = trl_res["iterations"][i] if i < len(trl_res["iterations"]) else {}
        rows.append({"iteration": i + 1, "kit_score": k.get("scores"), "trl_score": t.get("scores_raw_minus_eos_penalty"),
                     "kit_kl": k.get("kl"), "trl_kl": t.get("kl"), "kit_s": k.get("iteration_s"), "trl_s": t.get("iteration_s")})
    result = {"model": cfg.model.base_model, "settings": settings, "threads": args.threads, "kit": kit_res, "trl": trl_res,
              "kit_over_trl_episodes_per_s": round(kit_res["episodes_per_s"] / trl_res["episodes_per_s"], 2)
              if trl_res.get("episodes_per_s") else None}
    _common.emit("trl_ppo", args, result, rows, ["iteration", "kit_score", "trl_score", "kit_kl", "trl_kl", "kit_s", "trl_s"])


if __name__ == "__main__":
    main()
