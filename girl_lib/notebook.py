"""What every chapter notebook does first: resolve the profile, show versions/device, seed.

    cfg, RUN_DIR = setup(PROFILE, OVERRIDES, RUN_DIR)

keeps the notebooks' first cells identical, so that logic lives here and not in a notebook.
``PROFILE`` is ``auto`` in a chapter a person opens (the ``gpu`` profile on a CUDA GPU, ``cpu``
otherwise) and ``smoke`` under ``make test`` (the environment variable ``GIRL_PROFILE``).
"""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from .config import Profile, resolve_profile
from .models import precision_plan
from .rundir import STAGE_FOLDERS, default_run_dir, ensure_writable, read_manifest, stage_dir
from .seeding import set_seed

SHOWN = ("torch", "transformers", "trl", "peft", "accelerate", "girl-kit")


def find_repo_root(start: Path | None = None) -> Path:
    """The folder holding ``pyproject.toml`` (notebooks run from ``notebooks/``), else the cwd."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "girl_lib").is_dir():
            return folder
    return here


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in SHOWN:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def complete_stages(run_dir: Path) -> dict[str, str]:
    """``{stage: the profile it ran under}`` for every complete stage in ``run_dir``."""
    out = {}
    for stage in STAGE_FOLDERS:
        manifest = read_manifest(stage_dir(run_dir, stage))
        if manifest is not None:
            out[stage] = manifest.get("profile", "?")
    return out


def setup(profile: str = "auto", overrides: dict | None = None, run_dir: str | Path | None = None,
          quiet: bool = False) -> tuple[Profile, Path]:
    """Resolve ``profile`` with ``overrides``, print versions, device and precision, seed; return (cfg, run_dir).

    ``profile``: ``auto`` is ``gpu`` on a CUDA GPU and ``cpu`` otherwise. ``run_dir`` defaults to
    ``<repo>/runs/<profile>``, the same folder the CLI uses, so a notebook picks up what
    ``girl run`` produced and the other way round. Any other folder works too (a Google Drive
    folder on Colab, a run dir of ``girl run --run-dir``): a chapter skips every stage already
    complete there, so it can start from the stages an earlier chapter or ``girl run`` finished.
    """
    import torch

    cfg = resolve_profile(profile, overrides)
    run_dir = Path(run_dir).expanduser() if run_dir else find_repo_root() / default_run_dir(cfg.name)
    ensure_writable(run_dir)
    set_seed(cfg.seed)
    if not quiet:
        for k, v in versions().items():
            print(f"{k:14s}{v}")
        dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
        print(f"{'device':14s}{dev}")
        print(f"{'profile':14s}{cfg.name}  (asked for: {profile}; base model: {cfg.model.base_model})")
        plan = precision_plan(cfg.device, cfg.model.dtype, cfg.generation.fast_dtype)
        train = plan["training_autocast"] or "float32"
        if plan["grad_scaler"]:
            train += " + gradient scaler"
        print(f"{'precision':14s}weights {plan['weights']}, training {train}, rollouts {plan['rollouts']}, "
              f"PPO {plan['ppo_logprobs_and_kl']}")
        done = complete_stages(run_dir)
        listed = ", ".join(f"{k} ({v})" if v != cfg.name else k for k, v in done.items()) or "none yet"
        print(f"{'run dir':14s}{run_dir}")
        print(f"{'complete':14s}{listed}")
    return cfg, run_dir


def show_token(token: str) -> str:
    """A BPE token as a reader wants to see it: ``Ġ`` (a leading space) as ``·``, ``Ċ`` (newline) as ``\\n``."""
    return token.replace("Ġ", "·").replace("Ċ", "\\n")


def token_frame(tokenizer, ids, **columns):
    """A ``pandas.DataFrame`` with one row per token: the token, its id, and a column per keyword.

    ``token_frame(tok, ids, attention_mask=mask, label=labels)`` shows a padded row of a batch;
    ``token_frame(tok, response, logprob=lp, kl=kl, ...)`` one PPO response with a value beside
    every token. Each column must have one value per token (tensors, arrays or lists).
    """
    import pandas as pd

    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    data = {"token": [show_token(t) for t in tokenizer.convert_ids_to_tokens(ids)], "id": ids}
    for name, values in columns.items():
        values = values.tolist() if hasattr(values, "tolist") else list(values)
        if len(values) != len(ids):
            raise ValueError(f"column '{name}' has {len(values)} values for {len(ids)} tokens")
        data[name] = values
    return pd.DataFrame(data)
