"""``make gpu-check``: does the gpu profile run on this GPU, how fast, in how much memory? One JSON file.

    python scripts/gpu_check.py                        # a CUDA machine: about 5-8 min on an H100
    python scripts/gpu_check.py --out FILE.json --skip bench
    python scripts/gpu_check.py --cpu-dry-run          # the same steps on the CPU, tiny model (tests)

The steps, each timed; a failure is recorded, the rest still runs, and the exit code is 1:

1. ``doctor``: ``girl doctor --json --profile gpu`` (versions, GPU, compute capability, precision).
2. ``native``: every stage of ``girl run`` (data, sft, reward, ppo, genrec, evaluate) under the
   gpu profile with the counts cut (:data:`SMALL`: fewer steps, seekers, users) and the per-step
   shapes kept (batch sizes, lengths, micro-batches, rollouts per iteration), so that a stage's
   peak CUDA memory (``torch.cuda.max_memory_allocated``, reset before each stage) is the full
   run's peak. From the stages' own timings: rates (seconds per step or iteration) and a
   projection of the full profile's training time on this GPU (warm-up included: an upper end).
3. ``t4``: sft, reward, ppo and genrec again (the data reused) in a child process that sees
   the GPU as a T4: compute capability 7.5, so the kit picks fp16 autocast with a gradient
   scaler and fp16 rollouts, under a cap of 15 GB (``torch.cuda.set_per_process_memory_fraction``).
   An out-of-memory error there means the gpu profile would not fit a 16 GB T4.
4. ``bench``: ``benchmarks/bench_generate.py --profile gpu --batch-sizes 64`` (plain vs fast path).

Everything lands in ONE JSON file (default ``runs/gpu-check/gpu_check.json``; its path is printed
last). Without CUDA the script says so in one line and exits 2. The estimates these figures are
compared with, and how to read them: docs/gpu.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STAGES = ("data", "sft", "reward", "ppo", "genrec", "evaluate")
# Under the T4 emulation: the stages whose precision changes on a T4 and whose memory could
# exceed it (training, PPO, beam search). evaluate only generates at batch 64 (~2 GiB, estimated).
T4_STAGES = ("sft", "reward", "ppo", "genrec")
PARTS = ("doctor", "native", "t4", "bench")
T4_CAPABILITY = (7, 5)
T4_CAP_BYTES = 15 * 10**9  # "fits 15 GB": a T4 shows ~15.8e9 bytes, of which the CUDA context takes some
# Counts cut, per-step shapes kept (the gpu profile's batch sizes, lengths and micro-batches).
SMALL = {
    "data.n_seekers": 2000, "data.n_jobs": 600,
    "sft.max_train_examples": 256, "sft.max_steps": 10, "sft.max_eval_examples": 64, "sft.oracle_eval_seekers": 64,
    "reward.max_train_pairs": 256, "reward.max_steps": 10, "reward.max_eval_pairs": 128,
    "ppo.iterations": 2, "ppo.save_every": 2, "ppo.eval_seekers": 64,
    "genrec.max_train_examples": 256, "genrec.max_steps": 10, "genrec.max_test_users": 32, "genrec.sasrec_epochs": 5,
    "eval.max_test_seekers": 64, "eval.judge_pairs": 32, "eval.matching_train_seekers": 128,
    "eval.matching_cold_seekers": 64, "eval.matching_seeds": 1,
}
# --cpu-dry-run: the same code path on the CPU with the tiny model, every count at smoke size.
CPU_DRY_RUN = {
    "device": "cpu", "model.base_model": "tiny:llama",
    "data.n_seekers": 120, "data.n_jobs": 60,
    "sft.max_steps": 2, "sft.batch_size": 4, "sft.max_eval_examples": 4, "sft.oracle_eval_seekers": 4,
    "reward.max_steps": 2, "reward.batch_size": 4, "reward.max_eval_pairs": 8,
    "generation.max_new_tokens": 12, "generation.batch_size": 8,
    "ppo.rollout_batch_size": 4, "ppo.minibatch_size": 2, "ppo.micro_batch_size": 2, "ppo.ppo_epochs": 1,
    "ppo.iterations": 2, "ppo.eval_seekers": 4,
    "genrec.max_steps": 2, "genrec.batch_size": 4, "genrec.max_test_users": 4, "genrec.num_beams": 3,
    "genrec.beam_batch_size": 4, "genrec.max_new_tokens": 8, "genrec.sasrec_epochs": 2,
    "eval.max_test_seekers": 6, "eval.judge_pairs": 6, "eval.embedder": "hashing", "eval.matching_train_seekers": 8,
    "eval.matching_cold_seekers": 6, "eval.matching_epochs": 10,
}


def gib(n: float) -> float:
    return round(n / 2**30, 3)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:400]


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=gib(props.total_memory),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    driver_cuda=torch.version.cuda, gpu_count=torch.cuda.device_count())
    return info


# --------------------------------------------------------------------------------------------
# The stages, one after another in this process: time and peak CUDA memory each
# --------------------------------------------------------------------------------------------
def run_stages(cfg, run_dir: Path, names) -> dict:
    """Run ``names`` in order into ``run_dir``; per stage: ok, seconds, peak memory, error.

    After a failure the later stages (which need its output) are marked skipped.
    """
    import torch

    from girl_lib.pipeline import run_stage

    cuda = torch.cuda.is_available() and cfg.device == "cuda"
    out, failed = {}, None
    for name in names:
        if failed:
            out[name] = {"ok": False, "skipped": f"stage '{failed}' failed"}
            continue
        gc.collect()
        rec: dict = {}
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            rec["allocated_before_gib"] = gib(torch.cuda.memory_allocated())
        print(f"[gpu-check] stage {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            manifest = run_stage(name, cfg, run_dir, force=True)
            rec.update(ok=True, result=manifest.get("result", {}))
        except Exception as exc:  # recorded, not raised: the check reports every failure
            oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
            rec.update(ok=False, error=first_line(exc), out_of_memory=isinstance(exc, oom))
            failed = name
        if cuda:
            torch.cuda.synchronize()
            rec.update(peak_allocated_gib=gib(torch.cuda.max_memory_allocated()),
                       peak_reserved_gib=gib(torch.cuda.max_memory_reserved()))
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"[gpu-check] stage {name}: {'ok' if rec['ok'] else rec['error']} in {rec['seconds']} s"
              + (f", peak {rec['peak_allocated_gib']} GiB" if cuda else ""), flush=True)
        out[name] = rec
    return out


def rates(run_dir: Path, stages: dict) -> dict:
    """Seconds per step (sft, reward, genrec) and per PPO iteration, from the stages' own records."""
    from girl_lib.stages.ppo.checkpoint import read_log

    out: dict = {}
    for name in ("sft", "reward"):
        r = stages.get(name, {}).get("result", {})
        if r.get("global_steps"):
            out[f"{name}_seconds_per_step"] = round(r["train_seconds"] / r["global_steps"], 3)
    if "train_tokens_per_second" in stages.get("sft", {}).get("result", {}):
        out["sft_tokens_per_second"] = stages["sft"]["result"]["train_tokens_per_second"]
    genrec = run_dir / "genrec" / "metrics.json"
    if stages.get("genrec", {}).get("ok") and genrec.is_file():
        g = json.loads(genrec.read_text())
        if g.get("global_steps"):
            out["genrec_seconds_per_step"] = round(g["train_seconds"] / g["global_steps"], 3)
        if g.get("n_test_users"):
            decode = g.get("decode_seconds", 0) + g.get("constrained_decode_seconds", 0)
            out["genrec_decode_seconds_per_user"] = round(decode / g["n_test_users"], 3)
    if stages.get("ppo", {}).get("ok"):
        rows = read_log(run_dir)
        if rows:  # the last iteration: the first pays one-off costs
            last = rows[-1]
            out["ppo_seconds_per_iteration"] = round(last["time/iteration_s"], 2)
            out["ppo_iteration_split_s"] = {k.split("/")[1]: round(v, 2) for k, v in last.items()
                                            if k.startswith("time/")}
            out["ppo_generation_tokens_per_s"] = last.get("generation_tokens_per_s")
    return out


