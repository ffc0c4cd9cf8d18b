"""The stages of the kit, in order, and how ``girl run`` chains them.

Each stage is a function ``run(cfg, run_dir) -> dict``; the dict is a small summary stored in
the stage's ``manifest.json``. This module sits above every stage: it imports them, and none
imports it back. It is also the one place that decides whether a stage runs and marks it
complete afterwards.

What a stage is made from (:data:`STAGES`, one table): the profile settings that shape its output
and the upstream stages whose output it reads. Its manifest records both (``inputs``: the
settings, their sha256, and the manifest digest of every upstream stage that was complete when
it ran). A complete stage is *current* when both still match; otherwise ``girl run`` and the
stage's own command redo it and say why in one line. Since every run of a stage writes a new
manifest digest, redoing (or ``--force``-ing) a stage makes every stage that read it stale.

Redoing a complete stage sets its folder aside (``.<folder>.previous``) and puts it back if the
new run fails, so a failed ``--force`` leaves the previous complete output in place. One writer
per run dir (:func:`girl_lib.rundir.lock_run_dir`).

Under a multi-process launcher (``torchrun --nproc_per_node 2 -m girl_lib.cli ppo ...``) every
process runs the stage function; only rank 0 takes the lock and touches folders and manifests.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from .config import Profile, apply_overrides, validate_profile
from .errors import GirlError
from .rundir import (STARTED, atomic_write_json, clear_manifest, drop_previous, ensure_writable, is_complete,
                     link_stages, lock_run_dir, manifest_digest, previous_dir, read_json_or_none,
                     read_manifest, remove_path, restore_previous, set_aside, stage_dir, write_manifest)
from .stages import data, reward, sft
from .stages.evaluate import stage as evaluate
from .stages.genrec import stage as genrec
from .stages.ppo import grpo_rloo
from .stages.ppo import stage as ppo
from .stages.ppo.checkpoint import read_log
from .stages.ppo.greedy_checks import check_snapshots


@dataclass(frozen=True)
class Stage:
    name: str  # the CLI command; its folder is rundir.STAGE_FOLDERS[name]
    run: Callable[[Profile, Path], dict]
    in_run: bool = True  # part of `girl run`; the comparison arms (grpo, rloo) are not
    # Profile settings that shape the output: a section ("sft"), a field ("reward.max_length") or
    # a top-level field ("seed"). Changing one makes the stage stale.
    settings: tuple[str, ...] = ()
    # Stages whose output it reads. Each one complete when the stage ran is recorded with its
    # manifest digest; the stage is stale when that set or a digest changes.
    upstream: tuple[str, ...] = ()


# What each stage is made from. Not listed, on purpose: `device` (where a stage runs, not what it
# computes; moving a run dir to another machine must not redo it; `model.dtype` is listed) and
# the settings of :data:`NO_EFFECT`. The data stage's settings reach the others through its
# manifest digest (data.recruiter_noise, read again by the oracle of later stages, is one of them).
_RL = ("ppo", "model", "seed", "generation", "reward.max_length", "reward.batch_size", "sft.oracle_eval_seekers")
STAGES: tuple[Stage, ...] = (
    Stage("data", data.run_stage, settings=("data",)),
    Stage("sft", sft.run_stage, settings=("sft", "model", "seed", "generation"), upstream=("data",)),
    # The reward stage reads the SFT model when one is complete: reward.generated_pairs trains on its
    # JDs, and the evaluation scores them.
    Stage("reward", reward.run_stage, settings=("reward", "model", "seed", "generation", "sft.oracle_eval_seekers",
                                                "sft.zero_shot_seekers"), upstream=("data", "sft")),
    Stage("ppo", ppo.run_stage, settings=_RL, upstream=("data", "sft", "reward")),
    Stage("grpo", partial(grpo_rloo.run_stage, algo="grpo"), in_run=False, settings=_RL,
          upstream=("data", "sft", "reward")),
    Stage("rloo", partial(grpo_rloo.run_stage, algo="rloo"), in_run=False, settings=_RL,
          upstream=("data", "sft", "reward")),
    # GenRec reads generation.fast_decode only (beam search is its own decoding).
    Stage("genrec", genrec.run_stage, settings=("genrec", "model", "seed", "generation.fast_decode"),
          upstream=("data",)),
    # evaluate reads every trained arm it finds, so each of them is an (optional) upstream stage.
    Stage("evaluate", evaluate.run_stage,
          settings=("eval", "generation", "model", "seed", "reward.max_length", "reward.batch_size"),
          upstream=("data", "sft", "reward", "ppo", "grpo", "rloo")),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}
# Settings that change no output: threads used while generating, how often PPO checkpoints (a
# resumed run redraws the same samples) and keeps snapshots, and the name of the variable holding
# the judge's key.
NO_EFFECT = ("generation.num_threads", "ppo.save_every", "ppo.snapshot_every", "eval.judge_api_key_env")
_MADE = {"data": "built", "evaluate": "run"}  # "... changed since it was <made>"


def _stage(name: str) -> Stage:
    for s in STAGES:  # looked up at call time, so a test may swap the table
        if s.name == name:
            return s
    raise GirlError(f"unknown stage '{name}'; choose one of {', '.join(s.name for s in STAGES)}")


def _command(name: str) -> str:
    return f"girl ppo --algo {name}" if name in ("grpo", "rloo") else f"girl {name}"


def _rank() -> int:
    """This process's rank under torchrun/accelerate (0 when not launched by one)."""
    return int(os.environ.get("RANK", "0"))


