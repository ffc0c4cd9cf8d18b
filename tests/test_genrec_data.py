"""GenRec on real data formats: the GenRec paper's instruction JSON (splitting histories whose
titles hold commas, unknown pieces, HTML entities, the seeded record split, bad files), MovieLens
as it is distributed (ml-latest-small CSV, ml-1m's Latin-1 '::' files), and the catalogue trie
at 10,000+ titles."""
from __future__ import annotations

import html
import json
import random
from pathlib import Path

import pytest

from girl_lib.errors import DataError
from girl_lib.stages.genrec import decoding
from girl_lib.stages.genrec import stage as genrec
from girl_lib.stages.genrec.instructions import (TitleMatcher, assign_parts, load_instructions, read_records,
                                                 split_history)
from girl_lib.stages.genrec.sequences import Example, load_movielens, load_movielens_data, split_data

SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "genrec_instructions.json"
KNOWN = ["Heat (1995)", "American President, The (1995)", "American President", "Beauty &amp; the Beast (1991)"]


def _write(tmp_path, records, name="data.json") -> Path:
    path = tmp_path / name
    path.write_text(records if isinstance(records, str) else json.dumps(records), encoding="utf-8")
    return path


def _record(history: str, output: str, instruction: str = "Which movie next?") -> dict:
    return {"instruction": instruction, "input": history, "output": output}


# --------------------------------------------------------------------------------------------
# Splitting a history
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("history, expected", [
    # the longest known title wins, even though a shorter one ends at the same comma
    ("American President, The (1995),Heat (1995)", [("American President, The (1995)", True), ("Heat (1995)", True)]),
    ("American President,Heat (1995)", [("American President", True), ("Heat (1995)", True)]),
    # spaces around a title (the paper's files have some) do not hide it
    (" Heat (1995) ,American President", [("Heat (1995)", True), ("American President", True)]),
    # HTML entities are matched as written
    ("Beauty &amp; the Beast (1991),Heat (1995)", [("Beauty &amp; the Beast (1991)", True), ("Heat (1995)", True)]),
    # a prefix of a known title that does not end at a comma is no match
    ("Heat (1995) Director's Cut,Heat (1995)", [("Heat (1995) Director's Cut", False), ("Heat (1995)", True)]),
])
def test_split_history_takes_the_longest_known_title(history, expected):
    assert split_history(history, TitleMatcher(KNOWN)) == (expected, 0)


def test_split_history_keeps_unknown_pieces_whole_and_counts_empty_ones():
    m = TitleMatcher(KNOWN)
    # a comma followed by a space stays inside an unknown title; the joiner (no space) ends it
    pieces, empty = split_history("Heat (1995),Good, the Bad and the Ugly, The (1966),Clueless (1995),Heat (1995)", m)
    assert pieces == [("Heat (1995)", True), ("Good, the Bad and the Ugly, The (1966)", False),
                      ("Clueless (1995)", False), ("Heat (1995)", True)] and empty == 0
    # ... unless a known title starts after it
    assert split_history("Clueless (1995), Heat (1995)", m)[0] == [("Clueless (1995)", False), ("Heat (1995)", True)]
    # two commas in a row or a comma at an end name no item: counted, not turned into an item
    assert split_history(",Heat (1995),,Clueless,", m) == ([("Heat (1995)", True), ("Clueless", False)], 3)
    assert split_history("", m) == ([], 1)


