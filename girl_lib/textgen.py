"""Batched text generation: the one function every stage calls to make a model write.

:func:`generate` wraps each prompt (a CV, a history) in the chat template and lets a causal LM
answer, in batches. It returns the answers as text *and* as token ids: PPO needs the exact ids it
sampled, to score their log-probabilities afterwards.

**Correct batching.** Prompts are *left*-padded, so every row's new tokens land in the same
column; the attention mask keeps pads out of attention and Hugging Face numbers positions from
the mask, so a prompt in a mixed batch writes what it writes alone (tests/test_generate.py checks
it). Prompts are sorted by length before batching (little compute spent on pads), and the KV
cache makes each new token one token's work.

**Sampling for RL.** PPO's ratios and KL assume the response came from the policy's own
distribution, so ``top_k=0`` and ``top_p=1.0`` are passed explicitly: plain temperature sampling,
which no ``generation_config`` default (transformers' ``top_k=50``) can truncate.

**The fast path** (:class:`~girl_lib.config.GenerationConfig`). A decode step pushes a few tokens
through every weight, so memory traffic and per-operation overhead dominate it. ``fast_dtype``:
bf16 weights while generating, only where the hardware computes bf16 natively (float16 on GPUs
without bf16, fp16-packed weights with float32 arithmetic on CPUs without bf16), the float32
weights put back bit for bit (:func:`weights_in`). ``fast_decode``:
one-token attention as two small matmuls (:func:`decode_attention`), a static KV cache on the
CPU (:data:`STATIC_CACHE`), LoRA merged into ``W`` while generating, and
:class:`InverseCdfSampler` (one random number per row, not per vocabulary entry).
``num_threads``: pin torch's threads (fewer helps on a busy machine). bf16 sampling is slightly
off-policy; PPO recomputes the log-probs in float32, and ``generation.fast_dtype=off`` makes the
rollouts exactly on-policy. ``fast_dtype=int8`` (CPU, on request: :mod:`girl_lib.int8`) runs the
linear layers as int8 ones instead, for CPUs without native bf16; more off-policy than bf16.
(measured: see docs/results.md)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from .config import GenerationConfig
from .errors import GirlError
from .fastpath import InverseCdfSampler, _model_device, decode_attention, resolve_fast_dtype, torch_threads, weights_in
from .seeding import set_seed

if TYPE_CHECKING:  # pragma: no cover
    import torch


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def chat_prompt_ids(tokenizer, prompts: Sequence[str], system_prompt: str | None = None) -> list[list[int]]:
    """Token ids of each prompt wrapped in the chat template, ending with the assistant header.

    Each prompt becomes ``[system (if given), user=prompt]`` and the template appends the
    opening of the assistant turn (``add_generation_prompt=True``), so the model's next token is
    the first token of its answer. No padding here: see :func:`left_pad`.

    SmolLM2's template inserts its own default system turn ("You are a helpful AI assistant
    named SmolLM ...") when the first message is not a system message; we keep that behaviour,
    so ``system_prompt=None`` means "the model's default", not "no system turn".
    """
    out: list[list[int]] = []
    for prompt in prompts:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
        messages.append({"role": "user", "content": prompt})
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # transformers >= 5 returns a BatchEncoding by default
            ids = ids["input_ids"]
        out.append([int(t) for t in ids])
    return out


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(input_ids, attention_mask)``, both ``[len(seqs), longest]`` long tensors, pads on the left.

    >>> ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    return _pad(seqs, pad_id, left=True)


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Like :func:`left_pad`, pads on the right: real tokens keep the positions they have alone
    (what a reward model that pools by position wants).

    >>> ids, mask = right_pad([[5, 6, 7], [8]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    return _pad(seqs, pad_id, left=False)


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool):
    import torch

    if pad_id is None:
        raise GirlError("the tokenizer has no pad token; fix: load it with girl_lib.models.load_tokenizer")
    width = max((len(s) for s in seqs), default=0)
    input_ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            cols = slice(width - len(seq), width) if left else slice(0, len(seq))
            input_ids[row, cols] = torch.as_tensor(list(seq), dtype=torch.long)
            attention_mask[row, cols] = 1
    return input_ids, attention_mask


@dataclass
class GenerationOutput:
    """The answers to a list of prompts, in the prompts' order.

    ``texts``         decoded answers (no prompt, no special tokens, surrounding whitespace stripped)
    ``response_ids``  the generated token ids up to and including EOS, nothing after it
    ``num_tokens``    ``len(response_ids[i])`` (EOS counts: the model spent a step producing it)
    ``finished``      whether the answer ended with EOS (``False``: cut at ``max_new_tokens``)
    ``seconds``       wall time of the whole call
    """
    texts: list[str] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)
    num_tokens: list[int] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens (all rows) per second of wall time."""
        return sum(self.num_tokens) / self.seconds if self.seconds > 0 else 0.0

    def __len__(self) -> int:
        return len(self.texts)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------