# --------------------------------------------------------------------------------------------
# What a stage is made from, and whether its output still matches
# --------------------------------------------------------------------------------------------
def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out |= _flatten(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: obj}


def stage_settings(name: str, cfg: Profile) -> dict:
    """``{dotted key: value}`` of the settings that shape ``name`` (JSON values: tuples are lists)."""
    flat = json.loads(json.dumps(_flatten(dataclasses.asdict(cfg)), default=str))
    keys = _stage(name).settings
    return {k: v for k, v in sorted(flat.items())
            if any(k == s or k.startswith(s + ".") for s in keys) and k not in NO_EFFECT}


def _sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def upstream_digests(name: str, run_dir: Path) -> dict[str, str]:
    """Manifest digest of every upstream stage of ``name`` that is complete in ``run_dir``."""
    out = {}
    for up in _stage(name).upstream:
        digest = manifest_digest(stage_dir(run_dir, up))
        if digest is not None:
            out[up] = digest
    return out


def stage_inputs(name: str, cfg: Profile, run_dir: Path) -> dict:
    """What ``name`` is made from, as its manifest records it."""
    settings = stage_settings(name, cfg)
    return {"settings": settings, "settings_sha256": _sha256(settings), "upstream": upstream_digests(name, run_dir)}


def _upstream_reason(name: str, recorded: dict, current: dict) -> str | None:
    made = _MADE.get(name, "trained")
    for up in _stage(name).upstream:
        if recorded.get(up) == current.get(up):
            continue
        if up not in recorded:
            return f"{up} was completed after it was {made}"
        if up not in current:
            return f"{up} is no longer complete"
        return f"{up} changed since it was {made}"
    return None


def declared_defaults() -> dict:
    """``{dotted key: value}`` of every setting as its dataclass declares it (``Profile()``)."""
    return json.loads(json.dumps(_flatten(dataclasses.asdict(Profile())), default=str))


def _settings_reason(name: str, recorded: dict, current: dict) -> str | None:
    """Which settings differ; None when none does. A setting the kit gained after the stage was
    made changes nothing while it is ``None`` (an optional input left off) or at the default its
    dataclass declares: by the kit's convention a new setting's default is the old behaviour. A
    setting of :data:`NO_EFFECT` is ignored on both sides, so a stage recorded before the setting
    was found to change nothing is not redone for it."""
    recorded = {k: v for k, v in recorded.items() if k not in NO_EFFECT}
    if recorded == current:
        return None
    defaults = declared_defaults()
    keys = [k for k in sorted(set(recorded) | set(current))
            if recorded.get(k, "<unset>") != current.get(k, "<unset>")
            and not (k not in recorded and (current[k] is None or current[k] == defaults.get(k, "<unset>")))]
    if not keys:
        return None
    shown = ", ".join(f"{k} {json.dumps(recorded[k]) if k in recorded else 'unset'} -> "
                      f"{json.dumps(current[k]) if k in current else 'unset'}" for k in keys[:3])
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return f"settings changed since it was {_MADE.get(name, 'trained')} ({shown}{more})"


