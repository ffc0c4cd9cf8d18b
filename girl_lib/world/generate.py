"""Seeded generators: jobs, seekers, and the applications between them.

Order of generation (each step has its own ``random.Random`` stream, seeded from the config
seed with a string, which Python hashes with SHA-512: identical on every machine):

1. **Jobs.** An occupation (weighted by market demand per occupation group), a level, a title
   (the ESCO label or an alternative title, with a level word), 2-4 must-have skills from the
   occupation's core, 1-3 nice-to-have skills, a city or remote, a salary band (group x level,
   +-5%), a Faker company, and a JD in one of the JD styles. A share of jobs
   (``cold_start_fraction``) is held out as *cold-start* jobs.
2. **Seekers.** A split (train/val/test/match/cold), an occupation drawn from the jobs they can see
   (cold seekers see only cold jobs, everyone else only the others), a level, years of
   experience consistent with it, education, true skills (most of their occupation's core, a
   few other skills of it, sometimes one or two from a related occupation), a city, whether they
   would relocate, a salary expectation, a Faker name, and a CV in one of the CV styles.
3. **Applications.** Each seeker applies to ``applications_per_seeker`` jobs near their
   occupation, drawn with probability proportional to ``seeker_interest ** 3`` (see
   ``oracle.py``): often one level up, sometimes far away or under-paid. The recruiter then
   applies the oracle's rule, and with probability ``recruiter_noise`` flips the decision.
"""
from __future__ import annotations

import math
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from faker import Faker

from ..config import DataConfig
from ..errors import GirlError
from .oracle import Oracle
from .parse import ParsedJD
from .taxonomy import (CITIES, CITY_LOCALES, CITY_WEIGHTS, EDUCATION, FIELDS_OF_STUDY, GROUP_DEMAND,
                       GROUP_SALARY, LEVEL_INDEX, LEVEL_SALARY_FACTOR, LEVEL_WEIGHTS, LEVELS, YEARS, Taxonomy,
                       load_taxonomy, salary_band)
from .text import CV_STYLES, JD_STYLES, level_title, render_cv, render_jd

