"""Text in the world: CVs, job descriptions (JDs), the generator's prompt, and the JD parser.

Every CV and JD exists in several *writing styles*, so a model must read the text, not copy a
template. Texts are kept short on purpose: a small LLM generates JDs on a laptop CPU, so a JD is
about 50-90 words and a CV at most about 120.

``parse_jd`` reads the structured fields (title, level, must-have skills, location, salary)
back from a JD in any of our styles *and* from LLM-generated text: it is tolerant of case,
markdown, bullets, synonyms ("Role:", "Position:", "Requirements", "Must-have") and salary
formats ("EUR 55,000–70,000", "55k-70k", "€55.000 - €70.000"). The oracle scores any JD through it.
"""
from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field

from .taxonomy import CITIES, EDUCATION_SHORT, LEVELS, Taxonomy, display_title, level_from_text, load_taxonomy, norm

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


# ---------------------------------------------------------------------------------------------
# Parsing JDs back into fields
# ---------------------------------------------------------------------------------------------
REQUIRED_FIELDS = ("title", "occupation", "level", "must_have", "location", "salary")


@dataclass
class ParsedJD:
    """The structured fields of a JD. ``ok`` is True when every field in REQUIRED_FIELDS was
    found; ``missing`` names those that were not ('occupation': a title that maps to no ESCO
    occupation)."""

    title: str | None = None
    occupation_id: str | None = None
    level: str | None = None
    must_have: list[str] = field(default_factory=list)
    nice_to_have: list[str] = field(default_factory=list)
    location: str | None = None
    remote: bool = False
    salary_min: int | None = None
    salary_max: int | None = None
    company: str | None = None
    ok: bool = False
    missing: list[str] = field(default_factory=list)

    def finish(self) -> "ParsedJD":
        found = {"title": self.title is not None, "occupation": self.occupation_id is not None,
                 "level": self.level is not None, "must_have": bool(self.must_have),
                 "location": self.location is not None or self.remote,
                 "salary": self.salary_min is not None or self.salary_max is not None}
        self.missing = [f for f in REQUIRED_FIELDS if not found[f]]
        self.ok = not self.missing
        return self

    @classmethod
    def from_job(cls, job: dict) -> "ParsedJD":
        """The fields of a generated job record, exactly as parse_jd should read them back."""
        return cls(title=job["title"], occupation_id=job["occupation_id"], level=job["level"],
                   must_have=list(job["must_have"]), nice_to_have=list(job.get("nice_to_have", [])),
                   location=job["location"], remote=job["remote"], salary_min=job["salary_min"],
                   salary_max=job["salary_max"], company=job.get("company")).finish()

    def to_dict(self) -> dict:
        return asdict(self)


# Field labels people (and LLMs) use; matched on the normalised label text.
_LABELS: dict[str, tuple[str, ...]] = {
    "ignore": ("about", "about the role", "description", "summary", "the role", "overview",
               "benefits", "we offer", "what we offer", "responsibilities", "duties", "tasks",
               "contact", "how to apply", "company", "employer", "team"),
    "title": ("title", "job title", "role", "position", "job", "vacancy", "opening", "job role"),
    "level": ("level", "seniority", "experience level", "seniority level", "grade", "career level"),
    "location": ("location", "where", "city", "based in", "place", "office", "workplace",
                 "work location"),
    "remote": ("remote", "work mode", "remote work", "remote possible", "remote option", "working model"),
    "salary": ("salary", "pay", "compensation", "salary range", "remuneration", "package",
               "gross salary", "annual salary", "budget", "salary band"),
    "must": ("must have", "must", "must haves", "requirements", "required", "required skills",
             "you must have", "key skills", "skills", "what you need", "essential",
             "essential skills", "qualifications", "must have skills", "requirement",
             "what you bring", "you have", "you bring", "hard requirements"),
    "nice": ("nice to have", "nice to haves", "bonus", "bonus points", "plus", "pluses",
             "preferred", "desirable", "optional", "good to have", "nice", "extra"),
}
_LABEL_OF = {norm(s): key for key, syns in _LABELS.items() for s in syns}
_KEYWORDS = (("nice", ("nice", "bonus", "plus", "prefer", "desirab")),
             ("must", ("must", "require", "essential", "need", "qualification")),
             ("salary", ("salary", "pay", "compensation", "remuneration")),
             ("level", ("level", "seniority")),
             ("location", ("location", "where", "city")),
             ("title", ("title", "position")))