def upstream_change(name: str, run_dir: Path) -> str | None:
    """Why the complete output of ``name`` no longer matches its upstream stages (None: it does).

    Needs no profile: for the report, which shows such a stage as out of date.
    """
    manifest = read_manifest(stage_dir(run_dir, name)) or {}
    inputs = manifest.get("inputs")
    if not isinstance(inputs, dict):
        return "made by an older version of the kit, which did not record its inputs"
    return _upstream_reason(name, inputs.get("upstream") or {}, upstream_digests(name, run_dir))


def staleness(name: str, cfg: Profile, run_dir: Path) -> str | None:
    """Why the complete output of ``name`` is out of date for ``cfg`` (one phrase), or None if current."""
    manifest = read_manifest(stage_dir(run_dir, name)) or {}
    inputs = manifest.get("inputs")
    if not isinstance(inputs, dict):
        return "it was made by an older version of the kit, which did not record its inputs"
    settings = stage_settings(name, cfg)
    if inputs.get("settings_sha256") != _sha256(settings):
        recorded = inputs.get("settings") or {}
        if inputs.get("settings_sha256") != _sha256(recorded):
            return "settings changed"  # the record does not match its own digest
        reason = _settings_reason(name, recorded, settings)
        if reason:
            return reason
    return _upstream_reason(name, inputs.get("upstream") or {}, upstream_digests(name, run_dir))


def check_upstream(name: str, cfg: Profile, run_dir: Path) -> None:
    """Refuse to run ``name`` on an upstream stage that is complete but out of date.

    An upstream manifest without an ``inputs`` record (an older kit's) cannot be judged and is
    used as it is; ``girl run`` redoes such a stage anyway.
    """
    for up in _stage(name).upstream:
        if isinstance((read_manifest(stage_dir(run_dir, up)) or {}).get("inputs"), dict):
            why = staleness(up, cfg, run_dir)
            if why:
                raise GirlError(f"{name} reads the {up} stage, which is out of date ({why}); run '{_command(up)}' "
                                "with the same --profile/--set/--run-dir first (or 'girl run')")


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def writer_lock(run_dir: Path, log=print):
    """The run dir's writer lock for this process: held by rank 0 only (every rank runs the CLI)."""
    if _rank() != 0:
        return contextlib.nullcontext()
    return lock_run_dir(ensure_writable(run_dir), notice=log)


def _recover(name: str, run_dir: Path, say) -> None:
    """A redo killed midway (SIGKILL, power cut) left the previous complete output aside: put it back."""
    prev = previous_dir(run_dir, name)
    if not (prev.exists() or prev.is_symlink()):
        return
    out = stage_dir(run_dir, name)
    if is_complete(prev) and not is_complete(out):
        restore_previous(run_dir, name)
        say(f"[girl] {name}: an earlier redo did not finish; the previous complete output is back in {out}")
    else:
        drop_previous(run_dir, name)


def _discard_stale_partial(name: str, out: Path, inputs: dict, say) -> None:
    """An unfinished run (no manifest) made from other upstream output cannot be resumed: remove it."""
    started = read_json_or_none(out / STARTED)
    if started is None:
        return
    why = _upstream_reason(name, started.get("upstream") or {}, inputs["upstream"])
    if why:
        say(f"[girl] {name}: the unfinished output in {out} was made from other inputs ({why}); starting over")
        remove_path(out)


def run_stage(name: str, cfg: Profile, run_dir: Path, force: bool = False, log=print) -> dict:
    """Run one stage unless its output is complete and current (or ``force``). Returns its manifest."""
    stage = _stage(name)
    validate_profile(cfg)  # also catches out-of-range settings made with apply_overrides
    run_dir = Path(run_dir)
    with writer_lock(run_dir, log):
        return _run_locked(stage, cfg, run_dir, force, log, _rank() == 0)


