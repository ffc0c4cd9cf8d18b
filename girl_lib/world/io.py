"""Reading, writing and validating the world's JSON Lines files.

Every file is JSON Lines: one JSON object per line, each with a unique string ``id``. The
schemas below are the contract (documented for humans in ``data_samples/README.md``): a field
is *required* (must be present, with the right type) or *optional* (checked when present).
Extra fields are allowed and kept.

Validation never drops anything silently: bad JSON, a key twice in one object, a missing field, a
wrong type, a value outside its allowed set, an empty text, a time that does not parse, a
negative salary or a salary band with min > max, a preference pair whose chosen and rejected JDs
are the same text, a duplicate id, a file with no record, or (across files) a reference to an
unknown seeker or job, or a record whose split disagrees with its seeker's, raises
:class:`DataError` naming the file, the 1-based line and the field.

Inputs are bounded: a line longer than :data:`MAX_LINE_BYTES` is refused, and a free text (CV,
JD, prompt, completion, title) longer than :data:`MAX_TEXT_CHARS` characters is cut to that length
with one notice per file on stderr, so no command can hang on a huge input.
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError
from ..rundir import MANIFEST, atomic_write_text, is_complete
from .taxonomy import LEVELS

KINDS = ("seekers", "jobs", "applications", "sft", "rm_pairs", "sequences")
FILES = {k: f"{k}.jsonl" for k in KINDS}
SPLITS = ("train", "val", "test", "match", "cold")

# Bounds on what a file may hold (documented in data_samples/README.md). The world's CVs and JDs
# are under 1,000 characters; a text beyond MAX_TEXT_CHARS is cut there (with a notice), a line
# beyond MAX_LINE_BYTES is refused.
MAX_TEXT_CHARS = 8_000
MAX_LINE_BYTES = 4 * 1024 * 1024
# Free texts, cut to MAX_TEXT_CHARS when longer; any other string (ids, enums) that long is an error.
TEXT_FIELDS = {"seekers": ("cv_text", "name"), "jobs": ("jd_text", "title", "company"), "applications": (),
               "sft": ("prompt", "completion"), "rm_pairs": ("prompt", "chosen", "rejected"),
               "sequences": ("history_titles", "next_title")}

# Type names used by the schemas.
_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,),
                                       "number": (int, float), "list[str]": (list,)}


@dataclass(frozen=True)
class Schema:
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


SCHEMAS: dict[str, Schema] = {
    "seekers": Schema(
        required={"id": "str", "split": "str", "cv_text": "str"},
        optional={"name": "str", "cv_style": "str", "occupation_id": "str", "occupation": "str",
                  "level": "str", "years_experience": "int", "education": "str",
                  "field_of_study": "str", "skills": "list[str]", "location": "str",
                  "relocate": "bool", "salary_expectation": "int"},
        choices={"split": SPLITS, "level": LEVELS}),
    "jobs": Schema(
        required={"id": "str", "jd_text": "str"},
        optional={"title": "str", "occupation_id": "str?", "level": "str", "must_have": "list[str]",
                  "nice_to_have": "list[str]", "location": "str?", "remote": "bool",
                  "salary_min": "int", "salary_max": "int", "company": "str", "jd_style": "str",
                  "cold_start": "bool"},
        choices={"level": LEVELS}),
    "applications": Schema(
        required={"id": "str", "seeker_id": "str", "job_id": "str", "accepted": "bool",
                  "ts": "str", "split": "str"},
        choices={"split": SPLITS}),
    "sft": Schema(
        required={"id": "str", "seeker_id": "str", "prompt": "str", "completion": "str", "split": "str"},
        optional={"job_id": "str?"},
        choices={"split": SPLITS}),
    "rm_pairs": Schema(
        required={"id": "str", "seeker_id": "str", "prompt": "str", "chosen": "str",
                  "rejected": "str", "kind": "str", "split": "str"},
        optional={"chosen_job_id": "str?", "rejected_job_id": "str?"},
        choices={"split": SPLITS, "kind": ("feedback", "hard_negative")}),
    "sequences": Schema(
        required={"id": "str", "seeker_id": "str", "history_job_ids": "list[str]",
                  "history_titles": "list[str]", "next_job_id": "str", "next_title": "str",
                  "split": "str"},
        choices={"split": SPLITS}),
}


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def dumps(record: dict) -> str:
    """One canonical JSON line: sorted keys, real UTF-8, so equal data gives equal bytes."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write records as JSON Lines, atomically. Returns the number of records."""
    lines = [dumps(r) for r in records]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading and validating one file
