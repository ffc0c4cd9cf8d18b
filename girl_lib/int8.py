"""FBGEMM linears for rollouts on CPUs without native bf16: int8 (``generation.fast_dtype=int8``)
and fp16 weights (``generation.fast_dtype=fp16w``, what ``auto`` picks there; :func:`fp16_weight_linears`
at the end of this module).

Why: an AVX2-only laptop CPU has no bf16 arithmetic (emulated bf16 is slower than fp32), so its
fast path otherwise stays in fp32. What it does have are integer kernels: FBGEMM multiplies
uint8 activations by int8 weights into int32 with AVX2 (``vpmaddubsw``; AVX512-VNNI where
present). A decode step reads every weight to produce a few tokens, so weights a quarter of
fp32's size also cut the memory traffic that dominates it. (measured: see docs/results.md)

How: inside :func:`int8_linears` each ``torch.nn.Linear`` of the model runs as a *dynamically
quantised* linear (torch's ``DynamicQuantizedLinear``, the module ``quantize_dynamic`` builds):

* weights int8, symmetric, one scale per output row (``max|w_row| / 127``): a row with a large
  weight does not coarsen the others, as a single scale for the whole matrix would;
* activations quantised on every call to uint8 with one scale for the whole call, on 7 bits
  (``reduce_range``, fixed by torch's module): the AVX2 kernel adds pairs of uint8·int8
  products in int16, which can saturate with 8-bit activations (FBGEMM forced to AVX2 with
  ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` shows it; the 7-bit range cannot saturate);
* everything between the linears (norms, attention, softmax) and their outputs stay fp32.

**Far off-policy: measured, never chosen by ``auto``.** One activation scale per call is coarse
where a call's inputs hold outliers, and SmolLM2's do: a few channels carry values 20-100x their
typical size (thousands, on the first tokens of a prompt), which leave everything else a handful
of the 127 levels. On the cpu model the int8 sampler's log-probs of its own samples differ from
fp32's by ~0.4 nats per token (bf16: 0.03), and its greedy answers differ from fp32's almost
always. PPO recomputes every log-prob in fp32, so its maths stays right; the rollouts come from a
noticeably different policy. (measured: see docs/results.md)

Two decisions, both measured (``benchmarks/bench_generate.py --modes plain,fast,int8,int8_nohead,
int8_all``). :data:`INT8_PROMPT_PASS`: the prompt pass (many positions per row, the outlier
tokens among them) stays fp32 and only the one-token decode steps run int8
(:class:`DecodeStepInt8Linear`): int8 everywhere triples the gap (~1.0-1.35 nats per token) for
a little more speed. :data:`QUANTIZE_LM_HEAD`: the output projection runs int8 too.

The fp32 modules are only set aside, never written to, and put back after the block, so the
weights (and an optimizer holding them) come back bit for bit.

torch marks ``torch.ao.quantization`` deprecated in favour of torchao (not a dependency here);
torch 2.13 still ships and runs these modules, and the deprecation warnings are silenced where
they are built.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from .errors import GirlError

ENGINE = "fbgemm"  # FBGEMM: x86 int8 kernels, AVX2 or AVX512(-VNNI)
# Whether the output projection (the tied lm_head, 49k vocabulary x hidden) is quantised too.
# It is the largest matrix a decode step reads (a fifth of SmolLM2-135M's weights; int8 runs it
# ~5x faster than fp32 at 16 rows), so its gain grows with the response length, against
# ~0.4-0.8 s per generate call to quantise it: from a wash (64 tokens, AVX2) to 1.13-1.19x
# (natively), without moving the log-prob gap measurably (measured: see docs/results.md).
QUANTIZE_LM_HEAD = True
# Whether the prompt pass (several positions per row) runs int8 too, or only the decode steps:
# int8 there triples the log-prob gap for a little more speed (see the module docstring).
INT8_PROMPT_PASS = False


def int8_available() -> bool:
    """Whether this torch build has FBGEMM's int8 kernels (x86 builds do; ARM builds do not)."""
    return ENGINE in torch.backends.quantized.supported_engines


@contextmanager
def int8_linears(model, lm_head: bool | None = None, prompt_pass: bool | None = None):
    """Inside the block every plain ``nn.Linear`` of ``model`` runs int8 (:func:`quantized_linear`).

    ``lm_head`` (default :data:`QUANTIZE_LM_HEAD`): the output projection
    (``model.get_output_embeddings()``) too. ``prompt_pass`` (default :data:`INT8_PROMPT_PASS`):
    calls with several positions per row too, not only the one-token decode steps
    (:class:`DecodeStepInt8Linear`). A PEFT LoRA's adapters (``lora_A``/``lora_B``) are left
    alone: merge them into ``W`` first (:func:`girl_lib.fastpath.weights_in` does), so the int8
    matrix is the policy's whole ``W + (α/r)·B·A``. The original modules are set back on exit,
    even on error.
    """
    if not int8_available():
        raise GirlError(f"generation.fast_dtype=int8 needs torch's {ENGINE} int8 kernels (an x86 CPU build); "
                        "fix: use generation.fast_dtype=auto")
    lm_head = QUANTIZE_LM_HEAD if lm_head is None else lm_head
    prompt_pass = INT8_PROMPT_PASS if prompt_pass is None else prompt_pass

    def swap(linear):
        q = quantized_linear(linear)
        return q if prompt_pass else DecodeStepInt8Linear(linear, q)

    with swapped_linears(model, lm_head, swap):
        yield model


