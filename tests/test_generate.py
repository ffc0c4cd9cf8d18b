"""girl_lib.textgen on the tiny random-weight smoke model (fast: seconds for the whole file).

The smoke model's weights are initialised so small (std 0.02, tied embeddings) that greedy
decoding just repeats the last prompt token ("\\n") whatever the prompt: a test that compares
outputs would then pass even with broken padding. ``lively`` is a copy with larger random
weights, whose greedy output depends on every prompt token and its position — and on the
attention mask: without it, the short prompts of a left-padded batch come out different.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch

from girl_lib.textgen import GenerationOutput, chat_prompt_ids, generate, generate_from_config, left_pad, right_pad
from conftest import fp_tol, head_scale

PROMPTS = [
    "nurse",
    "Senior data engineer, ten years of Spark, Airflow and SQL; led a team of six; "
    "built a streaming platform for payments; speaks French and English. " * 4,
    "Welder in Lyon, MIG and TIG certified.",
    "hi",
    "Junior accountant: bookkeeping, VAT returns, Excel, SAP basics, a bachelor in finance.",
]


def rescaled(tiny_model, scale: float):
    """(model, tokenizer): a copy of the smoke model with seeded random weights of std scale/sqrt(fan_in)."""
    model, tok = tiny_model
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:  # embeddings (tied with lm_head) and projections; norms stay at 1
                p.copy_(torch.randn(p.shape, generator=g) * scale / p.shape[1] ** 0.5)
    return model.eval(), tok


@pytest.fixture(scope="module")
def lively(tiny_model):
    """The smoke model with larger seeded random weights (see the docstring)."""
    return rescaled(tiny_model, 2.0)


@pytest.fixture(scope="module")
def alone(lively):
    """Greedy response ids of each prompt generated on its own (batch of one, no padding)."""
    model, tok = lively
    return [generate(model, tok, [p], max_new_tokens=8).response_ids[0] for p in PROMPTS]


@contextmanager
def eos_after(model, eos_id, stop_at):
    """Make EOS the model's choice for the ``stop_at(prompt_len)``-th generated token of a row.

    ``prompt_len`` is the row's real (unpadded) prompt length, so the rule does not depend on
    which batch the row lands in; ``stop_at`` returning ``None`` suppresses EOS for that row.
    A forward hook on the model edits the logits of the last position: +1e4 (or -1e4) on EOS.
    """
    state = {}

    def hook(module, args, kwargs, output):
        # position id of a row's last token + 1 = its real tokens so far (pads get no position)
        seen = kwargs["position_ids"][:, -1] + 1
        if kwargs["input_ids"].shape[1] > 1:  # prefill: the whole prompt at once
            state["prompt_len"] = seen
        nth = seen - state["prompt_len"] + 1  # these logits choose each row's nth new token
        for row, n in enumerate(state["prompt_len"].tolist()):
            stop = stop_at(n)
            if stop is None:
                output.logits[row, -1, eos_id] = -1e4
            elif nth[row] >= stop:
                output.logits[row, -1, eos_id] = 1e4
        return output

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------
def test_chat_prompt_ids_use_template_and_system_prompt(tiny_model):
    _, tok = tiny_model
    [own] = chat_prompt_ids(tok, ["Write a JD."], "You recruit.")
    [default] = chat_prompt_ids(tok, ["Write a JD."], None)
    own_text, default_text = tok.decode(own), tok.decode(default)
    assert own_text.startswith("<|im_start|>system\nYou recruit.<|im_end|>")
    assert "SmolLM" not in own_text
    assert "SmolLM" in default_text  # the template's own default system turn is kept
    for text in (own_text, default_text):
        assert text.endswith("<|im_start|>user\nWrite a JD.<|im_end|>\n<|im_start|>assistant\n")
    assert tok.pad_token_id not in own


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_right_pad():
    ids, mask = right_pad([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_mixed_length_batch_matches_each_prompt_alone(lively, alone):
    model, tok = lively
    lengths = [len(x) for x in chat_prompt_ids(tok, PROMPTS)]
    assert max(lengths) > 3 * min(lengths)  # genuinely mixed lengths -> lots of left padding
    out = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=len(PROMPTS))
    assert out.response_ids == alone
    assert len({tuple(r) for r in alone}) == len(PROMPTS)  # outputs depend on the prompt


def test_order_is_restored_after_sorting_by_length(lively, alone):
    model, tok = lively
    out = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=2)  # 3 batches, sorted
    assert out.response_ids == alone
    assert out.texts == [tok.decode(r, skip_special_tokens=True).strip() for r in alone]


def test_stops_at_eos_and_drops_the_padding_after_it(lively):
    model, tok = lively
    eos, pad = tok.eos_token_id, tok.pad_token_id
    assert eos != pad
    lengths = [len(x) for x in chat_prompt_ids(tok, PROMPTS)]
    rule = lambda n: None if n == lengths[1] else 2 + n % 5  # noqa: E731 - the long CV never stops
    with eos_after(model, eos, rule):
        out = generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=len(PROMPTS))
        alone = [generate(model, tok, [p], max_new_tokens=10) for p in PROMPTS]
    assert out.response_ids == [a.response_ids[0] for a in alone]
    for i, n in enumerate(lengths):
        ids = out.response_ids[i]
        assert out.num_tokens[i] == len(ids)
        assert eos not in ids[:-1] and pad not in ids
        assert "<|im_end|>" not in out.texts[i] and "<|endoftext|>" not in out.texts[i]
        if rule(n) is None:  # cut by max_new_tokens
            assert out.finished[i] is False and len(ids) == 10 and ids[-1] != eos
        else:  # EOS is the rule(n)-th token, counted, and the last one kept
            assert out.finished[i] is True and ids[-1] == eos and len(ids) == rule(n)
    assert len(set(out.num_tokens)) > 2  # rows finished at different steps inside one batch


def test_max_new_tokens_is_respected(lively):
    model, tok = lively
    with eos_after(model, tok.eos_token_id, lambda n: None):
        out = generate(model, tok, PROMPTS[:3], max_new_tokens=5, batch_size=2)
    assert out.num_tokens == [5, 5, 5] and out.finished == [False, False, False]
    assert out.tokens_per_second == pytest.approx(15 / out.seconds)


def test_sampling_reproducible_with_seed_and_greedy_ignores_it(lively, alone):
    model, tok = lively
    kw = dict(max_new_tokens=8, batch_size=2, do_sample=True, temperature=1.0)
    a = generate(model, tok, PROMPTS, seed=1, **kw)
    b = generate(model, tok, PROMPTS, seed=1, **kw)
    c = generate(model, tok, PROMPTS, seed=2, **kw)
    assert a.response_ids == b.response_ids
    assert a.response_ids != c.response_ids
    assert a.response_ids != alone  # sampling, not greedy
    for seed in (1, 2):  # greedy: the seed changes nothing (``alone`` used seed=None)
        assert generate(model, tok, PROMPTS, max_new_tokens=8, seed=seed).response_ids == alone


def test_sampling_settings_reach_hf_generate_explicitly(tiny_model, smoke_cfg, monkeypatch):
    model, tok = tiny_model
    seen = []
    real = model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    from dataclasses import replace

    from girl_lib.fastpath import InverseCdfSampler

    generate_from_config(model, tok, ["a", "b"], replace(smoke_cfg.generation, fast_decode=False), do_sample=True, seed=0)
    kw = seen[-1]
    assert kw["do_sample"] is True and kw["use_cache"] is True
    assert (kw["top_k"], kw["top_p"], kw["temperature"]) == (0, 1.0, smoke_cfg.generation.temperature)
    assert smoke_cfg.generation.fast_decode is True  # the default: the kit's sampler, HF's argmax
    generate_from_config(model, tok, ["a", "b"], smoke_cfg.generation, do_sample=True, seed=0)
    kw = seen[-1]
    assert kw["do_sample"] is False and (kw["top_k"], kw["top_p"], kw["temperature"]) == (None, None, None)
    (sampler,) = kw["logits_processor"]
    assert isinstance(sampler, InverseCdfSampler) and sampler.temperature == smoke_cfg.generation.temperature
    generate(model, tok, ["a"], do_sample=True, top_k=5, fast_decode=True, max_new_tokens=2)
    assert seen[-1]["do_sample"] is True and seen[-1]["top_k"] == 5  # truncated sampling: HF's own sampler
    assert kw["max_new_tokens"] == smoke_cfg.generation.max_new_tokens
    assert (kw["eos_token_id"], kw["pad_token_id"]) == (tok.eos_token_id, tok.pad_token_id)
    calls = len(seen)
    generate(model, tok, ["a"] * 5, batch_size=2, max_new_tokens=2)
    assert len(seen) == calls + 3 and seen[-1]["do_sample"] is False


def test_peft_lora_model_generates_like_its_base_when_fresh(lively):
    from peft import LoraConfig, get_peft_model

    base, tok = lively
    base = copy.deepcopy(base)  # get_peft_model edits the module in place
    expected = generate(base, tok, PROMPTS[:3], max_new_tokens=6, batch_size=2)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft_model.train()
    out = generate(peft_model, tok, PROMPTS[:3], max_new_tokens=6, batch_size=2)
    assert out.response_ids == expected.response_ids  # LoRA B starts at 0: same function
    assert peft_model.training  # the caller's train/eval mode is restored


def test_empty_prompt_list(tiny_model):
    model, tok = tiny_model
    out = generate(model, tok, [])
    assert isinstance(out, GenerationOutput) and len(out) == 0
    assert out.texts == out.response_ids == out.num_tokens == out.finished == []
    assert out.tokens_per_second == 0.0


# --------------------------------------------------------------------------------------------
# The fast path (fast_dtype / num_threads): same distribution, weights restored exactly
# --------------------------------------------------------------------------------------------
def _response_logits(model, tok, prompts, response_ids):
    """Logits (float32) that chose each response token: a list of ``[len(response), vocab]``."""
    prompt_ids = chat_prompt_ids(tok, prompts)
    ids, mask = left_pad([p + r for p, r in zip(prompt_ids, response_ids)], tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    width = ids.shape[1]
    return [logits[i, width - 1 - len(r):width - 1] for i, r in enumerate(response_ids)]


def _response_logprobs(model, tok, prompts, response_ids, temperature):
    logits = _response_logits(model, tok, prompts, response_ids)
    return [torch.log_softmax(lg / temperature, -1).gather(-1, torch.tensor(r)[:, None])[:, 0]
            for lg, r in zip(logits, response_ids)]


@pytest.fixture(scope="module")
def calm(tiny_model):
    """Like ``lively`` at half the weight scale: less chaotic logits, fewer near-ties between tokens."""
    return rescaled(tiny_model, 1.0)


def test_fast_path_greedy_output_equals_the_plain_path(calm):
    """Same greedy tokens as float32, up to the first step where rounding could flip the choice.

    bf16 moves each logit by up to ``err`` (measured here along the float32 answer). Where the
    float32 model's top-2 margin exceeds ``2 * err`` the argmax cannot change, so up to the first
    step with a smaller margin the two paths must agree token for token; after a near-tie the
    answers may part (random weights have many near-ties; a trained model far fewer).
    """
    from girl_lib.fastpath import weights_in

    model, tok = calm
    plain = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=2)
    fast = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=2, fast_dtype="bfloat16", num_threads=1)
    assert len({tuple(r) for r in plain.response_ids}) == len(PROMPTS)  # outputs depend on the prompt
    fp32 = _response_logits(model, tok, PROMPTS, plain.response_ids)
    with weights_in(model, torch.bfloat16):
        bf16 = _response_logits(model, tok, PROMPTS, plain.response_ids)
    compared = 0
    for a, b, p, f in zip(fp32, bf16, plain.response_ids, fast.response_ids):
        assert torch.equal(a.argmax(-1), torch.tensor(p))  # the forward pass agrees with generate
        err = float((a - b).abs().max())
        # bf16 really ran, and moved each logit by a few bf16 ulps of its terms (head_scale bounds
        # them), not by O(the logit) as a path that computed something else would
        assert 0 < err < fp_tol(torch.bfloat16, head_scale(model))
        top2 = a.topk(2, -1).values
        ties = ((top2[:, 0] - top2[:, 1]) < 2 * err).nonzero()
        safe = int(ties[0]) if len(ties) else len(p)
        assert f[:safe] == p[:safe]
        compared += safe
    assert compared >= 10  # enough decisive steps for the comparison to mean something


def test_fast_path_samples_what_the_fp32_policy_scores_within_tolerance(calm):
    """The bf16 sampler's log-probs of its own samples match the fp32 policy's (what PPO recomputes)."""
    from girl_lib.fastpath import weights_in

    model, tok = calm
    out = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=5, do_sample=True, temperature=1.0, seed=0,
                   fast_dtype="bfloat16")
    fp32 = _response_logprobs(model, tok, PROMPTS, out.response_ids, 1.0)
    with weights_in(model, torch.bfloat16):
        bf16 = _response_logprobs(model, tok, PROMPTS, out.response_ids, 1.0)
    gap = torch.cat([a - b for a, b in zip(fp32, bf16)]).abs()
    spread = torch.cat(fp32).std()
    assert spread > 0.5  # log-probs vary a lot between tokens...
    print(f"log-prob gap bf16 vs fp32: mean {gap.mean():.4f}, max {gap.max():.4f} nats")
    assert gap.max() < 0.1 and gap.mean() < 0.03  # ...the two precisions agree to a few hundredths of a nat


def test_fast_path_restores_weights_bit_for_bit_and_threads(lively):
    model, tok = lively
    before = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    threads = torch.get_num_threads()
    generate(model, tok, PROMPTS[:2], max_new_tokens=3, fast_dtype="bfloat16", num_threads=1)
    for n, p in model.named_parameters():
        original, copy_ = before[n]
        assert p is original and p.dtype == torch.float32 and torch.equal(p, copy_)
    assert torch.get_num_threads() == threads


def test_resolve_fast_dtype(monkeypatch):
    import girl_lib.models
    from girl_lib.errors import GirlError
    from girl_lib.fastpath import resolve_fast_dtype

    assert resolve_fast_dtype("off", "cpu") is None
    assert resolve_fast_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_fast_dtype("float16", "cpu") is torch.float16
    monkeypatch.setattr(girl_lib.fastpath, "cpu_has_native_bf16", lambda: True)
    assert resolve_fast_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(girl_lib.fastpath, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(girl_lib.fastpath, "fp16_weights_available", lambda: False)
    assert resolve_fast_dtype("auto", "cpu") is None  # emulated bf16 is slower than fp32; no FBGEMM here
    with pytest.raises(GirlError, match="generation.fast_dtype"):
        resolve_fast_dtype("int4", "cpu")
    assert resolve_fast_dtype("int8", "cpu") is torch.qint8  # never chosen by auto (tests/test_int8.py)


def test_generate_from_config_uses_the_fast_path_settings(tiny_model, smoke_cfg, monkeypatch):
    from dataclasses import replace

    model, tok = tiny_model
    seen = []
    real = model.generate

    def spy(*args, **kwargs):
        seen.append((next(model.parameters()).dtype, torch.get_num_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    assert smoke_cfg.generation.fast_dtype == "off"
    generate_from_config(model, tok, ["a"], smoke_cfg.generation)
    fast = replace(smoke_cfg.generation, fast_dtype="bfloat16", num_threads=1)
    generate_from_config(model, tok, ["a"], fast)
    assert seen == [(torch.float32, torch.get_num_threads()), (torch.bfloat16, 1)]
    assert next(model.parameters()).dtype == torch.float32


# --------------------------------------------------------------------------------------------
# fast_decode: one-token attention, merged LoRA, inverse-CDF sampling — the same function
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_decode_attention_equals_sdpa_on_a_one_token_step(mask_kind):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from girl_lib.fastpath import decode_attention_forward

    g = torch.Generator().manual_seed(0)
    b, heads, kv_heads, length, d = 3, 6, 2, 11, 8  # grouped-query: 3 query heads per key/value head
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = heads // kv_heads, True, False
    q, k, v = (torch.randn(b, n, t, d, generator=g) for n, t in ((heads, 1), (kv_heads, length), (kv_heads, length)))
    keep = torch.ones(b, 1, 1, length, dtype=torch.bool)
    keep[0, ..., :4] = False  # left padding of row 0
    keep[2, ..., :7] = False
    mask = {"bool": keep, "none": None,
            "float": torch.zeros(b, 1, 1, length).masked_fill(~keep, torch.finfo(torch.float32).min)}[mask_kind]
    ours, _ = decode_attention_forward(module, q, k, v, mask, scaling=d ** -0.5)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=d ** -0.5)
    assert ours.shape == ref.shape == (b, 1, heads, d)
    # Another kernel: each output is a softmax-weighted sum of the `length` value rows, a few ulps
    # of max|v| each. An unmasked padded key moves row 0 by ~1.7 (below), 10^4 times this.
    tol = fp_tol(torch.float32, v.abs().max(), n_terms=length)
    torch.testing.assert_close(ours, ref, rtol=0, atol=tol)
    if mask_kind == "bool":  # the mask really matters: padded keys changed, output unchanged
        k2 = k.clone()
        k2[0, :, :4] += 5.0
        # Exact: masked scores are set to -inf whatever the key, so the softmax sees the same floats.
        assert torch.equal(decode_attention_forward(module, q, k2, v, mask, scaling=d ** -0.5)[0], ours)
        unmasked = decode_attention_forward(module, q, k2, v, None, scaling=d ** -0.5)[0]
        assert (unmasked[0] - ours[0]).abs().max() > tol


def test_decode_attention_is_switched_on_inside_and_restored(lively, monkeypatch):
    import girl_lib.fastpath
    from girl_lib.fastpath import DECODE_ATTENTION, decode_attention

    model, _ = lively
    with monkeypatch.context() as m:  # a GPU model keeps SDPA (the slow kernel is the CPU one)
        m.setattr(girl_lib.fastpath, "_model_device", lambda _: torch.device("cuda"))
        with decode_attention(model):
            assert model.config._attn_implementation == "sdpa"
    assert model.config._attn_implementation == "sdpa"
    with decode_attention(model, enabled=False):
        assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError):
        with decode_attention(model):
            assert model.config._attn_implementation == DECODE_ATTENTION
            raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_fast_decode_greedy_output_equals_the_plain_path(lively, alone, monkeypatch):
    """fp32 weights: attention reordered, same tokens — mixed lengths, padding, several batches."""
    from transformers import AttentionInterface

    from girl_lib import fastpath, textgen

    fastpath._register_decode_attention()
    query_lengths, key_lengths = [], []

    def counting(module, query, key, *args, **kwargs):
        query_lengths.append(query.shape[2])
        if query.shape[2] == 1:
            key_lengths.append(key.shape[2])
        return fastpath.decode_attention_forward(module, query, key, *args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, fastpath.DECODE_ATTENTION, counting)
    model, tok = lively
    for batch_size in (len(PROMPTS), 2):
        out = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=batch_size, fast_decode=True)
        assert out.response_ids == alone
    n_layers = model.config.num_hidden_layers
    assert query_lengths.count(1) == n_layers * 7 * (1 + 3)  # 7 one-token steps per batch, 1 + 3 batches
    assert len(query_lengths) - query_lengths.count(1) == n_layers * (1 + 3)  # the prompt passes (SDPA inside)
    # The static cache: every decode step of the first batch attends over the same, preallocated
    # length (room for the longest prompt and every new token but the last, which is never
    # attended to), where a DynamicCache would grow by one a step.
    first_batch = key_lengths[:n_layers * 7]
    longest = max(len(ids) for ids in chat_prompt_ids(tok, PROMPTS))
    assert set(first_batch) == {longest + 8 - 1}


def _lora(model, seed=0):
    """A PEFT LoRA on every projection with random (non-zero) A and B: a real change of function."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return peft_model


