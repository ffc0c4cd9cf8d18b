"""generation.fast_dtype=int8 (girl_lib.int8) on the tiny smoke model: the fp32 policy comes back
bit for bit, the int8 layers really run and write what fp32 writes most of the time, bad values
are refused, and PPO's log-probs stay fp32."""
from __future__ import annotations

import copy

import pytest
import torch

from girl_lib import int8
from girl_lib.errors import GirlError
from girl_lib.fastpath import resolve_fast_dtype, weights_in
from girl_lib.textgen import generate
from test_generate import PROMPTS, _lora, rescaled

pytestmark = pytest.mark.skipif(not int8.int8_available(), reason="no FBGEMM int8 kernels in this torch build")

JOBS = ["nurse", "welder", "accountant", "data engineer", "chef", "teacher", "plumber", "pilot"]
MORE_PROMPTS = PROMPTS + [f"{job}, {years} years, based in {city}." for job in JOBS
                          for years, city in ((2, "Lyon"), (10, "Berlin"))]


@pytest.fixture(scope="module")
def calm(tiny_model):
    """The smoke model with seeded random weights of std 1/sqrt(fan_in): answers depend on the prompt."""
    return rescaled(tiny_model, 1.0)


def _snapshot(model) -> dict:
    """Every parameter and buffer by name: (the tensor object, a copy of its values)."""
    return {n: (t, t.detach().clone()) for n, t in [*model.named_parameters(), *model.named_buffers()]}


def _assert_unchanged(model, before: dict, module_types: list) -> None:
    now = dict([*model.named_parameters(), *model.named_buffers()])
    assert set(now) == set(before)
    for name, (original, values) in before.items():
        t = now[name]
        assert t is original and t.dtype == values.dtype and torch.equal(t, values), name
    assert [(n, type(m)) for n, m in model.named_modules()] == module_types


def test_int8_generation_restores_the_fp32_lora_policy_bit_for_bit(calm):
    """W, the adapters, the norms and the buffers come back as they were, the same objects, also after
    an error inside the block; inside it the merged ``W`` (not the adapters) runs as int8."""
    base, tok = calm
    policy = _lora(base)
    before, types = _snapshot(policy), [(n, type(m)) for n, m in policy.named_modules()]
    n_linear = sum(type(m) is torch.nn.Linear and "lora_" not in n for n, m in policy.named_modules())
    for fast_decode in (True, False):
        generate(policy, tok, PROMPTS[:3], max_new_tokens=4, batch_size=2, fast_dtype="int8", fast_decode=fast_decode)
        _assert_unchanged(policy, before, types)
    with pytest.raises(RuntimeError, match="inside"), weights_in(policy, torch.qint8):
        swapped = [m for m in policy.modules() if isinstance(m, int8.DecodeStepInt8Linear)]
        assert len(swapped) == n_linear == 7 * 2 + 1  # 7 projections x 2 layers, and the lm_head
        assert policy.get_output_embeddings() in swapped
        lora_layers = [m for m in policy.modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]
        assert lora_layers and all(m.merged for m in lora_layers)  # merged first, as the bf16 path does
        assert all(type(a) is torch.nn.Linear for m in lora_layers for a in m.lora_A.values())  # adapters untouched
        raise RuntimeError("an error inside the block")
    _assert_unchanged(policy, before, types)


