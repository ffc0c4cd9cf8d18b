"""The GenRec paper's own data format: a JSON list of instruction records.

The paper's repository ships each dataset as one JSON list::

    [{"instruction": "Given the movies this user watched, which will they watch next?",
      "input": "Heat (1995),American President, The (1995),Beauty &amp; the Beast (1991)",
      "output": "Jumanji (1995)"}, ...]

``input`` is the user's history: item titles joined by ``","`` with no space; ``output`` is the
next item's title; ``instruction`` is one of about ten paraphrases. Three things make it more
than ``input.split(",")``:

* **Titles hold commas** (``American President, The (1995)``), so a history is split against the
  catalogue by **greedy longest match** (:func:`split_history`): at each position the longest
  known title that ends at a comma (or the end) is taken. The known titles are every ``output``
  of the file: a title that is someone's next item is a title.
* **Some history items are never anyone's next item.** Where no known title starts, the piece
  up to the next comma *not followed by a space* (the joiner has none; commas inside titles
  usually do), or up to where a known title starts, becomes an **unknown item**: kept in the
  history and the catalogue, and counted (``unknown_fragments``, ``unknown_items`` in the
  stage's ``metrics.json`` and its log), never dropped.
* **HTML entities** (``&amp;``, ``&quot;``) are left as-is in the file. Matching uses the text as
  written; the name the model reads and writes is ``html.unescape``-d (``Beauty & the Beast``).

Each record becomes one "user" (``r<index>``) whose sequence is its history then its output,
keeps its own instruction for the prompt, and is assigned to train, val or test by a seeded
shuffle of the records (:func:`assign_parts`); the stage then asks each test record its question
(:func:`girl_lib.stages.genrec.sequences.record_split`). A malformed file fails with one line
naming the file, the record (its 0-based index in the list, as ``jq '.[3]'``) and the field.
"""
from __future__ import annotations

import html
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from ...errors import DataError
from .sequences import SequenceData, unique_names

FIELDS = ("instruction", "input", "output")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1


# --------------------------------------------------------------------------------------------
# Reading and checking the file
# --------------------------------------------------------------------------------------------
def read_records(path: Path | str) -> list[dict]:
    """The file's records as ``{"instruction", "input", "output"}`` dicts of strings, checked.

    Not a list, a record that is not an object, a missing field, a field that is not a string,
    an empty ``instruction`` or ``output``: :class:`DataError` naming the file, record and field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "file not found; pass a JSON list of {instruction, input, output} records")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(path, None, None, "is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"not valid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(records, list):
        raise DataError(path, None, None, f"expected a JSON list of {{instruction, input, output}} records, "
                                          f"got a JSON {_kind(records)}")
    if not records:
        raise DataError(path, None, None, "has no records (an empty list)")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise DataError(path, None, None, f"expected an object with {', '.join(FIELDS)}, got a JSON {_kind(r)}",
                            record=i)
        for name in FIELDS:
            if name not in r:
                raise DataError(path, None, name, "missing", record=i)
            if not isinstance(r[name], str):
                raise DataError(path, None, name, f"expected a string, got a JSON {_kind(r[name])}", record=i)
        for name in ("instruction", "output"):
            if not r[name].strip():
                raise DataError(path, None, name, "is empty" + ("; every record needs the next item's title"
                                                                 if name == "output" else ""), record=i)
    return [{name: r[name] for name in FIELDS} for r in records]


def _kind(value) -> str:
    """The JSON name of a parsed value's type."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Splitting a history against the known titles
# --------------------------------------------------------------------------------------------
class TitleMatcher:
    """Known titles indexed by their text before the first comma, so that finding the longest
    title at a position costs the few titles sharing that first piece, not the catalogue."""

    def __init__(self, titles: Iterable[str]):
        self.by_head: dict[str, list[str]] = defaultdict(list)
        for title in {t.strip() for t in titles if t.strip()}:
            self.by_head[title.split(",", 1)[0].strip()].append(title)
        for group in self.by_head.values():
            group.sort(key=lambda t: (-len(t), t))  # longest first

    def match(self, text: str, i: int) -> int | None:
        """Where the longest known title starting at ``text[i:]`` ends (at a comma or the end of
        ``text``; spaces around the title allowed), or None."""
        n = len(text)
        while i < n and text[i].isspace():
            i += 1
        comma = text.find(",", i)
        head = text[i:n if comma < 0 else comma].strip()
        for title in self.by_head.get(head, ()):
            if text.startswith(title, i):
                end = i + len(title)
                while end < n and text[end].isspace():
                    end += 1
                if end == n or text[end] == ",":
                    return end
        return None


