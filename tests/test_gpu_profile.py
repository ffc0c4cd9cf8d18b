"""The gpu profile without a GPU: its precision rule on simulated GPUs, its code path end to end
on the CPU, and `make gpu-check`'s answer on a machine without CUDA.

A simulated GPU patches what the kit asks torch (``torch.cuda.is_available``,
``is_bf16_supported``, ``get_device_capability``); nothing here allocates CUDA memory.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from girl_lib import fastpath, models, textgen, training
from girl_lib.config import resolve_profile
from girl_lib.errors import GirlError

ROOT = Path(__file__).resolve().parents[1]
# name: (compute capability, the half type the kit must pick)
GPUS = {"T4": ((7, 5), torch.float16), "V100": ((7, 0), torch.float16),
        "A100": ((8, 0), torch.bfloat16), "H100": ((9, 0), torch.bfloat16)}


@pytest.fixture
def simulated_gpu(monkeypatch):
    def install(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        # torch counts emulated bf16 by default, so a real T4 answers True here too.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: including_emulation or capability >= (8, 0))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return install


@pytest.mark.parametrize("gpu", GPUS)
def test_auto_dtype_on_a_simulated_gpu(simulated_gpu, gpu):
    """fp32 weights everywhere; the trainers autocast in the half type (fp16 + a gradient scaler on
    a T4, bf16 on an A100/H100); rollouts in that type; PPO's log-probs and KL in fp32."""
    capability, half = GPUS[gpu]
    simulated_gpu(capability)
    cfg = resolve_profile("gpu")  # CUDA "available": no refusal
    assert cfg.device == "cuda" and cfg.model.dtype == "auto"
    assert models.torch_dtype(cfg.model.dtype, cfg.device) is torch.float32
    assert models.half_dtype("cuda") is half
    flags = training.precision_flags(cfg)
    assert flags == {"bf16": half is torch.bfloat16, "fp16": half is torch.float16, "use_cpu": False}
    args = training.trainer_args(cfg, Path("unused"), num_epochs=1, max_steps=1, learning_rate=1e-4,
                                 batch_size=1, max_length=8)
    assert (args["fp16"], args["bf16"]) == (flags["fp16"], flags["bf16"])  # what the HF Trainer gets
    assert fastpath.resolve_fast_dtype(cfg.generation.fast_dtype, cfg.device) is half
    plan = models.precision_plan(cfg.device, cfg.model.dtype, cfg.generation.fast_dtype)
    assert plan == {"weights": "float32", "training_autocast": str(half).split(".")[1],
                    "grad_scaler": half is torch.float16, "rollouts": str(half).split(".")[1],
                    "ppo_logprobs_and_kl": "float32"}


def test_float32_turns_autocast_off_on_a_gpu(simulated_gpu):
    simulated_gpu((9, 0))
    cfg = resolve_profile("gpu", {"model.dtype": "float32"})
    assert training.precision_flags(cfg) == {"bf16": False, "fp16": False, "use_cpu": False}


def test_explicit_half_weights(simulated_gpu):
    simulated_gpu((7, 5))
    cfg = resolve_profile("gpu", {"model.dtype": "float16"})
    assert models.torch_dtype("float16", "cuda") is torch.float16
    assert training.precision_flags(cfg) == {"bf16": False, "fp16": True, "use_cpu": False}
    with pytest.raises(GirlError, match="model.dtype"):
        models.torch_dtype("half", "cuda")


def test_auto_on_the_cpu_is_fp32_weights():
    assert models.torch_dtype("auto", "cpu") is torch.float32
    cpu = resolve_profile("cpu")
    assert training.precision_flags(cpu) == {"bf16": models.cpu_has_native_bf16(), "fp16": False, "use_cpu": True}


def test_gpu_profile_needs_cuda_or_device_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GirlError, match="--set device=cpu"):
        resolve_profile("gpu")
    assert resolve_profile("auto").name == "cpu"
    cfg = resolve_profile("gpu", {"device": "cpu"})
    assert cfg.name == "gpu" and cfg.device == "cpu"


