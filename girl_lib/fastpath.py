"""The fast generation path: half-precision weights where the hardware computes them natively
(fp16-packed weights with fp32 arithmetic where it does not, or int8 linears on request:
:mod:`girl_lib.int8`), one-token decode attention, LoRA merged while generating, and an
inverse-CDF sampler.

Same maths as plain Hugging Face ``generate``, less waste per decode step; every piece restores
the model exactly afterwards. :func:`girl_lib.textgen.generate` switches them on from
:class:`~girl_lib.config.GenerationConfig` (``fast_dtype``, ``fast_decode``, ``num_threads``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from .errors import GirlError
from .hardware import cpu_has_native_bf16
from .int8 import fp16_weight_linears, fp16_weights_available, int8_linears
from .models import cuda_has_native_bf16

if TYPE_CHECKING:  # pragma: no cover
    import torch


FAST_DTYPES = ("auto", "off", "bfloat16", "float16", "int8", "fp16w")


class _Fp16Weights:
    """The marker :func:`resolve_fast_dtype` returns for ``fp16w``: not a torch dtype (the model
    stays fp32; only its linears' weights are packed as fp16, :func:`girl_lib.int8.fp16_weight_linears`)."""
    def __repr__(self) -> str:
        return "fp16w"


FP16_WEIGHTS = _Fp16Weights()


def resolve_fast_dtype(fast_dtype: str, device) -> "torch.dtype | _Fp16Weights | None":
    """The dtype to generate in (``None``: the model's own), from a config value and a device.

    ``off`` keeps the model as it is (the plain path); ``bfloat16``/``float16`` force a dtype;
    ``int8`` is ``torch.qint8``: the linear layers run as dynamically quantised int8 ones
    (:mod:`girl_lib.int8`; CPU only: FBGEMM's kernels), never chosen by ``auto``;
    ``fp16w`` is :data:`FP16_WEIGHTS`: fp32 arithmetic on weights packed as fp16 (CPU only);
    ``auto`` is the device's half type (:func:`girl_lib.models.half_dtype`): bfloat16 where the
    hardware computes it natively (a CUDA GPU of compute capability 8.0+, a CPU with AVX512-BF16
    or AMX), float16 on older CUDA GPUs (a T4, which reports bf16 as "supported" only through
    emulation), and ``fp16w`` on a CPU without native bf16 (emulated bf16 is slower than
    float32 there; fp16 weights are faster and closer to float32 than bf16 is), or the model's
    own dtype where this torch build lacks FBGEMM.
    """
    import torch

    if fast_dtype not in FAST_DTYPES:
        raise GirlError(f"generation.fast_dtype must be one of {', '.join(FAST_DTYPES)}, got '{fast_dtype}'")
    if fast_dtype == "off":
        return None
    device = torch.device(device)
    if fast_dtype == "int8":
        if device.type != "cpu":
            raise GirlError(f"generation.fast_dtype=int8 runs on the CPU only (FBGEMM kernels), not on "
                            f"'{device.type}'; fix: use generation.fast_dtype=auto there")
        return torch.qint8
    if fast_dtype == "fp16w":
        if device.type != "cpu":
            raise GirlError(f"generation.fast_dtype=fp16w runs on the CPU only (FBGEMM kernels), not on "
                            f"'{device.type}'; fix: use generation.fast_dtype=auto there")
        return FP16_WEIGHTS
    if fast_dtype != "auto":
        return getattr(torch, fast_dtype)
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_native_bf16() else torch.float16
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return torch.bfloat16
        return FP16_WEIGHTS if fp16_weights_available() else None
    return None


@contextmanager
def weights_in(model, dtype: "torch.dtype | None", merge_lora: bool = False):
    """Hold ``model``'s floating-point parameters in ``dtype`` inside the block, then restore them.

    The original tensors are kept aside and put back (not cast back), so the float32 weights —
    and an optimizer that points at the same ``Parameter`` objects — come out bit for bit
    unchanged. Buffers (e.g. the rotary frequencies) stay as they are. Costs one extra copy of
    the weights in ``dtype`` while it lasts.

    ``merge_lora``: each active PEFT LoRA ``Linear`` runs as one matrix ``W + (α/r)·B·A`` inside
    the block (PEFT's own ``merge``, applied to a float32 copy of ``W``, then cast), instead of
    ``W·x + (α/r)·B·(A·x)``: the same function up to rounding, without the adapter's extra small
    matmuls in every layer at every step. The layer's merged state and ``W`` are restored after.

    ``dtype=torch.qint8``: the LoRA is merged (always: the int8 matrix is then the policy's whole
    ``W``, and no fp32 adapter matmul runs beside it), then every linear layer runs as an int8 one
    (:func:`girl_lib.int8.int8_linears`); the float32 modules are put back after.
    ``dtype=FP16_WEIGHTS``: the same, with fp16-weight linears (:func:`girl_lib.int8.fp16_weight_linears`).
    """
    import torch

    if dtype == torch.qint8 or dtype is FP16_WEIGHTS:  # swapped linears on the merged W
        swap = int8_linears if dtype == torch.qint8 else fp16_weight_linears
        with weights_in(model, None, merge_lora=True), swap(model):
            yield model
        return
    saved, merged = [], []
    try:
        with torch.no_grad():
            for layer in (_mergeable_lora_layers(model) if merge_lora else []):
                base = layer.get_base_layer()
                tensors = [t for t in (base.weight, getattr(base, "bias", None)) if t is not None]
                for t in tensors:
                    saved.append((t, t.data))
                    t.data = t.data.clone()
                merged.append(layer)
                layer.merge(adapter_names=[a for a in layer.active_adapters if a in layer.lora_A])
                if dtype is not None:  # cast layer by layer: one float32 copy at a time
                    for t in tensors:
                        t.data = t.data.to(dtype)
            if dtype is not None:
                for p in model.parameters():
                    if p.is_floating_point() and p.dtype != dtype:
                        saved.append((p, p.data))
                        p.data = p.data.to(dtype)
        yield model
    finally:
        for layer in merged:
            layer.merged_adapters.clear()  # W itself is put back just below
        for p, data in reversed(saved):
            p.data = data


def _mergeable_lora_layers(model) -> list:
    """PEFT LoRA ``Linear`` layers with an active, unmerged, enabled adapter (none without PEFT)."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [m for m in model.modules()
            if isinstance(m, LoraLinear) and not m.merged and not m.disable_adapters
            and any(a in m.lora_A for a in m.active_adapters)]


@contextmanager
def torch_threads(n: int):
    """``torch.set_num_threads(n)`` inside the block (``n <= 0``: leave it as it is)."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0:
            torch.set_num_threads(before)


DECODE_ATTENTION = "girl_decode_sdpa"


def decode_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Attention of a one-token decode step as two small batched matmuls; anything else goes to SDPA.

    A decode step has one query per row against the whole cache. PyTorch's CPU flash-attention
    kernel is built for long queries and is slow on such a step in bf16, where ``q·Kᵀ → softmax
    → ·V`` on the grouped heads is cheap (measured: see docs/results.md). Grouped-query
    attention without copies: the query heads that share a key/value
    head are stacked as rows, ``[b, kv_heads, groups, d] @ [b, kv_heads, d, L]``. Scores and the
    softmax are fp32; the mask (bool: True = attend, or additive float) is the one SDPA gets.
    Registered with transformers' ``AttentionInterface`` and switched on by :func:`decode_attention`.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (query.shape[2] != 1 or dropout or kwargs.get("position_bias") is not None
            or kwargs.get("softcap") is not None or kwargs.get("cache") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    b, heads, _, d = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    scores = torch.matmul(query.reshape(b, kv_heads, groups, d), key.transpose(-1, -2)).float()
    scores = scores * (scaling if scaling is not None else d ** -0.5)
    if attention_mask is not None:
        mask = attention_mask[..., -1:, :length]
        if mask.shape[1] == heads and heads != kv_heads:  # a per-head mask: group it like the query
            mask = mask.reshape(mask.shape[0], kv_heads, groups, length)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # [b, kv_heads, groups, d]
    return out.reshape(b, heads, 1, d).transpose(1, 2).contiguous(), None


def _register_decode_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if DECODE_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(DECODE_ATTENTION, decode_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(DECODE_ATTENTION, sdpa_mask)  # the masks SDPA gets


@contextmanager
def decode_attention(model, enabled: bool = True):
    """Inside the block, models on the CPU loaded with ``attn_implementation="sdpa"`` use
    :func:`decode_attention_forward` (one-token steps) and SDPA itself (the prompt pass).
    Other implementations (eager, flash-attention) and GPU models (where SDPA's kernels were not
    found slow; not measured here) are left alone; the setting is restored after.
    """
    from transformers import PreTrainedModel

    enabled = enabled and _model_device(model).type == "cpu"
    configs = {id(m.config): m.config for m in model.modules() if isinstance(m, PreTrainedModel)} if enabled else {}
    switched = [c for c in configs.values() if getattr(c, "_attn_implementation", None) == "sdpa"]
    if switched:
        _register_decode_attention()
    try:
        for c in switched:
            c._attn_implementation = DECODE_ATTENTION
        yield model
    finally:
        for c in switched:
            c._attn_implementation = "sdpa"


class InverseCdfSampler:
    """A logits processor that *samples* ``softmax(scores / temperature)`` and returns a one-hot
    score row (0 for the drawn token, -inf elsewhere), so ``generate(do_sample=False)`` — argmax —
    emits exactly the drawn token.

    Why: ``torch.multinomial`` on CPU draws one exponential random number per vocabulary entry
    (batch × vocabulary numbers per step: a visible share of a decode step; measured: see
    docs/results.md). Inverse-CDF sampling needs one uniform number per row: token = the first index whose
    cumulative probability (float64) exceeds ``u``. Same distribution, another random stream,
    still the global torch RNG, so ``seed`` reproduces a call.
    """
    def __init__(self, temperature: float):
        self.temperature = float(temperature)

    def __call__(self, input_ids, scores):
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        cdf = torch.cumsum(probs, dim=-1, dtype=torch.float64)
        u = torch.rand(scores.shape[0], 1, dtype=torch.float64, device=scores.device) * cdf[:, -1:]
        token = torch.searchsorted(cdf, u, right=True).clamp_(max=scores.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token, 0.0)


def _model_device(model):
    device = getattr(model, "device", None)
    if device is None:
        device = next(model.parameters()).device
    return device