_BULLET = re.compile(r"^\s*(?:[-*•·–—>]+|\d+[.)])\s+")
_FIELD = re.compile(r"^(?P<label>[A-Za-z][A-Za-z \-/'&]{0,40}?)\s*[:：]\s*(?P<value>.*)$")
_NUM = re.compile(r"(\d{1,3}(?:[.,\s\u00a0\u202f]\d{3})+|\d+(?:[.,]\d+)?)\s*(k|K|thousand)?")
_HIRING = re.compile(r"(?:hiring|looking for|seeking|recruiting|searching for)\s+(?:an?\s+)?"
                     r"(?P<t>[^.,;:\n]+?)(?=\s+(?:in|at|to|for|who|with|based|remote|remotely)\b|[.,;:\n]|$)",
                     re.IGNORECASE)
_CITY_RE = re.compile(r"\b(" + "|".join(CITIES) + r")\b", re.IGNORECASE)
_REMOTE_RE = re.compile(r"(?<!no )(?<!not )\b(remote|remotely|work from home|wfh)\b", re.IGNORECASE)


def _label_kind(label: str) -> str | None:
    key = norm(label)
    if key in _LABEL_OF:
        return _LABEL_OF[key]
    for kind, words in _KEYWORDS:
        if any(w in key for w in words):
            return kind
    return None


def _clean(line: str) -> tuple[str, bool]:
    """Strip markdown and bullets; returns the text and whether the line was a list item."""
    line = line.replace("**", "").replace("__", "").replace("`", "").strip()
    heading = line.startswith("#")
    line = line.lstrip("#").strip()
    bullet = bool(_BULLET.match(line))
    if bullet:
        line = _BULLET.sub("", line, count=1)
    return line.strip(), bullet and not heading


def _split_items(value: str) -> list[str]:
    sep = ";" if ";" in value else ","
    items = [v.strip(" .;,\t") for v in value.split(sep)]
    return [" ".join(v.split()) for v in items if v.strip(" .;,\t")]


def parse_salary(value: str) -> tuple[int | None, int | None]:
    """'EUR 55,000–70,000' / '55k-70k' / '€55.000 - €70.000' / 'up to 90k' -> (min, max)."""
    found = []
    any_k = False
    for m in _NUM.finditer(value):
        raw, suffix = m.group(1), m.group(2)
        if re.fullmatch(r"\d{1,3}(?:[.,\s\u00a0\u202f]\d{3})+", raw):
            num = float(re.sub(r"[.,\s\u00a0\u202f]", "", raw))
        else:
            num = float(raw.replace(",", "."))
        if suffix:
            any_k = True
            num *= 1000
        found.append(num)
    found = [n * 1000 if (any_k or 10 <= n < 1000) and n < 1000 else n for n in found]
    found = [int(round(n)) for n in found if 5_000 <= n <= 1_000_000]
    if not found:
        return None, None
    low = value.lower()
    if len(found) == 1:
        if re.search(r"up to|max|until|≤|<", low):
            return None, found[0]
        if re.search(r"from|at least|min|≥|>|\+", low):
            return found[0], None
        return found[0], found[0]
    return min(found[:2]), max(found[:2])


def parse_location(value: str) -> tuple[str | None, bool]:
    """'Berlin (hybrid)' -> ('Berlin', False); 'Remote' -> (None, True); 'Paris or remote' -> ('Paris', True)."""
    remote = bool(_REMOTE_RE.search(value)) and not re.search(r"\b(no|not)\s+remote|on[- ]?site only", value, re.I)
    m = _CITY_RE.search(value)
    if m:
        return next(c for c in CITIES if c.lower() == m.group(1).lower()), remote
    rest = re.split(r"[(,/;]|\bor\b|\band\b", _REMOTE_RE.sub("", value), maxsplit=1)[0].strip(" -–.")
    if rest and not re.fullmatch(r"(?i)(hybrid|on[- ]?site|onsite|office|anywhere|eu|europe|worldwide)?", rest):
        return display_title(rest.lower()), remote
    return None, remote


def parse_jd(text: str, taxonomy: Taxonomy | None = None) -> ParsedJD:
    """Read the structured fields back from a JD (ours or LLM-generated); never raises."""
    tax = taxonomy or load_taxonomy()
    text = text or ""
    values, lists, first_line = _scan_fields(text)
    out = ParsedJD()
    out.must_have = [s for s in lists["must"] if s]
    out.nice_to_have = [s for s in lists["nice"] if s]
    out.title, out.occupation_id = _read_title(text, values, first_line, tax)
    # Level: the level field, else a level word in the title.
    for cand in values.get("level", []) + ([out.title] if out.title else []):
        out.level = level_from_text(cand)
        if out.level:
            break
    out.location, out.remote = _read_location(text, values)
    # Salary: the salary field, else any line that mentions a currency.
    sal_lines = values.get("salary", []) or [ln for ln in text.splitlines()
                                             if re.search(r"€|\beur\b|euro|salary", ln, re.I)]
    for v in sal_lines:
        out.salary_min, out.salary_max = parse_salary(v)
        if out.salary_min is not None or out.salary_max is not None:
            break
    return out.finish()


