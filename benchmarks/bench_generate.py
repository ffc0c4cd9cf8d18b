"""Rollout generation speed: tokens/s at several batch sizes, plain path vs fast path.

    python benchmarks/bench_generate.py --profile cpu                 # batch 1/4/16/32, plain vs fast
    python benchmarks/bench_generate.py --profile cpu --batch-sizes 16 --threads 1,2 --max-new-tokens 64
    python benchmarks/bench_generate.py --profile cpu --batch-sizes 16 --threads 1 --modes plain,fast --ops

``plain`` is ``girl_lib.textgen.generate`` with ``fast_dtype=off`` and ``fast_decode=False``
(Hugging Face ``generate`` on the model as loaded); ``fast`` is the kit's fast path: the profile's
``generation.fast_dtype`` (``auto``: bf16 where native) and ``fast_decode`` (one-token attention,
inverse-CDF sampler). For the split, ``--modes plain,dtype,decode,fast`` adds each half alone.
``int8`` is ``fast_dtype=int8`` with ``fast_decode`` (int8 linear layers on the decode steps,
``girl_lib.int8``); ``int8_nohead`` keeps the lm_head fp32 and ``int8_all`` runs the prompt pass
int8 too: the two decisions ``girl_lib.int8`` made, measured. ``fp16w`` is ``fast_dtype=fp16w``
with ``fast_decode``: fp32 arithmetic on fp16-packed weights, what ``fast`` (``auto``) is on a CPU
without native bf16; ``decode`` is then the fp32 fast path it replaced. ``fast_dyncache`` and
``fp16w_dyncache`` are those modes with transformers' growing ``DynamicCache`` instead of the fast
path's static KV cache (``girl_lib.textgen.STATIC_CACHE``).
Sampling as in PPO (temperature, top_k=0, top_p=1). ``--check`` (default on) also compares each
path with fp32 (``check``: the fast path; ``checks``: every mode run but plain): the share of
prompts with identical greedy answers and the mean/max gap between the fp32 log-probs (what PPO
recomputes) and the path's own log-probs of the path's own samples, computed step by step as
generation computes them (an int8 layer's scale depends on which tokens share a call).
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import _common

# Benchmark-only variants of a mode: a module-level decision of girl_lib, flipped.
# int8_*: girl_lib.int8's; *_dyncache: transformers' growing DynamicCache instead of the fast
# path's static KV cache (girl_lib.textgen.STATIC_CACHE).
INT8_VARIANTS = {"int8_nohead": {"QUANTIZE_LM_HEAD": False}, "int8_all": {"INT8_PROMPT_PASS": True}}
DYNCACHE_VARIANTS = {"fast_dyncache": "fast", "fp16w_dyncache": "fp16w"}


def response_logprobs(model, tok, prompts, responses, temperature, system_prompt):
    """Per-token log-probs of ``responses`` after ``prompts`` by the model as it is (fp32: what PPO
    recomputes), one pass over each whole sequence, concatenated over rows."""
    import torch

    from girl_lib.textgen import chat_prompt_ids, left_pad

    rows = [p + r for p, r in zip(chat_prompt_ids(tok, prompts, system_prompt), responses)]
    ids, mask = left_pad(rows, tok.pad_token_id)
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), 8):
            lg = model(input_ids=ids[i:i + 8].to(device), attention_mask=mask[i:i + 8].to(device)).logits.float()
            lp = torch.log_softmax(lg[:, :-1] / temperature, -1).gather(-1, ids[i:i + 8, 1:, None].to(device))[..., 0]
            w = ids.shape[1]
            out += [lp[j, w - 1 - len(r):].cpu() for j, r in enumerate(responses[i:i + 8])]
    return torch.cat(out)


def sampler_logits(model, tok, prompts, responses, system_prompt, fast_dtype, mode=""):
    """``[rows, steps, vocab]`` fp32 logits from which the sampler of ``fast_dtype`` (and ``mode``'s
    int8 variant) chose ``responses``: one prompt pass, then one token per row per step (pads after
    a row's end, as ``generate`` feeds them), inside the fast path's contexts. Computed step by step
    because an int8 layer's activation scale depends on which tokens share the call."""
    import torch

    from girl_lib.fastpath import _model_device, decode_attention, resolve_fast_dtype, weights_in
    from girl_lib.textgen import chat_prompt_ids, left_pad, right_pad

    device = _model_device(model)
    ids, mask = left_pad(chat_prompt_ids(tok, prompts, system_prompt), tok.pad_token_id)
    cols = right_pad(responses, tok.pad_token_id)[0]
    steps = []
    # mode_variant first: int8_linears reads its decisions when the weights are swapped
    with mode_variant(mode), weights_in(model, resolve_fast_dtype(fast_dtype, device), merge_lora=True), \
            decode_attention(model), torch.inference_mode():
        pos = (mask.cumsum(-1) - 1).clamp_min(0)  # positions and logits_to_keep as generate sets them
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                    use_cache=True, logits_to_keep=1)
        for t in range(cols.shape[1]):
            steps.append(out.logits[:, -1].float().cpu())
            if t + 1 < cols.shape[1]:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                out = model(input_ids=cols[:, t:t + 1].to(device), attention_mask=mask.to(device),
                            position_ids=(mask.cumsum(-1)[:, -1:] - 1).to(device), cache=out.cache, use_cache=True)
    return torch.stack(steps, 1)


