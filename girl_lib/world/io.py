"""Reading, writing and validating the world's JSON Lines files.

Every file is JSON Lines: one JSON object per line, each with a unique string ``id``. The
schemas below are the contract (documented for humans in ``data_samples/README.md``): a field
is *required* (must be present, with the right type) or *optional* (checked when present).
Extra fields are allowed and kept.

Validation never drops anything silently: bad JSON, a missing field, a wrong type, a value
outside its allowed set, a duplicate id, or (across files) a reference to an unknown seeker or
job, or a record whose split disagrees with its seeker's, raises :class:`DataError` naming the
file, the 1-based line and the field.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError
from ..rundir import MANIFEST, atomic_write_text, is_complete
from .taxonomy import LEVELS

KINDS = ("seekers", "jobs", "applications", "sft", "rm_pairs", "sequences")
FILES = {k: f"{k}.jsonl" for k in KINDS}
SPLITS = ("train", "val", "test", "cold")

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
    if record["id"] == "":
        raise DataError(path, line, "id", "must not be empty")
    if kind == "sequences" and len(record["history_job_ids"]) != len(record["history_titles"]):
        raise DataError(path, line, "history_titles", "must have as many entries as history_job_ids")


def iter_jsonl(path: Path, kind: str | None = None):
    """Yield ``(line_number, record)`` for every non-blank line, validated, ids unique."""
    path = Path(path)
    kind = kind or infer_kind(path)
    if kind not in SCHEMAS:
        raise DataError(path, None, None, f"unknown file kind '{kind}'; choose one of {', '.join(KINDS)}")
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for n, raw_bytes in enumerate(f, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, n, None, f"is not valid UTF-8 (byte {e.start + 1})") from None
            if not raw.strip():
                continue  # blank lines hold no record
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(path, n, None, f"is not valid JSON ({e.msg} at column {e.colno})") from None
            validate_record(record, kind, path, n)
            rid = record["id"]
            if rid in seen:
                raise DataError(path, n, "id", f"duplicate id '{rid}' (first on line {seen[rid]})")
            seen[rid] = n
            yield n, record


def load_jsonl(path: Path | str, kind: str | None = None) -> list[dict]:
    """Load and validate a JSON Lines file of ``kind`` (inferred from the file name if None)."""
    return [r for _, r in iter_jsonl(Path(path), kind)]


def load_split(data_dir: Path | str, kind: str, split: str, limit: int | None = None) -> list[dict]:
    """Validated records of ``<data_dir>/<file of kind>`` in one ``split``, file order, at most ``limit``.

    A malformed line raises :class:`~girl_lib.errors.DataError` (file, line, field): nothing is
    silently dropped. ``limit`` of None or <= 0 means all.
    """
    rows = [r for r in load_jsonl(Path(data_dir) / FILES[kind], kind) if r["split"] == split]
    return rows[:limit] if limit and limit > 0 else rows


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
    path = Path(path)
    if path.is_dir():
        return validate_dir(path)
    kind = infer_kind(path)
    return {kind: len(load_jsonl(path, kind))}


def load_world_files(data_dir: Path | str) -> dict[str, list[dict]]:
    """Load all six files of a complete data directory, validated: ``{kind: records}``."""
    data_dir = Path(data_dir)
    validate_dir(data_dir)
    return {k: load_jsonl(data_dir / FILES[k], k) for k in KINDS if (data_dir / FILES[k]).is_file()}