def _scan_fields(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]], str | None]:
    """One pass over the lines: labelled values by kind, the must/nice lists, the first line.

    A line may hold several fields ("A | B · C", "... in Paris. Must have: X. Level: junior");
    a list heading ("Requirements:", "### Must-have") opens a block that bullets then fill.
    """
    values: dict[str, list[str]] = {}
    lists: dict[str, list[str]] = {"must": [], "nice": []}
    first_line, block = None, None
    for raw in text.splitlines():
        if not raw.strip():
            block = None
            continue
        line, bullet = _clean(raw)
        if first_line is None and line:
            first_line = line
        segments = [s.strip() for s in re.split(r"\s+[|·•]\s+|(?<=[.!?])\s+(?=[A-Z][A-Za-z -]{1,30}:)", line)
                    if s.strip()]
        for seg in segments:
            m = _FIELD.match(seg)
            kind = _label_kind(m.group("label")) if m else None
            if m and kind:
                value = m.group("value").strip()
                block = kind if kind in lists and not value else None
                if kind in lists:
                    lists[kind].extend(_split_items(value))
                elif kind != "ignore" and value:
                    values.setdefault(kind, []).append(value)
            elif (not m and not bullet and len(segments) == 1 and len(seg.split()) <= 4
                  and (seg.endswith(":") or norm(seg) in _LABEL_OF) and _label_kind(seg.rstrip(":")) in lists):
                block = _label_kind(seg.rstrip(":"))  # a heading such as "Requirements" or "### Must-have"
            elif not m and len(segments) > 1 and len(seg.split()) <= 4 and _bare_segment(seg, values):
                pass  # "Berlin", "senior", "€55k–70k" between separators in a one-line JD
            elif block and (bullet or len(segments) == 1):
                lists[block].extend(_split_items(seg) if not bullet else [" ".join(seg.split()).strip(" .;,")])
            else:
                block = None
    return values, lists, first_line


def _read_title(text: str, values: dict, first_line: str | None, tax: Taxonomy) -> tuple[str | None, str | None]:
    """A labelled title, else the first line (a heading), else "... is hiring a <title> ..."."""
    candidates = list(values.get("title", []))
    if first_line:
        candidates.append(first_line)
    dotless = re.sub(r"\b(Sr|Jr|Snr|Jnr)\.", r"\1", text, flags=re.I)
    candidates += [m.group("t") for m in _HIRING.finditer(dotless)]
    for cand in candidates:
        occ = tax.resolve_title(cand)
        if occ:
            return _short_title(cand), occ
    return (candidates[0] if candidates and values.get("title") else None), None


def _read_location(text: str, values: dict) -> tuple[str | None, bool]:
    """The city (or None) and whether the job is remote, from the fields, else from the text."""
    location, remote = None, False
    for v in values.get("location", []):
        city, is_remote = parse_location(v)
        location = location or city
        remote = remote or is_remote
    for v in values.get("remote", []):  # "Remote: yes" / "Work mode: hybrid, Berlin"
        city, is_remote = parse_location(v)
        location = location or (city if _CITY_RE.search(v) else None)
        remote = remote or is_remote or bool(re.match(r"(?i)\s*(yes|true|fully|possible|allowed|100)", v))
    if location is None:
        m = _CITY_RE.search(text)
        location = next(c for c in CITIES if c.lower() == m.group(1).lower()) if m else None
    if not values.get("location") and not values.get("remote"):
        remote = remote or bool(_REMOTE_RE.search(text))
    return location, remote


def _bare_segment(seg: str, values: dict[str, list[str]]) -> bool:
    """Classify an unlabelled short segment as a level, a location or a salary."""
    if re.search(r"€|\beur\b|\d\s*k\b", seg, re.I):
        values.setdefault("salary", []).append(seg)
    elif level_from_text(seg) and len(seg.split()) <= 2:
        values.setdefault("level", []).append(seg)
    elif _CITY_RE.search(seg) or _REMOTE_RE.search(seg):
        values.setdefault("location", []).append(seg)
    else:
        return False
    return True


def _short_title(candidate: str) -> str:
    """'Senior Cloud Engineer — ACME GmbH' -> 'Senior Cloud Engineer'."""
    return re.split(r"\s[-–—|@]\s|\sat\s|,", candidate)[0].strip()
