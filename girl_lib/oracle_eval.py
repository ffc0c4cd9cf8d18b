"""The oracle's view of generated JDs: the ground truth no real dataset offers.

Given seekers (with their latent truth) and one generated JD per seeker, :func:`oracle_report`
parses every JD back into fields and asks the oracle (``girl_lib.world.oracle``):

- ``parse_rate``       share of JDs whose structured part parses (title, level, must-haves, ...);
- ``p_accept``         mean recruiter-acceptance probability; ``accept_rate`` share above 0.5;
- ``seeker_interest``  mean interest of the seeker in the job described;
- ``two_sided_rate``   share where both sides say yes: the match GIRL is after;
- ``skill_precision`` / ``skill_recall`` / ``hallucinated_skill_rate``: the JD's listed skills
  against the seeker's true skills (micro-averaged over seekers);
- ``failed_checks``    how often each recruiter check (skills, level, salary, location, role) fails.

SFT, PPO (on its rollouts) and the evaluation stage all call this one function.
"""
from __future__ import annotations

from collections import Counter
from statistics import mean

from .metrics import skill_scores
from .world import Oracle


def score_all(seekers: list[dict], jd_texts: list[str], oracle=None) -> list:
    """One :class:`~girl_lib.world.oracle.OracleScore` per (seeker, JD) pair."""
    if len(seekers) != len(jd_texts):
        raise ValueError(f"{len(seekers)} seekers but {len(jd_texts)} JDs")
    oracle = oracle or Oracle()
    return [oracle.score(s, t) for s, t in zip(seekers, jd_texts)]


def oracle_report(seekers: list[dict], jd_texts: list[str], oracle=None, scores: list | None = None) -> dict:
    """Aggregate figures (see the module docstring) for a batch of generated JDs."""
    scores = scores if scores is not None else score_all(seekers, jd_texts, oracle)
    n = len(scores)
    if n == 0:
        return {"n": 0}
    skills = [skill_scores(sc.parsed.must_have + sc.parsed.nice_to_have, s["skills"])
              for s, sc in zip(seekers, scores)]
    failed = Counter(check for sc in scores for check in sc.failed)
    return {
        "n": n,
        "parse_rate": sum(sc.parse_ok for sc in scores) / n,
        "p_accept": mean(sc.p_accept for sc in scores),
        "accept_rate": sum(sc.p_accept > 0.5 for sc in scores) / n,
        "seeker_interest": mean(sc.seeker_interest for sc in scores),
        "two_sided_rate": sum(sc.two_sided for sc in scores) / n,
        "skill_precision": mean(k["precision"] for k in skills),
        "skill_recall": mean(k["recall"] for k in skills),
        "hallucinated_skill_rate": mean(k["hallucination_rate"] for k in skills),
        "mean_words": mean(len(t.split()) for t in jd_texts) if jd_texts else 0.0,
        "failed_checks": {k: v / n for k, v in sorted(failed.items())},
    }
