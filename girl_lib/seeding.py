"""Seeds before every stochastic step (Python, NumPy, torch, CUDA) — one call."""
from __future__ import annotations


def set_seed(seed: int) -> None:
    """Seed every RNG the kit touches. Call it right before each stochastic step."""
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)  # random, numpy, torch (+ cuda) in one place
