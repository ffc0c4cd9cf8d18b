"""Sequences of items for next-item recommendation: loading, the split, ranking metrics.

GenRec (:mod:`girl_lib.stages.genrec`) and the classic recommenders it is compared with
(:mod:`girl_lib.stages.genrec.baselines`) all read the same thing, a :class:`SequenceData`: for
every user, the items they interacted with, in time order, and a name for every item. It comes
from a job seeker's applications (``<run-dir>/data/sequences.jsonl``), from MovieLens ratings
(:func:`load_movielens`: ``movies.csv`` + ``ratings.csv`` of ml-latest-small and ml-25m, or the
``::``-separated ``movies.dat`` + ``ratings.dat`` of ml-1m), or from the GenRec paper's own
instruction JSON (:mod:`girl_lib.stages.genrec.instructions`).

**Items and their names.** A generative recommender reads and writes items as *text*, so every
item needs a name that identifies it. In the synthetic world, job titles repeat (on the cpu
profile 600 postings share 479 titles: five different postings are all "System Configurator").
Matching "by exact title" would then count a hit for any posting with the right title. The kit
names a job by ``"<title> at <company>"`` (unique for every posting in the cpu world) and, should
two items still share a name, appends the item id: ``"<name> [<id>]"``
(:func:`unique_names`). The catalogue is then a one-to-one map between ids and names.

**Leave-one-out** (SASRec, P5 and GenRec all use it). A user's sequence ``s_1 … s_n``:

* test:  history ``s_1 … s_{n-1}``, target ``s_n``
* val:   history ``s_1 … s_{n-2}``, target ``s_{n-1}``
* train: every earlier position, history ``s_1 … s_{t-1}``, target ``s_t`` for ``2 <= t <= n-2``

Every model is *fitted* on the train part only (``s_1 … s_{n-2}``); at test time it may *read* the
whole history. Histories are cut to their last ``max_history`` items.

**Split by record.** The GenRec paper's records are already (history, next item) questions; its
loader assigns each record to train, val or test (:attr:`SequenceData.splits`) and
:func:`split_data` keeps that assignment (:func:`record_split`) instead of leave-one-out.
"""
from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ...checks import JOB_NAME_FORMATS
from ...errors import DataError, GirlError
from ...metrics.ranking import hit_rate_at_k, ndcg_at_k
from ...world import load_jsonl


# --------------------------------------------------------------------------------------------
# Sequence records -> per-user item lists and a catalogue
# --------------------------------------------------------------------------------------------
def unique_names(names: dict[str, str]) -> dict[str, str]:
    """The same map with every name shared by several ids made unique as ``"<name> [<id>]"``.

    >>> unique_names({"a": "Cook", "b": "Cook", "c": "Baker"})
    {'a': 'Cook [a]', 'b': 'Cook [b]', 'c': 'Baker'}
    """
    counts = Counter(" ".join(n.split()) for n in names.values())
    out = {}
    for item, name in names.items():
        name = " ".join(name.split())  # one space between words: decode(encode(name)) == name
        out[item] = f"{name} [{item}]" if counts[name] > 1 else name
    return out


def job_names(jobs: Iterable[dict], fmt: str = "title_at_company") -> dict[str, str]:
    """``{job id: name}``, made unique (see the module docstring).

    ``fmt="title_at_company"``: every job is ``"<title> at <company>"``. ``fmt="title"``: the title
    alone where no other job has it, ``"<title> at <company>"`` only where it repeats: shorter names,
    and a model that need not learn which company posts a title unless that tells two jobs apart.
    """
    if fmt not in JOB_NAME_FORMATS:
        raise GirlError(f"unknown job name format '{fmt}'; choose one of {', '.join(JOB_NAME_FORMATS)}")
    jobs = list(jobs)
    titles = Counter(" ".join((j.get("title") or j["id"]).split()) for j in jobs)
    names = {}
    for j in jobs:
        title = j.get("title") or j["id"]
        alone = fmt == "title" and titles[" ".join(title.split())] == 1
        names[j["id"]] = f"{title} at {j['company']}" if j.get("company") and not alone else title
    return unique_names(names)


@dataclass
class SequenceData:
    """``sequences[user]`` = item ids in time order; ``names[item]`` = its unique catalogue name."""
    sequences: dict[str, list[str]]
    names: dict[str, str]
    # The prompt wording in girl_lib.stages.genrec: jobs | movies; "instructions": each record brings its own.
    domain: str = "jobs"
    # Records that come as ready-made questions (the GenRec paper's JSON): user -> "train" | "val" |
    # "test", kept by split_data. Empty: leave-one-out over every user's sequence.
    splits: dict[str, str] = field(default_factory=dict)
    instructions: dict[str, str] = field(default_factory=dict)  # user -> the record's own instruction
    stats: dict = field(default_factory=dict)  # what the loader counted; the stage reports it

    @property
    def catalogue(self) -> list[str]:
        """Every item id, sorted."""
        return sorted(self.names)


