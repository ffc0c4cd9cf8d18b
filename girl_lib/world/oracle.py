"""The ground-truth oracle: would the recruiter accept this seeker, and would the seeker want the job?

The oracle knows the latent truth about a seeker (occupation, level, true skills, city,
willingness to relocate, salary expectation) and reads a job's fields, either from a job record
(``score_job``) or parsed out of any JD text, LLM-generated ones included (``score``). It is a
deterministic function: the noise of real recruiters is added only when the world samples
their decisions (see ``generate.py``).

**Recruiter side** (``p_accept``). A recruiter accepts only when five checks pass:

========== ========================================================= ======================
check      passes when                                               factor when it fails
========== ========================================================= ======================
skills     every must-have skill is among the seeker's true skills   0.4 x share covered
level      seeker level = job level, or one above (not under-        0.25 one under, 0.05 two+
           qualified, not more than one level over-qualified)        under, 0.3 two+ over
salary     the seeker's expectation <= the top of the band           0.4 - 2 x overshoot
location   same city, a remote job, or the seeker relocates          0.15
role       the job's occupation is the seeker's own or a related     0.3
           one (a JD cannot list easy skills for a role the seeker
           has no background in)
========== ========================================================= ======================

A field the JD does not state counts as 0.45 (unknown, never a pass). The product of the
factors is 1 exactly when all checks pass, and ``p_accept = noise + (1 - 2 noise) x product``:
0.95 for a match, at most 0.41 after any failed check (and after any missing field), so
``p_accept > 0.5`` means "the recruiter's rule says yes". Covering more must-haves never lowers it.

**Seeker side** (``seeker_interest``): product of occupation (same 1, related 0.2, other or unknown 0.05 -
related occupations are an option, not a wish), level (the job's level minus the seeker's: same
1.0, one above 0.8 - seekers like to step up, one below 0.3, else 0.1), salary (band top >=
expectation 1, else dropping with the shortfall) and location (same city or remote 1,
relocating 0.8, else 0.3). Seekers *apply* with probability proportional to interest cubed, so
they mostly apply to their own occupation, often one level up, sometimes far away or underpaid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from .parse import ParsedJD, parse_jd
from .taxonomy import LEVEL_INDEX, Taxonomy, load_taxonomy, norm

UNKNOWN = 0.45  # factor for a field the JD does not state
DEFAULT_NOISE = 0.05
RELATED_INTEREST = 0.2  # seeker interest in a job of a related occupation
FAR_INTEREST = 0.3  # seeker interest in a job in another city they would not move to
LEVEL_INTEREST = {1: 0.8, 0: 1.0, -1: 0.3}  # job level minus seeker level -> interest


@dataclass
class OracleScore:
    p_accept: float  # recruiter acceptance probability in [0, 1]
    seeker_interest: float  # how much the seeker wants this job, in [0, 1]
    parsed: ParsedJD
    parse_ok: bool
    two_sided: bool  # both sides above 0.5: a real match
    recruiter: dict[str, float] = field(default_factory=dict)  # factor per check (1.0 = pass)
    interest: dict[str, float] = field(default_factory=dict)  # factor per seeker preference

    @property
    def failed(self) -> list[str]:
        """Recruiter checks that did not pass ('skills', 'level', 'salary', 'location', 'role')."""
        return [k for k, v in self.recruiter.items() if v < 1.0]


@lru_cache(maxsize=65536)
def _words(skill: str) -> tuple[str, frozenset[str]]:
    key = norm(skill)
    return key, frozenset(key.split())


def _skill_match(skill: str, have: set[str], have_words: list[frozenset[str]]) -> bool:
    """A must-have is covered by an exact (normalised) match, or by a seeker skill sharing at
    least 75% of its words (so 'Python programming' ~ 'Python' does NOT pass, a reordered or
    lightly reworded ESCO skill does)."""
    key, words = _words(skill)
    if key in have:
        return True
    if not words:
        return False
    return any(len(words & hw) / len(words | hw) >= 0.75 for hw in have_words)


class Oracle:
    """Scores (seeker, job) pairs against the latent truth. See the module docstring."""
    def __init__(self, taxonomy: Taxonomy | None = None, noise: float = DEFAULT_NOISE):
        self.taxonomy = taxonomy or load_taxonomy()
        self.noise = noise
        self._cache: dict[tuple, tuple[set[str], list[set[str]]]] = {}

    # -- per-seeker skill sets, cached by the skill list itself ----------------------------
    def _skills(self, seeker: dict) -> tuple[set[str], list[set[str]]]:
        key = tuple(seeker.get("skills", []))
        if key not in self._cache:
            have = {norm(s) for s in key}
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = (have, [frozenset(h.split()) for h in sorted(have)])
        return self._cache[key]

    # -- the two sides ----------------------------------------------------------------------
    def recruiter_factors(self, seeker: dict, jd: ParsedJD) -> dict[str, float]:
        have, have_words = self._skills(seeker)
        f: dict[str, float] = {}
        if jd.must_have:
            covered = sum(_skill_match(s, have, have_words) for s in jd.must_have)
            share = covered / len(jd.must_have)
            f["skills"] = 1.0 if covered == len(jd.must_have) else 0.4 * share
        else:
            f["skills"] = UNKNOWN
        if jd.level in LEVEL_INDEX:
            gap = LEVEL_INDEX[seeker["level"]] - LEVEL_INDEX[jd.level]
            f["level"] = 1.0 if gap in (0, 1) else 0.25 if gap == -1 else 0.05 if gap < -1 else 0.3
        else:
            f["level"] = UNKNOWN
        if jd.salary_max is not None or jd.salary_min is not None:
            top = jd.salary_max if jd.salary_max is not None else jd.salary_min
            over = seeker["salary_expectation"] / max(top, 1) - 1.0
            f["salary"] = 1.0 if over <= 0 else max(0.05, 0.4 - 2.0 * over)
        else:
            f["salary"] = UNKNOWN
        if jd.remote or (jd.location is not None and (jd.location == seeker["location"] or seeker["relocate"])):
            f["location"] = 1.0
        else:
            f["location"] = UNKNOWN if jd.location is None else 0.15
        if jd.occupation_id is None:
            f["role"] = UNKNOWN
        else:
            own = seeker["occupation_id"]
            related = jd.occupation_id == own or jd.occupation_id in self.taxonomy[own].neighbours
            f["role"] = 1.0 if related else 0.3
        return f

    def interest_factors(self, seeker: dict, jd: ParsedJD) -> dict[str, float]:
        f: dict[str, float] = {}
        occ = jd.occupation_id
        if occ is None:
            f["occupation"] = 0.05  # a title we cannot place is no better than an unrelated one
        elif occ == seeker["occupation_id"]:
            f["occupation"] = 1.0
        elif occ in self.taxonomy[seeker["occupation_id"]].neighbours:
            f["occupation"] = RELATED_INTEREST
        else:
            f["occupation"] = 0.05
        if jd.level in LEVEL_INDEX:
            step = LEVEL_INDEX[jd.level] - LEVEL_INDEX[seeker["level"]]
            f["level"] = LEVEL_INTEREST.get(step, 0.1)
        else:
            f["level"] = UNKNOWN
        top = jd.salary_max if jd.salary_max is not None else jd.salary_min
        if top is None:
            f["salary"] = UNKNOWN
        else:
            short = 1.0 - top / seeker["salary_expectation"]
            f["salary"] = 1.0 if short <= 0 else max(0.1, 1.0 - 3.0 * short)
        if jd.remote or (jd.location is not None and jd.location == seeker["location"]):
            f["location"] = 1.0
        elif jd.location is None:
            f["location"] = UNKNOWN
        else:
            f["location"] = 0.8 if seeker["relocate"] else FAR_INTEREST
        return f

    # -- public scoring ---------------------------------------------------------------------
    def score_parsed(self, seeker: dict, jd: ParsedJD) -> OracleScore:
        rec = self.recruiter_factors(seeker, jd)
        inter = self.interest_factors(seeker, jd)
        product = math.prod(rec.values())
        p_accept = self.noise + (1.0 - 2.0 * self.noise) * product
        interest = math.prod(inter.values())
        return OracleScore(p_accept=p_accept, seeker_interest=interest, parsed=jd, parse_ok=jd.ok,
                           two_sided=p_accept > 0.5 and interest > 0.5, recruiter=rec, interest=inter)

    def score(self, seeker: dict, jd_text: str) -> OracleScore:
        """Score any JD text (parsed with ``parse_jd``) for a seeker record."""
        return self.score_parsed(seeker, parse_jd(jd_text, self.taxonomy))

    def score_job(self, seeker: dict, job: dict) -> OracleScore:
        """Score a job record using its structured fields directly (no parsing)."""
        return self.score_parsed(seeker, ParsedJD.from_job(job))

    def accepts(self, seeker: dict, job: dict) -> bool:
        """The recruiter's noiseless rule: every check passes."""
        return all(v == 1.0 for v in self.recruiter_factors(seeker, ParsedJD.from_job(job)).values())
