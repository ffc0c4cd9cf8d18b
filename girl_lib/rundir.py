"""The run directory, a contract: ``runs/<profile>/`` with one folder per stage.

``data/ sft/ reward/ ppo/ genrec/ eval/`` are made by ``girl run``; ``grpo/`` and ``rloo/`` by
``girl ppo --algo grpo|rloo``; ``beta_sweep/beta_<β>/`` by :func:`girl_lib.pipeline.beta_sweep`
(each a run dir of its own, linking the stages it shares). ``report.md`` and its plots sit at
the top.

A stage's folder is *complete* when it holds ``manifest.json``, written last and atomically.
So a stage killed midway leaves no manifest, and the next ``girl run`` redoes it instead of
reading half-written files; a complete stage is skipped unless ``--force``. This module is the
one place that knows folder names, manifests and atomic writes.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import GirlError

MANIFEST = "manifest.json"
ADAPTER = "adapter"  # a trained LoRA inside a stage folder (save_pretrained: weights, config, tokenizer)
# Stage name (the CLI command) -> its folder under the run dir.
STAGE_FOLDERS = {"data": "data", "sft": "sft", "reward": "reward", "ppo": "ppo", "grpo": "grpo",
                 "rloo": "rloo", "genrec": "genrec", "evaluate": "eval"}


def default_run_dir(profile_name: str) -> Path:
    return Path("runs") / profile_name


def ensure_writable(run_dir: Path) -> Path:
    """Create ``run_dir`` and prove we can write there, or fail with a one-line fix."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise GirlError(f"run dir '{run_dir}' is not writable ({exc.strerror or exc}); "
                        "pass --run-dir to a folder you can write to") from None
    return run_dir


def stage_dir(run_dir: Path, stage: str) -> Path:
    """The folder of ``stage`` (a name of :data:`STAGE_FOLDERS`) under ``run_dir``."""
    return Path(run_dir) / STAGE_FOLDERS[stage]


def require_complete(run_dir: Path, stage: str) -> Path:
    """The folder of ``stage`` if it is complete, else a one-line error naming the fix."""
    out = stage_dir(run_dir, stage)
    if not is_complete(out):
        command = "ppo --algo " + stage if stage in ("grpo", "rloo") else stage
        raise GirlError(f"stage '{stage}' has no complete output in {out}; run 'girl {command}' "
                        "with the same --profile/--run-dir first (or 'girl run')")
    return out


def link_stages(src_run_dir: Path, dst_run_dir: Path, stages) -> None:
    """Make ``dst_run_dir`` share the complete ``stages`` of ``src_run_dir`` (symlinks, else copies)."""
    for stage in stages:
        src, dst = require_complete(src_run_dir, stage), stage_dir(dst_run_dir, stage)
        if dst.exists() or dst.is_symlink():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            dst.symlink_to(src.resolve(), target_is_directory=True)
        except OSError:  # no symlinks (some Windows setups): a copy
            shutil.copytree(src, dst)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, flush it to disk, then rename over ``path``.
    A kill at any moment leaves either the old file or the new one, never half a file. The file
    gets the permissions an ordinary new file would (``mkstemp`` alone makes it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def is_complete(stage_dir: Path) -> bool:
    return (Path(stage_dir) / MANIFEST).is_file()


def read_manifest(stage_dir: Path) -> dict | None:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_manifest(stage_dir: Path, stage: str, profile: str, seconds: float, result: dict | None) -> dict:
    """Mark ``stage_dir`` complete. Call only after every output file is in place.

    A stage may have written its own manifest (the data stage records hashes and its config);
    its keys are kept and the pipeline's are added.
    """
    manifest = read_manifest(stage_dir) or {}
    manifest |= {
        "stage": stage,
        "profile": profile,
        "seconds": round(seconds, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "result": result or {},
    }
    atomic_write_json(Path(stage_dir) / MANIFEST, manifest)
    return manifest


def clear_manifest(stage_dir: Path) -> None:
    path = Path(stage_dir) / MANIFEST
    if path.exists():
        path.unlink()