def from_records(records: Sequence[dict], names: dict[str, str] | None = None, domain: str = "jobs") -> SequenceData:
    """Turn ``sequences.jsonl``-shaped records (``history_job_ids``, ``history_titles``,
    ``next_job_id``, ``next_title``) into a :class:`SequenceData`.

    ``names`` (item id -> name) replaces the records' titles, e.g. :func:`job_names`; without it
    the records' own titles are the names, made unique with :func:`unique_names`. An id that
    appears with two different titles is an error.
    """
    seqs: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    for k, r in enumerate(records, start=1):
        ids = list(r["history_job_ids"]) + [r["next_job_id"]]
        tts = list(r["history_titles"]) + [r["next_title"]]
        for item, title in zip(ids, tts):
            if titles.setdefault(item, title) != title:
                raise GirlError(f"sequence record {k} ({r.get('id')}): item '{item}' is titled both "
                                f"'{titles[item]}' and '{title}'")
        user = r.get("seeker_id", r.get("id", str(k)))
        if user in seqs:
            raise GirlError(f"sequence record {k}: user '{user}' has two sequences")
        seqs[user] = ids
    if names is None:
        names = unique_names(titles)
    else:
        missing = sorted(set(titles) - set(names))
        if missing:
            raise GirlError(f"{len(missing)} items of the sequences have no name, e.g. '{missing[0]}'")
        names = {i: names[i] for i in sorted(titles)}
    return SequenceData(seqs, names, domain)


def load_world_sequences(data_dir: Path | str, job_name: str = "title_at_company") -> SequenceData:
    """The world's ``sequences.jsonl`` with jobs named from ``jobs.jsonl`` (:func:`job_names`:
    ``"<title> at <company>"``, or with ``job_name="title"`` the bare title where it is unique).

    All splits are used (train, val, test and cold seekers): leave-one-out holds out the *last
    items of every user*, not whole users. Both files are validated by :mod:`girl_lib.world.io`.
    """
    data_dir = Path(data_dir)
    records = load_jsonl(data_dir / "sequences.jsonl", "sequences")
    if not records:
        raise GirlError(f"{data_dir / 'sequences.jsonl'} has no sequences; rebuild with 'girl data --force'")
    jobs = load_jsonl(data_dir / "jobs.jsonl", "jobs")
    return from_records(records, job_names(jobs, job_name), domain="jobs")


# --------------------------------------------------------------------------------------------
# MovieLens: CSV files (ml-latest-small, ml-25m) or '::' files (ml-1m, ml-10m)
# --------------------------------------------------------------------------------------------
MOVIE_FIELDS = {"movieId": int, "title": str}
RATING_FIELDS = {"userId": int, "movieId": int, "rating": float, "timestamp": int}
# The .dat files have no header: their columns, in order (ml-1m's README).
DAT_COLUMNS = {"movies": ("movieId", "title", "genres"), "ratings": ("userId", "movieId", "rating", "timestamp")}


def _value(path: Path, line: int, name: str, raw: str, typ: type):
    """``raw`` (stripped) as ``typ``; a :class:`DataError` naming file, line and field otherwise."""
    raw = raw.strip()
    try:
        value = typ(raw)
    except ValueError:
        raise DataError(path, line, name, f"expected {typ.__name__}, got '{raw}'") from None
    if typ is float and not math.isfinite(value):
        raise DataError(path, line, name, f"expected a finite number, got '{raw}'")
    if typ is str and not value:
        raise DataError(path, line, name, "empty value")
    return value


def _read_csv(path: Path, fields: dict[str, type]):
    """Yield ``(line number, {field: value})`` for each row of a UTF-8 CSV file with a header.

    Quoted values may hold commas (``"American President, The (1995)"``). A missing column, a
    short row, a value of the wrong type or bytes that are not UTF-8 raise :class:`DataError`
    naming the file, the line and the field.
    """
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(path, 1, None, "empty file; expected a header line")
            header = [h.strip().lstrip("\ufeff") for h in header]
            for name in fields:
                if name not in header:
                    raise DataError(path, 1, name, f"missing column (header is {','.join(header)})")
            col = {name: header.index(name) for name in fields}
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue  # a blank line is not a record
                for name in fields:
                    if col[name] >= len(row):
                        raise DataError(path, line, name, f"missing value (row has {len(row)} columns)")
                yield line, {name: _value(path, line, name, row[col[name]], typ) for name, typ in fields.items()}
        except UnicodeDecodeError:
            raise DataError(path, reader.line_num + 1, None, "is not UTF-8 text (MovieLens CSV files are UTF-8)") from None


