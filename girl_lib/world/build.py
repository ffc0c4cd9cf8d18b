"""``build_dataset``: generate the world and write the six JSON Lines files of ``girl data``.

Derived files (what each later stage trains or evaluates on):

* ``sft.jsonl``: one record per application, prompt = ``make_prompt(cv)``, completion = the JD
  the seeker applied to. SFT learns "jobs this person would apply to".
* ``rm_pairs.jsonl``: for one seeker, a chosen JD and a rejected JD. ``feedback`` pairs come from
  the recruiters' observed decisions (an accepted vs a rejected application), keeping only pairs
  the oracle agrees with: a decision flipped by recruiter noise stays in ``applications.jsonl``
  but does not become a lesson for the reward model. ``hard_negative`` pairs put a truly acceptable application
  against a job of the *same occupation* that fails on level or on a must-have skill, so the
  reward model must read those fields, not just the topic.
* ``sequences.jsonl``: for seekers with at least 3 applications, the time-ordered history
  (all but the last) and the next job (the last), for generative recommendation.

Writing is atomic per file, and ``manifest.json`` (counts, config, file hashes) is written last:
a directory without it is incomplete. The same config and seed give byte-identical files.

Run ``python -m girl_lib.world OUT_DIR --profile smoke --seed 0`` to build by hand.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

from ..config import DataConfig, resolve_profile
from ..rundir import atomic_write_text
from .generate import World, generate_world
from .io import FILES, KINDS, MANIFEST, dumps, sha256_file, write_jsonl
from .parse import ParsedJD
from .text import make_prompt

FORMAT_VERSION = 1
MAX_FEEDBACK_PAIRS = 3  # per seeker
MAX_HARD_NEGATIVES = 2  # per seeker


def _by_seeker(world: World) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {s["id"]: [] for s in world.seekers}
    for a in world.applications:  # already sorted by (seeker, ts)
        out[a["seeker_id"]].append(a)
    return out


def sft_records(world: World) -> list[dict]:
    out = []
    for a in world.applications:
        s, j = world.seeker(a["seeker_id"]), world.job(a["job_id"])
        out.append({"id": f"sft{a['id'][1:]}", "seeker_id": s["id"], "job_id": j["id"],
                    "prompt": make_prompt(s["cv_text"]), "completion": j["jd_text"], "split": s["split"]})
    return out


def rm_pair_records(world: World) -> list[dict]:
    rng = random.Random(f"girl-world:{world.config.seed}:rm_pairs")
    parsed = {j["id"]: ParsedJD.from_job(j) for j in world.jobs}

    def score(seeker: dict, job_id: str):
        return world.oracle.score_parsed(seeker, parsed[job_id])

    by_pool_occ: dict[tuple[bool, str], list[dict]] = {}
    for j in world.jobs:
        by_pool_occ.setdefault((j["cold_start"], j["occupation_id"]), []).append(j)
    out = []
    for sid, apps in _by_seeker(world).items():
        s = world.seeker(sid)
        prompt = make_prompt(s["cv_text"])
        accepted = [a for a in apps if a["accepted"]]
        rejected = [a for a in apps if not a["accepted"]]

        def pair(chosen_id: str, rejected_id: str, kind: str) -> None:
            out.append({"seeker_id": sid, "prompt": prompt, "kind": kind, "split": s["split"],
                        "chosen": world.job(chosen_id)["jd_text"], "rejected": world.job(rejected_id)["jd_text"],
                        "chosen_job_id": chosen_id, "rejected_job_id": rejected_id})

        p = {a["job_id"]: score(s, a["job_id"]).p_accept for a in apps}
        # Observed feedback, kept only where the oracle agrees (a noisy flip is not a lesson).
        combos = [(a["job_id"], r["job_id"]) for a in accepted for r in rejected
                  if p[a["job_id"]] > p[r["job_id"]]]
        for c, r in rng.sample(combos, min(MAX_FEEDBACK_PAIRS, len(combos))):
            pair(c, r, "feedback")
        # Hard negatives: same occupation as the seeker, but the level or a must-have is wrong.
        true_pos = [a["job_id"] for a in accepted if p[a["job_id"]] > 0.5]
        if not true_pos:
            continue
        negatives = []
        for j in by_pool_occ.get((s["split"] == "cold", s["occupation_id"]), []):
            if j["id"] in true_pos:
                continue
            rec = world.oracle.recruiter_factors(s, parsed[j["id"]])
            if rec["level"] < 1.0 or rec["skills"] < 1.0:
                negatives.append(j["id"])
        for c in true_pos[:MAX_HARD_NEGATIVES]:
            if negatives:
                pair(c, rng.choice(negatives), "hard_negative")
    for k, r in enumerate(out):
        r["id"] = f"rm{k + 1:06d}"
    return out


def sequence_records(world: World) -> list[dict]:
    out = []
    for sid, apps in _by_seeker(world).items():
        if len(apps) < 3:
            continue
        jobs = [world.job(a["job_id"]) for a in apps]
        out.append({"id": f"seq{len(out) + 1:06d}", "seeker_id": sid,
                    "history_job_ids": [j["id"] for j in jobs[:-1]],
                    "history_titles": [j["title"] for j in jobs[:-1]],
                    "next_job_id": jobs[-1]["id"], "next_title": jobs[-1]["title"],
                    "split": world.seeker(sid)["split"]})
    return out


def world_records(world: World) -> dict[str, list[dict]]:
    """The six files' records, each list sorted by id."""
    records = {"seekers": world.seekers, "jobs": world.jobs, "applications": world.applications,
               "sft": sft_records(world), "rm_pairs": rm_pair_records(world),
               "sequences": sequence_records(world)}
    return {k: sorted(v, key=lambda r: r["id"]) for k, v in records.items()}


