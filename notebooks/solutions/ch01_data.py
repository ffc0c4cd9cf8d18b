"""Solutions to the exercises of chapter 01 (the data). Checked by tests/test_exercises.py."""
from collections import Counter

LEVELS = ("junior", "mid", "senior", "lead")


def level_factor(seeker_level, job_level):
    """Exercise 1.1: passes (1.0) when the seeker is at the job's level or one above; under-qualified
    by one level 0.25, by two or more 0.05; over-qualified by two or more 0.3."""
    gap = LEVELS.index(seeker_level) - LEVELS.index(job_level)
    if gap in (0, 1):
        return 1.0
    if gap == -1:
        return 0.25
    if gap < -1:
        return 0.05
    return 0.3


def write_jd(job):
    """Exercise 1.2: every field the recruiter checks, on a labelled line the parser reads."""
    where = "Remote" if job["remote"] else job["location"]
    return "\n".join([
        f"Title: {job['title']}",
        f"Level: {job['level']}",
        f"Must-have: {', '.join(job['must_have'])}",
        f"Location: {where}",
        f"Salary: EUR {job['salary_min']:,}-{job['salary_max']:,}",
    ])


def acceptance_by_step(applications, seekers, jobs):
    """Exercise 1.3: level step (job minus seeker) -> (applications, acceptance rate)."""
    total, accepted = Counter(), Counter()
    for a in applications:
        step = LEVELS.index(jobs[a["job_id"]]["level"]) - LEVELS.index(seekers[a["seeker_id"]]["level"])
        total[step] += 1
        accepted[step] += a["accepted"]
    return {k: (total[k], accepted[k] / total[k]) for k in sorted(total)}
