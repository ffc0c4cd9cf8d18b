"""GenRec: the split, the prompt, ranking metrics, the baselines, the MovieLens loader,
beam search (free and constrained to the catalogue) and the stage, on the smoke profile."""
from __future__ import annotations

import json
import math
import random

import pytest
from conftest import fp_tol, head_scale

from girl_lib.stages.genrec import decoding
from girl_lib.stages.genrec import stage as genrec
from girl_lib.config import apply_overrides
from girl_lib.errors import DataError, GirlError
from girl_lib.stages.genrec.baselines import Markov, Popularity, SASRecRecommender
from girl_lib.stages.genrec.sequences import (Example, from_records, hr_curve, job_names, leave_one_out, load_movielens,
                                              load_movielens_data, rank_metrics, unique_names)


# --------------------------------------------------------------------------------------------
# Metrics on hand-computed rankings
# --------------------------------------------------------------------------------------------
def test_rank_metrics_match_hand_computed_values():
    ranked = [["a", "b", "c"],            # target at rank 1
              ["x", "y", "t", "z"],       # rank 3
              ["p", "p", "q", "r", "s", "u", "t"],  # repeat dropped: t moves from 7th to rank 6
              ["m", "n"]]                 # absent
    targets = ["a", "t", "t", "zz"]
    m = rank_metrics(ranked, targets, ks=(1, 5, 10))
    assert m["hr@1"] == pytest.approx(1 / 4)
    assert m["hr@5"] == pytest.approx(2 / 4)
    assert m["hr@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(7)) / 4)
    assert hr_curve(ranked, targets, 6) == pytest.approx([0.25, 0.25, 0.5, 0.5, 0.5, 0.75])


# --------------------------------------------------------------------------------------------
# Leave-one-out
# --------------------------------------------------------------------------------------------
def test_leave_one_out_holds_out_last_two_items():
    split = leave_one_out({"u1": ["a", "b", "c", "d", "e"], "u2": ["x", "y", "z"]})
    assert Example("u1", ("a", "b", "c", "d"), "e") in split.test
    assert Example("u1", ("a", "b", "c"), "d") in split.val
    assert Example("u2", ("x", "y"), "z") in split.test and Example("u2", ("x",), "y") in split.val
    # train: every earlier position with a non-empty history, never the val/test targets
    assert sorted((e.user, e.history, e.target) for e in split.train) == [
        ("u1", ("a",), "b"), ("u1", ("a", "b"), "c")]
    assert split.train_sequences == {"u1": ["a", "b", "c"], "u2": ["x"]}


def test_leave_one_out_cuts_history_and_rejects_short_users():
    split = leave_one_out({"u": list("abcdefg")}, max_history=2)
    assert split.test == [Example("u", ("e", "f"), "g")]
    assert all(len(e.history) <= 2 for e in split.train + split.val)
    with pytest.raises(GirlError, match="at least 3"):
        leave_one_out({"u": ["a", "b"]})


# --------------------------------------------------------------------------------------------
# Catalogue names
# --------------------------------------------------------------------------------------------
def test_job_names_are_title_at_company_and_unique():
    jobs = [{"id": "j1", "title": "Cloud Engineer", "company": "Acme"},
            {"id": "j2", "title": "Cloud Engineer", "company": "Beta"},
            {"id": "j3", "title": "Cloud  Engineer", "company": "Acme"}]  # same name after spacing fix
    names = job_names(jobs)
    assert names["j2"] == "Cloud Engineer at Beta"
    assert names["j1"] == "Cloud Engineer at Acme [j1]" and names["j3"] == "Cloud Engineer at Acme [j3]"
    assert len(set(names.values())) == 3
    assert unique_names({"a": "X", "b": "Y"}) == {"a": "X", "b": "Y"}


def test_title_names_keep_the_company_only_where_a_title_repeats():
    jobs = [{"id": "j1", "title": "Cloud Engineer", "company": "Acme"},
            {"id": "j2", "title": "Cloud  Engineer", "company": "Beta"},  # the same title after spacing fix
            {"id": "j3", "title": "Data Analyst", "company": "Acme"}]
    names = job_names(jobs, "title")
    assert names == {"j1": "Cloud Engineer at Acme", "j2": "Cloud Engineer at Beta", "j3": "Data Analyst"}
    assert job_names(jobs)["j3"] == "Data Analyst at Acme"
    with pytest.raises(GirlError, match="unknown job name format 'company'"):
        job_names(jobs, "company")


def test_world_items_are_named_uniquely(smoke_run):
    from girl_lib.stages.genrec.sequences import load_world_sequences

    data = load_world_sequences(smoke_run / "data")
    assert len(set(data.names.values())) == len(data.names)
    assert all(" at " in n for n in data.names.values())
    assert all(len(s) >= 3 for s in data.sequences.values())
    short = load_world_sequences(smoke_run / "data", "title")
    assert short.sequences == data.sequences and set(short.names) == set(data.names)
    assert len(set(short.names.values())) == len(short.names)
    assert any(" at " not in n for n in short.names.values())


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------
def test_prompt_format_and_paraphrases():
    data = from_records([{"seeker_id": "s1", "history_job_ids": ["j1", "j2"], "history_titles": ["A", "B"],
                          "next_job_id": "j3", "next_title": "C"}])
    ex = Example("s1", ("j1", "j2"), "j3")
    row = genrec.chat_row(ex, data, seed=0)
    system, user = row["prompt"]
    assert system == {"role": "system", "content": genrec.SYSTEM_PROMPT}
    instruction = genrec.instruction_for(ex, "jobs", seed=0)
    assert instruction in genrec.INSTRUCTIONS["jobs"]
    assert user == {"role": "user", "content": f"{instruction}\n1. A\n2. B"}
    assert row["completion"] == [{"role": "assistant", "content": "C"}]
    assert genrec.chat_row(ex, data, seed=0) == row  # deterministic
    drawn = {genrec.instruction_for(Example(f"u{i}", ("x",), "y"), "jobs") for i in range(40)}
    assert len(drawn) >= 3 and drawn <= set(genrec.INSTRUCTIONS["jobs"])
    assert genrec.instruction_for(ex, "movies") in genrec.INSTRUCTIONS["movies"]
    with pytest.raises(GirlError):
        genrec.make_prompt([], "Which next?")


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------
def test_popularity_and_markov_rankings():
    train = {"u1": ["a", "b", "c"], "u2": ["a", "b"], "u3": ["c", "a", "d"]}
    pop = Popularity(train)
    assert pop.recommend([], 3) == ["a", "b", "c"]  # a:3, b:2, c:2 (tie by id), d:1
    assert pop.recommend(["a"], 2) == ["b", "c"]  # history excluded
    assert pop.recommend(["a"], 2, exclude_history=False) == ["a", "b"]
    mk = Markov(train)
    assert mk.recommend(["x", "a"], 3) == ["b", "d", "c"]  # a->b twice, a->d once, then popularity
    assert mk.recommend(["b"], 2) == ["c", "a"]  # b->c; a is the most popular left


def test_sasrec_learns_an_obvious_pattern_that_popularity_cannot():
    # Every user walks a cycle of 12 items from a random start: the next item is fully
    # determined by the last one, while every item is equally popular.
    rng = random.Random(0)
    seqs = {}
    for u in range(120):
        start = rng.randrange(12)
        seqs[f"u{u}"] = [f"i{(start + t) % 12}" for t in range(rng.randint(5, 8))]
    split = leave_one_out(seqs)
    targets = [e.target for e in split.test]
    sas = SASRecRecommender(split.train_sequences, dim=32, layers=1, heads=2, max_len=8, dropout=0.0,
                            epochs=60, learning_rate=5e-3, seed=0)
    assert sas.losses[-1] < sas.losses[0] - 1.0
    sas_m = rank_metrics(sas.recommend_many([e.history for e in split.test], 10), targets, ks=(1, 5))
    pop_m = rank_metrics([Popularity(split.train_sequences).recommend(e.history, 10) for e in split.test],
                         targets, ks=(1, 5))
    assert sas_m["hr@1"] > 0.8 and sas_m["hr@1"] > pop_m["hr@1"] + 0.5
    # seeded: the same call gives the same model
    again = SASRecRecommender(split.train_sequences, dim=32, layers=1, heads=2, max_len=8, dropout=0.0,
                              epochs=3, learning_rate=5e-3, seed=0)
    assert again.losses == SASRecRecommender(split.train_sequences, dim=32, layers=1, heads=2, max_len=8,
                                             dropout=0.0, epochs=3, learning_rate=5e-3, seed=0).losses


# --------------------------------------------------------------------------------------------
# MovieLens
# --------------------------------------------------------------------------------------------
MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation
2,Jumanji (1995),Adventure
3,"Emma (1996)",Comedy
4,Emma (1996),Drama
5,Heat (1995),Action
"""
RATINGS = """userId,movieId,rating,timestamp
1,5,4.0,300
1,1,4.0,100
1,2,3.5,200
1,3,5.0,200
2,1,3.0,50
2,2,3.0,60
3,4,2.0,10
3,1,4.0,20
3,5,4.0,30

"""


def _ml(tmp_path, movies=MOVIES, ratings=RATINGS):
    (tmp_path / "movies.csv").write_text(movies)
    (tmp_path / "ratings.csv").write_text(ratings)
    return tmp_path


def test_movielens_loader_builds_sequence_records(tmp_path):
    records, names = load_movielens(_ml(tmp_path), min_length=3)
    assert [r["seeker_id"] for r in records] == ["u1", "u3"]  # u2 has 2 ratings: too short
    u1 = records[0]
    # time order, ties broken by movieId: 1 (t=100), 2 (t=200), 3 (t=200), 5 (t=300)
    assert u1["history_job_ids"] == ["m1", "m2", "m3"] and u1["next_job_id"] == "m5"
    assert u1["history_titles"] == ["Toy Story (1995)", "Jumanji (1995)", "Emma (1996) [m3]"]
    assert u1["next_title"] == "Heat (1995)"
    assert names["m4"] == "Emma (1996) [m4]"  # duplicate titles made unique
    data = load_movielens_data(tmp_path, min_length=3)
    assert data.domain == "movies" and data.sequences["u3"] == ["m4", "m1", "m5"]
    assert leave_one_out(data.sequences).test[1] == Example("u3", ("m4", "m1"), "m5")


@pytest.mark.parametrize("movies,ratings,line,field", [
    (MOVIES, RATINGS.replace("1,2,3.5,200", "1,2,good,200"), 4, "rating"),
    (MOVIES, RATINGS.replace("3,5,4.0,30", "3,9,4.0,30"), 10, "movieId"),
    (MOVIES, RATINGS.replace("2,2,3.0,60", "2,2,3.0"), 7, "timestamp"),
    (MOVIES.replace("movieId,title", "id,title"), RATINGS, 1, "movieId"),
    (MOVIES.replace("5,Heat", "1,Heat"), RATINGS, 6, "movieId"),
])
def test_movielens_malformed_files_name_file_line_and_field(tmp_path, movies, ratings, line, field):
    _ml(tmp_path, movies, ratings)
    with pytest.raises(DataError) as err:
        load_movielens(tmp_path, min_length=3)
    assert err.value.line == line and err.value.field == field
    assert f":{line}:" in str(err.value) and f"'{field}'" in str(err.value)
    assert err.value.path.endswith(".csv")


# --------------------------------------------------------------------------------------------
# Beam search: deduplication and the catalogue trie
# --------------------------------------------------------------------------------------------
def test_dedupe_beams_keeps_first_occurrence():
    assert decoding.dedupe_beams(["B", " A", "B ", "", "C", "A"]) == ["B", "A", "C"]


TITLES = ["Cloud Engineer at Acme", "Cloud Engineer at Beta", "Data Analyst at Acme", "Cloud Architect at Acme"]


def test_trie_tokenization_matches_the_chat_template(tiny_model):
    _, tok = tiny_model
    for title in TITLES:
        msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
        prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": title}], tokenize=True)
        prompt, full = (x["input_ids"] if hasattr(x, "keys") else x for x in (prompt, full))
        assert full[:len(prompt)] == prompt
        answer = full[len(prompt):]
        assert answer[:answer.index(tok.eos_token_id) + 1] == tok.encode(title, add_special_tokens=False) + [tok.eos_token_id]


def test_trie_allows_only_continuations(tiny_model):
    _, tok = tiny_model
    trie = genrec.TitleTrie(tok, TITLES)
    first = trie.allowed([])
    assert set(first) == {tok.encode(t, add_special_tokens=False)[0] for t in TITLES}
    ids = tok.encode(TITLES[2], add_special_tokens=False)
    assert trie.allowed(ids) == [tok.eos_token_id]  # a complete title can only stop
    assert trie.allowed([ids[0], 12345678]) == [tok.eos_token_id]  # off the trie


def test_trie_exclusion_closes_only_the_excluded_titles(tiny_model):
    _, tok = tiny_model
    trie = genrec.TitleTrie(tok, TITLES)
    acme, beta = (tok.encode(t, add_special_tokens=False) for t in TITLES[:2])
    split = next(k for k in range(len(acme)) if acme[k] != beta[k])  # where "at Acme" and "at Beta" part
    banned = trie.exclusion([TITLES[0], "Not A Catalogue Title"])  # unknown titles are ignored
    assert trie.allowed(acme[:split], banned) == [beta[split]]  # only the other company is left
    assert trie.allowed(acme[:split]) == [acme[split], beta[split]]  # without the exclusion: both
    # both Cloud Engineers banned: the shared first token stays open for the Cloud Architect...
    both = trie.exclusion(TITLES[:2])
    assert acme[0] in trie.allowed([], both)
    # ...but the branch that holds only banned titles is closed
    architect = tok.encode(TITLES[3], add_special_tokens=False)
    k = next(k for k in range(len(acme)) if acme[k] != architect[k])
    assert trie.allowed(acme[:k], both) == [architect[k]]
    # every title banned: nothing is left to start
    assert trie.allowed([], trie.exclusion(TITLES)) == [tok.eos_token_id]


def test_constrained_beams_skip_each_prompts_excluded_titles(tiny_model):
    model, tok = tiny_model
    prompts = ["1. Cloud Engineer at Acme", "1. Data Analyst at Acme"]
    trie = genrec.TitleTrie(tok, TITLES)
    exclude = [[TITLES[0]], [TITLES[2], TITLES[3]]]
    beams = genrec.beam_search(model, tok, prompts, num_beams=2, batch_size=2, trie=trie, exclude=exclude)
    for got, banned in zip(beams, exclude):
        assert got and set(got) <= set(TITLES) - set(banned)
    # all beams go to the titles left: with two titles left and two beams, the ranked list is both
    assert set(beams[1]) == {TITLES[0], TITLES[1]}
    # as many distinct titles as beams whenever the catalogue has them (no beam lost to a dead end)
    full = genrec.beam_search(model, tok, prompts, num_beams=4, batch_size=2, trie=trie)
    assert [sorted(b) for b in full] == [sorted(TITLES)] * 2
    with pytest.raises(ValueError, match="exclude needs a trie"):
        genrec.beam_search(model, tok, prompts, num_beams=2, max_new_tokens=4, exclude=exclude)


def test_trie_constraint_renormalises_over_the_allowed_tokens(tiny_model):
    import torch

    _, tok = tiny_model
    trie = genrec.TitleTrie(tok, TITLES)
    acme, beta = (tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in TITLES[:2])
    split = next(k for k in range(len(acme)) if acme[k] != beta[k])  # where "Acme" and "Beta" part
    width, vocab = 3, len(tok)
    # two prompts x two beams, one token past the branch point ("Acme" or "Beta" chosen)
    rows = [[7] * width + acme[:split] + [acme[split]], [7] * width + acme[:split] + [beta[split]]] * 2
    input_ids = torch.tensor(rows)
    scores = torch.log_softmax(torch.randn(4, vocab, generator=torch.Generator().manual_seed(0)), dim=-1)

    at_branch = trie.constraint(width, num_beams=2, banned=[{}, trie.exclusion([TITLES[0]])], renormalise=True)(
        input_ids[:, :-1], scores.clone())
    pair = [acme[split], beta[split]]
    assert torch.isinf(at_branch[0]).sum() == vocab - 2
    assert float(at_branch[0, pair].exp().sum()) == pytest.approx(1.0, abs=1e-5)  # a distribution again
    # ...in which the allowed tokens keep the model's own odds
    assert float(at_branch[0, pair[0]] - at_branch[0, pair[1]]) == pytest.approx(
        float(scores[0, pair[0]] - scores[0, pair[1]]), abs=1e-5)
    # the second prompt (rows 2, 3) has "... at Acme" banned: Beta is all that is left
    assert float(at_branch[2, beta[split]]) == pytest.approx(0.0, abs=1e-6) and torch.isinf(at_branch[2, acme[split]])

    forced = trie.constraint(width, num_beams=2, renormalise=True)(input_ids, scores.clone())
    assert float(forced[0, acme[split + 1]]) == pytest.approx(0.0, abs=1e-6)  # a forced token costs nothing
    raw = trie.constraint(width, num_beams=2)(input_ids, scores.clone())  # the default
    assert raw[0, acme[split + 1]] == scores[0, acme[split + 1]]  # ...unless not renormalised
    assert torch.isinf(raw[0]).sum() == vocab - 1


def test_length_penalty_ranks_titles_by_mean_or_summed_log_probability(tiny_model):
    import torch

    from girl_lib.textgen import chat_prompt_ids

    model, tok = tiny_model
    prompt = "1. Data Analyst at Acme\n2. Cloud Engineer at Beta"
    trie = genrec.TitleTrie(tok, TITLES)
    ids = chat_prompt_ids(tok, [prompt], genrec.SYSTEM_PROMPT)[0]
    total, length = {}, {}
    with torch.no_grad():  # each title's log-probability (EOS included), by one plain forward pass
        for title in TITLES:
            path = trie._ids[title]
            logp = torch.log_softmax(model(torch.tensor([ids + path])).logits[0, len(ids) - 1:-1].float(), dim=-1)
            total[title], length[title] = float(logp[torch.arange(len(path)), path].sum()), len(path)
    # a title's score sums 2 x its length logit-sized terms (token logit, log-sum-exp); tolerance per head_scale
    tol = fp_tol(torch.float32, head_scale(model), n_terms=2 * max(length.values()))
    orders = {}
    for lp in (0.0, 1.0):
        want = sorted(TITLES, key=lambda t: -total[t] / length[t] ** lp)
        keys = [total[t] / length[t] ** lp for t in want]
        assert min(a - b for a, b in zip(keys, keys[1:])) > 10 * tol  # no near-tie that another CPU could flip
        got = genrec.beam_search(model, tok, [prompt], num_beams=4, batch_size=1, trie=trie, length_penalty=lp)[0]
        assert got == want, lp
        orders[lp] = got
    assert orders[0.0] != orders[1.0]  # the titles' lengths differ enough for the rule to matter here


def test_constrained_beams_are_catalogue_titles_and_free_beams_are_deduplicated(tiny_model):
    model, tok = tiny_model  # random weights: left free it writes gibberish
    prompts = ["1. Cloud Engineer at Acme", "1. Data Analyst at Acme\n2. Cloud Engineer at Beta"]
    trie = genrec.TitleTrie(tok, TITLES)
    constrained = genrec.beam_search(model, tok, prompts, num_beams=4, batch_size=2, trie=trie)
    for beams in constrained:
        assert beams and set(beams) <= set(TITLES)
        assert len(beams) == len(set(beams)) and len(beams) <= 4
    free = genrec.beam_search(model, tok, prompts, num_beams=4, max_new_tokens=6, batch_size=1)
    assert all(0 < len(b) <= 4 and len(b) == len(set(b)) for b in free)
    assert not any(t in TITLES for b in free for t in b)
    # the one-token attention of fast_decode (on by default) finds the same beams as plain SDPA
    assert genrec.beam_search(model, tok, prompts, num_beams=4, max_new_tokens=6, batch_size=1,
                              fast_decode=False) == free


def test_nearest_title_maps_near_misses():
    nearest = genrec.NearestTitle(TITLES)
    assert nearest.map(["Cloud Engineer at Beta", "Data Analyst at ACME Corp", "cloud architect"]) == [
        "Cloud Engineer at Beta", "Data Analyst at Acme", "Cloud Architect at Acme"]


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("on_prompt", [False, True])
def test_loss_on_prompt_decides_which_tokens_carry_the_loss(smoke_cfg, tmp_path, on_prompt):
    from datasets import Dataset

    from girl_lib.models import load_causal_lm

    cfg = apply_overrides(smoke_cfg, {"genrec.loss_on_prompt": on_prompt})
    data = from_records([{"seeker_id": "u1", "history_job_ids": ["a", "b"], "next_job_id": "c",
                          "history_titles": ["x", "y"], "next_title": "z"}],
                        names={"a": "Cloud Engineer at Acme", "b": "Data Analyst at Beta", "c": "Cloud Architect at Acme"})
    row = genrec.chat_row(Example("u1", ("a", "b"), "c"), data)
    model, tok = load_causal_lm(cfg.model)
    trainer = genrec.make_trainer(cfg, model, tok, Dataset.from_list([row]), tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labelled = int((batch["labels"] != -100).sum())
    answer = len(tok.encode("Cloud Architect at Acme", add_special_tokens=False))
    if on_prompt:  # every token of the chat
        assert labelled == int(batch["attention_mask"].sum()) > 4 * answer
    else:  # the answer, its end-of-turn token and what the template closes it with
        assert answer < labelled <= answer + 3


def test_genrec_stage_writes_metrics_for_every_method(smoke_cfg, smoke_run, monkeypatch):
    from girl_lib.config import apply_overrides
    from girl_lib.pipeline import run_stage

    seen, real = [], genrec.beam_search
    monkeypatch.setattr(genrec, "beam_search", lambda *a, **kw: seen.append(kw["fast_decode"]) or real(*a, **kw))
    cfg = apply_overrides(smoke_cfg, {"generation.fast_decode": False})
    manifest = run_stage("genrec", cfg, smoke_run, log=lambda *a: None)
    assert seen == [False, False]  # free and constrained beam search follow generation.fast_decode
    out = smoke_run / "genrec"
    metrics, preds = genrec.load_results(smoke_run)
    n = smoke_cfg.genrec.max_test_users
    assert metrics["n_test_users"] == n == len(preds) and manifest["result"]["n_test_users"] == n
    for method in genrec.METHODS:
        m = metrics[method]
        assert set(m) >= {"hr@5", "hr@10", "ndcg@5", "ndcg@10", "seconds"}
        assert 0 <= m["ndcg@5"] <= m["hr@5"] <= m["hr@10"] <= 1 and m["ndcg@10"] <= m["hr@10"]
    assert metrics["genrec_constrained"]["valid_rate"] == 1.0
    catalogue_names = set(genrec.load_data(smoke_cfg, smoke_run).names.values())
    for row in preds:
        assert set(row["constrained_beams"]) <= catalogue_names
        assert row["target"] in catalogue_names and row["target"] not in row["history"]
        assert len(row["beams"]) == len(set(row["beams"])) <= smoke_cfg.genrec.num_beams
    assert (out / "adapter" / "adapter_config.json").is_file()
    table = genrec.results_table(metrics)
    assert [r["method"] for r in table] == list(genrec.METHODS)
    for row in table:  # every rate printed with its interval, read back from the numbers it shows
        hits = metrics[row["method"]]["intervals"]["hr@10"]
        assert row["hr@10"].startswith(f"{100 * metrics[row['method']]['hr@10']:.1f} % [")
        lo, hi = (float(x) for x in row["hr@10"].split("[")[1].rstrip("]").split(","))
        assert lo <= 100 * hits["rate"] <= hi and hits["n"] == n
    vs = {r["vs"]: r["hr@10 difference"] for r in genrec.comparison_table(metrics)}
    assert set(vs) == {"popularity", "markov", "sasrec"} and all(f"n={n}, p" in v for v in vs.values())
    # the popularity list is the same for everyone, minus their own history
    first = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert first["popularity"] and not set(first["popularity"]) & set(first["history"])


def test_genrec_needs_data(smoke_cfg, tmp_path):
    with pytest.raises(GirlError, match="girl data"):
        genrec.run_stage(apply_overrides(smoke_cfg, {}), tmp_path)


def test_cli_genrec_without_data_exits_2(tmp_path, capsys):
    from girl_lib.cli import main

    assert main(["genrec", "--profile", "smoke", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "girl data" in err


def test_cli_genrec_bad_movielens_file_exits_2(tmp_path, capsys):
    from girl_lib.cli import main

    _ml(tmp_path, ratings=RATINGS.replace("1,2,3.5,200", "1,2,3.5,noon"))
    assert main(["genrec", "--profile", "smoke", "--run-dir", str(tmp_path / "run"),
                 "--set", f"genrec.movielens_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "ratings.csv:4:" in err and "'timestamp'" in err