def _run_locked(stage: Stage, cfg: Profile, run_dir: Path, force: bool, log, main: bool) -> dict:
    name, out = stage.name, stage_dir(run_dir, stage.name)
    say = log if main else (lambda *a, **k: None)
    if main:
        _recover(name, run_dir, say)
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise GirlError(f"'{out}' is a file, but the {name} stage writes a folder there; move or delete the file")
    complete, why = is_complete(out), None
    if complete and not force:
        why = staleness(name, cfg, run_dir)
        if why is None:
            say(f"[girl] {name}: complete in {out}, skipped (use --force to redo)")
            return read_manifest(out) or {}
    check_upstream(name, cfg, run_dir)
    if complete:
        say(f"[girl] {name}: --force; redoing (the previous output stays until the new one is complete)" if force
            else f"[girl] {name}: {why}; redoing")
    inputs = stage_inputs(name, cfg, run_dir)
    if main:
        if complete:
            set_aside(run_dir, name)
        else:
            _discard_stale_partial(name, out, inputs, say)
            clear_manifest(out)  # from here on the folder is incomplete until the manifest is rewritten
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / STARTED, inputs)
    say(f"[girl] {name}: running (profile {cfg.name}) -> {out}")
    t0 = time.time()
    try:
        result = stage.run(cfg, run_dir)
        if not main:
            return {"result": result}
        manifest = write_manifest(out, name, cfg.name, time.time() - t0, result, inputs=inputs)
    except BaseException:
        if main and complete and restore_previous(run_dir, name):
            say(f"[girl] {name}: the redo failed; the previous complete output is back in {out}")
        raise
    (out / STARTED).unlink(missing_ok=True)
    drop_previous(run_dir, name)
    say(f"[girl] {name}: done in {manifest['seconds']:.1f} s")
    return manifest


def run_all(cfg: Profile, run_dir: Path, force: bool = False, log=print) -> dict[str, dict]:
    """Run every stage of ``girl run`` in order, plus any comparison arm (grpo, rloo) built in this
    run dir before (redone when out of date, so that the evaluation never reads a stale arm).
    Returns the manifests by stage name."""
    with writer_lock(run_dir, log):
        return {s.name: run_stage(s.name, cfg, run_dir, force=force, log=log) for s in STAGES
                if s.in_run or is_complete(stage_dir(run_dir, s.name))}


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


def long_run(cfg: Profile, run_dir: Path, iterations: int, reward_source: str = "rm", force: bool = False,
             snapshot_every: int = 4, kl_seekers: int = 32, log=print) -> dict:
    """One PPO run ``iterations`` long, into ``<run_dir>/long_run/<reward_source>/``, then a greedy
    check of the policy every ``snapshot_every`` iterations.

    The budget question: where does acceptance saturate, against the learned reward model and
    against the oracle itself? Like :func:`beta_sweep`, the sub-run links the complete ``data``,
    ``sft`` and ``reward`` stages of ``run_dir``. The adapter is kept every ``snapshot_every``
    iterations and each is checked greedily on the val seekers
    (:func:`girl_lib.stages.ppo.greedy_checks.check_snapshots`, ``kl_seekers`` of them for the
    exact KL); ``0`` keeps none. Those checks and the run's log feed the budget and
    over-optimisation curves (:mod:`girl_lib.stages.ppo.overopt`). Returns the stage's manifest
    with the checks under ``"checks"``.
    """
    sub = Path(run_dir) / "long_run" / reward_source
    link_stages(run_dir, sub, ("data", "sft", "reward"))
    cfg_l = apply_overrides(cfg, {"ppo.iterations": iterations, "ppo.reward_source": reward_source,
                                  "ppo.snapshot_every": snapshot_every})
    manifest = run_stage("ppo", cfg_l, sub, force=force, log=log)
    checks = check_snapshots(cfg_l, sub, kl_seekers=kl_seekers, log=log) if snapshot_every > 0 else []
    return {**manifest, "checks": checks}