def generate(model, tokenizer, prompts: Sequence[str], *, system_prompt: str | None = None,
             max_new_tokens: int = 64, batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None, progress: bool = False,
             fast_dtype: str = "off", num_threads: int = 0, fast_decode: bool = False) -> GenerationOutput:
    """Answer every prompt with ``model`` (a plain causal LM or a PEFT-wrapped one), in batches.

    Prompts are chat-templated (:func:`chat_prompt_ids`), sorted by token length (longest first,
    so an out-of-memory error shows up in the first batch), cut into batches of ``batch_size``,
    left-padded, and generated with the KV cache until every row has produced EOS
    (``tokenizer.eos_token_id``) or ``max_new_tokens`` tokens. Rows that finish early are padded
    with ``tokenizer.pad_token_id`` by Hugging Face; those pads are dropped here.

    Greedy (``do_sample=False``, the default) takes the most likely token each step and ignores
    ``temperature``, ``top_k``, ``top_p`` and ``seed``. Sampling draws from
    ``softmax(logits / temperature)``, filtered by ``top_k`` (0 = off) and ``top_p`` (1.0 = off);
    leave both off for PPO rollouts (see the module docstring). ``seed`` reseeds every RNG once
    (``transformers.set_seed``) before the first batch, so the same call gives the same samples.
    Because batches are formed after sorting, a prompt's sample also depends on which other
    prompts share the call; reproducibility is per call, not per prompt.

    The model runs in eval mode (dropout off) under ``torch.inference_mode()``; its previous
    train/eval mode is restored afterwards, so a PPO loop can call this between updates.

    ``fast_dtype`` (``"off"`` = the model as it is, ``"auto"``, ``"bfloat16"``, ``"float16"``, ``"int8"``, ``"fp16w"``),
    ``num_threads`` and ``fast_decode`` (:func:`decode_attention` and, for pure temperature
    sampling, :class:`InverseCdfSampler`) select the fast path described in the module docstring;
    the weights and the attention setting are restored exactly afterwards.
    """
    prompts = list(prompts)
    t0 = time.perf_counter()
    if not prompts:
        return GenerationOutput(seconds=time.perf_counter() - t0)
    _check_arguments(tokenizer, batch_size, max_new_tokens, do_sample, temperature)

    ids = chat_prompt_ids(tokenizer, prompts, system_prompt)
    batches = length_sorted_batches(ids, batch_size)
    gen_kwargs = generation_kwargs(tokenizer, max_new_tokens, do_sample, temperature, top_k, top_p, fast_decode)
    if do_sample and seed is not None:
        set_seed(seed)

    device = _model_device(model)
    dtype = resolve_fast_dtype(fast_dtype, device)
    response_ids, finished = _generate_batches(model, tokenizer, ids, batches, gen_kwargs, device, dtype,
                                               num_threads=num_threads, fast_decode=fast_decode, progress=progress)
    texts = [t.strip() for t in tokenizer.batch_decode(response_ids, skip_special_tokens=True)]
    return GenerationOutput(
        texts=texts,
        response_ids=response_ids,
        num_tokens=[len(r) for r in response_ids],
        finished=finished,
        seconds=time.perf_counter() - t0,
    )