SPLITS = ("train", "val", "test", "match", "cold")
EDUCATION_WEIGHTS = (0.15, 0.5, 0.3, 0.05)
CORE_SKILL_PROB = {"junior": 0.85, "mid": 0.9, "senior": 0.95, "lead": 0.97}
MUST_HAVE_COUNTS, MUST_HAVE_WEIGHTS = (2, 3, 4), (0.5, 0.35, 0.15)
NEIGHBOUR_SKILLS = (2, 3)  # core skills of one related occupation a seeker also holds
CLOSEST_SHARE = 0.7  # ... taken from the closest related occupation this often
SALARY_EXPECTATION = (0.8, 1.1)  # x the group x level salary
REMOTE_SHARE = 0.35  # jobs that can be done remotely
RELOCATE_SHARE = 0.45  # seekers willing to move
JOBS_PER_OCCUPATION = 6  # small worlds use only n_jobs / 6 occupations
MAX_CANDIDATES = 150  # jobs a seeker considers at most (keeps the gpu-size world fast)
APPLY_SHARPNESS = 3.0  # seekers apply with probability ~ seeker_interest ** APPLY_SHARPNESS
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass
class World:
    """Everything generated, in memory: the records that ``build_dataset`` writes out."""
    config: DataConfig
    taxonomy: Taxonomy
    oracle: Oracle
    seekers: list[dict]
    jobs: list[dict]
    applications: list[dict]
    _seekers_by_id: dict[str, dict] = field(default_factory=dict, repr=False)
    _jobs_by_id: dict[str, dict] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._seekers_by_id = {s["id"]: s for s in self.seekers}
        self._jobs_by_id = {j["id"]: j for j in self.jobs}

    def seeker(self, seeker_id: str) -> dict:
        return self._seekers_by_id[seeker_id]

    def job(self, job_id: str) -> dict:
        return self._jobs_by_id[job_id]

    def pool(self, seeker: dict) -> list[dict]:
        """The jobs a seeker can see: cold-start jobs for cold seekers, the others otherwise."""
        cold = seeker["split"] == "cold"
        return [j for j in self.jobs if j["cold_start"] == cold]

    # -- statistics used by the notebook and the tests ---------------------------------------
    def acceptance_rate(self) -> float:
        return sum(a["accepted"] for a in self.applications) / max(1, len(self.applications))

    def level_steps(self) -> Counter:
        """How many applications go k levels up (+1), at (0) or below (-1) the seeker's level."""
        return Counter(LEVEL_INDEX[self.job(a["job_id"])["level"]] - LEVEL_INDEX[self.seeker(a["seeker_id"])["level"]]
                       for a in self.applications)

    def acceptance_by_step(self) -> dict[int, tuple[int, float]]:
        """Level step -> (applications, acceptance rate)."""
        tot: Counter = Counter()
        acc: Counter = Counter()
        for a in self.applications:
            k = LEVEL_INDEX[self.job(a["job_id"])["level"]] - LEVEL_INDEX[self.seeker(a["seeker_id"])["level"]]
            tot[k] += 1
            acc[k] += a["accepted"]
        return {k: (tot[k], acc[k] / tot[k]) for k in sorted(tot)}

    def coverage_vs_acceptance(self) -> dict[str, tuple[int, float]]:
        """Share of the job's must-haves the applicant holds -> (applications, acceptance rate)."""
        buckets = ("none", "some", "most", "all")
        tot: Counter = Counter()
        acc: Counter = Counter()
        for a in self.applications:
            job, have = self.job(a["job_id"]), set(self.seeker(a["seeker_id"])["skills"])
            share = sum(m in have for m in job["must_have"]) / len(job["must_have"])
            b = buckets[0 if share == 0 else 3 if share == 1 else 1 if share < 0.5 else 2]
            tot[b] += 1
            acc[b] += a["accepted"]
        return {b: (tot[b], acc[b] / tot[b]) for b in buckets if tot[b]}

    def failed_checks(self) -> Counter:
        """How often each recruiter check fails over all applications (several may fail at once;
        applications where all pass are not counted)."""
        out: Counter = Counter()
        for a in self.applications:
            score = self.oracle.score_job(self.seeker(a["seeker_id"]), self.job(a["job_id"]))
            out.update(score.failed)
        return out


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(f"girl-world:{seed}:{stream}")


class _Fakers:
    """One seeded Faker per locale, created on first use (names and companies look local)."""
    def __init__(self, seed: int, stream: str):
        self.seed, self.stream, self._by_locale = seed, stream, {}

    def __call__(self, city: str) -> Faker:
        locale = CITY_LOCALES[city]
        if locale not in self._by_locale:
            fake = Faker(locale)
            fake.seed_instance(zlib.crc32(f"{self.seed}:{self.stream}:{locale}".encode()))
            self._by_locale[locale] = fake
        return self._by_locale[locale]


def _balanced(styles: tuple[str, ...], n: int, rng: random.Random) -> list[str]:
    """n styles, each used about equally often, in random order (all occur once n >= len)."""
    out = [styles[i % len(styles)] for i in range(n)]
    rng.shuffle(out)
    return out


def _count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 or n < 2 else max(1, round(n * fraction))