def test_int8_layers_run_where_the_two_decisions_say(calm, monkeypatch):
    """Default: int8 where a call holds one position per row (the decode steps, and the lm_head on
    the prompt's last position), fp32 on the prompt pass. INT8_PROMPT_PASS: every call int8."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    model, tok = calm
    body = 7 * model.config.num_hidden_layers
    calls = {"int8": 0, "fp32": 0}
    real_q, real_f = DynamicQuantizedLinear.forward, torch.nn.Linear.forward
    monkeypatch.setattr(DynamicQuantizedLinear, "forward",
                        lambda self, x: calls.__setitem__("int8", calls["int8"] + 1) or real_q(self, x))
    monkeypatch.setattr(torch.nn.Linear, "forward",
                        lambda self, x: calls.__setitem__("fp32", calls["fp32"] + 1) or real_f(self, x))
    generate(model, tok, PROMPTS[:2], max_new_tokens=3, batch_size=2, fast_dtype="int8")
    # prompt pass: the body fp32, the lm_head (last position only) int8; then 2 decode steps
    assert calls == {"fp32": body, "int8": 1 + 2 * (body + 1)}
    calls.update(int8=0, fp32=0)
    monkeypatch.setattr(int8, "INT8_PROMPT_PASS", True)
    generate(model, tok, PROMPTS[:2], max_new_tokens=3, batch_size=2, fast_dtype="int8")
    assert calls == {"fp32": 0, "int8": (body + 1) * 3}
    with int8.int8_linears(model, lm_head=False, prompt_pass=False):
        assert type(model.get_output_embeddings()) is torch.nn.Linear
        assert isinstance(model.model.layers[0].mlp.down_proj, int8.DecodeStepInt8Linear)
    with int8.int8_linears(model, prompt_pass=True):
        assert isinstance(model.get_output_embeddings(), DynamicQuantizedLinear)
        assert isinstance(model.model.layers[0].mlp.down_proj, DynamicQuantizedLinear)


def test_int8_greedy_answers_agree_with_fp32_at_the_measured_rate(calm):
    """The share of fp32's greedy tokens the int8 path reproduces before its answer first differs.

    Measured here (21 prompts, 8 tokens): 0.66 in batches of 4; 0.45-0.66 over batches of 1-21
    (one activation scale per call: the batch split matters), 0.42-0.55 with weights twice as large;
    bf16 0.70-0.77; int8 on the prompt pass too 0.33; weights fed in the wrong order 0.00. Bound 0.3:
    room for near-ties that another CPU's fp32 rounding may flip. Why so low: a random tiny model's
    next-token logits are nearly flat, so many steps have a top-2 margin below int8's rounding
    error, and one flipped token changes the rest of the answer. A trained model's distributions are
    peaked: most steps are decided by a wide margin (the cpu model's figures, whole 32-token answers:
    ``benchmarks/bench_generate.py --modes plain,int8``, docs/results.md).
    """
    model, tok = calm
    fp32 = generate(model, tok, MORE_PROMPTS, max_new_tokens=8, batch_size=4).response_ids
    q = generate(model, tok, MORE_PROMPTS, max_new_tokens=8, batch_size=4, fast_dtype="int8").response_ids
    assert len({tuple(r) for r in fp32}) >= len(MORE_PROMPTS) // 2  # answers depend on the prompt
    shares = []
    for a, b in zip(fp32, q):
        same = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        shares.append(same / len(a))
    share = sum(shares) / len(shares)
    print(f"int8 greedy prefix agreement with fp32: {share:.2f}")
    assert share >= 0.3


def test_int8_fast_dtype_is_validated_with_a_clear_error(smoke_cfg):
    from girl_lib.config import resolve_profile

    assert resolve_fast_dtype("int8", "cpu") is torch.qint8
    with pytest.raises(GirlError, match="generation.fast_dtype must be one of .*int8.*got 'int4'"):
        resolve_fast_dtype("int4", "cpu")
    with pytest.raises(GirlError, match="int8 runs on the CPU only"):
        resolve_fast_dtype("int8", "cuda")
    assert resolve_profile("smoke", {"generation.fast_dtype": "int8"}).generation.fast_dtype == "int8"
    with pytest.raises(GirlError, match="generation.fast_dtype.*int8"):
        resolve_profile("smoke", {"generation.fast_dtype": "qint8"})


def test_ppo_samples_int8_rollouts_and_recomputes_fp32_log_probs(tiny_model, smoke_cfg):
    """PPO's sampler with fast_dtype=int8, then its no-grad forward: the log-probs are the fp32
    policy's, bit for bit those of a copy that never generated."""
    from peft import get_peft_model

    from girl_lib.config import apply_overrides
    from girl_lib.stages import ppo
    from girl_lib.stages.ppo.rollout import sample_responses
    from girl_lib.textgen import chat_prompt_ids
    from girl_lib.training import peft_lora_config
    from girl_lib.world import SYSTEM_PROMPT, make_prompt

    base, tok = rescaled(tiny_model, 1.0)
    cfg = apply_overrides(smoke_cfg, {"generation.fast_dtype": "int8", "ppo.rollout_batch_size": 3})
    torch.manual_seed(0)
    model = ppo.PolicyWithValueHead(get_peft_model(base, peft_lora_config(cfg.ppo.lora)))
    untouched = copy.deepcopy(model)
    seekers, gen = sample_responses(model.policy, tok, [{"cv_text": p} for p in PROMPTS], cfg, seed=0)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    queries = chat_prompt_ids(tok, [make_prompt(s["cv_text"]) for s in seekers], SYSTEM_PROMPT)
    batch = ppo.build_batch(queries, gen.response_ids, tok.pad_token_id, tok.eos_token_id)
    got = ppo.rollout_forward(model, batch, cfg.ppo.temperature, batch_size=3)["logprobs"]
    want = ppo.rollout_forward(untouched, batch, cfg.ppo.temperature, batch_size=3)["logprobs"]
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert batch["response_mask"].sum() > 3  # real responses were scored