def _read_dat(path: Path, columns: tuple[str, ...], fields: dict[str, type]):
    """Yield ``(line number, {field: value})`` for each line of a headerless ``::``-separated file.

    ml-1m's files are Latin-1 (``Misérables, Les (1995)`` holds the byte 0xE9), ml-10m's UTF-8: a
    line is read as UTF-8 and, when its bytes are not UTF-8, as Latin-1 (which any byte is).
    """
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    with open(path, "rb") as fh:
        for line, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            parts = text.split("::")
            if "title" in columns and len(parts) > len(columns):  # a title that holds '::' itself
                k, extra = columns.index("title"), len(parts) - len(columns)
                parts = parts[:k] + ["::".join(parts[k:k + extra + 1])] + parts[k + extra + 1:]
            for name in fields:
                if columns.index(name) >= len(parts):
                    raise DataError(path, line, name, f"missing value (line has {len(parts)} '::'-separated fields, "
                                                      f"expected {len(columns)}: {'::'.join(columns)})")
            yield line, {name: _value(path, line, name, parts[columns.index(name)], typ) for name, typ in fields.items()}


def _rows(path: Path, kind: str, fields: dict[str, type]):
    """The rows of a MovieLens ``movies`` or ``ratings`` file, CSV or ``.dat`` by its suffix."""
    return _read_dat(path, DAT_COLUMNS[kind], fields) if path.suffix == ".dat" else _read_csv(path, fields)