def generate_jobs(cfg: DataConfig, tax: Taxonomy) -> list[dict]:
    rng = _rng(cfg.seed, "jobs")
    fakers = _Fakers(cfg.seed, "jobs")
    occs = tax.occupations
    demand = [GROUP_DEMAND[o.group] * rng.uniform(0.5, 1.5) for o in occs]
    # A small world has a small market: few occupations, several jobs each.
    n_active = min(len(occs), max(4, cfg.n_jobs // JOBS_PER_OCCUPATION))
    keyed = sorted(((rng.random() ** (1.0 / w), o.id) for o, w in zip(occs, demand)), reverse=True)
    active = {oid for _, oid in keyed[:n_active]}
    demand = [w if o.id in active else 0.0 for o, w in zip(occs, demand)]
    styles = _balanced(JD_STYLES, cfg.n_jobs, rng)
    jobs = []
    for i in range(cfg.n_jobs):
        occ = rng.choices(occs, demand)[0]
        level = rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
        titles = tax.job_titles(occ.id)
        base = titles[0] if len(titles) == 1 or rng.random() < 0.6 else rng.choice(titles[1:])
        k = rng.choices(MUST_HAVE_COUNTS, MUST_HAVE_WEIGHTS)[0]
        must = rng.sample(occ.core, min(k, len(occ.core)))
        others = [s for s in occ.all_skills if s not in occ.core] or [s for s in occ.core if s not in must]
        nice = rng.sample(others, min(rng.randint(1, 3), len(others)))
        city = rng.choices(CITIES, CITY_WEIGHTS)[0]
        remote = rng.random() < REMOTE_SHARE
        location = None if remote and rng.random() < 0.5 else city
        lo, hi = salary_band(occ.group, level)
        jitter = rng.uniform(0.95, 1.05)
        job = {
            "id": f"j{i + 1:05d}",
            "occupation_id": occ.id,
            "title": level_title(base, level, rng.randrange(3)),
            "level": level,
            "must_have": must,
            "nice_to_have": nice,
            "location": location,
            "remote": remote,
            "salary_min": int(round(lo * jitter, -3)),
            "salary_max": int(round(hi * jitter, -3)),
            "company": fakers(city).company(),
            "jd_style": styles[i],
            "cold_start": False,
        }
        job["jd_text"] = render_jd(job, job["jd_style"], tax)
        jobs.append(job)
    order = list(range(len(jobs)))
    rng.shuffle(order)
    for i in order[:_count(len(jobs), cfg.cold_start_fraction)]:
        jobs[i]["cold_start"] = True
    return jobs


def _split_labels(cfg: DataConfig, n: int, have_cold_jobs: bool, rng: random.Random) -> list[str]:
    n_cold = _count(n, cfg.cold_start_fraction) if have_cold_jobs else 0
    n_test, n_val = _count(n, cfg.test_fraction), _count(n, cfg.val_fraction)
    n_match = _count(n, cfg.match_fraction)
    n_train = n - n_cold - n_test - n_val - n_match
    if n_train < 1:
        raise GirlError(f"data.n_seekers={n} leaves no training seekers; raise it or lower the split fractions")
    labels = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test + ["match"] * n_match + ["cold"] * n_cold
    rng.shuffle(labels)
    return labels


def generate_seekers(cfg: DataConfig, tax: Taxonomy, jobs: list[dict]) -> list[dict]:
    rng = _rng(cfg.seed, "seekers")
    fakers = _Fakers(cfg.seed, "seekers")
    warm = [j for j in jobs if not j["cold_start"]]
    cold = [j for j in jobs if j["cold_start"]]
    if not warm:
        raise GirlError("every job is cold-start; lower data.cold_start_fraction or raise data.n_jobs")
    splits = _split_labels(cfg, cfg.n_seekers, bool(cold), rng)
    styles = _balanced(CV_STYLES, cfg.n_seekers, rng)
    seekers = []
    for i, split in enumerate(splits):
        occ = tax[rng.choice(cold if split == "cold" else warm)["occupation_id"]]
        level = rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
        held = [c for c in occ.core if rng.random() < CORE_SKILL_PROB[level]]
        others = [s for s in occ.all_skills if s not in occ.core]
        held += rng.sample(others, min(rng.randint(1, 3), len(others)))
        if occ.neighbours:  # a related occupation's core skills make a move there possible
            near = tax[occ.neighbours[0] if rng.random() < CLOSEST_SHARE else rng.choice(occ.neighbours)]
            extra = [s for s in near.core if s not in held]
            held += rng.sample(extra, min(rng.randint(NEIGHBOUR_SKILLS[0], NEIGHBOUR_SKILLS[1]), len(extra)))
        city = rng.choices(CITIES, CITY_WEIGHTS)[0]
        fake = fakers(city)
        mid_salary = GROUP_SALARY[occ.group] * LEVEL_SALARY_FACTOR[level]
        education = rng.choices(EDUCATION, EDUCATION_WEIGHTS)[0]
        seeker = {
            "id": f"s{i + 1:05d}",
            "split": split,
            "name": f"{fake.first_name()} {fake.last_name()}",
            "occupation_id": occ.id,
            "occupation": occ.label,
            "level": level,
            "years_experience": rng.randint(*YEARS[level]),
            "education": education,
            "field_of_study": "Media Technology" if occ.group == "media" else rng.choice(FIELDS_OF_STUDY[:-1]),
            "skills": sorted(held[:10]),
            "location": city,
            "relocate": rng.random() < RELOCATE_SHARE,
            "salary_expectation": int(round(mid_salary * rng.uniform(*SALARY_EXPECTATION), -3)),
            "cv_style": styles[i],
        }
        employers = [fake.company() for _ in range(3)]
        seeker["cv_text"] = render_cv(seeker, seeker["cv_style"], tax, rng, employers)
        seekers.append(seeker)
    return seekers


def generate_applications(cfg: DataConfig, tax: Taxonomy, seekers: list[dict], jobs: list[dict],
                          oracle: Oracle) -> list[dict]:
    rng = _rng(cfg.seed, "applications")
    parsed = {j["id"]: ParsedJD.from_job(j) for j in jobs}
    by_pool_occ: dict[tuple[bool, str], list[dict]] = {}
    pools: dict[bool, list[dict]] = {False: [], True: []}
    for j in jobs:
        by_pool_occ.setdefault((j["cold_start"], j["occupation_id"]), []).append(j)
        pools[j["cold_start"]].append(j)
    lo, hi = cfg.applications_per_seeker
    apps = []
    for s in seekers:
        cold = s["split"] == "cold"
        n = rng.randint(lo, hi)
        near = [s["occupation_id"], *tax[s["occupation_id"]].neighbours]
        cands = [j for occ in near for j in by_pool_occ.get((cold, occ), [])]
        if len(cands) < n:  # few jobs near them: apply to fewer, but at least `lo`, looking wider
            n = max(len(cands), min(lo, len(pools[cold])))
            if len(cands) < n:
                cands = pools[cold]
        if len(cands) > MAX_CANDIDATES:
            cands = rng.sample(cands, MAX_CANDIDATES)
        # Weighted sampling without replacement (Efraimidis-Spirakis): key = u ** (1 / w).
        keyed = []
        for j in cands:
            w = max(math.prod(oracle.interest_factors(s, parsed[j["id"]]).values()), 1e-6) ** APPLY_SHARPNESS
            keyed.append((rng.random() ** (1.0 / w), j["id"]))
        chosen = [jid for _, jid in sorted(keyed, reverse=True)[:n]]
        rng.shuffle(chosen)
        t = START + timedelta(days=rng.randrange(300), seconds=rng.randrange(8 * 3600, 18 * 3600))
        for jid in chosen:
            rule = all(v == 1.0 for v in oracle.recruiter_factors(s, parsed[jid]).values())
            flip = rng.random() < cfg.recruiter_noise
            apps.append({"seeker_id": s["id"], "job_id": jid, "accepted": rule != flip,
                         "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "split": s["split"]})
            t += timedelta(seconds=rng.randrange(3600, 10 * 86400))
    apps.sort(key=lambda a: (a["seeker_id"], a["ts"], a["job_id"]))
    for k, a in enumerate(apps):
        a["id"] = f"a{k + 1:06d}"
    return apps


def generate_world(cfg: DataConfig, taxonomy: Taxonomy | None = None) -> World:
    """Generate the whole world for a config; the same config and seed give the same world."""
    tax = taxonomy or load_taxonomy()
    oracle = Oracle(tax, noise=cfg.recruiter_noise)
    jobs = generate_jobs(cfg, tax)
    seekers = generate_seekers(cfg, tax, jobs)
    apps = generate_applications(cfg, tax, seekers, jobs, oracle)
    return World(cfg, tax, oracle, seekers, jobs, apps)