def projection(full, r: dict) -> dict:
    """The full gpu profile's training time on this GPU from the measured rates (seconds)."""
    def steps(examples: int, batch: int, epochs: float, max_steps: int) -> int:
        return max_steps if max_steps > 0 else math.ceil(examples / batch) * math.ceil(epochs)

    s, rw, g, p = full.sft, full.reward, full.genrec, full.ppo
    out = {}
    if "sft_seconds_per_step" in r:
        out["sft_train"] = r["sft_seconds_per_step"] * steps(s.max_train_examples, s.batch_size * s.grad_accum,
                                                             s.num_epochs, s.max_steps)
    if "reward_seconds_per_step" in r:
        out["reward_train"] = r["reward_seconds_per_step"] * steps(rw.max_train_pairs, rw.batch_size,
                                                                   rw.num_epochs, rw.max_steps)
    if "ppo_seconds_per_iteration" in r:
        out["ppo_train"] = r["ppo_seconds_per_iteration"] * p.iterations
    if "genrec_seconds_per_step" in r:
        out["genrec_train"] = r["genrec_seconds_per_step"] * steps(g.max_train_examples, g.batch_size,
                                                                   g.num_epochs, g.max_steps)
    if "genrec_decode_seconds_per_user" in r:
        out["genrec_decode"] = r["genrec_decode_seconds_per_user"] * g.max_test_users
    out = {k: round(v) for k, v in out.items()}
    out["note"] = "training parts only, from few steps (warm-up included): an upper end; see docs/gpu.md"
    return out


