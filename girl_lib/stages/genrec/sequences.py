"""Sequences of items for next-item recommendation: loading, the leave-one-out split, baselines.

GenRec (:mod:`girl_lib.stages.genrec`) and the classic recommenders it is compared with all read the
same thing: for every user, the items they interacted with, in time order. Here that is a job
seeker's applications (``<run-dir>/data/sequences.jsonl``) or, with the same code, a MovieLens
user's ratings (``movies.csv`` + ``ratings.csv``, :func:`load_movielens`).

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

**Baselines** (the same split, the same ranked-list metrics):

* :class:`Popularity` — the most frequent training items, the same list for everybody.
* :class:`Markov` — first-order transitions: after item ``a``, the items that most often followed
  ``a`` in training; ties and short lists are filled by popularity.
* :class:`SASRec` — Kang & McAuley (2018), a small causal transformer over item ids trained with
  cross-entropy over all items; the ID-based stand-in for P5.

Every recommender skips items already in the user's history when ``exclude_history`` is on (a
seeker does not apply twice to one posting; a MovieLens user rates a film once).
"""
from __future__ import annotations

import csv
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

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


def job_names(jobs: Iterable[dict]) -> dict[str, str]:
    """``{job id: "<title> at <company>"}``, made unique (see the module docstring)."""
    names = {}
    for j in jobs:
        title = j.get("title") or j["id"]
        names[j["id"]] = f"{title} at {j['company']}" if j.get("company") else title
    return unique_names(names)


@dataclass
class SequenceData:
    """``sequences[user]`` = item ids in time order; ``names[item]`` = its unique catalogue name."""
    sequences: dict[str, list[str]]
    names: dict[str, str]
    domain: str = "jobs"  # picks the prompt wording in girl_lib.stages.genrec: jobs | movies

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


def load_world_sequences(data_dir: Path | str) -> SequenceData:
    """The world's ``sequences.jsonl`` with jobs named ``"<title> at <company>"`` from ``jobs.jsonl``.

    All splits are used (train, val, test and cold seekers): leave-one-out holds out the *last
    items of every user*, not whole users. Both files are validated by :mod:`girl_lib.world.io`.
    """
    data_dir = Path(data_dir)
    records = load_jsonl(data_dir / "sequences.jsonl", "sequences")
    if not records:
        raise GirlError(f"{data_dir / 'sequences.jsonl'} has no sequences; rebuild with 'girl data --force'")
    jobs = load_jsonl(data_dir / "jobs.jsonl", "jobs")
    return from_records(records, job_names(jobs), domain="jobs")


# --------------------------------------------------------------------------------------------
# MovieLens (ml-latest-small / ml-25m style CSV files)
# --------------------------------------------------------------------------------------------
def _read_csv(path: Path, fields: dict[str, type]):
    """Yield ``(line number, {field: value})`` for each row, values converted to ``fields``' types.

    A missing column, a short row or a value of the wrong type raises :class:`DataError` naming
    the file, the line and the field.
    """
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(path, 1, None, "empty file; expected a header line")
        header = [h.strip() for h in header]
        for name in fields:
            if name not in header:
                raise DataError(path, 1, name, f"missing column (header is {','.join(header)})")
        col = {name: header.index(name) for name in fields}
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue  # a blank line is not a record
            out = {}
            for name, typ in fields.items():
                if col[name] >= len(row):
                    raise DataError(path, line, name, f"missing value (row has {len(row)} columns)")
                raw = row[col[name]].strip()
                try:
                    value = typ(raw)
                except ValueError:
                    raise DataError(path, line, name, f"expected {typ.__name__}, got '{raw}'") from None
                if typ is float and not math.isfinite(value):
                    raise DataError(path, line, name, f"expected a finite number, got '{raw}'")
                if typ is str and not value:
                    raise DataError(path, line, name, "empty value")
                out[name] = value
            yield line, out