def build_dataset(cfg: DataConfig, out_dir: Path | str) -> dict[str, int]:
    """Generate the world for ``cfg`` and write the six JSONL files plus ``manifest.json`` (last)
    into ``out_dir``. Returns the number of records per file kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    if manifest.exists():
        manifest.unlink()  # the directory is incomplete until the new manifest is written
    world = generate_world(cfg)
    counts = {}
    for kind, records in world_records(world).items():
        counts[kind] = write_jsonl(out_dir / FILES[kind], records)
    atomic_write_text(manifest, json.dumps({
        "format_version": FORMAT_VERSION,
        "complete": True,
        "counts": counts,
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "sha256": {FILES[k]: sha256_file(out_dir / FILES[k]) for k in KINDS},
        "taxonomy": {"occupations": len(world.taxonomy), "attribution": world.taxonomy.attribution},
        "acceptance_rate": round(world.acceptance_rate(), 4),
    }, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return counts


def sample_config(seed: int = 0) -> DataConfig:
    """The config of the committed ``data_samples/``: the smoke profile shrunk to 20 seekers and
    16 jobs (``python -m girl_lib.world data_samples --seekers 20 --jobs 16``)."""
    return resolve_profile("smoke", {"data.n_seekers": 20, "data.n_jobs": 16, "data.seed": seed}).data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the synthetic recruiting world.")
    ap.add_argument("out_dir")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seekers", type=int, help="override data.n_seekers")
    ap.add_argument("--jobs", type=int, help="override data.n_jobs")
    args = ap.parse_args(argv)
    overrides = {}
    if args.seekers:
        overrides["data.n_seekers"] = args.seekers
    if args.jobs:
        overrides["data.n_jobs"] = args.jobs
    cfg = resolve_profile(args.profile, overrides, seed=args.seed).data
    t0 = time.perf_counter()
    counts = build_dataset(cfg, args.out_dir)
    print(dumps({"counts": counts, "seconds": round(time.perf_counter() - t0, 2)}))