# --------------------------------------------------------------------------------------------
# Loading the file
# --------------------------------------------------------------------------------------------
def test_loader_counts_unknown_fragments_and_unescapes_names(tmp_path):
    records = [_record("Heat (1995),Beauty &amp; the Beast (1991)", "American President, The (1995)"),
               _record("Clueless (1995),American President, The (1995)", "Heat (1995)"),
               _record("Beauty & the Beast (1991),Clueless (1995),Heat (1995)", "Beauty &amp; the Beast (1991)"),
               _record("Heat (1995)", "American President, The (1995)", "Another wording?")]
    data = load_instructions(_write(tmp_path, records))
    assert data.stats["n_records"] == 4 and data.stats["n_known_titles"] == 3
    # "Clueless (1995)" twice; "Beauty & the Beast" as written (unescaped) is not the known "&amp;" title
    assert data.stats["unknown_fragments"] == 3 and data.stats["unknown_items"] == 2
    named = [[data.names[i] for i in data.sequences[f"r{k}"]] for k in range(4)]
    assert named[0] == ["Heat (1995)", "Beauty & the Beast (1991) [i1]", "American President, The (1995)"]
    assert named[1] == ["Clueless (1995)", "American President, The (1995)", "Heat (1995)"]
    # the unknown piece shares its display name with the known title: both get their id appended
    assert named[2][0] == "Beauty & the Beast (1991) [unk1]" and named[2][-1] == "Beauty & the Beast (1991) [i1]"
    assert not any("&amp;" in n for n in data.names.values()) and len(set(data.names.values())) == len(data.names)
    assert data.instructions == {"r0": "Which movie next?", "r1": "Which movie next?", "r2": "Which movie next?",
                                 "r3": "Another wording?"}
    assert data.domain == "instructions"


def test_sample_file_loads_with_every_title_in_the_catalogue():
    data = load_instructions(SAMPLE)
    raw = json.loads(SAMPLE.read_text(encoding="utf-8"))
    s = data.stats
    assert s["n_records"] == len(raw) and s["n_train_records"] + s["n_val_records"] + s["n_test_records"] == len(raw)
    assert s["unknown_items"] >= 2 and s["unknown_fragments"] >= s["unknown_items"] and s["empty_fragments"] == 0
    names = set(data.names.values())
    assert {"American President, The (1995)", "Beauty & the Beast (1991)", "Good, the Bad and the Ugly, The (1966)",
            '"Great Performances" Cats (1998)'} <= names
    assert len({r["instruction"] for r in raw}) >= 8  # the paper's paraphrased instructions
    # every output is a known item, and the last of its record's sequence
    assert all(data.names[data.sequences[f"r{k}"][-1]] == html.unescape(r["output"])
               for k, r in enumerate(raw))


def test_record_split_is_seeded_and_uses_the_records_instruction(tmp_path):
    records = [_record(f"Heat (1995),T{k}", f"T{k + 1}", f"wording {k % 3}") for k in range(40)]
    path = _write(tmp_path, records)
    a, b, c = load_instructions(path, seed=0), load_instructions(path, seed=0), load_instructions(path, seed=1)
    assert a.splits == b.splits and a.splits != c.splits
    assert sorted(a.splits.values()).count("test") == 4 and sorted(a.splits.values()).count("val") == 4
    split = split_data(a, max_history=1)
    assert len(split.train) == 32 and len(split.val) == 4 and len(split.test) == 4
    test_users = {e.user for e in split.test}
    assert test_users == {u for u, p in a.splits.items() if p == "test"}
    assert set(split.train_sequences) == {u for u, p in a.splits.items() if p == "train"}  # fitted on train only
    e = next(e for e in split.test)
    assert len(e.history) == 1 and e.target == a.sequences[e.user][-1]
    row = genrec.chat_row(e, a, seed=0)
    assert row["prompt"][1]["content"].startswith(a.instructions[e.user] + "\n1. ")
    assert assign_parts(40, 0) == assign_parts(40, 0) != assign_parts(40, 1)
    with pytest.raises(ValueError, match="at least 3 records"):
        assign_parts(2, 0)


@pytest.mark.parametrize("content, record, field, says", [
    ('{"instruction": "x", "input": "a", "output": "b"}', None, None, "expected a JSON list"),
    ("[]", None, None, "has no records"),
    ('[{"instruction": "x", "input": "a", "output": "b"}, 7]', 1, None, "expected an object"),
    ('[{"instruction": "x", "output": "b"}]', 0, "input", "missing"),
    ('[{"instruction": "x", "input": "a", "output": "b"}, {"instruction": "x", "input": "a"}]', 1, "output",
     "missing"),
    ('[{"instruction": "x", "input": ["a", "b"], "output": "b"}]', 0, "input", "expected a string, got a JSON list"),
    ('[{"instruction": "x", "input": "a", "output": null}]', 0, "output", "expected a string, got a JSON null"),
    ('[{"instruction": "x", "input": "a", "output": "b"}, {"instruction": "x", "input": "a", "output": "  "}]', 1,
     "output", "is empty"),
    ('[{"instruction": "", "input": "a", "output": "b"}]', 0, "instruction", "is empty"),
])
def test_bad_instruction_files_name_file_record_and_field(tmp_path, content, record, field, says):
    path = _write(tmp_path, content)
    with pytest.raises(DataError) as err:
        read_records(path)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(str(path)) and says in msg
    assert err.value.record == record and err.value.field == field
    assert (f"record {record}:" in msg) == (record is not None) and (f"field '{field}'" in msg) == (field is not None)


