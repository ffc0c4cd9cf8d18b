"""Test-wide setup: offline Hugging Face, a network guard, a private model cache.

* ``HF_HUB_OFFLINE=1`` (and the datasets/transformers equivalents) for this process and every
  subprocess, so nothing tries the hub.
* A guard that refuses any connection except to localhost, in this process and — via
  ``tests/netguard/sitecustomize.py`` on PYTHONPATH — in every subprocess, notebook kernels
  included. Each attempt is logged; a test during which one happened fails, even if the library
  swallowed the refusal.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GUARD_DIR = HERE / "netguard"
_LOG = Path(tempfile.gettempdir()) / f"girl-netguard-{os.getpid()}.log"

os.environ.update({
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
    "GIRL_NETGUARD": "1", "GIRL_NETGUARD_LOG": str(_LOG),
    "MPLBACKEND": "Agg",
})
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(GUARD_DIR), os.environ.get("PYTHONPATH", "")) if p)
sys.path.insert(0, str(GUARD_DIR))
import girl_netguard  # noqa: E402

# The chapters default to PROFILE = "auto" (cpu here: half an hour). Tests and nbmake kernels run
# them under smoke unless a caller chose otherwise (`make test` sets it too).
os.environ.setdefault("GIRL_PROFILE", "smoke")

girl_netguard.install()
_LOG.write_text("")


@pytest.fixture(autouse=True)
def _no_network_attempts():
    before = _LOG.read_text() if _LOG.exists() else ""
    yield
    after = _LOG.read_text() if _LOG.exists() else ""
    new = after[len(before):]
    if new:
        _LOG.write_text(before)  # report once, in the test that caused it
        pytest.fail("a network connection was attempted:\n" + new, pytrace=False)


@pytest.fixture(scope="session")
def smoke_cfg():
    from girl_lib.config import resolve_profile

    return resolve_profile("smoke")


@pytest.fixture(scope="session")
def tiny_model(smoke_cfg):
    """(model, tokenizer) of the tiny random-weight smoke LLaMA."""
    from girl_lib.models import load_causal_lm

    return load_causal_lm(smoke_cfg.model)


@pytest.fixture(scope="session")
def smoke_run(smoke_cfg, tmp_path_factory):
    """A run dir whose data stage is complete under the smoke profile (shared by the session)."""
    from girl_lib.pipeline import run_stage

    run_dir = tmp_path_factory.mktemp("smoke-run")
    run_stage("data", smoke_cfg, run_dir, log=lambda *a: None)
    return run_dir


# --------------------------------------------------------------------------------------------
# Numerical tolerances: one rule for every test
# --------------------------------------------------------------------------------------------
def fp_tol(dtype, magnitude, n_terms: int = 1, ulps: float = 8) -> float:
    """Absolute tolerance for one quantity computed two ways in floating point.

    ``ulps`` units of ``eps(dtype)`` at ``magnitude``, the size of the terms involved (not of the
    result, which may cancel to ~0: pass the size of what was summed: that is the floor), times
    ``n_terms``, the number of terms summed: a sum of n terms rounded in another order (another
    thread count, batch shape or kernel) may differ by up to about n·eps·max|term|. Derived from
    the dtype and the numbers involved, never tuned to one machine's result. ``dtype``: a torch
    or numpy floating dtype.
    """
    import numpy as np
    import torch

    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else float(np.finfo(dtype).eps)
    return ulps * eps * float(magnitude) * n_terms


def head_scale(model) -> float:
    """Largest ``Σ_i |w_i·h_i|`` an output of a LLaMA-style model can sum (a logit, or a reward score).

    The head reads the final RMSNorm's output ``h = γ ⊙ x / rms(x)``, whose 2-norm is at most
    ``max|γ|·√d``; by Cauchy–Schwarz ``Σ_i |w_i h_i| ≤ ‖w‖₂·max|γ|·√d`` (the head's largest row).
    The magnitude for :func:`fp_tol` of a model's output, even where the output itself cancels to
    ~0. Works on plain and PEFT-wrapped causal LMs and reward models.
    """
    from girl_lib.scoring import score_head

    gamma = next(m.weight for n, m in model.named_modules() if n == "model.norm" or n.endswith(".model.norm"))
    out = model.get_output_embeddings()
    w = (out.weight if out is not None else score_head(model)).detach()
    return float(w.norm(dim=-1).max() * gamma.detach().abs().max() * w.shape[-1] ** 0.5)