def sampler_logprobs(model, tok, prompts, responses, temperature, system_prompt, fast_dtype, mode=""):
    """Per-token log-probs of ``responses`` by their sampler (:func:`sampler_logits`), concatenated
    over rows like :func:`response_logprobs`."""
    import torch

    logits = sampler_logits(model, tok, prompts, responses, system_prompt, fast_dtype, mode)
    cols = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in responses], batch_first=True)
    lp = torch.log_softmax(logits / temperature, -1).gather(-1, cols[..., None])[..., 0]
    return torch.cat([lp[i, :len(r)] for i, r in enumerate(responses)])


@contextmanager
def mode_variant(mode: str):
    """The decisions :data:`INT8_VARIANTS` or :data:`DYNCACHE_VARIANTS` flip for ``mode``, inside the block."""
    from girl_lib import int8, textgen

    module, changes = (textgen, {"STATIC_CACHE": {}}) if mode in DYNCACHE_VARIANTS else (int8, INT8_VARIANTS.get(mode, {}))
    saved = {k: getattr(module, k) for k in changes}
    try:
        for k, v in changes.items():
            setattr(module, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def check_mode(model, tok, prompts, plain_greedy, mode: str, fast_dtype: str, temperature: float, seed: int,
               **kw) -> dict:
    """How far ``mode``'s path is from fp32 on ``prompts`` (one batch): greedy agreement, log-prob gap."""
    from girl_lib.fastpath import torch_threads
    from girl_lib.textgen import generate

    with mode_variant(mode):
        greedy = generate(model, tok, prompts, fast_dtype=fast_dtype, fast_decode=True, **kw).response_ids
        sampled = generate(model, tok, prompts, do_sample=True, temperature=temperature, seed=seed,
                           fast_dtype=fast_dtype, fast_decode=True, **kw).response_ids
    with torch_threads(kw["num_threads"]):
        lp32 = response_logprobs(model, tok, prompts, sampled, temperature, kw["system_prompt"])
        lpfast = sampler_logprobs(model, tok, prompts, sampled, temperature, kw["system_prompt"], fast_dtype, mode)
    gap = (lp32 - lpfast).abs()
    return {"batch_size": len(prompts), "fast_dtype": fast_dtype,
            "greedy_identical_share": sum(a == f for a, f in zip(plain_greedy, greedy)) / len(prompts),
            "logprob_gap_mean": round(float(gap.mean()), 5), "logprob_gap_max": round(float(gap.max()), 5),
            "approx_kl_per_token": round(float((lpfast - lp32).mean()), 5), "tokens": int(gap.numel())}


def decode_step_ops(model, tok, prompts, steps: int = 16, top: int = 8, **kw) -> dict:
    """Where a decode step's CPU time goes: ``torch.profiler`` on a 1-token call and a
    ``1 + steps``-token call of the same batch; the difference per step, by op (self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    from girl_lib.textgen import generate

    runs = {}
    for new in (1, 1 + steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = generate(model, tok, prompts, max_new_tokens=new, **kw)
        runs[new] = ({e.key: e.self_cpu_time_total for e in prof.key_averages()}, out)
    (short, first), (long, out) = runs[1], runs[1 + steps]
    done = max(out.num_tokens) - 1  # decode steps the longer call really ran (all rows may stop early)
    # us -> ms per step; an op cannot take negative time: a negative difference is timing noise
    # (a busy machine), clipped so the split still adds up to the profiled step.
    per_step = {k: max(0.0, (v - short.get(k, 0.0)) / max(done, 1) / 1000) for k, v in long.items()}
    ranked = sorted(per_step.items(), key=lambda kv: -kv[1])
    return {"prefill_s": round(first.seconds, 3), "decode_steps": done,
            "decode_step_ms": round((out.seconds - first.seconds) / max(done, 1) * 1000, 1),
            "profiled_step_ms": round(sum(per_step.values()), 1),
            "top": [{"op": k, "ms": round(v, 2)} for k, v in ranked[:top]]}


def parse_args(argv):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", help="comma list; default 1,4 (smoke) or 1,4,16,32")
    p.add_argument("--modes", default="plain,fast",
                   help="comma list of plain, dtype, decode, fast, int8 (and int8_nohead, int8_all), fp16w "
                        "(and fast_dyncache, fp16w_dyncache)")
    p.add_argument("--threads", default="0", help="comma list of torch thread counts while generating; 0 = default")
    p.add_argument("--max-new-tokens", type=int, help="default: the profile's generation.max_new_tokens")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--ops", action="store_true", help="also profile a decode step per mode (CPU: where the time goes)")
    return p, p.parse_args(argv)


def time_modes(model, tok, prompts, sizes, args, modes, cfg, new: int, fast_resolved: str) -> list[dict]:
    """One sampled ``generate`` call per batch size, mode and thread count: a row of figures each."""
    import torch

    from girl_lib.textgen import generate
    from girl_lib.world import SYSTEM_PROMPT

    rows = []
    for b in sizes:
        for mode in args.modes.split(","):
            for threads in [int(t) for t in args.threads.split(",")]:
                t, c = time.perf_counter(), time.process_time()
                with mode_variant(mode):
                    out = generate(model, tok, prompts[:b], system_prompt=SYSTEM_PROMPT, max_new_tokens=new,
                                   batch_size=b, do_sample=True, temperature=cfg.generation.temperature,
                                   seed=cfg.seed, fast_dtype=modes[mode][0], fast_decode=modes[mode][1],
                                   num_threads=threads)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                n = sum(out.num_tokens)
                rows.append({"batch_size": b, "mode": mode, "threads": threads or torch.get_num_threads(),
                             "dtype": {"off": "model", "int8": "int8"}.get(modes[mode][0], fast_resolved),
                             "fast_decode": modes[mode][1], "new_tokens": n,
                             "seconds": round(wall, 4), "tokens_per_s": round(n / wall, 1),
                             "tokens_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None})
                print(rows[-1], flush=True)
    return rows


def speedups(rows: list[dict]) -> dict:
    """``speedup_fast_over_plain`` and ``speedup_over_plain`` (every mode) per batch size and threads."""
    speed = {}
    for r in rows:
        speed.setdefault((r["batch_size"], r["threads"]), {})[r["mode"]] = r["tokens_per_s"]
    return {"speedup_fast_over_plain": {f"b{b}_t{t}": round(v["fast"] / v["plain"], 2)
                                        for (b, t), v in speed.items() if v.get("plain") and v.get("fast")},
            "speedup_over_plain": {f"{m}_b{b}_t{t}": round(v[m] / v["plain"], 2) for (b, t), v in speed.items()
                                   for m in v if m != "plain" and v.get("plain")}}


def main(argv=None):
    p, args = parse_args(argv)
    cfg = _common.load_profile(args)

    from girl_lib.fastpath import resolve_fast_dtype, torch_threads
    from girl_lib.models import load_causal_lm
    from girl_lib.textgen import generate
    from girl_lib.world import SYSTEM_PROMPT

    g = cfg.generation
    sizes = [int(x) for x in (args.batch_sizes or ("1,4" if cfg.name == "smoke" else "1,4,16,32")).split(",")]
    new = args.max_new_tokens or g.max_new_tokens
    t0 = time.perf_counter()
    model, tok = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    load_s = time.perf_counter() - t0
    prompts = _common.sample_prompts(cfg, max(sizes))
    fast = g.fast_dtype if g.fast_dtype != "off" else "auto"
    modes = {m: (fast if d == "auto" else d, fd) for m, (d, fd) in _common.GEN_MODES.items()}
    modes.update({m: modes["int8"] for m in INT8_VARIANTS})
    modes.update({m: modes[base] for m, base in DYNCACHE_VARIANTS.items()})
    for mode in args.modes.split(","):
        if mode not in modes:
            p.error(f"--modes: unknown mode '{mode}'; choose from {', '.join(modes)}")
    fast_resolved = str(resolve_fast_dtype(fast, cfg.device)).replace("torch.", "")
    generate(model, tok, prompts[:1], max_new_tokens=2)  # warm-up: first-call overheads out of the figures

    rows = time_modes(model, tok, prompts, sizes, args, modes, cfg, new, fast_resolved)
    result = {"model": cfg.model.base_model, "device": cfg.device, "max_new_tokens": new, "model_load_s": round(load_s, 2),
              "fast_dtype": fast_resolved, "results": rows, **speedups(rows)}
    if args.ops and cfg.device == "cpu":
        b, threads = min(16, max(sizes)), int(args.threads.split(",")[0])
        result["decode_ops"] = {}
        for mode in args.modes.split(","):
            with torch_threads(threads), mode_variant(mode):
                ops = decode_step_ops(model, tok, prompts[:b], system_prompt=SYSTEM_PROMPT, batch_size=b, do_sample=True,
                                      temperature=g.temperature, seed=cfg.seed, fast_dtype=modes[mode][0],
                                      fast_decode=modes[mode][1])
            result["decode_ops"][mode] = ops
            print(f"{mode}: prompt pass {ops['prefill_s']} s, decode step {ops['decode_step_ms']} ms; "
                  + ", ".join(f"{o['op'].removeprefix('aten::')} {o['ms']}" for o in ops["top"]), flush=True)
    if args.check:
        b = min(16, max(sizes))
        kw = dict(system_prompt=SYSTEM_PROMPT, max_new_tokens=min(new, 32), batch_size=b,
                  num_threads=int(args.threads.split(",")[0]))
        plain_g = generate(model, tok, prompts[:b], **kw).response_ids
        checked = ["fast"] + [m for m in args.modes.split(",") if m not in ("plain", "fast")]
        result["checks"] = {m: check_mode(model, tok, prompts[:b], plain_g, m, modes[m][0], g.temperature, cfg.seed,
                                          **kw) for m in checked}
        result["check"] = result["checks"]["fast"]
    _common.emit("generate", args, result, rows,
                 ["batch_size", "mode", "threads", "dtype", "fast_decode", "new_tokens", "seconds", "tokens_per_s",
                  "tokens_per_cpu_s"])


if __name__ == "__main__":
    main()
