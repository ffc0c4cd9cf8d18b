"""The stages of the kit, in order, and how ``girl run`` chains them.

Each stage is a function ``run(cfg, run_dir) -> dict`` (the dict is a small summary, stored in
the stage's ``manifest.json``) named by an import path, so that importing this module stays
cheap. A stage whose ``target`` is ``None`` is not built yet: invoking it raises
:class:`~girl_lib.errors.NotBuiltError` (exit 2), never a fake success.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import Profile
from .errors import GirlError, NotBuiltError
from .rundir import clear_manifest, ensure_writable, is_complete, read_manifest, write_manifest


@dataclass(frozen=True)
class Stage:
    name: str  # CLI subcommand and folder name under the run dir
    folder: str
    target: str | None  # "module:function" or None when not built yet
    issue: str
    needs: tuple[str, ...] = ()

    @property
    def built(self) -> bool:
        return self.target is not None

    def function(self) -> Callable[[Profile, Path], dict]:
        if self.target is None:
            raise NotBuiltError(self.name, self.issue)
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


STAGES: tuple[Stage, ...] = (
    Stage("data", "data", "girl_lib.pipeline:data_stage", "issue #3"),
    Stage("sft", "sft", "girl_lib.sft:run_stage", "issue #4", needs=("data",)),
    Stage("reward", "reward", "girl_lib.reward:run_stage", "issue #5", needs=("data",)),
    Stage("ppo", "ppo", "girl_lib.ppo:run_stage", "issue #6", needs=("sft", "reward")),
    Stage("genrec", "genrec", "girl_lib.genrec:run_stage", "issue #8", needs=("data",)),
    Stage("evaluate", "eval", "girl_lib.evaluation:run_stage", "issue #7", needs=("data",)),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}


def data_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl data``: the synthetic recruiting world into ``<run_dir>/data`` (see girl_lib.world)."""
    from .world import build_dataset

    counts = build_dataset(cfg.data, stage_dir(run_dir, "data"))
    manifest = read_manifest(stage_dir(run_dir, "data")) or {}
    return {"counts": counts, "acceptance_rate": manifest.get("acceptance_rate")}


def stage_dir(run_dir: Path, stage: Stage | str) -> Path:
    stage = STAGE_BY_NAME[stage] if isinstance(stage, str) else stage
    return Path(run_dir) / stage.folder


def require_complete(run_dir: Path, name: str) -> Path:
    """The folder of stage ``name`` if it is complete, else a one-line error naming the fix."""
    out = stage_dir(run_dir, name)
    if not is_complete(out):
        raise GirlError(f"stage '{name}' has no complete output in {out}; run 'girl {name}' "
                        "with the same --profile/--run-dir first (or 'girl run')")
    return out


def run_stage(name: str, cfg: Profile, run_dir: Path, force: bool = False, log=print) -> dict:
    """Run one stage unless its output is complete. Returns its manifest."""
    stage = STAGE_BY_NAME[name]
    func = stage.function()  # raises NotBuiltError first, before touching the disk
    ensure_writable(run_dir)
    out = stage_dir(run_dir, stage)
    if is_complete(out) and not force:
        log(f"[girl] {name}: complete in {out}, skipped (use --force to redo)")
        return read_manifest(out) or {}
    clear_manifest(out)  # from here on the folder is incomplete until the manifest is rewritten
    out.mkdir(parents=True, exist_ok=True)
    log(f"[girl] {name}: running (profile {cfg.name}) -> {out}")
    t0 = time.time()
    result = func(cfg, Path(run_dir))
    manifest = write_manifest(out, name, cfg.name, time.time() - t0, result)
    log(f"[girl] {name}: done in {manifest['seconds']:.1f} s")
    return manifest


def run_all(cfg: Profile, run_dir: Path, force: bool = False, log=print) -> dict[str, dict]:
    """Run every built stage in order; list the ones not built yet. Returns manifests by stage."""
    done: dict[str, dict] = {}
    for stage in STAGES:
        if not stage.built:
            log(f"[girl] {stage.name}: not built yet ({stage.issue}), skipped")
            continue
        done[stage.name] = run_stage(stage.name, cfg, run_dir, force=force, log=log)
    return done