def precision(cfg) -> dict:
    from girl_lib.models import precision_plan

    return precision_plan(cfg.device, cfg.model.dtype, cfg.generation.fast_dtype)


# --------------------------------------------------------------------------------------------
# The parts
# --------------------------------------------------------------------------------------------
def part_doctor(sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "girl_lib.cli", "doctor", "--json", "--profile", "gpu", *sets]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    out = {"ok": res.returncode == 0, "returncode": res.returncode}
    try:
        out["report"] = json.loads(res.stdout)
    except json.JSONDecodeError:
        out["stderr_tail"] = res.stderr[-2000:]
    if not out["ok"]:
        out["error"] = (res.stderr.strip().splitlines() or ["no output"])[-1]
    return out


def part_native(overrides: dict, run_dir: Path, names) -> dict:
    from girl_lib.config import resolve_profile

    cfg = resolve_profile("gpu", overrides)
    stages = run_stages(cfg, run_dir, names)
    r = rates(run_dir, stages)
    full = resolve_profile("gpu", {k: v for k, v in overrides.items() if k in ("device", "model.base_model")},
                           check_device=False)
    return {"ok": all(s["ok"] for s in stages.values()), "precision": precision(cfg), "stages": stages,
            "rates": r, "projection_full_profile_s": projection(full, r), "peaks_under_15gb": _fits(stages)}


def _fits(stages: dict) -> bool | None:
    peaks = [s["peak_reserved_gib"] for s in stages.values() if "peak_reserved_gib" in s]
    return (max(peaks) <= gib(T4_CAP_BYTES)) if peaks else None


def part_t4(overrides: dict, run_dir: Path, native_dir: Path, names) -> dict:
    """The stages again in a child process that sees a T4 (see :func:`child_t4`)."""
    result_file = run_dir.parent / "t4_result.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-t4", "--run-dir", str(run_dir),
           "--reuse-data", str(native_dir), "--overrides", json.dumps(overrides), "--out", str(result_file),
           "--stages", ",".join(names)]
    try:
        res = subprocess.run(cmd, cwd=ROOT, timeout=480)
        rc = res.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout after 480 s"
    if not result_file.is_file():
        return {"ok": False, "error": f"the T4 child wrote no result (exit {rc})"}
    out = json.loads(result_file.read_text())
    out["returncode"] = rc
    return out


def child_t4(args) -> int:
    """In a fresh process: make this GPU look like a T4 to the kit, cap its memory, run the stages."""
    import torch

    from girl_lib.config import resolve_profile
    from girl_lib.rundir import is_complete, link_stages

    cap = None
    if torch.cuda.is_available():
        # A real T4 reports compute capability 7.5, and bf16 as supported only through emulation.
        torch.cuda.get_device_capability = lambda device=None: T4_CAPABILITY
        torch.cuda.is_bf16_supported = lambda including_emulation=True: bool(including_emulation)
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, T4_CAP_BYTES / total), 0)
        cap = min(total, T4_CAP_BYTES)
    overrides = json.loads(args.overrides)
    cfg = resolve_profile("gpu", overrides)
    run_dir = Path(args.run_dir)
    names = [n for n in args.stages.split(",") if n in T4_STAGES]
    if args.reuse_data and is_complete(Path(args.reuse_data) / "data"):
        link_stages(Path(args.reuse_data), run_dir, ["data"])
    else:
        names.insert(0, "data")
    stages = run_stages(cfg, run_dir, names)
    out = {"ok": all(s["ok"] for s in stages.values()), "capability": ".".join(map(str, T4_CAPABILITY)),
           "memory_cap_gib": gib(cap) if cap else None, "precision": precision(cfg), "stages": stages,
           "rates": rates(run_dir, stages), "fits_15gb": _fits(stages) if cap else None}
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0 if out["ok"] else 1