def test_bad_instruction_files_beyond_the_fields(tmp_path):
    with pytest.raises(DataError, match=r"data\.json:3: not valid JSON"):
        read_records(_write(tmp_path, '[\n{"instruction": "x",\n "input": "a" "output": "b"}]'))
    with pytest.raises(DataError, match="record 1: field 'input' names no item"):
        load_instructions(_write(tmp_path, [_record("a", "b"), _record(",", "b"), _record("b", "a")]))
    with pytest.raises(DataError, match="at least 3 records"):
        load_instructions(_write(tmp_path, [_record("a", "b"), _record("b", "a")]))
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "nope.json")


# --------------------------------------------------------------------------------------------
# The stage on the paper's format: every method runs
# --------------------------------------------------------------------------------------------
def test_genrec_stage_runs_every_method_on_instruction_json(smoke_cfg, tmp_path, capsys):
    from girl_lib.config import apply_overrides
    from girl_lib.pipeline import run_stage

    cfg = apply_overrides(smoke_cfg, {"genrec.instructions_json": str(SAMPLE)})
    run_stage("genrec", cfg, tmp_path, log=lambda *a: None)
    assert "unknown_fragments" in capsys.readouterr().out  # said in the log
    metrics, preds = genrec.load_results(tmp_path)
    data = load_instructions(SAMPLE, seed=cfg.seed)
    assert metrics["domain"] == "instructions" and metrics["unknown_fragments"] == data.stats["unknown_fragments"] > 0
    assert metrics["n_test_users"] == data.stats["n_test_records"] == len(preds)
    assert [r["method"] for r in genrec.results_table(metrics)] == list(genrec.METHODS)
    assert metrics["genrec_constrained"]["valid_rate"] == 1.0
    names = set(data.names.values())
    for row in preds:
        assert row["target"] in names and set(row["history"]) <= names and set(row["constrained_beams"]) <= names
        assert all(set(row[m]) <= names for m in ("popularity", "markov", "sasrec", "genrec_nearest"))


# --------------------------------------------------------------------------------------------
# MovieLens as distributed
# --------------------------------------------------------------------------------------------
ML_SMALL_MOVIES = '''movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
11,"American President, The (1995)",Comedy|Drama|Romance
73,"Misérables, Les (1995)",Drama|War
6,Heat (1995),Action|Crime|Thriller
176,"Living in Oblivion (1995)",Comedy
193609,Andrew Dice Clay: Dice Rules (1991),(no genres listed)
'''
ML_SMALL_RATINGS = '''userId,movieId,rating,timestamp
1,1,4.0,964982703
1,11,4.0,964981247
1,6,4.0,964982224
1,73,5.0,964983815
2,176,3.0,1445714835
2,193609,4.5,1445714994
2,11,0.5,1445715000
'''
ML_1M_MOVIES = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
                "11::American President, The (1995)::Comedy|Drama|Romance\n"
                "73::Misérables, Les (1995)::Drama|Musical\n"
                "6::Heat (1995)::Action|Crime|Thriller\n")
ML_1M_RATINGS = "1::1::5::978300760\n1::11::3::978302109\n1::73::3::978301968\n1::6::4::978300275\n"


def test_movielens_latest_small_csv_with_quoted_commas_and_utf8(tmp_path):
    (tmp_path / "movies.csv").write_text(ML_SMALL_MOVIES, encoding="utf-8")
    (tmp_path / "ratings.csv").write_text(ML_SMALL_RATINGS, encoding="utf-8")
    records, names = load_movielens(tmp_path, min_length=3)
    assert names["m11"] == "American President, The (1995)" and names["m73"] == "Misérables, Les (1995)"
    assert names["m193609"] == "Andrew Dice Clay: Dice Rules (1991)"
    assert [r["seeker_id"] for r in records] == ["u1", "u2"]
    assert records[0]["history_job_ids"] == ["m11", "m6", "m1"] and records[0]["next_job_id"] == "m73"
    data = load_movielens_data(tmp_path, min_length=3)
    assert data.domain == "movies" and data.sequences["u2"] == ["m176", "m193609", "m11"]