def load_movielens(folder: Path | str | None = None, *, movies_csv: Path | str | None = None,
                   ratings_csv: Path | str | None = None, min_length: int = 5,
                   min_rating: float | None = None) -> tuple[list[dict], dict[str, str]]:
    """MovieLens ratings as ``sequences.jsonl``-shaped records, plus the catalogue names.

    ``movies.csv`` (``movieId,title,genres``) and ``ratings.csv`` (``userId,movieId,rating,timestamp``)
    come from ``folder`` unless given one by one. Each user's rated films, ordered by
    ``timestamp`` (then ``movieId``), form one sequence; users with fewer than ``min_length``
    ratings are left out (and counted: see the returned records' number against the users).
    ``min_rating`` keeps only ratings at or above it (None: every rating counts as an
    interaction, as in P5 and GenRec). Item ids are ``"m<movieId>"``; duplicate titles get the id
    appended (:func:`unique_names`). A malformed file fails with file, line and field named.
    """
    folder = Path(folder) if folder is not None else None
    movies_csv = Path(movies_csv) if movies_csv else (folder / "movies.csv" if folder else None)
    ratings_csv = Path(ratings_csv) if ratings_csv else (folder / "ratings.csv" if folder else None)
    if movies_csv is None or ratings_csv is None:
        raise GirlError("load_movielens needs a folder or both movies_csv and ratings_csv")
    if min_length < 3:
        raise GirlError(f"min_length must be >= 3 (train, val and test each need an item), got {min_length}")
    titles: dict[str, str] = {}
    for line, row in _read_csv(movies_csv, {"movieId": int, "title": str}):
        item = f"m{row['movieId']}"
        if item in titles:
            raise DataError(movies_csv, line, "movieId", f"duplicate movieId {row['movieId']}")
        titles[item] = row["title"]
    events: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for line, row in _read_csv(ratings_csv, {"userId": int, "movieId": int, "rating": float, "timestamp": int}):
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
# Leave-one-out
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


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------
def _top(scores: dict[str, float], k: int, skip: set) -> list[str]:
    # Highest score first; ties broken by item id so the ranking is deterministic.
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])) if i not in skip][:k]


class Popularity:
    """Recommend the items that occur most often in the training sequences."""
    def __init__(self, train_sequences: dict[str, list[str]]):
        self.counts = Counter(i for seq in train_sequences.values() for i in seq)

    def recommend(self, history: Sequence[str], k: int = 10, exclude_history: bool = True) -> list[str]:
        return _top(self.counts, k, set(history) if exclude_history else set())


class Markov:
    """First-order transitions ``a -> b`` counted in the training sequences; popularity fills up."""
    def __init__(self, train_sequences: dict[str, list[str]]):
        self.popularity = Popularity(train_sequences)
        self.next: dict[str, Counter] = defaultdict(Counter)
        for seq in train_sequences.values():
            for a, b in zip(seq, seq[1:]):
                self.next[a][b] += 1

    def recommend(self, history: Sequence[str], k: int = 10, exclude_history: bool = True) -> list[str]:
        skip = set(history) if exclude_history else set()
        ranked = _top(self.next.get(history[-1], {}), k, skip) if history else []
        fill = self.popularity.recommend(history, k + len(ranked), exclude_history)
        return (ranked + [i for i in fill if i not in ranked])[:k]


def _torch():
    import torch
    from torch import nn

    return torch, nn


def make_sasrec(n_items: int, dim: int = 64, layers: int = 2, heads: int = 2, max_len: int = 50,
                dropout: float = 0.2):
    """A small SASRec: item + position embeddings, ``layers`` causal transformer blocks, and the
    item embedding matrix reused as the output layer (logits = h · E^T, as in the paper)."""
    torch, nn = _torch()

    class SASRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)  # index 0 = padding
            self.pos = nn.Embedding(max_len, dim)
            self.drop = nn.Dropout(dropout)
            block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
            self.max_len = max_len
            # Small initial embeddings (GPT-style): with PyTorch's N(0, 1) default the tied output
            # layer starts with logits of std ~sqrt(dim) and a cross-entropy in the tens.
            for emb in (self.item, self.pos):
                nn.init.normal_(emb.weight, std=0.02)
            with torch.no_grad():
                self.item.weight[0].zero_()

        def forward(self, seq):
            """``seq`` [B, L] item indices, **right**-padded with 0 -> logits [B, L, n_items + 1].

            Right padding plus the causal mask means a real position never sees a pad, so no
            key-padding mask is needed (and no fully masked attention row can produce NaN).
            """
            length = seq.shape[1]
            pos = torch.arange(length, device=seq.device)
            h = self.drop(self.item(seq) * math.sqrt(dim) + self.pos(pos)[None])
            causal = nn.Transformer.generate_square_subsequent_mask(length, device=seq.device)
            h = self.norm(self.blocks(h, mask=causal, is_causal=True))
            logits = h @ self.item.weight.T
            logits[..., 0] = float("-inf")  # never recommend padding
            return logits

    return SASRec()


