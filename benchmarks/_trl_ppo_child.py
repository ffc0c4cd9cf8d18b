"""TRL 1.12's PPOTrainer on prepared models; run by bench_trl_ppo.py inside the TRL 1.12 venv.

Reads ``spec.json`` (written by the parent): paths of the merged SFT policy and reward model,
the tokenized prompts, and the PPO settings. Writes a JSON result: per-iteration raw reward-model
scores, KL, and wall times. Imports nothing from girl_lib: this process has TRL 1.12, not the kit.
"""
from __future__ import annotations

import json
import sys
import time


def main(spec_path: str, out_path: str) -> None:
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    spec = json.loads(open(spec_path).read())
    s = spec["settings"]
    torch.manual_seed(s["seed"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    tok = AutoTokenizer.from_pretrained(spec["policy"], padding_side="left")  # as in TRL's PPO examples
    policy = AutoModelForCausalLM.from_pretrained(spec["policy"], dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(spec["reward"], num_labels=1, dtype=torch.float32)
    value = AutoModelForSequenceClassification.from_pretrained(spec["reward"], num_labels=1, dtype=torch.float32)
    for m in (policy, reward, value):
        m.config.pad_token_id = tok.pad_token_id
    ds = Dataset.from_dict({"input_ids": spec["prompt_ids"]})
    args = PPOConfig(
        output_dir=spec["output_dir"], per_device_train_batch_size=s["batch_size"], gradient_accumulation_steps=1,
        num_mini_batches=s["num_mini_batches"], num_ppo_epochs=s["ppo_epochs"], response_length=s["max_new_tokens"],
        total_episodes=s["batch_size"] * s["iterations"], temperature=s["temperature"], kl_coef=s["kl_coef"],
        kl_estimator=s["kl_estimator"], cliprange=s["cliprange"], cliprange_value=s["cliprange_value"],
        vf_coef=s["vf_coef"], gamma=s["gamma"], lam=s["lam"], learning_rate=s["learning_rate"],
        missing_eos_penalty=s["missing_eos_penalty"], stop_token="eos",
        local_rollout_forward_batch_size=s["batch_size"], num_sample_generations=0, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(), seed=s["seed"],
        bf16=False, fp16=False, gradient_checkpointing=False, dataloader_drop_last=True)
    rows, t_last = [], [time.time()]

    class Log(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "objective/scores" in logs:
                now = time.time()
                rows.append({"iteration": len(rows) + 1, "episodes": state.episode,
                             "scores_raw_minus_eos_penalty": logs["objective/scores"], "kl": logs.get("objective/kl"),
                             "iteration_s": now - t_last[0]})
                t_last[0] = now

    lora = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=0.0,
                      target_modules=list(s["lora_targets"]), task_type="CAUSAL_LM")
    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=None, reward_model=reward,
                         train_dataset=ds, value_model=value, peft_config=lora, callbacks=[Log()])
    t0 = time.time()
    t_last[0] = t0
    trainer.train()
    wall = time.time() - t0
    episodes = s["batch_size"] * len(rows)
    json.dump({"trl_version": trl.__version__, "train_seconds": wall, "episodes": episodes,
               "episodes_per_s": episodes / wall if wall else None, "iterations": rows}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