def test_movielens_1m_dat_files_latin1(tmp_path):
    (tmp_path / "movies.dat").write_bytes(ML_1M_MOVIES.encode("latin-1"))
    (tmp_path / "ratings.dat").write_bytes(ML_1M_RATINGS.encode("latin-1"))
    assert b"Mis\xe9rables" in (tmp_path / "movies.dat").read_bytes()  # the real file's encoding
    data = load_movielens_data(tmp_path, min_length=3)
    assert data.names["m73"] == "Misérables, Les (1995)" and data.names["m11"] == "American President, The (1995)"
    # time order: 6 (t=978300275), 1 (...0760), 73 (...1968), 11 (...2109)
    assert data.sequences["u1"] == ["m6", "m1", "m73", "m11"]
    assert split_data(data).test == [Example("u1", ("m6", "m1", "m73"), "m11")]


@pytest.mark.parametrize("ratings, line, field", [
    (ML_1M_RATINGS.replace("1::11::3::", "1::11::three::"), 2, "rating"),
    (ML_1M_RATINGS.replace("1::73::3::978301968", "1::73::3"), 3, "timestamp"),
    (ML_1M_RATINGS + "2::99::4::978300000\n", 5, "movieId"),
])
def test_movielens_1m_malformed_lines_name_file_line_and_field(tmp_path, ratings, line, field):
    (tmp_path / "movies.dat").write_bytes(ML_1M_MOVIES.encode("latin-1"))
    (tmp_path / "ratings.dat").write_bytes(ratings.encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_movielens(tmp_path, min_length=3)
    assert err.value.path.endswith("ratings.dat") and err.value.line == line and err.value.field == field


def test_movielens_folder_and_encoding_problems_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="neither movies.csv"):
        load_movielens(tmp_path, min_length=3)
    with pytest.raises(DataError, match="folder not found"):
        load_movielens(tmp_path / "ml-1m", min_length=3)
    (tmp_path / "movies.csv").write_bytes(ML_SMALL_MOVIES.encode("latin-1"))  # not the UTF-8 the CSVs are
    (tmp_path / "ratings.csv").write_text(ML_SMALL_RATINGS)
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_movielens(tmp_path, min_length=3)


# --------------------------------------------------------------------------------------------
# The catalogue trie at 10,000+ titles
# --------------------------------------------------------------------------------------------
def big_catalogue() -> list[str]:
    """Over 10,000 distinct job-like titles with long shared prefixes."""
    from girl_lib.world import load_taxonomy

    base = sorted({t.title() for o in load_taxonomy().occupations for t in (o.label, *o.alt_titles)})
    companies = ("Acme", "Brouwer", "Maes", "Novak", "Okafor")
    titles = [f"{level} {b} at {c}".strip() for b in base for level in ("Junior", "", "Senior", "Lead") for c in companies]
    return list(dict.fromkeys(titles))


def test_trie_over_10k_titles_yields_only_catalogue_titles(tiny_model):
    model, tok = tiny_model
    titles = big_catalogue()
    assert len(titles) >= 10_000
    trie = decoding.TitleTrie(tok, titles)
    assert trie.n_titles == len(titles) and trie.n_nodes >= len(titles)
    catalogue, rng = set(titles), random.Random(0)
    for _ in range(300):  # random walks along the allowed tokens always spell a whole title
        ids = []
        while (allowed := trie.allowed(ids)) != [tok.eos_token_id]:
            ids.append(rng.choice(allowed))
            if ids[-1] == tok.eos_token_id:
                break
        assert tok.decode([t for t in ids if t != tok.eos_token_id]) in catalogue
    beams = decoding.beam_search(model, tok, ["1. Senior Cloud Engineer at Acme", "1. Lead Data Analyst at Maes"],
                                 num_beams=4, batch_size=2, trie=trie)
    assert all(b and set(b) <= catalogue for b in beams)
