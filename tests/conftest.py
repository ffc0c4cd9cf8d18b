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