# ---------------------------------------------------------------------------------------------
def infer_kind(path: Path) -> str:
    """'.../seekers.jsonl' -> 'seekers'; 'train_rm_pairs.jsonl' -> 'rm_pairs'."""
    stem = Path(path).name.split(".")[0]
    hits = [k for k in KINDS if k in stem]
    if not hits:
        raise DataError(path, None, None,
                        f"cannot tell the file kind from its name; name it one of {', '.join(FILES.values())}")
    return max(hits, key=len)


def _check_type(value: Any, type_name: str) -> bool:
    if type_name.endswith("?"):
        if value is None:
            return True
        type_name = type_name[:-1]
    if type_name in ("int", "number") and isinstance(value, bool):
        return False  # JSON true is not a number
    if not isinstance(value, _TYPES[type_name]):
        return False
    return type_name != "list[str]" or all(isinstance(v, str) for v in value)


def _describe(type_name: str) -> str:
    base = type_name.rstrip("?")
    text = {"str": "a string", "int": "an integer", "bool": "true or false", "number": "a number",
            "list[str]": "a list of strings"}[base]
    return text + (" or null" if type_name.endswith("?") else "")


def validate_record(record: Any, kind: str, path: Path, line: int) -> None:
    """Check one parsed record against the schema of ``kind``; raise DataError on the first problem."""
    schema = SCHEMAS[kind]
    if not isinstance(record, dict):
        raise DataError(path, line, None, "expected a JSON object on this line")
    for name, type_name in schema.required.items():
        if name not in record:
            raise DataError(path, line, name, f"is missing (required in {FILES[kind]})")
    for name, type_name in {**schema.required, **schema.optional}.items():
        if name in record and not _check_type(record[name], type_name):
            got = type(record[name]).__name__ if record[name] is not None else "null"
            raise DataError(path, line, name, f"must be {_describe(type_name)}, got {got}")
    for name, allowed in schema.choices.items():
        if name in record and record[name] is not None and record[name] not in allowed:
            raise DataError(path, line, name, f"is '{record[name]}'; allowed: {', '.join(allowed)}")
    for name, type_name in schema.required.items():
        if type_name == "str" and not record[name].strip():
            raise DataError(path, line, name, "must not be empty")
    texts = TEXT_FIELDS[kind]
    for name, type_name in {**schema.required, **schema.optional}.items():
        if name not in texts and type_name.startswith("str") and isinstance(record.get(name), str) \
                and len(record[name]) > MAX_TEXT_CHARS:
            raise DataError(path, line, name, f"is {len(record[name]):,} characters long; at most {MAX_TEXT_CHARS:,}")
    _check_values(record, kind, path, line)


def _check_values(record: dict, kind: str, path: Path, line: int) -> None:
    """What a type cannot say: times that parse, salaries >= 0 and ordered, two different JDs per pair."""
    if kind == "applications":
        try:
            datetime.fromisoformat(record["ts"])
        except ValueError:
            raise DataError(path, line, "ts", f"is '{record['ts'][:40]}', not an ISO-8601 time such as "
                                              "2024-03-05T10:23:00Z") from None
    for name in ("salary_min", "salary_max", "salary_expectation", "years_experience"):
        if isinstance(record.get(name), int) and not isinstance(record[name], bool) and record[name] < 0:
            raise DataError(path, line, name, f"is {record[name]}; it must be >= 0")
    if kind == "jobs" and isinstance(record.get("salary_min"), int) and isinstance(record.get("salary_max"), int) \
            and record["salary_min"] > record["salary_max"]:
        raise DataError(path, line, "salary_min", f"is {record['salary_min']}, above salary_max "
                                                  f"{record['salary_max']}; the band must have min <= max")
    if kind == "rm_pairs" and record["chosen"].strip() == record["rejected"].strip():
        raise DataError(path, line, "rejected", "is the same text as 'chosen'; a preference pair needs two "
                                                "different JDs")
    if kind == "sequences" and len(record["history_job_ids"]) != len(record["history_titles"]):
        raise DataError(path, line, "history_titles", "must have as many entries as history_job_ids")


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _cut_texts(record: dict, kind: str) -> str | None:
    """Cut every free text of ``record`` to MAX_TEXT_CHARS; the first field cut (None: none was)."""
    first = None
    for name in TEXT_FIELDS[kind]:
        value = record.get(name)
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            record[name], first = value[:MAX_TEXT_CHARS], first or name
        elif isinstance(value, list) and any(isinstance(v, str) and len(v) > MAX_TEXT_CHARS for v in value):
            record[name] = [v[:MAX_TEXT_CHARS] if isinstance(v, str) else v for v in value]
            first = first or name
    return first


