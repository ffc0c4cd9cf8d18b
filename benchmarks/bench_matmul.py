"""The model's matrix products alone: GFLOP/s of each projection in fp32 and bf16.

    python benchmarks/bench_matmul.py --profile cpu --rows 16,512 --threads 1

The ceiling of the fast path: a decode step is mostly these products with ``--rows`` = the
rollout batch (reading the weights), the prompt pass the same with rows = batch × prompt length
(compute). How much faster bf16 runs than fp32 here bounds what ``generation.fast_dtype`` can
gain on this machine (AMX CPUs and GPUs: much more than AVX512-BF16 alone).
"""
from __future__ import annotations

import time

import _common


def rate(fn, flops: float, min_seconds: float = 0.2) -> tuple[float, float]:
    """``(microseconds per call, GFLOP/s)`` of ``fn`` after a warm-up, over at least ``min_seconds``."""
    for _ in range(3):
        fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    sec = (time.perf_counter() - t0) / n
    return round(sec * 1e6, 1), round(flops / sec / 1e9, 1)


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", default="16", help="comma list of input rows (tokens per product)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    args = p.parse_args(argv)
    cfg = _common.load_profile(args)

    import torch
    import torch.nn.functional as F

    from girl_lib.fastpath import torch_threads
    from girl_lib.models import load_causal_lm

    model, _ = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    shapes = {"q/o": (c.hidden_size, c.hidden_size), "k/v": (c.hidden_size, c.num_key_value_heads * head_dim),
              "gate/up": (c.hidden_size, c.intermediate_size), "down": (c.intermediate_size, c.hidden_size),
              "lm_head": (c.hidden_size, c.vocab_size)}
    del model
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch_threads(args.threads), torch.inference_mode():
        for m in [int(x) for x in args.rows.split(",")]:
            for name, (k, n) in shapes.items():
                w32, x32 = torch.randn(n, k, generator=gen) * 0.02, torch.randn(m, k, generator=gen)
                row = {"rows": m, "product": name, "shape": f"{k}x{n}"}
                for label, (x, w) in {"fp32": (x32, w32), "bf16": (x32.bfloat16(), w32.bfloat16())}.items():
                    row[f"{label}_us"], row[f"{label}_gflops"] = rate(lambda: F.linear(x, w), 2 * m * k * n)
                row["bf16_speedup"] = round(row["bf16_gflops"] / row["fp32_gflops"], 2)
                rows.append(row)
    result = {"model": cfg.model.base_model, "threads": torch.get_num_threads() if not args.threads else args.threads,
              "results": rows}
    _common.emit("matmul", args, result, rows,
                 ["rows", "product", "shape", "fp32_us", "fp32_gflops", "bf16_us", "bf16_gflops", "bf16_speedup"])


if __name__ == "__main__":
    main()
