"""Wall time and peak memory of every stage of ``girl run``, each in its own subprocess.

    python benchmarks/bench_pipeline.py --profile cpu               # the whole cpu pipeline (~30 min)
    python benchmarks/bench_pipeline.py --profile smoke
    GIRL_EMULATE_CPU=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/bench_pipeline.py --profile cpu           # as on an AVX2-only laptop

``make bench`` runs it last: its table is the one to quote. Each row names the CPU kind the
stage ran as (``avx2 (emulated on avx512-bf16)`` under emulation) and the stage's wall time in
seconds and minutes; the last row is the total.

Runs ``python -m girl_lib.cli <stage> --profile P --run-dir DIR`` for each built stage in order
(in a fresh temporary run dir unless ``--run-dir`` is given) and records each child's wall time
and peak resident set size (``wait4``'s ``ru_maxrss``: the whole process, Python included).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common


def run_child(cmd: list[str], env: dict) -> tuple[int, float, float]:
    """``(exit code, wall seconds, peak RSS in MB)`` of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, help="default: a fresh temporary directory, removed afterwards")
    p.add_argument("--stages", help="comma list; default: every built stage")
    args = p.parse_args(argv)
    cfg = _common.load_profile(args)  # validates the profile and the overrides before any work

    from girl_lib.hardware import cpu_label
    from girl_lib.pipeline import STAGES

    cpu = cpu_label()

    stages = args.stages.split(",") if args.stages else [s.name for s in STAGES if s.in_run]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_common.ROOT), os.environ.get("PYTHONPATH", "")])}
    tmp = None if args.run_dir else tempfile.TemporaryDirectory(prefix="girl-bench-pipeline-")
    run_dir = args.run_dir or Path(tmp.name)
    rows, failed = [], None
    try:
        for stage in stages:
            cmd = [sys.executable, "-m", "girl_lib.cli", stage, "--profile", cfg.name, "--run-dir", str(run_dir)]
            for kv in args.set:
                cmd += ["--set", kv]
            code, wall, rss = run_child(cmd, env)
            rows.append({"cpu": cpu, "stage": stage, "exit_code": code, "seconds": round(wall, 1),
                         "minutes": round(wall / 60, 1), "peak_rss_mb": round(rss, 1)})
            print(rows[-1], file=sys.stderr, flush=True)
            if code != 0:
                failed = stage
                break
    finally:
        if tmp is not None:
            tmp.cleanup()
    total = round(sum(r["seconds"] for r in rows), 1)
    result = {"model": cfg.model.base_model, "cpu_label": cpu, "stages": rows, "failed_stage": failed,
              "total_seconds": total, "max_stage_peak_rss_mb": max((r["peak_rss_mb"] for r in rows), default=0.0)}
    total_row = {"cpu": cpu, "stage": "total", "exit_code": 1 if failed else 0, "seconds": total,
                 "minutes": round(total / 60, 1), "peak_rss_mb": result["max_stage_peak_rss_mb"]}
    print(f"profile {cfg.name} on {os.cpu_count()} cores, CPU {cpu}", file=sys.stderr)
    _common.emit("pipeline", args, result, rows + [total_row],
                 ["cpu", "stage", "exit_code", "seconds", "minutes", "peak_rss_mb"])
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