# --------------------------------------------------------------------------------------------
# The gpu profile's code path, end to end on the CPU
# --------------------------------------------------------------------------------------------
# The gpu profile with every count cut to smoke size and the tiny model; everything else (the
# dtype rule, fast rollouts, LoRA targets, learning rates, evaluation settings) is the profile's.
SHRUNK = {
    "device": "cpu", "model.base_model": "tiny:llama",
    "data.n_seekers": 120, "data.n_jobs": 60,
    "sft.max_train_examples": 16, "sft.max_steps": 2, "sft.batch_size": 4, "sft.max_eval_examples": 4,
    "sft.oracle_eval_seekers": 4,
    "reward.max_train_pairs": 16, "reward.max_steps": 2, "reward.batch_size": 4, "reward.max_eval_pairs": 8,
    "generation.max_new_tokens": 12, "generation.batch_size": 8,
    "ppo.iterations": 2, "ppo.rollout_batch_size": 4, "ppo.minibatch_size": 2, "ppo.micro_batch_size": 2,
    "ppo.ppo_epochs": 1, "ppo.eval_seekers": 4,
    "eval.max_test_seekers": 6, "eval.judge_pairs": 6, "eval.embedder": "hashing",
    "eval.matching_train_seekers": 8, "eval.matching_cold_seekers": 6, "eval.matching_seeds": 1,
    "eval.matching_epochs": 10,
}


@pytest.mark.slow
def test_gpu_profile_runs_end_to_end_on_the_cpu(tmp_path):
    """data → sft → reward → ppo → evaluate under the gpu profile, on the CPU: the precision rule
    and the profile's settings meet every stage (a dtype or config error fails here)."""
    from girl_lib.pipeline import run_stage
    from girl_lib.rundir import is_complete, stage_dir
    from girl_lib.stages.ppo.checkpoint import read_log

    cfg = resolve_profile("gpu", SHRUNK)
    assert cfg.name == "gpu" and cfg.model.dtype == "auto" and cfg.generation.fast_dtype == "auto"
    for stage in ("data", "sft", "reward", "ppo", "evaluate"):
        manifest = run_stage(stage, cfg, tmp_path, log=lambda *a, **k: None)
        assert is_complete(stage_dir(tmp_path, stage)) and manifest["profile"] == "gpu", stage
    # PPO's first minibatch, before any step: the update's fp32 log-probs equal the rollout's
    # (a half-precision pass on either side would move the ratio by ~1e-2).
    first = read_log(tmp_path)[0]
    assert abs(first["debug/first_ratio"] - 1) < 1e-4 and abs(first["debug/first_approxkl"]) < 1e-6


# --------------------------------------------------------------------------------------------
# make gpu-check
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_without_cuda_says_so_in_one_line_and_exits_2(tmp_path):
    out = tmp_path / "check.json"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "no CUDA GPU" in res.stderr
    assert not out.exists()


@pytest.mark.slow
def test_gpu_check_cpu_dry_run(tmp_path):
    """The prepared check's machinery (doctor, the stages with their records, the T4 child, the
    benchmark, the one JSON file) on the CPU with the tiny model."""
    out = tmp_path / "check" / "gpu_check.json"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--cpu-dry-run",
                          "--stages", "data,sft,reward,ppo", "--out", str(out)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1].endswith(str(out.resolve()))
    report = json.loads(out.read_text())
    assert report["ok"] and report["failures"] == [] and report["cpu_dry_run"]
    assert report["doctor"]["report"]["precision"]["ppo_logprobs_and_kl"] == "float32"
    for part in ("native", "t4"):
        stages = report[part]["stages"]
        assert all(s["ok"] and s["seconds"] > 0 for s in stages.values()), part
    assert list(report["native"]["stages"]) == ["data", "sft", "reward", "ppo"]
    assert list(report["t4"]["stages"]) == ["sft", "reward", "ppo"]  # the data reused
    assert report["native"]["rates"]["ppo_seconds_per_iteration"] > 0
    assert {"sft_train", "reward_train", "ppo_train"} <= set(report["native"]["projection_full_profile_s"])
    assert report["bench"]["ok"] and report["bench"]["result"]["results"][0]["batch_size"] == 64