def _bench_generate():
    """benchmarks/bench_generate.py as a module (it imports its sibling _common)."""
    import importlib
    import sys
    from pathlib import Path

    folder = str(Path(__file__).resolve().parent.parent / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("bench_generate")


@pytest.mark.parametrize("mode", ["int8", "int8_nohead", "int8_all"])
def test_the_benchmarks_log_prob_gap_scores_the_function_that_sampled(calm, mode):
    """``bench_generate.sampler_logits`` recomputes what the int8 sampler chose from: each greedy
    token of ``mode``'s path is the argmax of its logits there (a gap measured with another variant's
    function would be no measure of that variant)."""
    bench = _bench_generate()
    model, tok = calm
    prompts = MORE_PROMPTS
    with bench.mode_variant(mode):
        greedy = generate(model, tok, prompts, max_new_tokens=8, batch_size=len(prompts), fast_dtype="int8",
                          fast_decode=True).response_ids
    logits = bench.sampler_logits(model, tok, prompts, greedy, None, "int8", mode)
    assert logits.shape[:2] == (len(prompts), max(len(r) for r in greedy))
    for row, r in zip(logits, greedy):
        assert row[:len(r)].argmax(-1).tolist() == r


# --------------------------------------------------------------------------------------------
# fp16-packed weights, fp32 arithmetic (generation.fast_dtype=fp16w, auto without native bf16)
# --------------------------------------------------------------------------------------------
def test_fp16w_generation_restores_the_fp32_lora_policy_bit_for_bit(calm):
    base, tok = calm
    policy = _lora(base)
    before, types = _snapshot(policy), [(n, type(m)) for n, m in policy.named_modules()]
    generate(policy, tok, PROMPTS[:3], max_new_tokens=4, batch_size=2, fast_dtype="fp16w", fast_decode=True)
    _assert_unchanged(policy, before, types)
    from girl_lib.fastpath import FP16_WEIGHTS

    with pytest.raises(RuntimeError, match="inside"), weights_in(policy, FP16_WEIGHTS):
        swapped = [m for m in policy.modules() if isinstance(m, int8.Fp16WeightLinear)]
        assert len(swapped) == 7 * 2 + 1 and policy.get_output_embeddings() in swapped
        raise RuntimeError("an error inside the block")
    _assert_unchanged(policy, before, types)


def test_fp16w_linear_is_the_fp32_linear_of_the_fp16_rounded_weight():
    """Only the weight is rounded (to fp16); activations and sums stay fp32. So the layer equals an
    fp32 linear on ``W.half().float()`` up to fp32 summation order, and differs from fp32 ``W`` by
    about fp16's rounding of the weights: a wrong packing (e.g. the weight transposed) fails both."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 40)
    x = torch.randn(3, 5, 96)
    y = int8.Fp16WeightLinear(lin)(x)
    with torch.no_grad():
        ref = torch.nn.functional.linear(x, lin.weight.half().float(), lin.bias)
        exact = lin(x)
    scale = exact.abs().max().item()
    assert y.shape == exact.shape and y.dtype == torch.float32
    assert (y - ref).abs().max() <= 96 * 8 * torch.finfo(torch.float32).eps * scale
    gap = (y - exact).abs().max().item()
    assert 0 < gap <= 96 * torch.finfo(torch.float16).eps * scale


def test_fp16w_greedy_answers_agree_with_fp32_more_often_than_int8(calm):
    """fp16 weights change the logits by ~1e-3 relative, int8 by ~1e-2: on the tiny model's nearly
    flat distributions fp16w reproduces fp32's greedy tokens at least as far as int8 does.
    Measured here: 1.00 (fp16w) vs 0.66 (int8), 21 prompts x 8 tokens in batches of 4."""
    model, tok = calm
    fp32 = generate(model, tok, MORE_PROMPTS, max_new_tokens=8, batch_size=4).response_ids
    shares = {}
    for mode in ("fp16w", "int8"):
        out = generate(model, tok, MORE_PROMPTS, max_new_tokens=8, batch_size=4, fast_dtype=mode).response_ids
        agree = [next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))) / len(a)
                 for a, b in zip(fp32, out)]
        shares[mode] = sum(agree) / len(agree)
    print(f"greedy prefix agreement with fp32: {shares}")
    assert shares["fp16w"] >= 0.8 and shares["fp16w"] >= shares["int8"]


def test_auto_uses_fp16w_on_a_cpu_without_native_bf16(monkeypatch):
    import girl_lib.fastpath as fastpath

    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: False)
    assert fastpath.resolve_fast_dtype("auto", "cpu") is fastpath.FP16_WEIGHTS
    monkeypatch.setattr(fastpath, "fp16_weights_available", lambda: False)
    assert fastpath.resolve_fast_dtype("auto", "cpu") is None  # no FBGEMM: fp32 as loaded
    with pytest.raises(GirlError, match="fp16w runs on the CPU only"):
        fastpath.resolve_fast_dtype("fp16w", "cuda")