class SASRecRecommender:
    """Train :func:`make_sasrec` on the training sequences; recommend from the last position."""
    def __init__(self, train_sequences: dict[str, list[str]], *, dim: int = 64, layers: int = 2, heads: int = 2,
                 max_len: int = 20, dropout: float = 0.2, epochs: int = 100, batch_size: int = 128,
                 learning_rate: float = 1e-3, seed: int = 0, progress: bool = False):
        torch, nn = _torch()
        items = sorted({i for s in train_sequences.values() for i in s})
        self.index = {item: k + 1 for k, item in enumerate(items)}
        self.items = [None] + items
        self.max_len = max_len
        torch.manual_seed(seed)
        self.model = make_sasrec(len(items), dim, layers, heads, max_len, dropout)
        seqs = [s[-(max_len + 1):] for s in train_sequences.values() if len(s) >= 2]
        self.losses: list[float] = []
        if not seqs:
            return
        # A model this small runs fastest on one CPU thread (two threads fight over a busy machine);
        # the previous setting is restored afterwards.
        threads = torch.get_num_threads()
        if next(self.model.parameters()).device.type == "cpu":
            torch.set_num_threads(1)
        try:
            self._fit(seqs, epochs, batch_size, learning_rate, seed, progress)
        finally:
            torch.set_num_threads(threads)
        self.model.eval()

    def _fit(self, seqs, epochs, batch_size, learning_rate, seed, progress):
        torch, nn = _torch()
        opt = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        rng = random.Random(seed)
        loss_fn = nn.CrossEntropyLoss(ignore_index=0)
        epochs_iter = range(epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs_iter = tqdm(epochs_iter, desc="sasrec", unit="epoch")
        self.model.train()
        for _ in epochs_iter:
            rng.shuffle(seqs)
            total = 0.0
            for b in range(0, len(seqs), batch_size):
                batch = seqs[b:b + batch_size]
                inputs = self._pad([s[:-1] for s in batch])
                targets = self._pad([s[1:] for s in batch])
                logits = self.model(inputs)
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
            self.losses.append(total / len(seqs))

    def _pad(self, seqs: Sequence[Sequence[str]]):
        torch, _ = _torch()
        width = max(len(s) for s in seqs)
        out = torch.zeros(len(seqs), width, dtype=torch.long)
        for r, s in enumerate(seqs):
            out[r, :len(s)] = torch.tensor([self.index.get(i, 0) for i in s], dtype=torch.long)
        return out

    def recommend_many(self, histories: Sequence[Sequence[str]], k: int = 10, exclude_history: bool = True,
                       batch_size: int = 256) -> list[list[str]]:
        torch, _ = _torch()
        out: list[list[str]] = []
        with torch.no_grad():
            for b in range(0, len(histories), batch_size):
                hs = [list(h)[-self.max_len:] for h in histories[b:b + batch_size]]
                hs_known = [[i for i in h if i in self.index] or [None] for h in hs]
                inputs = self._pad(hs_known)
                logits = self.model(inputs)
                last = torch.tensor([len(h) - 1 for h in hs_known])
                scores = logits[torch.arange(len(hs_known)), last]
                for h, row in zip(hs, scores):
                    if exclude_history:
                        row[[self.index[i] for i in h if i in self.index]] = float("-inf")
                    top = torch.topk(row, min(k, len(self.items) - 1)).indices.tolist()
                    out.append([self.items[t] for t in top if self.items[t] is not None and row[t] > float("-inf")])
        return out

    def recommend(self, history: Sequence[str], k: int = 10, exclude_history: bool = True) -> list[str]:
        return self.recommend_many([history], k, exclude_history)[0]