def iter_jsonl(path: Path, kind: str | None = None):
    """Yield ``(line_number, record)`` for every non-blank line, validated, ids unique.

    A file with no record is an error; free texts longer than :data:`MAX_TEXT_CHARS` are cut,
    with one notice for the file on stderr.
    """
    path = Path(path)
    kind = kind or infer_kind(path)
    if kind not in SCHEMAS:
        raise DataError(path, None, None, f"unknown file kind '{kind}'; choose one of {', '.join(KINDS)}")
    if not path.is_file():
        raise DataError(path, None, None, "file not found" if not path.exists() else "is not a regular file")
    seen: dict[str, int] = {}
    cut: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        n = 0
        while raw_bytes := f.readline(MAX_LINE_BYTES + 1):
            n += 1
            if len(raw_bytes) > MAX_LINE_BYTES:
                raise DataError(path, n, None, f"is longer than {MAX_LINE_BYTES:,} bytes; a record is a few KB "
                                               "(is this a JSON Lines file, one record per line?)")
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, n, None, f"is not valid UTF-8 (byte {e.start + 1})") from None
            if not raw.strip():
                continue  # blank lines hold no record
            try:
                record = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
            except _DuplicateKey as e:
                raise DataError(path, n, str(e), "appears twice in one JSON object; keep one") from None
            except json.JSONDecodeError as e:
                raise DataError(path, n, None, f"is not valid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(path, n, None, "is nested too deeply to be a record (JSON arrays/objects "
                                               "inside each other thousands of levels deep)") from None
            validate_record(record, kind, path, n)
            rid = record["id"]
            if rid in seen:
                raise DataError(path, n, "id", f"duplicate id '{rid}' (first on line {seen[rid]})")
            seen[rid] = n
            field_cut = _cut_texts(record, kind)
            if field_cut:
                cut.append((n, field_cut))
            yield n, record
    if not seen:
        raise DataError(path, None, None, f"has no records (the file is empty); a {FILES[kind]} file needs at "
                                          "least one JSON object per line")
    if cut:
        print(f"[girl] note: {path}: {len(cut)} record(s) with a text longer than {MAX_TEXT_CHARS:,} characters "
              f"(first: line {cut[0][0]}, field '{cut[0][1]}'); cut to {MAX_TEXT_CHARS:,}", file=sys.stderr)


def load_jsonl(path: Path | str, kind: str | None = None) -> list[dict]:
    """Load and validate a JSON Lines file of ``kind`` (inferred from the file name if None)."""
    return [r for _, r in iter_jsonl(Path(path), kind)]


def draw(rows: list, n: int | None, key: str) -> list:
    """A seeded random subset of ``rows``: the first ``n`` of one fixed permutation.

    Subsets are never "the first rows of the file" (files are sorted by id, and ids follow
    generation order). The permutation depends only on ``key`` (include the seed in it) and on
    the rows, so a smaller draw is a prefix of a larger one with the same key: a later stage that
    evaluates fewer seekers evaluates a subset of the earlier stage's. ``n`` of None or < 0: all.
    """
    order = random.Random(key).sample(range(len(rows)), len(rows))
    if n is not None and n >= 0:
        order = order[:n]
    return [rows[i] for i in order]


def load_split(data_dir: Path | str, kind: str, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Validated records of ``<data_dir>/<file of kind>`` in one ``split``.

    All of them in file order when ``limit`` is None or <= 0; else a seeded random draw of
    ``limit`` (:func:`draw`, keyed by kind, split and ``seed``). A malformed line raises
    :class:`~girl_lib.errors.DataError` (file, line, field): nothing is silently dropped.
    """
    rows = [r for r in load_jsonl(Path(data_dir) / FILES[kind], kind) if r["split"] == split]
    return draw(rows, limit, f"{kind}/{split}/{seed}") if limit and limit > 0 else rows


# ---------------------------------------------------------------------------------------------
# Whole directories: cross-file checks
# ---------------------------------------------------------------------------------------------
_REFS = {  # kind -> fields that name a seeker / a job (lists included)
    "applications": (("seeker_id",), ("job_id",)),
    "sft": (("seeker_id",), ("job_id",)),
    "rm_pairs": (("seeker_id",), ("chosen_job_id", "rejected_job_id")),
    "sequences": (("seeker_id",), ("history_job_ids", "next_job_id")),
}


def validate_dir(data_dir: Path | str) -> dict[str, int]:
    """Validate every world file present in ``data_dir`` and the references between them.

    Returns ``{kind: record count}``. A file that references seekers or jobs needs
    ``seekers.jsonl`` / ``jobs.jsonl`` next to it. Also checks that each record's split equals
    its seeker's split and that cold-start jobs appear only in the ``cold`` split.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, None, None, "directory not found")
    present = [k for k in KINDS if (data_dir / FILES[k]).is_file()]
    if not present:
        raise DataError(data_dir, None, None, f"no world files here; expected {', '.join(FILES.values())}")
    seekers = {r["id"]: r for r in load_jsonl(data_dir / FILES["seekers"], "seekers")} if "seekers" in present else None
    jobs = {r["id"]: r for r in load_jsonl(data_dir / FILES["jobs"], "jobs")} if "jobs" in present else None
    counts = {}
    if seekers is not None:
        counts["seekers"] = len(seekers)
    if jobs is not None:
        counts["jobs"] = len(jobs)
    for kind in present:
        if kind in ("seekers", "jobs"):
            continue
        path = data_dir / FILES[kind]
        seeker_fields, job_fields = _REFS[kind]
        n = 0
        for line, rec in iter_jsonl(path, kind):
            n += 1
            for f in seeker_fields:
                if seekers is None:
                    raise DataError(path, line, f, f"refers to seekers but {FILES['seekers']} is missing")
                sid = rec[f]
                if sid not in seekers:
                    raise DataError(path, line, f, f"unknown seeker '{sid}' (not in {FILES['seekers']})")
                if rec["split"] != seekers[sid]["split"]:
                    raise DataError(path, line, "split",
                                    f"is '{rec['split']}' but seeker '{sid}' is in '{seekers[sid]['split']}'")
            for f in job_fields:
                ids = rec.get(f)
                for jid in ids if isinstance(ids, list) else [ids]:
                    if jid is None:
                        continue
                    if jobs is None:
                        raise DataError(path, line, f, f"refers to jobs but {FILES['jobs']} is missing")
                    if jid not in jobs:
                        raise DataError(path, line, f, f"unknown job '{jid}' (not in {FILES['jobs']})")
                    if jobs[jid].get("cold_start") and rec["split"] != "cold":
                        raise DataError(path, line, f, f"cold-start job '{jid}' used in split '{rec['split']}'")
        counts[kind] = n
    return counts


def validate_path(path: Path | str) -> dict[str, int]:
    """Validate a data directory (``validate_dir``) or a single file (kind from its name)."""
    return check_path(path)["counts"]


def check_path(path: Path | str) -> dict:
    """``{"counts": {kind: records}, "not_checked": [...]}`` for a data directory or a single file.

    A single file is checked on its own: what needs the other files (references to seekers and
    jobs, split agreement, cold-start jobs) is listed under ``not_checked``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "not found; pass an existing .jsonl file or data folder")
    if path.is_dir():
        return {"counts": validate_dir(path), "not_checked": []}
    kind = infer_kind(path)
    counts = {kind: len(load_jsonl(path, kind))}
    not_checked = []
    if kind in _REFS:
        not_checked.append(f"that its seeker and job ids exist in {FILES['seekers']} / {FILES['jobs']}, that each "
                           "record's split is its seeker's, and that cold-start jobs stay in the cold split "
                           f"(validate the folder holding all the files to check them)")
    elif kind == "jobs":
        not_checked.append("how other files use these jobs (validate the whole folder to check it)")
    return {"counts": counts, "not_checked": not_checked}


def load_world_files(data_dir: Path | str) -> dict[str, list[dict]]:
    """Load all six files of a complete data directory, validated: ``{kind: records}``."""
    data_dir = Path(data_dir)
    validate_dir(data_dir)
    return {k: load_jsonl(data_dir / FILES[k], k) for k in KINDS if (data_dir / FILES[k]).is_file()}
