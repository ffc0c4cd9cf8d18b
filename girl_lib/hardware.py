"""What this CPU computes fast: its vector features, named once for the doctor, the benchmarks,
the precision rule and every figure the README quotes.

Why it matters here: the kit's speed depends on the CPU kind far more than on its clock. A Zen 4
or a Sapphire Rapids computes bfloat16 natively (AVX512-BF16, AMX), so rollouts can run in bf16;
an AVX2-only laptop cannot, and falls back to fp32 (or int8 kernels). A figure without the CPU
kind beside it cannot be compared with anything.

Emulation: ``GIRL_EMULATE_CPU=avx2`` makes the kit treat the CPU as AVX2-only (no native bf16);
set ``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``
too (``emulation_env``) so that torch's, oneDNN's and FBGEMM's (the int8 kernels) own kernels are
restricted the same way. MKL (torch's fp32 GEMM) has no such switch that acts on an AMD CPU; it
runs its AVX2 code there already. Linux reads ``/proc/cpuinfo``; elsewhere the flags are unknown
and only torch's capability is reported.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache

from .errors import GirlError

# The flags that decide which kernels run fast (Linux /proc/cpuinfo spelling).
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
            "amx_int8")
# What an emulated CPU keeps: the flags of an AVX2-only laptop-class CPU (AVX-VNNI included:
# Alder Lake and later have it; it only matters to int8 kernels).
EMULATIONS = {"avx2": frozenset({"avx2", "fma", "avx_vnni"})}
ENV_EMULATE = "GIRL_EMULATE_CPU"
# The libraries' own switches that cap the instructions their kernels use (see emulation_env).
KERNEL_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def emulated() -> str | None:
    """The CPU kind being emulated (``GIRL_EMULATE_CPU``), or None. An unknown kind is refused."""
    kind = os.environ.get(ENV_EMULATE, "").strip().lower() or None
    if kind is not None and kind not in EMULATIONS:
        raise GirlError(f"{ENV_EMULATE}={kind!r}: expected one of {sorted(EMULATIONS)} (or unset it)")
    return kind


def cpu_flags() -> frozenset[str]:
    """The CPU's flags, restricted to an emulated kind's when ``GIRL_EMULATE_CPU`` is set."""
    flags = _cpuinfo()[1]
    kind = emulated()
    return flags & EMULATIONS[kind] if kind else flags


def cpu_kind(flags: frozenset[str] | set[str]) -> str:
    """A short name for the fastest path these flags allow: amx > avx512-bf16 > avx512 > avx2."""
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512-bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "baseline" if flags else "unknown"


def cpu_label() -> str:
    """The kind figures should be filed under: ``avx2``, or ``avx2 (emulated on avx512-bf16)``."""
    kind = cpu_kind(cpu_flags())
    return f"{kind} (emulated on {cpu_kind(_cpuinfo()[1])})" if emulated() else kind


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX); Linux only."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_features() -> dict:
    """The record every report carries: model name, kind, each feature flag, torch's kernels, and
    the kernel-dispatch variables in force (an emulated run's figures name their limits)."""
    import torch

    flags = cpu_flags()
    return {"cpu": _cpuinfo()[0], "cpu_kind": cpu_kind(flags), "emulated": emulated(),
            "features": {name: name in flags for name in FEATURES},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "kernel_limits": {k: os.environ[k] for k in KERNEL_LIMITS if k in os.environ}}


def emulation_env(kind: str = "avx2") -> dict[str, str]:
    """Environment variables that make a run behave as on ``kind``: the kit's own choices
    (no bf16) and torch's/oneDNN's/FBGEMM's kernel dispatch. Set them before Python starts.

    FBGEMM reads ``FBGEMM_ENABLE_INSTRUCTIONS`` once, at its first GEMM; a CPU without the
    named instructions keeps its own (an AVX2 laptop's FBGEMM runs AVX2 kernels anyway: it has
    no kernels for AVX-VNNI, only for AVX512-VNNI)."""
    if kind not in EMULATIONS:
        raise GirlError(f"unknown CPU kind {kind!r} to emulate: expected one of {sorted(EMULATIONS)}")
    return {ENV_EMULATE: kind, "ATEN_CPU_CAPABILITY": kind, "ONEDNN_MAX_CPU_ISA": kind.upper(),
            "FBGEMM_ENABLE_INSTRUCTIONS": kind.upper()}