def movielens_files(folder: Path | str) -> tuple[Path, Path]:
    """``(movies, ratings)`` of a MovieLens folder: the ``.csv`` pair, else the ``.dat`` pair."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, None, None, "folder not found; pass a MovieLens folder (e.g. ml-latest-small, ml-1m)")
    for ext in (".csv", ".dat"):
        movies, ratings = folder / f"movies{ext}", folder / f"ratings{ext}"
        if movies.is_file() or ratings.is_file():
            return movies, ratings
    raise DataError(folder, None, None, "holds neither movies.csv + ratings.csv (ml-latest-small, ml-25m) nor "
                                        "movies.dat + ratings.dat (ml-1m, ml-10m)")


def load_movielens(folder: Path | str | None = None, *, movies_csv: Path | str | None = None,
                   ratings_csv: Path | str | None = None, min_length: int = 5,
                   min_rating: float | None = None) -> tuple[list[dict], dict[str, str]]:
    """MovieLens ratings as ``sequences.jsonl``-shaped records, plus the catalogue names.

    ``movies`` (``movieId,title,genres``) and ``ratings`` (``userId,movieId,rating,timestamp``)
    come from ``folder`` (:func:`movielens_files`) unless given one by one (``movies_csv``,
    ``ratings_csv``: a ``.dat`` suffix reads the ml-1m format). Each user's rated films, ordered by
    ``timestamp`` (then ``movieId``), form one sequence; users with fewer than ``min_length``
    ratings are left out (and counted: see the returned records' number against the users).
    ``min_rating`` keeps only ratings at or above it (None: every rating counts as an
    interaction, as in P5 and GenRec). Item ids are ``"m<movieId>"``; duplicate titles get the id
    appended (:func:`unique_names`). A malformed file fails with file, line and field named.
    """
    if folder is not None and not (movies_csv and ratings_csv):
        found = movielens_files(folder)
        movies_csv, ratings_csv = movies_csv or found[0], ratings_csv or found[1]
    if not movies_csv or not ratings_csv:
        raise GirlError("load_movielens needs a folder or both movies_csv and ratings_csv")
    movies_csv, ratings_csv = Path(movies_csv), Path(ratings_csv)
    if min_length < 3:
        raise GirlError(f"min_length must be >= 3 (train, val and test each need an item), got {min_length}")
    titles: dict[str, str] = {}
    for line, row in _rows(movies_csv, "movies", MOVIE_FIELDS):
        item = f"m{row['movieId']}"
        if item in titles:
            raise DataError(movies_csv, line, "movieId", f"duplicate movieId {row['movieId']}")
        titles[item] = row["title"]
    events: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for line, row in _rows(ratings_csv, "ratings", RATING_FIELDS):
        if f"m{row['movieId']}" not in titles:
            raise DataError(ratings_csv, line, "movieId", f"movie {row['movieId']} is not in {movies_csv.name}")
        if min_rating is None or row["rating"] >= min_rating:
            events[row["userId"]].append((row["timestamp"], row["movieId"]))
    names = unique_names(titles)
    records = []
    for user in sorted(events):
        ids = [f"m{m}" for _, m in sorted(events[user])]
        if len(ids) < min_length:
            continue
        records.append({"id": f"ml{user}", "seeker_id": f"u{user}",
                        "history_job_ids": ids[:-1], "history_titles": [names[i] for i in ids[:-1]],
                        "next_job_id": ids[-1], "next_title": names[ids[-1]], "split": "train"})
    if not records:
        raise GirlError(f"{ratings_csv}: no user has {min_length} or more ratings")
    return records, names


def load_movielens_data(folder: Path | str, min_length: int = 5) -> SequenceData:
    """:func:`load_movielens` as a :class:`SequenceData` (what :func:`girl_lib.stages.genrec.run_stage` reads)."""
    records, names = load_movielens(folder, min_length=min_length)
    return from_records(records, names, domain="movies")


# --------------------------------------------------------------------------------------------
# The split: leave-one-out, or by record
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One next-item question: ``history`` (item ids, oldest first) -> ``target``."""
    user: str
    history: tuple[str, ...]
    target: str


@dataclass
class Split:
    train: list[Example] = field(default_factory=list)
    val: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    # The part of each user's sequence a model may be fitted on: s_1 ... s_{n-2}.
    train_sequences: dict[str, list[str]] = field(default_factory=dict)


def leave_one_out(sequences: dict[str, list[str]], max_history: int = 0) -> Split:
    """Cut every user's sequence as in the module docstring. Users with fewer than 3 items have
    no val and test example and are an error (the world writes only users with >= 3).

    ``max_history`` > 0 keeps the last ``max_history`` items of each history.
    """
    def cut(h: Sequence[str]) -> tuple[str, ...]:
        return tuple(h[-max_history:]) if max_history > 0 else tuple(h)

    split = Split()
    for user, seq in sequences.items():
        if len(seq) < 3:
            raise GirlError(f"user '{user}' has {len(seq)} items; leave-one-out needs at least 3")
        n = len(seq)
        split.test.append(Example(user, cut(seq[:n - 1]), seq[n - 1]))
        split.val.append(Example(user, cut(seq[:n - 2]), seq[n - 2]))
        split.train.extend(Example(user, cut(seq[:t]), seq[t]) for t in range(1, n - 2))
        split.train_sequences[user] = list(seq[:n - 2])
    return split


def record_split(sequences: dict[str, list[str]], parts: dict[str, str], max_history: int = 0) -> Split:
    """One question per record: history = every item but the last, target = the last, in the part
    ``parts[record]`` names (``train``, ``val`` or ``test``). Models are fitted on the train
    records' whole sequences; val and test records are only read. ``max_history`` as above."""
    split = Split()
    for user, seq in sequences.items():
        part = parts.get(user)
        if part not in ("train", "val", "test"):
            raise GirlError(f"record '{user}' has no part (train, val or test), got {part!r}")
        if len(seq) < 2:
            raise GirlError(f"record '{user}' has {len(seq)} item; a question needs a history and a target")
        history = seq[:-1][-max_history:] if max_history > 0 else seq[:-1]
        getattr(split, part).append(Example(user, tuple(history), seq[-1]))
        if part == "train":
            split.train_sequences[user] = list(seq)
    return split


def split_data(data: SequenceData, max_history: int = 0) -> Split:
    """The loader's own record split when it made one (:attr:`SequenceData.splits`), else leave-one-out."""
    if data.splits:
        return record_split(data.sequences, data.splits, max_history)
    return leave_one_out(data.sequences, max_history)


def rank_metrics(ranked: Sequence[Sequence[str]], targets: Sequence[str], ks: Iterable[int] = (5, 10)) -> dict:
    """``{"hr@5", "ndcg@5", "hr@10", "ndcg@10"}`` (means over users) from ranked lists of item ids
    (or names): :mod:`girl_lib.metrics.ranking`, which also drops repeats."""

    out = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at_k(ranked, targets, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, targets, k)
    return out


def hr_curve(ranked: Sequence[Sequence[str]], targets: Sequence[str], max_k: int = 10) -> list[float]:
    """``[HR@1, ..., HR@max_k]``: the plot of the notebook."""
    return [hit_rate_at_k(ranked, targets, k) for k in range(1, max_k + 1)]