def test_merged_lora_generates_what_the_adapter_computes_and_is_undone(lively):
    from girl_lib.fastpath import _mergeable_lora_layers, weights_in

    base, tok = lively
    peft_model = _lora(base)
    before = {n: (p, p.detach().clone()) for n, p in peft_model.named_parameters()}
    plain = generate(peft_model, tok, PROMPTS, max_new_tokens=8, batch_size=2)
    with peft_model.disable_adapter():
        base_out = generate(peft_model, tok, PROMPTS, max_new_tokens=8, batch_size=2)
    assert plain.response_ids != base_out.response_ids  # the adapter changes the answers
    layers = _mergeable_lora_layers(peft_model)
    assert len(layers) == 7 * 2  # 7 projections x 2 layers
    seen = []
    hook = layers[0].lora_A["default"].register_forward_hook(lambda *a: seen.append(1))
    fast = generate(peft_model, tok, PROMPTS, max_new_tokens=8, batch_size=2, fast_decode=True)
    assert seen == []  # merged: the adapter's own matmuls never ran...
    assert fast.response_ids == plain.response_ids  # ...and the answers are the adapter's
    generate(peft_model, tok, PROMPTS[:1], max_new_tokens=2)
    assert len(seen) > 0  # unmerged again after the call
    hook.remove()
    for n, p in peft_model.named_parameters():  # W and the adapter back bit for bit
        original, copy_ = before[n]
        assert p is original and torch.equal(p, copy_), n
    assert not any(layer.merged for layer in layers)
    with peft_model.disable_adapter(), weights_in(peft_model, None, merge_lora=True):
        assert not any(layer.merged for layer in layers)  # a disabled adapter is not merged
    with weights_in(peft_model, torch.bfloat16, merge_lora=True):
        assert all(layer.merged and layer.get_base_layer().weight.dtype == torch.bfloat16 for layer in layers)