def _check_arguments(tokenizer, batch_size: int, max_new_tokens: int, do_sample: bool, temperature: float) -> None:
    if batch_size < 1:
        raise GirlError(f"generation batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise GirlError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if do_sample and not temperature > 0:
        raise GirlError(f"sampling needs temperature > 0, got {temperature}; use do_sample=False for greedy")
    if tokenizer.eos_token_id is None:
        raise GirlError("the tokenizer has no EOS token, so generation could never stop early")


def length_sorted_batches(ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices into ``ids``, longest first, cut into batches of ``batch_size``.

    Stable sort: similar lengths share a batch, so little compute goes to pads, and an
    out-of-memory error shows up in the first (longest) batch.
    """
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generation_kwargs(tokenizer, max_new_tokens: int, do_sample: bool, temperature: float, top_k: int,
                      top_p: float, fast_decode: bool) -> dict:
    """The keyword arguments of ``model.generate``, every sampling setting explicit."""
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, num_beams=1,
                  repetition_penalty=1.0)
    if do_sample and fast_decode and not top_k and top_p >= 1.0:
        # The sampler draws the token itself and hands argmax (greedy decoding) a one-hot row.
        from transformers import LogitsProcessorList

        kwargs.update(do_sample=False, logits_processor=LogitsProcessorList([InverseCdfSampler(temperature)]),
                      temperature=None, top_k=None, top_p=None)
    elif do_sample:
        # Explicit, so the model's generation_config and HF's global top_k=50 cannot sneak in.
        kwargs.update(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
    return kwargs


# The fast path's KV cache on the CPU: allocated once per batch (prompt + max_new_tokens long)
# and written in place. The default DynamicCache concatenates every layer's keys and values at
# every step, a fresh allocation of the whole cache per token: its decode steps grow from 147 to
# 185 ms over a JD at batch 64, against a flat 130-139 ms here. Sampled rollouts, 144 tokens:
# 1.16x the tokens/s at 16 rows, 1.09x at 64 (2-core Xeon, AMX, bf16; docs/results.md,
# evaluation). Not used on GPUs, where transformers would compile the model for it.
STATIC_CACHE = {"cache_implementation": "static"}


def _generate_batches(model, tokenizer, ids: list[list[int]], batches: list[list[int]], gen_kwargs: dict,
                      device, dtype, *, num_threads: int, fast_decode: bool,
                      progress: bool) -> tuple[list[list[int]], list[bool]]:
    """``(response_ids, finished)`` in prompt order: ``model.generate`` on each left-padded batch.

    The model runs in eval mode under ``torch.inference_mode()`` and inside the fast path's
    context managers (weights, attention, threads); all of them, and its train/eval mode, are
    restored afterwards.
    """
    import torch

    response_ids: list = [None] * len(ids)
    finished: list[bool] = [False] * len(ids)
    if fast_decode and device.type == "cpu":  # the same test decode_attention makes
        gen_kwargs = {**gen_kwargs, **STATIC_CACHE}
    was_training = model.training
    model.eval()
    try:
        iterator = batches
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc="generate", unit="batch")
        with weights_in(model, dtype, merge_lora=fast_decode), decode_attention(model, fast_decode), \
                torch_threads(num_threads), torch.inference_mode():
            for batch in iterator:
                input_ids, attention_mask = left_pad([ids[i] for i in batch], tokenizer.pad_token_id)
                out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                     **gen_kwargs)
                # generate returns prompt + new tokens; the prompt part is the padded input.
                for i, row in zip(batch, out[:, input_ids.shape[1]:].tolist()):
                    response_ids[i], finished[i] = cut_at_eos(row, tokenizer.eos_token_id)
    finally:
        model.train(was_training)
    return response_ids, finished


def cut_at_eos(row: list[int], eos_id: int) -> tuple[list[int], bool]:
    """``(tokens up to and including the first EOS, True)``; ``(row, False)`` without EOS.

    Rows that finish early are padded by Hugging Face; the pads after EOS are dropped. A row
    without EOS ran to ``max_new_tokens`` and every token in it is a real one.
    """
    if eos_id in row:
        return row[:row.index(eos_id) + 1], True
    return row, False


def generate_from_config(
    model,
    tokenizer,
    prompts: Sequence[str],
    gen_cfg: "GenerationConfig",
    *,
    do_sample: bool = False,
    system_prompt: str | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> GenerationOutput:
    """:func:`generate` with ``max_new_tokens``, ``batch_size``, ``temperature``, ``fast_dtype``,
    ``num_threads`` and ``fast_decode`` from a profile.

    Sampling here is pure temperature sampling (``top_k=0``, ``top_p=1.0``), as in PPO.
    """
    return generate(
        model, tokenizer, prompts,
        system_prompt=system_prompt,
        max_new_tokens=gen_cfg.max_new_tokens,
        batch_size=gen_cfg.batch_size,
        do_sample=do_sample,
        temperature=gen_cfg.temperature,
        top_k=0,
        top_p=1.0,
        seed=seed,
        progress=progress,
        fast_dtype=gen_cfg.fast_dtype,
        num_threads=gen_cfg.num_threads,
        fast_decode=gen_cfg.fast_decode,
    )
