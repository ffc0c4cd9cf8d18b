"""Text in the world: CVs, job descriptions (JDs) and the generator's prompt.

Every CV and JD exists in several *writing styles*, so a model must read the text, not copy a
template. Texts are kept short on purpose: a small LLM generates JDs on a laptop CPU, so a JD is
about 50-90 words and a CV at most about 120.

Reading the fields back from a JD is :mod:`girl_lib.world.parse`.
"""
from __future__ import annotations

import random

from .taxonomy import EDUCATION_SHORT, LEVELS, Taxonomy, display_title

SYSTEM_PROMPT = ("You are a recruiting assistant. You write short job descriptions with a title, "
                 "level, location, salary and must-have skills.")
INSTRUCTION = "Write the job description of a job that suits this candidate."

CV_STYLES: tuple[str, ...] = ("prose", "bullets", "compact", "chronological", "first_person")
JD_STYLES: tuple[str, ...] = ("fields", "prose", "markdown", "compact")
REFERENCE_YEAR = 2025  # "now" in the world, fixed so texts never depend on the clock


def make_prompt(cv_text: str) -> str:
    """The user message given to the generator: an instruction followed by the candidate's CV."""
    return f"{INSTRUCTION}\n\nCandidate CV:\n{cv_text.strip()}"


# ---------------------------------------------------------------------------------------------
# Small formatting helpers
# ---------------------------------------------------------------------------------------------
def eur(amount: int) -> str:
    return f"EUR {amount:,}"


def eur_k(amount: int) -> str:
    return f"{amount / 1000:g}k"


def eur_dots(amount: int) -> str:
    return "€" + f"{amount:,}".replace(",", ".")


def a_an(phrase: str) -> str:
    """'a' or 'an' before ``phrase`` ('an ICT ...', 'an SEO ...', 'a user ...', 'an embedded ...')."""
    first = phrase.split()[0] if phrase.split() else ""
    if first.isupper() and len(first) > 1:  # an acronym, read letter by letter
        return "an" if first[0] in "AEFHILMNORSX" else "a"
    return "an" if first[:1].lower() in "aeio" else "a"


def join_and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "; ".join(items[:-1]) + " and " + items[-1]


def cap_words(text: str, n: int) -> str:
    """Keep at most ``n`` words, cutting at a comma when one is near the end."""
    words = text.split()
    if len(words) <= n:
        return text
    cut = " ".join(words[:n])
    comma = cut.rfind(",")
    if comma > len(cut) // 2:
        cut = cut[:comma]
    return cut.rstrip(" ,;:") + "."


def role_blurb(taxonomy: Taxonomy, occupation_id: str, n_words: int = 20) -> str:
    """First sentence of the ESCO description, turned into 'You will ...' when it reads
    '<Occupation>s <verb> ...' (most do)."""
    occ = taxonomy[occupation_id]
    first = occ.description.split(". ")[0].rstrip(".")
    low, label = first.lower(), occ.label.lower()
    if low.startswith(label):
        rest = first[len(label):]
        rest = rest[2:] if rest.startswith("es") else rest[1:] if rest.startswith("s") else rest
        rest = rest.strip()
        for plural, base in (("are ", "be "), ("have ", "have "), ("do ", "do ")):
            if rest.startswith(plural):
                rest = base + rest[len(plural):]
        first = "You will " + rest
    return cap_words(first + ".", n_words)


def level_title(title: str, level: str, variant: int = 0) -> str:
    """Put a level word in front of a title; mid-level titles often carry none."""
    words = {"junior": ("Junior", "Junior", "Jr."), "mid": ("", "Mid-level", ""),
             "senior": ("Senior", "Sr.", "Senior"), "lead": ("Lead", "Principal", "Lead")}[level]
    word = words[variant % len(words)]
    return f"{word} {display_title(title)}".strip()


# ---------------------------------------------------------------------------------------------
# CVs
# ---------------------------------------------------------------------------------------------
def render_cv(seeker: dict, style: str, taxonomy: Taxonomy, rng: random.Random,
              employers: list[str] | None = None) -> str:
    """Render a seeker's CV in one of ``CV_STYLES``. Only ``bullets`` always states the level word;
    the others let a reader infer seniority from years and past titles.

    ``seeker`` needs: name, occupation_id, level, years_experience, education, field_of_study,
    skills, location, relocate, salary_expectation. ``employers`` (Faker companies) feed the
    chronological style.
    """
    occ = taxonomy[seeker["occupation_id"]]
    name, years, city = seeker["name"], seeker["years_experience"], seeker["location"]
    skills = list(seeker["skills"])
    rng.shuffle(skills)
    degree = f"{seeker['education']} in {seeker['field_of_study']}"
    if seeker["education"] == "vocational certificate":
        degree = f"vocational certificate in {seeker['field_of_study']}"
    sal = seeker["salary_expectation"]
    exp = "less than a year" if years == 0 else f"{years} year{'s' if years != 1 else ''}"
    label = occ.label
    if style == "prose":
        move = "Open to relocation." if seeker["relocate"] else f"Prefers to stay in {city}."
        return (f"{name} is {a_an(label)} {label} based in {city} with {exp} of experience and a {degree}. "
                f"Skilled in {join_and(skills[:4])}"
                + (f"; also familiar with {join_and(skills[4:])}" if skills[4:] else "")
                + f". {move} Looking for about {eur(sal)} a year.")
    if style == "bullets":
        return "\n".join([
            name,
            f"- Current role: {level_title(label, seeker['level'], rng.randrange(3)) if seeker['level'] != 'mid' else display_title(label)} ({seeker['level']} level)",
            f"- Experience: {exp}",
            f"- Education: {degree}",
            f"- Location: {city}" + (", open to relocation" if seeker["relocate"] else ""),
            f"- Salary expectation: {eur(sal)}",
            f"- Skills: {'; '.join(skills)}",
        ])
    if style == "compact":
        move = " (will relocate)" if seeker["relocate"] else ""
        return (f"{name} | {display_title(label)} | {years} yrs | {EDUCATION_SHORT[seeker['education']]} | "
                f"{city}{move} | expects €{eur_k(sal)} | skills: {', '.join(skills)}")
    if style == "chronological":
        return _chronological(seeker, label, skills, degree, employers or ["a local company"], rng)
    if style == "first_person":
        first = name.split()[0]
        move = " and I am happy to relocate" if seeker["relocate"] else ""
        return (f"Hi, I'm {first}, {a_an(label)} {label} from {city}. I have {exp} of experience and a {degree}. "
                f"I work with {join_and(skills)}. I'm looking for a role paying at least "
                f"€{eur_k(sal)} a year{move}.")
    raise ValueError(f"unknown CV style '{style}'; choose one of {', '.join(CV_STYLES)}")