def part_bench(sets: list[str], out_dir: Path, dry_run: bool) -> dict:
    json_out = out_dir / "bench_generate.json"
    json_out.unlink(missing_ok=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_generate.py"), "--profile", "gpu", "--batch-sizes", "64",
           "--modes", "plain,fast", "--json-out", str(json_out), *sets]
    if dry_run:
        cmd += ["--max-new-tokens", "8"]
    try:
        res = subprocess.run(cmd, cwd=ROOT, timeout=360, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timeout after 360 s"}
    out = {"ok": res.returncode == 0 and json_out.is_file(), "returncode": res.returncode}
    if json_out.is_file():
        out["result"] = json.loads(json_out.read_text())
    if not out["ok"]:
        out["error"] = (res.stderr.strip().splitlines() or ["no output"])[-1]
    return out


# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-check" / "gpu_check.json", help="the JSON file")
    p.add_argument("--skip", default="", help=f"comma list of parts to leave out: {', '.join(PARTS)}")
    p.add_argument("--stages", default=",".join(STAGES), help="comma list of stages to run, in order (default: all)")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="no GPU needed: the same steps on the CPU with the tiny model (to test this script)")
    p.add_argument("--child-t4", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--reuse-data", help=argparse.SUPPRESS)
    p.add_argument("--overrides", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_t4:
        return child_t4(args)
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(f"gpu-check: no CUDA GPU here (torch {torch.__version__}, CUDA build: {torch.version.cuda}); "
              "run it on a machine with an NVIDIA GPU and a CUDA build of torch", file=sys.stderr)
        return 2
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(PARTS):
        print(f"gpu-check: unknown part(s) {', '.join(sorted(skip - set(PARTS)))}; choose from {', '.join(PARTS)}",
              file=sys.stderr)
        return 2
    names = [n for n in args.stages.split(",") if n]
    if not names or set(names) - set(STAGES):
        print(f"gpu-check: --stages takes a comma list of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    overrides = {**SMALL, **(CPU_DRY_RUN if args.cpu_dry_run else {})}
    sets = [f"--set={k}={v}" for k, v in CPU_DRY_RUN.items() if k in ("device", "model.base_model")] \
        if args.cpu_dry_run else []
    out_dir = args.out.parent
    native_dir, t4_dir = out_dir / "native", out_dir / "t4"
    for d in (native_dir, t4_dir):
        shutil.rmtree(d, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    report: dict = {"check": "gpu-check", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "cpu_dry_run": args.cpu_dry_run, "machine": machine(), "profile": "gpu", "overrides": overrides,
                    "t4_memory_cap_bytes": T4_CAP_BYTES, "estimates": "docs/gpu.md"}
    parts = {"doctor": lambda: part_doctor(sets), "native": lambda: part_native(overrides, native_dir, names),
             "t4": lambda: part_t4(overrides, t4_dir, native_dir, names),
             "bench": lambda: part_bench(sets, out_dir, args.cpu_dry_run)}
    for name, run in parts.items():
        if name in skip:
            report[name] = {"ok": True, "skipped": "--skip"}
            continue
        print(f"[gpu-check] {name} ...", flush=True)
        t = time.time()
        try:
            report[name] = run()
        except Exception as exc:  # a broken part must not lose the others' figures
            report[name] = {"ok": False, "error": first_line(exc)}
        report[name]["part_seconds"] = round(time.time() - t, 1)
        args.out.write_text(json.dumps(report, indent=1, default=str))  # partial results survive a kill
    report["failures"] = [f"{name}: {report[name].get('error') or _stage_errors(report[name])}"
                          for name in PARTS if not report[name].get("ok")]
    report["ok"] = not report["failures"]
    report["seconds"] = round(time.time() - t0, 1)
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.write_text(json.dumps(report, indent=1, default=str))
    for failure in report["failures"]:
        print(f"[gpu-check] FAILED {failure}", file=sys.stderr)
    print(f"[gpu-check] {'ok' if report['ok'] else 'FAILED'} in {report['seconds']} s; report: {args.out.resolve()}")
    return 0 if report["ok"] else 1


def _stage_errors(part: dict) -> str:
    bad = [f"{k} ({v.get('error') or v.get('skipped')})" for k, v in part.get("stages", {}).items() if not v.get("ok")]
    return "; ".join(bad) or "failed"


if __name__ == "__main__":
    sys.exit(main())
