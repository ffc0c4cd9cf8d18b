"""Checkpoints saved atomically and resumed exactly, and the per-iteration log."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from ...config import Profile
from ...rundir import ADAPTER, atomic_write_json, atomic_write_text
from .normalize import SCORE_NORM
from .policy import PolicyWithValueHead

CHECKPOINT = "checkpoint"
SNAPSHOTS = "snapshots"  # ppo/snapshots/iteration_<NNN>/: the adapter every ppo.snapshot_every iterations
CHECKS = "checks.json"  # the greedy checks of those snapshots (girl_lib.stages.ppo.greedy_checks)
CHECKS_TEXTS = "checks_texts.json"  # ... and the greedy JDs they wrote


LOG = "log.jsonl"


def config_fingerprint(cfg: Profile, num_processes: int) -> str:
    """A hash of every setting a resumed run must share with the interrupted one.

    ``ppo.iterations``, ``ppo.save_every``, ``ppo.snapshot_every`` and the evaluation settings may
    change (resume a run and give it more iterations); anything else starts over.
    """
    free = ("iterations", "save_every", "snapshot_every", "eval_seekers", "eval_kl", "eval_kl_seekers")
    ppo = {k: v for k, v in asdict(cfg.ppo).items() if k not in free}
    key = {"ppo": ppo, "model": asdict(cfg.model), "generation": asdict(cfg.generation),
           "reward_max_length": cfg.reward.max_length, "num_processes": num_processes}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(out: Path, model: PolicyWithValueHead, optimizer, state: dict) -> Path:
    """Write ``out/checkpoint/`` atomically: a temp folder, then a rename.

    Holds ``adapter/`` (``save_pretrained``), ``value_head.safetensors``, ``optimizer.pt``
    (tensors and numbers only: reloaded with ``torch.load(weights_only=True)``, which refuses
    arbitrary pickled objects) and ``state.json`` (iteration, β, episodes, fingerprint). A kill
    at any moment leaves either the previous checkpoint or the new one, never half of one.
    """
    from safetensors.torch import save_file

    out = Path(out)
    tmp = out / f".{CHECKPOINT}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.policy.save_pretrained(tmp / ADAPTER)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()},
              str(tmp / "value_head.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    atomic_write_json(tmp / "state.json", state)
    final, old = out / CHECKPOINT, out / f"{CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def save_snapshot(out: Path, model: PolicyWithValueHead, iteration: int) -> Path:
    """Keep the policy's adapter after ``iteration`` in ``out/snapshots/iteration_<NNN>/`` (atomically).

    Only the LoRA (``save_pretrained``, a few MB): enough to write greedy JDs with the policy of
    that iteration afterwards, which the budget and over-optimisation curves need; training
    never reads it back.
    """
    final = Path(out) / SNAPSHOTS / f"iteration_{iteration:03d}"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.policy.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def list_snapshots(out: Path) -> list[tuple[int, Path]]:
    """``[(iteration, folder)]`` of the complete snapshots in ``out/snapshots/``, in order."""
    found = []
    for path in sorted((Path(out) / SNAPSHOTS).glob("iteration_*")):
        if (path / "adapter_config.json").is_file():
            found.append((int(path.name.split("_")[1]), path))
    return found


def find_checkpoint(out: Path) -> Path | None:
    """The last complete checkpoint (``checkpoint/``, or ``checkpoint.old/`` after a kill mid-swap)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = Path(out) / name
        if (path / "state.json").is_file():
            return path
    return None


def load_value_head(model: PolicyWithValueHead, path: Path) -> None:
    from safetensors.torch import load_file

    model.value_head.load_state_dict(load_file(str(path)))


def read_log(run_dir: Path) -> list[dict]:
    """The rows of ``<run_dir>/ppo/log.jsonl`` (one per iteration)."""
    path = Path(run_dir) / "ppo" / LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_log(path: Path, last_iteration: int) -> None:
    """Keep the log lines of iterations ``<= last_iteration`` (a resumed run redoes the rest)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= last_iteration]

    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _append_log(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fresh_start(out: Path) -> None:
    for name in (CHECKPOINT, f"{CHECKPOINT}.old", ADAPTER, SNAPSHOTS):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (LOG, "metrics.json", "value_head.safetensors", "eval_texts.json", SCORE_NORM, CHECKS, CHECKS_TEXTS):
        (out / name).unlink(missing_ok=True)