def _chronological(seeker: dict, label: str, skills: list[str], degree: str, employers: list[str],
                   rng: random.Random) -> str:
    """Past jobs, newest or oldest first; earlier titles are one level lower per step."""
    years, level = seeker["years_experience"], seeker["level"]
    jobs = []
    if years == 0:
        jobs.append(f"{REFERENCE_YEAR}–now  Trainee {display_title(label)}, {employers[0]}")
    else:
        n_jobs = min(len(employers), 1 if years < 3 else 2 if years < 8 else 3)
        cuts = sorted(rng.sample(range(1, years), n_jobs - 1)) if n_jobs > 1 else []
        starts = [REFERENCE_YEAR - years] + [REFERENCE_YEAR - years + c for c in cuts]
        li = LEVELS.index(level)
        for k, start in enumerate(starts):
            current = k == len(starts) - 1
            lv = LEVELS[max(0, li - (len(starts) - 1 - k))]
            # Past titles carry their level word; the current one only sometimes.
            named = not current or rng.random() < 0.5
            title = level_title(label, lv, rng.randrange(3)) if named else display_title(label)
            end = "now" if current else str(starts[k + 1])
            jobs.append(f"{start}–{end}  {title}, {employers[k]}")
    if rng.random() < 0.5:
        jobs.reverse()
    return "\n".join([f"{seeker['name']} — {seeker['location']}", "Experience:", *jobs,
                      f"Education: {degree}",
                      f"Skills: {'; '.join(skills)}",
                      f"Salary expectation: {eur_k(seeker['salary_expectation'])} EUR."
                      + (" Open to relocation." if seeker["relocate"] else "")])


# ---------------------------------------------------------------------------------------------
# Job descriptions
# ---------------------------------------------------------------------------------------------
def _where(job: dict) -> str:
    if job["remote"]:
        return "Remote" if job["location"] is None else f"{job['location']} or remote"
    return job["location"]


def render_jd(job: dict, style: str, taxonomy: Taxonomy) -> str:
    """Render a job in one of ``JD_STYLES``. Each has a structured part ``parse_jd`` reads back.

    ``job`` needs: title, level, company, must_have, nice_to_have, location, remote, salary_min,
    salary_max, occupation_id.
    """
    title, level, company = job["title"], job["level"], job["company"]
    must, nice = job["must_have"], job["nice_to_have"]
    lo, hi = job["salary_min"], job["salary_max"]
    blurb = role_blurb(taxonomy, job["occupation_id"])
    level_word = "Mid-level" if level == "mid" else level.capitalize()
    if style == "fields":
        return "\n".join([
            f"Title: {title}",
            f"Company: {company}",
            f"Level: {level_word}",
            f"Location: {_where(job)}",
            f"Salary: {eur(lo)}–{hi:,} per year",
            f"Must-have: {'; '.join(must)}",
            f"Nice-to-have: {'; '.join(nice)}",
            f"About the role: {blurb}",
        ])
    if style == "prose":
        where = "remotely" if job["location"] is None else f"in {job['location']}"
        return "\n".join([
            f"{company} is hiring {a_an(title)} {title} {where}. {blurb}",
            "Requirements:",
            *[f"- {s}" for s in must],
            f"Nice to have: {'; '.join(nice)}.",
            f"Seniority: {level} | Location: {_where(job)} | Salary: {eur_k(lo)}–{eur_k(hi)} EUR",
        ])
    if style == "markdown":
        return "\n".join([
            f"## {title} — {company}",
            f"**Position:** {title}",
            f"**Seniority:** {level_word}",
            f"**Where:** {_where(job)}",
            f"**Pay:** {eur_dots(lo)} – {eur_dots(hi)}",
            "**You must have:**",
            *[f"* {s}" for s in must],
            f"**Bonus:** {'; '.join(nice)}",
            "",
            blurb,
        ])
    if style == "compact":
        return (f"{title} @ {company} · {_where(job)} · {level} · €{eur_k(lo)}–{eur_k(hi)} · "
                f"Must: {'; '.join(must)} · Plus: {'; '.join(nice)}\n{blurb}")
    raise ValueError(f"unknown JD style '{style}'; choose one of {', '.join(JD_STYLES)}")
