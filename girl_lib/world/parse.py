"""Parsing a JD back into its fields: title, role, level, skills, location, salary.

``parse_jd`` reads the structured fields back from a JD in any of the world's styles *and* from
LLM-generated text: it is tolerant of case, markdown, bullets, synonyms ("Role:", "Position:",
"Requirements", "Must-have") and salary formats ("EUR 55,000–70,000", "55k-70k",
"€55.000 - €70.000"). The oracle scores any JD through it.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .taxonomy import CITIES, Taxonomy, display_title, level_from_text, load_taxonomy, norm

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