@contextmanager
def swapped_linears(model, lm_head: bool, make):
    """Inside the block every plain ``nn.Linear`` of ``model`` (:func:`_quantisable_linears`) is
    replaced by ``make(linear)``; the original modules are set back on exit, even on error."""
    swapped = []
    try:
        for parent, name, linear in _quantisable_linears(model, lm_head):
            setattr(parent, name, make(linear))
            swapped.append((parent, name, linear))
        yield model
    finally:
        for parent, name, linear in reversed(swapped):
            setattr(parent, name, linear)


class DecodeStepInt8Linear(torch.nn.Module):
    """A linear layer that runs ``int8`` on a decode step (one position per row: an input
    ``[batch, 1, features]``) and the original ``fp32`` layer on anything else (the prompt pass).
    """
    def __init__(self, fp32: torch.nn.Linear, int8: torch.nn.Module):
        super().__init__()
        self.fp32, self.int8 = fp32, int8

    def forward(self, x):
        return self.int8(x) if x.dim() >= 3 and x.shape[-2] == 1 else self.fp32(x)


def quantized_linear(linear: torch.nn.Linear) -> torch.nn.Module:
    """A ``DynamicQuantizedLinear`` computing ``linear`` with int8 weights, one scale per output row.

    The weight is read (as float32), never written: ``linear`` itself stays as it was.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    with warnings.catch_warnings(), quantized_engine(ENGINE), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao -> torchao (see the module docstring)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
        warnings.filterwarnings("ignore", message=".*torch.quantize_per_channel.*")
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny).double()
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        qweight = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
        bias = linear.bias.detach().float() if linear.bias is not None else None
        q = DynamicQuantizedLinear(linear.in_features, linear.out_features, bias_=bias is not None,
                                   dtype=torch.qint8)
        q.set_weight_bias(qweight, bias)  # packs the weight for the engine's kernels
    return q


@contextmanager
def quantized_engine(name: str):
    """``torch.backends.quantized.engine = name`` inside the block (the prepacked weight's kernels)."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def _quantisable_linears(model, lm_head: bool) -> list:
    """``(parent, attribute, module)`` of every ``nn.Linear`` (exact type) to swap, each module once.

    Skipped: a PEFT LoRA's adapter matrices, and the output projection unless ``lm_head``.
    """
    skip = {id(m) for m in _lora_adapter_modules(model)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not lm_head:
        skip.add(id(head))
    found, seen = [], set()
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is torch.nn.Linear and id(child) not in skip and id(child) not in seen:
                seen.add(id(child))
                found.append((parent, name, child))
    return found


def _lora_adapter_modules(model) -> list:
    """The modules inside PEFT LoRA layers' adapter dicts (``lora_A``, ``lora_B``); none without PEFT."""
    try:
        from peft.tuners.lora.layer import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [m for layer in model.modules() if isinstance(layer, LoraLayer)
            for adapters in (layer.lora_A, layer.lora_B) for m in adapters.modules()]


# --------------------------------------------------------------------------------------------
# FP16 weights, fp32 arithmetic (generation.fast_dtype=fp16w)
# --------------------------------------------------------------------------------------------
# FBGEMM's fp16 GEMM keeps each weight matrix packed as fp16 and converts it to fp32 on the fly in
# registers (F16C, on every AVX2 CPU), then multiplies in fp32 with the activations as they are:
# half the weight bytes a decode step reads, no activation rounding at all. On an AVX2 CPU that
# is 1.36x the fp32 fast path for a log-prob gap ~1/18 of bf16's (docs/results.md, performance),
# which is why `auto` uses it where bf16 is not native.


def fp16_weights_available() -> bool:
    """Whether this torch build has FBGEMM's fp16-weight linear (x86 builds do)."""
    return int8_available() and hasattr(torch.ops.quantized, "linear_dynamic_fp16")


class Fp16WeightLinear(torch.nn.Module):
    """``linear`` computed by FBGEMM with its weight packed as fp16: ``y = x·fp16(W)ᵀ + b`` in fp32.

    The weight is read, never written: ``linear`` itself stays as it was.
    """
    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        with torch.no_grad():
            bias = linear.bias.detach().float() if linear.bias is not None else None
            self.packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x):
        y = torch.ops.quantized.linear_dynamic_fp16(x.float().reshape(-1, self.in_features), self.packed)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


@contextmanager
def fp16_weight_linears(model):
    """Inside the block every plain ``nn.Linear`` of ``model`` (the output projection included)
    runs as an :class:`Fp16WeightLinear`, on the prompt pass and the decode steps alike. As with
    :func:`int8_linears`, merge a PEFT LoRA into ``W`` first; the original modules are set back on
    exit, even on error, so the fp32 weights come back bit for bit."""
    if not fp16_weights_available():
        raise GirlError("generation.fast_dtype=fp16w needs torch's FBGEMM fp16 linear (an x86 CPU build); "
                        "fix: use generation.fast_dtype=off")
    with swapped_linears(model, True, Fp16WeightLinear):
        yield model
