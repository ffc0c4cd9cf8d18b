"""The stages of the kit, in order, and how ``girl run`` chains them.

Each stage is a function ``run(cfg, run_dir) -> dict``; the dict is a small summary stored in
the stage's ``manifest.json``. This module sits above every stage: it imports them, and none
imports it back. It is also the one place that decides whether a stage runs (its output is
not complete, or ``--force``) and marks it complete afterwards.

Under a multi-process launcher (``torchrun --nproc_per_node 2 -m girl_lib.cli ppo ...``) every
process runs the stage function; only rank 0 touches the manifest.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from .config import Profile, apply_overrides
from .rundir import clear_manifest, ensure_writable, is_complete, link_stages, read_manifest, stage_dir, write_manifest
from .stages import data, reward, sft
from .stages.evaluate import stage as evaluate
from .stages.genrec import stage as genrec
from .stages.ppo import grpo_rloo
from .stages.ppo import stage as ppo
from .stages.ppo.checkpoint import read_log


@dataclass(frozen=True)
class Stage:
    name: str  # the CLI command; its folder is rundir.STAGE_FOLDERS[name]
    run: Callable[[Profile, Path], dict]
    in_run: bool = True  # part of `girl run`; the comparison arms (grpo, rloo) are not


STAGES: tuple[Stage, ...] = (
    Stage("data", data.run_stage),
    Stage("sft", sft.run_stage),
    Stage("reward", reward.run_stage),
    Stage("ppo", ppo.run_stage),
    Stage("grpo", partial(grpo_rloo.run_stage, algo="grpo"), in_run=False),
    Stage("rloo", partial(grpo_rloo.run_stage, algo="rloo"), in_run=False),
    Stage("genrec", genrec.run_stage),
    Stage("evaluate", evaluate.run_stage),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}


def _rank() -> int:
    """This process's rank under torchrun/accelerate (0 when not launched by one)."""
    return int(os.environ.get("RANK", "0"))


def run_stage(name: str, cfg: Profile, run_dir: Path, force: bool = False, log=print) -> dict:
    """Run one stage unless its output is complete (or ``force``). Returns its manifest."""
    stage = STAGE_BY_NAME[name]
    out = stage_dir(run_dir, name)
    main = _rank() == 0
    say = log if main else (lambda *a, **k: None)
    if is_complete(out) and not force:
        say(f"[girl] {name}: complete in {out}, skipped (use --force to redo)")
        return read_manifest(out) or {}
    if main:
        ensure_writable(run_dir)
        clear_manifest(out)  # from here on the folder is incomplete until the manifest is rewritten
        out.mkdir(parents=True, exist_ok=True)
    say(f"[girl] {name}: running (profile {cfg.name}) -> {out}")
    t0 = time.time()
    result = stage.run(cfg, Path(run_dir))
    if not main:
        return {"result": result}
    manifest = write_manifest(out, name, cfg.name, time.time() - t0, result)
    say(f"[girl] {name}: done in {manifest['seconds']:.1f} s")
    return manifest


def run_all(cfg: Profile, run_dir: Path, force: bool = False, log=print) -> dict[str, dict]:
    """Run every stage of ``girl run`` in order. Returns the manifests by stage name."""
    return {s.name: run_stage(s.name, cfg, run_dir, force=force, log=log) for s in STAGES if s.in_run}


def beta_sweep(cfg: Profile, run_dir: Path, betas: Sequence[float], overrides: dict | None = None,
               force: bool = False, log=print) -> list[dict]:
    """One PPO run per KL coefficient β, into ``<run_dir>/beta_sweep/beta_<β>/``.

    Each sub-run dir links (or copies) the complete ``data``, ``sft`` and ``reward`` stages of
    ``run_dir``, so only PPO runs again. ``overrides`` (e.g. fewer iterations) apply to every
    run. Returns, per β, the last iteration's rollout KL, score and oracle acceptance plus the
    held-out PPO-vs-SFT figures: the reward-KL trade-off of chapter 04.
    """
    results = []
    for beta in betas:
        sub = Path(run_dir) / "beta_sweep" / f"beta_{beta:g}"
        link_stages(run_dir, sub, ("data", "sft", "reward"))
        cfg_b = apply_overrides(cfg, {**(overrides or {}), "ppo.kl_coef": beta, "ppo.adaptive_kl_target": None})
        manifest = run_stage("ppo", cfg_b, sub, force=force, log=log)
        last = read_log(sub)[-1]
        ev = manifest["result"]
        results.append({
            "beta": beta, "run_dir": str(sub),
            "kl": last["objective/kl"], "score": last["objective/scores"], "rlhf_reward": last["objective/rlhf_reward"],
            "oracle_accept_rate": last["oracle/accept_rate"],
            "eval_kl_exact": ev.get("kl_exact_eval"),
            "eval_rm_score": ev.get("ppo_rm_score"),
            "eval_accept_rate": ev.get("ppo_accept_rate"),
            "eval_accept_rate_gain": ev.get("accept_rate_gain"),
        })
    return results
