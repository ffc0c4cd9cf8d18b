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

Every rate comes with its 95 % Wilson interval (``intervals``), and the per-seeker outcomes
behind the figures are kept (``outcomes``, in seeker order) so that two generators scored on
the same seekers can be compared pairwise (:func:`compare_reports`).

SFT, PPO (on its rollouts) and the evaluation stage all call this one function.
"""
from __future__ import annotations

from collections import Counter
from statistics import mean

from .metrics import skill_scores
from .stats import paired_difference, rate
from .world import Oracle

RATES = ("parse_rate", "accept_rate", "two_sided_rate")  # yes/no per seeker: Wilson intervals
OUTCOMES = {"parse_rate": "parsed", "accept_rate": "accepted", "two_sided_rate": "two_sided",
            "p_accept": "p_accept", "seeker_interest": "interest"}  # report key -> per-seeker outcome


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
    outcomes = {"parsed": [int(sc.parse_ok) for sc in scores], "accepted": [int(sc.p_accept > 0.5) for sc in scores],
                "two_sided": [int(sc.two_sided) for sc in scores],
                "p_accept": [round(float(sc.p_accept), 6) for sc in scores],
                "interest": [round(float(sc.seeker_interest), 6) for sc in scores]}
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
        "intervals": {key: rate(sum(outcomes[OUTCOMES[key]]), n) for key in RATES},
        "outcomes": outcomes,
    }


def compare_reports(a: dict, b: dict, seed: int = 0) -> dict:
    """Arm ``a`` minus arm ``b`` on the same seekers, for every per-seeker outcome.

    ``{report key: paired_difference}`` (:func:`girl_lib.stats.paired_difference`): the
    difference of the rates or means, its paired bootstrap interval, n and the paired test
    (exact McNemar for yes/no outcomes, Wilcoxon for ``p_accept`` and ``seeker_interest``).
    """
    if a.get("n") != b.get("n"):
        raise ValueError(f"paired reports need the same seekers, got n={a.get('n')} and n={b.get('n')}")
    return {key: paired_difference(a["outcomes"][o], b["outcomes"][o], seed=seed) for key, o in OUTCOMES.items()
            if "outcomes" in a and "outcomes" in b}
