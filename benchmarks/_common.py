"""Shared plumbing of the benchmark scripts: arguments, machine facts, peak memory, output.

Every script prints a short table for people and, as its LAST line, one JSON object for
machines (tests/test_benchmarks.py parses it); ``--json-out FILE`` also writes that object.
Figures are measured, never asserted: on a shared machine they move with the load, so every
result records the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_LOAD = os.getloadavg()[0]  # the load when the script started (others' jobs, mostly)
if str(ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` from a checkout
    sys.path.insert(0, str(ROOT))


# The generation paths the benchmarks compare: mode -> (generation.fast_dtype, generation.fast_decode).
# "plain" is Hugging Face generate on the model as loaded; "fast" the kit's default fast path;
# "int8" the fast path with int8 linears on the decode steps (girl_lib.int8; CPU only); "fp16w"
# the fast path with fp16-packed weights and fp32 arithmetic (girl_lib.int8; CPU only).
GEN_MODES = {"plain": ("off", False), "dtype": ("auto", False), "decode": ("off", True), "fast": ("auto", True),
             "int8": ("int8", True), "fp16w": ("fp16w", True)}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--profile", default="auto", help="smoke | cpu | gpu | auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="profile override (repeatable)")
    p.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    return p


def load_profile(args):
    from girl_lib.config import parse_override_args, resolve_profile

    return resolve_profile(args.profile, parse_override_args(args.set))


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    from girl_lib.hardware import cpu_features, cpu_has_native_bf16

    info = {**cpu_features(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_1m_start": round(START_LOAD, 2)}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_memory_mb() -> dict:
    """Peak resident memory of this process (and CUDA's max allocated, on a GPU), in MB."""
    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def table(rows: list[dict], columns: list[str]) -> str:
    """A small aligned text table of ``rows`` (dicts) in ``columns`` order."""
    cells = [[str(c) for c in columns]] + [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return "" if v is None else str(v)


def emit(name: str, args, result: dict, rows: list[dict], columns: list[str]) -> None:
    """Print the table, then the JSON line; write ``--json-out``."""
    result = {"benchmark": name, "profile": getattr(args, "profile", None), "machine": machine(),
              **result, **peak_memory_mb(), "load_avg_1m_end": round(os.getloadavg()[0], 2),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(table(rows, columns), flush=True)
    line = json.dumps(result, sort_keys=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    print(line, flush=True)


def sample_prompts(cfg, n: int) -> list[str]:
    """``n`` generator prompts (chat user messages) from a small world with the profile's seed."""
    from dataclasses import replace

    from girl_lib.world import make_prompt
    from girl_lib.world.generate import generate_world

    world = generate_world(replace(cfg.data, n_seekers=max(n, 40), n_jobs=max(40, n // 2)))
    seekers = (world.seekers * (n // len(world.seekers) + 1))[:n]
    return [make_prompt(s["cv_text"]) for s in seekers]
