"""``girl data``: the synthetic recruiting world into ``<run_dir>/data`` (see :mod:`girl_lib.world`)."""
from __future__ import annotations

from pathlib import Path

from ..config import Profile
from ..rundir import read_manifest, stage_dir
from ..world import build_dataset


def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """Build the world for ``cfg.data``; the counts per file and the recruiters' acceptance rate."""
    out = stage_dir(run_dir, "data")
    counts = build_dataset(cfg.data, out)
    manifest = read_manifest(out) or {}
    return {"counts": counts, "acceptance_rate": manifest.get("acceptance_rate")}