def test_inverse_cdf_sampler_draws_the_softmax_distribution():
    from girl_lib.fastpath import InverseCdfSampler

    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, float("-inf"), 0.5, -3.0, 1.5])
    temperature, n = 0.7, 40000
    expected = torch.softmax(logits / temperature, -1)
    rows = InverseCdfSampler(temperature)(None, logits.repeat(n, 1))
    assert torch.isfinite(rows).sum(-1).eq(1).all()  # one-hot: exactly one token per row survives
    drawn = rows.argmax(-1)
    freq = torch.bincount(drawn, minlength=len(logits)).double() / n
    assert freq[4] == 0  # a -inf logit is never drawn
    sd = (expected * (1 - expected) / n).sqrt()
    z = ((freq - expected).abs() / sd.clamp_min(1e-12))[expected > 0]
    assert z.max() < 4.5, (freq, expected)  # every token within 4.5 standard errors
    torch.manual_seed(1)
    again = InverseCdfSampler(temperature)(None, logits.repeat(n, 1)).argmax(-1)
    assert not torch.equal(again, drawn)  # it is random...
    torch.manual_seed(0)
    assert torch.equal(InverseCdfSampler(temperature)(None, logits.repeat(n, 1)).argmax(-1), drawn)  # ...and seeded


def test_fast_decode_samples_the_plain_paths_first_token_distribution(lively):
    """End to end through generate(): the first sampled token of one prompt, 3000 times, on both paths."""
    model, tok = lively
    prompt, n, temperature = PROMPTS[2], 3000, 0.3
    ids = chat_prompt_ids(tok, [prompt])[0]
    with torch.no_grad():
        expected = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float() / temperature, -1).double()
    top = expected.topk(6).indices
    assert 0.5 < expected[top].sum() < 0.95 and (n * expected[top]).min() > 50  # spread, yet each cell well filled
    freqs = {}
    for fast in (False, True):
        out = generate(model, tok, [prompt] * n, max_new_tokens=1, batch_size=500, do_sample=True,
                       temperature=temperature, seed=3, fast_decode=fast)
        first = torch.tensor([r[0] for r in out.response_ids])
        freqs[fast] = torch.bincount(first, minlength=len(expected)).double() / n
    for fast, freq in freqs.items():
        observed = torch.cat([freq[top], 1 - freq[top].sum(0, keepdim=True)])
        p = torch.cat([expected[top], 1 - expected[top].sum(0, keepdim=True)])
        chi2 = float((n * (observed - p) ** 2 / p).sum())
        assert chi2 < 22.5, (fast, chi2)  # 6 degrees of freedom: p = 0.001
