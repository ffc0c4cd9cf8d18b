"""The run directory (DESIGN §8, a contract): ``runs/<profile>/{data,sft,reward,ppo,genrec,eval}``.

A stage's folder is *complete* when it holds ``manifest.json``, written last and atomically.
So a stage killed midway leaves no manifest, and the next ``girl run`` redoes it instead of
reading half-written files; a complete stage is skipped unless ``--force``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import GirlError

MANIFEST = "manifest.json"


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


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, then rename over it (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
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
