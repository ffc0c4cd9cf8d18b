"""The taxonomy: real ESCO occupations and skills, plus the synthetic layers the world adds.

What is real (ESCO, European Commission, CC BY 4.0): the 91 ICT occupations, their labels,
alternative titles, descriptions, skills and knowledge. They live in
``girl_lib/world/data/esco_ict_occupations.json`` (a copy of ``data_samples/``), written once
by ``scripts/extract_esco.py``.

What is synthetic (defined here, so every number the world uses is in one readable place):
seniority levels and their years of experience, education, cities, salary bands by occupation
group x level, and each occupation's *core* skills: the few skills most specific to it (listed
by the fewest other occupations). Jobs draw their must-have skills from the core, so the core
is what separates a cloud engineer from a web developer.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

TAXONOMY_FILE = "esco_ict_occupations.json"

# ---------------------------------------------------------------------------------------------
# Synthetic layers
# ---------------------------------------------------------------------------------------------
LEVELS: tuple[str, ...] = ("junior", "mid", "senior", "lead")
LEVEL_INDEX = {lv: i for i, lv in enumerate(LEVELS)}
LEVEL_WEIGHTS = (0.27, 0.35, 0.27, 0.11)  # share of seekers and jobs at each level
YEARS = {"junior": (0, 2), "mid": (3, 5), "senior": (6, 9), "lead": (10, 16)}  # inclusive
# Words that signal a level, in titles or in a "Level:" field (generated text included).
LEVEL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "junior": ("junior", "jr", "entry level", "entry-level", "graduate", "trainee", "intern"),
    "mid": ("mid-level", "mid level", "mid", "intermediate", "medior", "regular"),
    "senior": ("senior", "sr", "experienced"),
    "lead": ("lead", "principal", "staff", "head of", "team lead"),
}

CITIES: tuple[str, ...] = ("Amsterdam", "Berlin", "Brussels", "Dublin", "Lisbon", "Madrid",
                           "Milan", "Paris", "Prague", "Stockholm", "Vienna", "Warsaw")
CITY_WEIGHTS = (1.2, 1.6, 0.8, 1.0, 0.8, 1.1, 0.8, 1.5, 0.6, 0.7, 0.8, 0.9)
# Faker locale per city: names and companies look local.
CITY_LOCALES = {"Amsterdam": "nl_NL", "Berlin": "de_DE", "Brussels": "nl_BE", "Dublin": "en_IE",
                "Lisbon": "pt_PT", "Madrid": "es_ES", "Milan": "it_IT", "Paris": "fr_FR",
                "Prague": "cs_CZ", "Stockholm": "sv_SE", "Vienna": "de_AT", "Warsaw": "pl_PL"}

EDUCATION: tuple[str, ...] = ("vocational certificate", "bachelor's degree", "master's degree", "PhD")
EDUCATION_SHORT = {"vocational certificate": "VET", "bachelor's degree": "BSc",
                   "master's degree": "MSc", "PhD": "PhD"}
FIELDS_OF_STUDY = ("Computer Science", "Information Systems", "Software Engineering",
                   "Electrical Engineering", "Mathematics", "Media Technology")

# Occupation groups: first matching keyword in the label wins. Mid-level salary in EUR/year and
# how many jobs the market has for the group (relative demand).
GROUP_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("media", ("sound", "camera", "video", "boom", "projectionist", "broadcast", "recording",
               "performance", "audio", "studio")),
    ("leadership", ("manager", "chief", "officer")),
    ("architecture", ("architect",)),
    ("security", ("security", "hacker", "forensic")),
    ("data", ("data", "knowledge", "scientist", "vision", "intelligent")),
    ("testing", ("tester", "test ")),
    ("analysis", ("analyst", "consultant", "auditor", "planner", "research")),
    ("operations", ("technician", "administrator", "operator", "agent", "webmaster", "help desk")),
    ("engineering", ()),  # default: developers, engineers, designers, programmers, ...
)
GROUP_SALARY = {"media": 40_000, "leadership": 82_000, "architecture": 78_000, "security": 70_000,
                "data": 66_000, "testing": 50_000, "analysis": 60_000, "operations": 46_000,
                "engineering": 62_000}
GROUP_DEMAND = {"media": 0.4, "leadership": 0.8, "architecture": 0.8, "security": 1.5,
                "data": 2.0, "testing": 1.3, "analysis": 1.5, "operations": 1.3, "engineering": 3.0}
LEVEL_SALARY_FACTOR = {"junior": 0.72, "mid": 1.0, "senior": 1.3, "lead": 1.6}
BAND_LOW, BAND_HIGH = 0.90, 1.12  # a job's band around its group x level salary
N_CORE = 6  # core skills per occupation
N_NEIGHBOURS = 3  # related occupations (by shared skills) a seeker also applies to


@lru_cache(maxsize=65536)
def norm(text: str) -> str:
    """Normalise a title or skill for matching: lower case, '&'->'and', punctuation to spaces."""
    text = text.lower().replace("&", " and ")
    return " ".join(re.sub(r"[^a-z0-9+#]+", " ", text).split())


def display_title(title: str) -> str:
    """'cloud engineer' -> 'Cloud Engineer'; words with capitals ('ICT', 'SEO') stay as they are."""
    return " ".join(w if any(c.isupper() for c in w) else w[:1].upper() + w[1:] for w in title.split())


def group_of(label: str) -> str:
    low = label.lower() + " "
    for group, words in GROUP_RULES:
        if not words or any(w in low for w in words):
            return group
    return "engineering"


def salary_band(group: str, level: str) -> tuple[int, int]:
    """The typical (min, max) yearly salary in EUR for an occupation group at a level."""
    mid = GROUP_SALARY[group] * LEVEL_SALARY_FACTOR[level]
    return int(round(mid * BAND_LOW, -3)), int(round(mid * BAND_HIGH, -3))


# ---------------------------------------------------------------------------------------------
# Real layer: ESCO occupations
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Occupation:
    id: str
    label: str
    alt_titles: tuple[str, ...]
    description: str
    skills: tuple[str, ...]
    knowledge: tuple[str, ...]
    group: str
    core: tuple[str, ...] = ()  # most specific skills/knowledge, filled by Taxonomy
    neighbours: tuple[str, ...] = ()  # ids of related occupations, filled by Taxonomy

    @property
    def all_skills(self) -> tuple[str, ...]:
        return self.skills + self.knowledge


@dataclass
class Taxonomy:
    """The occupations with lookups: by id, by title (labels + alternative titles), neighbours."""

    occupations: list[Occupation]
    attribution: str = ""
    by_id: dict[str, Occupation] = field(init=False)
    title_index: dict[str, str] = field(init=False)  # norm(title) -> occupation id
    _titles: dict[str, list[str]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.occupations = sorted(self.occupations, key=lambda o: o.id)
        self._derive_core_and_neighbours()
        self.by_id = {o.id: o for o in self.occupations}
        self.title_index = self._build_title_index()

    def _derive_core_and_neighbours(self) -> None:
        # How many occupations list each skill: rare skills are the specific ones.
        count: dict[str, int] = {}
        for o in self.occupations:
            for s in o.all_skills:
                count[s] = count.get(s, 0) + 1
        skill_sets = {o.id: frozenset(o.all_skills) for o in self.occupations}
        done = []
        for o in self.occupations:
            core = tuple(sorted(o.all_skills, key=lambda s: (count[s], s))[:N_CORE])
            mine = skill_sets[o.id]
            scored = []
            for other in self.occupations:
                if other.id == o.id:
                    continue
                shared = len(mine & skill_sets[other.id])
                if shared:
                    scored.append((-shared / len(mine | skill_sets[other.id]), other.id))
            neighbours = tuple(oid for _, oid in sorted(scored)[:N_NEIGHBOURS])
            done.append(Occupation(o.id, o.label, o.alt_titles, o.description, o.skills,
                                   o.knowledge, o.group, core, neighbours))
        self.occupations = done

    def _build_title_index(self) -> dict[str, str]:
        index = {norm(o.label): o.id for o in self.occupations}
        owners: dict[str, list[str]] = {}
        for o in self.occupations:
            for t in o.alt_titles:
                owners.setdefault(norm(t), []).append(o.id)
        for key in sorted(owners):
            ids = sorted(set(owners[key]))
            if key not in index and len(ids) == 1:  # labels win; ambiguous alternatives are left out
                index[key] = ids[0]
        return index

    def __len__(self) -> int:
        return len(self.occupations)

    def __getitem__(self, occupation_id: str) -> Occupation:
        return self.by_id[occupation_id]

    def job_titles(self, occupation_id: str) -> list[str]:
        """Titles a job ad may use: the label and every alternative title that maps back uniquely
        to this occupation and carries no level word of its own."""
        if occupation_id not in self._titles:
            o = self.by_id[occupation_id]
            self._titles[occupation_id] = [o.label] + [
                t for t in o.alt_titles if self.title_index.get(norm(t)) == o.id and level_from_text(t) is None]
        return list(self._titles[occupation_id])

    def resolve_title(self, title: str) -> str | None:
        """Map a job title (any case, level words, '(m/f/d)', ' - Remote' ...) to an occupation id."""
        for part in _title_candidates(title):
            key = norm(part)
            if key in self.title_index:
                return self.title_index[key]
            stripped = strip_level_words(key)
            if stripped in self.title_index:
                return self.title_index[stripped]
        # Fuzzy fallback: best word overlap with a known title (ties broken by title, stable).
        words = set(strip_level_words(norm(title)).split())
        if not words:
            return None
        best, best_key = 0.0, None
        for key in sorted(self.title_index):
            kw = set(key.split())
            score = len(words & kw) / len(words | kw)
            if score > best:
                best, best_key = score, key
        return self.title_index[best_key] if best_key and best >= 0.6 else None


def strip_level_words(normed_title: str) -> str:
    """Remove seniority words from a normalised title: 'senior cloud engineer' -> 'cloud engineer'."""
    out = f" {normed_title} "
    for syns in LEVEL_SYNONYMS.values():
        for s in sorted(syns, key=len, reverse=True):
            out = out.replace(f" {norm(s)} ", " ")
    return " ".join(out.split())


def _title_candidates(title: str) -> list[str]:
    """'Senior Cloud Engineer (m/f/d) - Remote' -> ['Senior Cloud Engineer', 'Remote', ...]."""
    t = re.sub(r"\([^)]*\)", " ", title)
    parts = [t] + re.split(r"\s[-–—|/@]\s|,|\sat\s", t)
    return [p.strip() for p in parts if p.strip()]


def level_from_text(text: str) -> str | None:
    """The first level named in ``text`` ('Senior', 'Sr.', 'entry-level', 'Principal' ...)."""
    t = f" {norm(text)} "
    hits = []
    for level, syns in LEVEL_SYNONYMS.items():
        for s in syns:
            pos = t.find(f" {norm(s)} ")
            if pos >= 0:
                hits.append((pos, -len(s), level))
    return min(hits)[2] if hits else None


def _from_json(data: dict) -> Taxonomy:
    occs = [Occupation(id=o["id"], label=o["label"], alt_titles=tuple(o["alt_titles"]),
                       description=o["description"], skills=tuple(o["skills"]),
                       knowledge=tuple(o["knowledge"]), group=group_of(o["label"]))
            for o in data["occupations"]]
    return Taxonomy(occs, attribution=data.get("attribution", ""))


@lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    """Load the 91 ESCO ICT occupations shipped as package data (``girl_lib/world/data/``)."""
    text = resources.files("girl_lib.world").joinpath("data").joinpath(TAXONOMY_FILE).read_text(encoding="utf-8")
    return _from_json(json.loads(text))
