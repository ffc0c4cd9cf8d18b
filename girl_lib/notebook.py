"""What every chapter notebook does first: resolve the profile, show versions/device, seed.

    cfg, run_dir = setup(PROFILE, OVERRIDES)

keeps the notebooks' first cells identical, so that logic lives here and not in a notebook.
"""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from .config import Profile, resolve_profile
from .rundir import default_run_dir, ensure_writable
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


def setup(profile: str = "smoke", overrides: dict | None = None, run_dir: str | Path | None = None,
          quiet: bool = False) -> tuple[Profile, Path]:
    """Resolve ``profile`` with ``overrides``, print versions and device, seed, return (cfg, run_dir).

    The run dir defaults to ``<repo>/runs/<profile>``, the same folder the CLI uses, so a notebook
    picks up what ``girl run`` produced and the other way round.
    """
    import torch

    cfg = resolve_profile(profile, overrides)
    run_dir = Path(run_dir) if run_dir else find_repo_root() / default_run_dir(cfg.name)
    ensure_writable(run_dir)
    set_seed(cfg.seed)
    if not quiet:
        for k, v in versions().items():
            print(f"{k:14s}{v}")
        dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
        print(f"{'device':14s}{dev}")
        print(f"{'profile':14s}{cfg.name}  (base model: {cfg.model.base_model})")
        print(f"{'run dir':14s}{run_dir}")
    return cfg, run_dir