def _unknown_end(text: str, i: int, matcher: TitleMatcher) -> int:
    """The end of an unknown piece starting at ``i``: the first comma not followed by a space, or
    followed by a known title; else the end of ``text``."""
    comma = text.find(",", i)
    while comma >= 0:
        nxt = comma + 1
        if nxt == len(text) or not text[nxt].isspace() or matcher.match(text, nxt) is not None:
            return comma
        comma = text.find(",", nxt)
    return len(text)


def split_history(text: str, matcher: TitleMatcher) -> tuple[list[tuple[str, bool]], int]:
    """``([(title, known), ...], empty)``: ``text`` cut into titles by greedy longest match.

    ``known`` is False for a piece that matched no known title (kept, see the module docstring);
    ``empty`` counts the empty pieces (two commas in a row, a comma at either end), which name
    no item.

    >>> m = TitleMatcher(["Heat (1995)", "American President, The (1995)"])
    >>> split_history("Heat (1995),American President, The (1995),Up, Down,Heat (1995)", m)
    ([('Heat (1995)', True), ('American President, The (1995)', True), ('Up, Down', False), ('Heat (1995)', True)], 0)
    """
    pieces, empty, i = [], 0, 0
    while i <= len(text):
        end = matcher.match(text, i)
        known = end is not None
        if end is None:
            end = _unknown_end(text, i, matcher)
        piece = text[i:end].strip()
        if piece:
            pieces.append((piece, known))
        else:
            empty += 1
        i = end + 1
    return pieces, empty


# --------------------------------------------------------------------------------------------
# Records -> SequenceData
# --------------------------------------------------------------------------------------------
def assign_parts(n: int, seed: int, val_fraction: float = VAL_FRACTION,
                 test_fraction: float = TEST_FRACTION) -> list[str]:
    """``"train"``, ``"val"`` or ``"test"`` for each of ``n`` records: a seeded shuffle, then the
    first ``round(n * test_fraction)`` (at least 1) to test, the next to val (at least 1 when the
    fraction is > 0), the rest to train. The same ``n`` and seed always give the same parts."""
    if n < 3:
        raise ValueError(f"a record split needs at least 3 records (train, val, test), got {n}")
    n_test = max(1, round(n * test_fraction))
    n_val = max(1 if val_fraction > 0 else 0, round(n * val_fraction))
    if n_test + n_val >= n:
        raise ValueError(f"{n} records leave none for training at val {val_fraction}, test {test_fraction}")
    order = list(range(n))
    random.Random(f"genrec-instructions:{seed}").shuffle(order)
    parts = ["train"] * n
    for k, i in enumerate(order[:n_test + n_val]):
        parts[i] = "test" if k < n_test else "val"
    return parts


def load_instructions(path: Path | str, seed: int = 0, val_fraction: float = VAL_FRACTION,
                      test_fraction: float = TEST_FRACTION) -> SequenceData:
    """The file as a :class:`SequenceData`: one sequence (history, then output) per record, the
    record's instruction, its part (:func:`assign_parts`) and the loader's counts in ``stats``."""
    path = Path(path)
    records = read_records(path)
    matcher = TitleMatcher(r["output"] for r in records)
    known_ids = {t: f"i{k}" for k, t in enumerate(sorted({r["output"].strip() for r in records}))}
    unknown_ids: dict[str, str] = {}
    sequences, stats = {}, {"n_records": len(records), "n_known_titles": len(known_ids),
                            "unknown_fragments": 0, "empty_fragments": 0}
    for i, r in enumerate(records):
        pieces, empty = split_history(r["input"], matcher)
        if not pieces:
            raise DataError(path, None, "input", "names no item; a history needs at least one title", record=i)
        ids = []
        for title, known in pieces:
            if not known:
                stats["unknown_fragments"] += 1
                unknown_ids.setdefault(title, f"unk{len(unknown_ids)}")
            ids.append(known_ids[title] if known else unknown_ids[title])
        stats["empty_fragments"] += empty
        sequences[f"r{i}"] = ids + [known_ids[r["output"].strip()]]
    stats["unknown_items"] = len(unknown_ids)
    try:
        parts = assign_parts(len(records), seed, val_fraction, test_fraction)
    except ValueError as e:
        raise DataError(path, None, None, str(e)) from None
    users = list(sequences)
    stats.update({f"n_{p}_records": parts.count(p) for p in ("train", "val", "test")})
    raw = {**{v: t for t, v in known_ids.items()}, **{v: t for t, v in unknown_ids.items()}}
    return SequenceData(sequences, unique_names({item: html.unescape(t) for item, t in raw.items()}),
                        domain="instructions", splits=dict(zip(users, parts)),
                        instructions={u: r["instruction"].strip() for u, r in zip(users, records)}, stats=stats)
