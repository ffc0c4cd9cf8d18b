"""The synthetic recruiting world: taxonomy, generators, parser, oracle, splits, files, loaders."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import pytest

from girl_lib.config import resolve_profile
from girl_lib.errors import DataError
from girl_lib.world import (CV_STYLES, FILES, JD_STYLES, KINDS, MANIFEST, build_dataset, draw,
                            generate_world, is_complete, load_jsonl, load_split, load_taxonomy, make_prompt,
                            Oracle, parse_jd, ParsedJD, render_jd, validate_dir, validate_path)
from girl_lib.world.build import sample_config
from girl_lib.world.taxonomy import LEVELS, level_from_text

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


@pytest.fixture(scope="module")
def cpu_world():
    """The cpu-profile world in memory (about a second)."""
    return generate_world(resolve_profile("cpu").data)


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "data"
    build_dataset(resolve_profile("smoke").data, out)
    return out


def read(d: Path, kind: str) -> list[dict]:
    return load_jsonl(d / FILES[kind], kind)


# ---------------------------------------------------------------------------------------------
# Taxonomy
# ---------------------------------------------------------------------------------------------
def test_taxonomy_has_the_91_esco_ict_occupations_with_attribution(tax):
    assert len(tax) == 91
    assert "CC BY 4.0" in tax.attribution and "ESCO" in tax.attribution
    for o in tax.occupations:
        assert o.label and o.description and len(o.all_skills) >= 5
        assert 2 <= len(o.core) <= 6 and set(o.core) <= set(o.all_skills)
        assert tax.resolve_title(o.label) == o.id
        assert o.id not in o.neighbours


def test_package_copy_of_taxonomy_equals_the_committed_sample():
    packaged = ROOT / "girl_lib" / "world" / "data" / "esco_ict_occupations.json"
    assert packaged.read_bytes() == (SAMPLES / "esco_ict_occupations.json").read_bytes()
    assert (SAMPLES / "esco_ict_occupations.json").stat().st_size < 1_000_000


def test_resolve_title_handles_level_words_and_decorations(tax):
    assert tax.resolve_title("Senior Cloud Engineer (m/f/d) - Remote") == "cloud-engineer"
    assert tax.resolve_title("Jr. web developer") == "web-developer"
    assert tax.resolve_title("PRINCIPAL DATA SCIENTIST") == "data-scientist"
    assert tax.resolve_title("Lead SEO specialist") == "search-engine-optimisation-expert"
    assert tax.resolve_title("banana bread baker") is None
    assert level_from_text("Sr. Cloud Engineer") == "senior"
    assert level_from_text("entry-level tester") == "junior"


# ---------------------------------------------------------------------------------------------
# Determinism and files
# ---------------------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path, smoke_dir):
    cfg = resolve_profile("smoke").data
    again = tmp_path / "again"
    build_dataset(cfg, again)
    for name in list(FILES.values()) + [MANIFEST]:
        assert (again / name).read_bytes() == (smoke_dir / name).read_bytes(), name
    other = tmp_path / "other"
    build_dataset(replace(cfg, seed=1), other)
    for name in FILES.values():
        assert (other / name).read_bytes() != (smoke_dir / name).read_bytes(), name


def test_committed_samples_are_reproduced_exactly(tmp_path):
    """data_samples/ is what `python -m girl_lib.world data_samples --seekers 20 --jobs 16` writes;
    if this fails after a change to the world (or to Faker), regenerate the samples."""
    build_dataset(sample_config(), tmp_path)
    for name in list(FILES.values()) + [MANIFEST]:
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name
    assert sum((SAMPLES / n).stat().st_size for n in FILES.values()) < 300_000
    assert validate_dir(SAMPLES)["seekers"] == 20


def test_build_writes_counts_and_manifest_last(smoke_dir):
    manifest = json.loads((smoke_dir / MANIFEST).read_text())
    assert is_complete(smoke_dir)
    assert manifest["counts"] == validate_dir(smoke_dir)
    assert manifest["counts"]["seekers"] == 60 and manifest["counts"]["jobs"] == 40
    assert manifest["config"]["seed"] == 0
    assert not list(smoke_dir.glob("*.tmp")) and not list(smoke_dir.glob(".*"))


def test_interrupted_build_leaves_the_directory_incomplete(tmp_path, monkeypatch):
    import girl_lib.world.build as build

    out = tmp_path / "data"
    build_dataset(sample_config(), out)
    assert is_complete(out)
    calls = {"n": 0}
    real = build.write_jsonl

    def dying(path, records):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed half way
        return real(path, records)

    monkeypatch.setattr(build, "write_jsonl", dying)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(sample_config(seed=5), out)
    assert not is_complete(out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# Texts and the JD parser
# ---------------------------------------------------------------------------------------------
def test_all_styles_occur_and_texts_are_short(cpu_world):
    assert set(s["cv_style"] for s in cpu_world.seekers) == set(CV_STYLES) and len(CV_STYLES) >= 4
    assert set(j["jd_style"] for j in cpu_world.jobs) == set(JD_STYLES) and len(JD_STYLES) >= 3
    cv_words = [len(s["cv_text"].split()) for s in cpu_world.seekers]
    jd_words = [len(j["jd_text"].split()) for j in cpu_world.jobs]
    assert max(cv_words) <= 120
    assert 30 <= min(jd_words) and max(jd_words) <= 100 and 45 <= sum(jd_words) / len(jd_words) <= 90
    # Every CV text differs, and the CVs of one style are not all the same template filled in.
    assert len({s["cv_text"] for s in cpu_world.seekers}) == len(cpu_world.seekers)


def test_cvs_do_not_always_state_the_level_word(cpu_world):
    by_style = Counter()
    for s in cpu_world.seekers:
        if s["level"] in ("senior", "junior") and s["level"] not in s["cv_text"].lower():
            by_style[s["cv_style"]] += 1
    assert by_style["prose"] > 0 and by_style["compact"] > 0 and by_style["first_person"] > 0
    assert by_style["bullets"] == 0  # the bullet CV names it: the level is learnable from text


def test_parse_jd_round_trips_every_style(cpu_world):
    seen = Counter()
    for job in cpu_world.jobs:
        got, want = parse_jd(job["jd_text"]), ParsedJD.from_job(job)
        assert got.ok, (job["jd_style"], got.missing, job["jd_text"])
        for f in ("occupation_id", "level", "must_have", "location", "remote", "salary_min", "salary_max"):
            assert getattr(got, f) == getattr(want, f), (f, job["jd_style"], job["jd_text"])
        assert got.nice_to_have == want.nice_to_have
        seen[job["jd_style"]] += 1
    assert set(seen) == set(JD_STYLES) and min(seen.values()) > 50


def test_parse_jd_tolerates_llm_style_text():
    text = """**Role:** senior CLOUD engineer (m/f/d)
Company: Example GmbH

Must-have
• cloud technologies
• DevOps

Location:   berlin, hybrid
Compensation: EUR 55,000–70,000 gross"""
    p = parse_jd(text)
    assert p.ok, p.missing
    assert (p.occupation_id, p.level, p.location, p.remote) == ("cloud-engineer", "senior", "Berlin", False)
    assert p.must_have == ["cloud technologies", "DevOps"]
    assert (p.salary_min, p.salary_max) == (55_000, 70_000)

    p = parse_jd("We are hiring a Junior Web Developer in Paris.\nRequirements: PHP, JavaScript\n"
                 "Salary: 55k-70k\nRemote: yes")
    assert p.ok and p.occupation_id == "web-developer" and p.level == "junior"
    assert p.must_have == ["PHP", "JavaScript"] and p.location == "Paris" and p.remote
    assert (p.salary_min, p.salary_max) == (55_000, 70_000)

    p = parse_jd("Position: Data Scientist\nSeniority: Mid-level\nWhere: Remote (EU)\n"
                 "Pay: €55.000 - €70.000\nRequired skills: data mining; statistics")
    assert p.ok and p.location is None and p.remote and p.level == "mid"
    assert (p.salary_min, p.salary_max) == (55_000, 70_000)


def test_parse_jd_reports_missing_fields_on_garbage():
    p = parse_jd("lorem ipsum dolor sit amet, the quick brown fox")
    assert not p.ok
    assert set(p.missing) == {"title", "occupation", "level", "must_have", "location", "salary"}
    p = parse_jd("Title: Senior Cloud Engineer\nLevel: senior")
    assert not p.ok and set(p.missing) == {"must_have", "location", "salary"}
    assert parse_jd("").missing and not parse_jd("").ok


def test_make_prompt_contains_the_cv_and_an_instruction():
    prompt = make_prompt("Ana | Web Developer | 3 yrs")
    assert prompt.endswith("Ana | Web Developer | 3 yrs") and "job description" in prompt.lower()


# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------
def _pair(tax):
    occ = tax["cloud-engineer"]
    job = {"id": "j1", "occupation_id": occ.id, "title": "Senior Cloud Engineer", "level": "senior",
           "must_have": list(occ.core[:3]), "nice_to_have": [occ.core[3]], "location": "Berlin",
           "remote": False, "salary_min": 70_000, "salary_max": 85_000, "company": "ACME"}
    seeker = {"id": "s1", "occupation_id": occ.id, "level": "senior", "skills": list(occ.core[:5]),
              "location": "Berlin", "relocate": False, "salary_expectation": 78_000}
    return seeker, job


def test_oracle_accepts_a_full_match_and_each_failed_check_drops_it_below_half(tax):
    oracle = Oracle(tax)
    seeker, job = _pair(tax)
    good = oracle.score_job(seeker, job)
    assert good.p_accept > 0.9 and good.seeker_interest > 0.9 and good.two_sided and good.failed == []
    variants = {
        "skills": ({**seeker, "skills": seeker["skills"][1:]}, job),
        "level": ({**seeker, "level": "mid"}, job),  # under-qualified by one
        "level2": ({**seeker, "level": "junior"}, job),
        "salary": ({**seeker, "salary_expectation": 95_000}, job),
        "location": ({**seeker, "location": "Madrid"}, job),
        "role": ({**seeker, "occupation_id": "sound-designer"}, job),
    }
    for name, (s, j) in variants.items():
        sc = oracle.score_job(s, j)
        assert sc.p_accept < 0.5, name
        assert name.rstrip("2") in sc.failed
    # ... while relocating or a remote job fixes the location.
    assert oracle.score_job({**seeker, "location": "Madrid", "relocate": True}, job).p_accept > 0.9
    assert oracle.score_job({**seeker, "location": "Madrid"}, {**job, "remote": True}).p_accept > 0.9
    # One level over-qualified is fine for the recruiter.
    assert oracle.score_job({**seeker, "level": "lead"}, job).p_accept > 0.9


def test_oracle_never_lowers_acceptance_when_more_must_haves_are_covered(tax):
    oracle = Oracle(tax)
    seeker, job = _pair(tax)
    must = job["must_have"]
    base = [s for s in seeker["skills"] if s not in must]
    for level in LEVELS:
        prev = -1.0
        for k in range(len(must) + 1):
            best = min(oracle.score_job({**seeker, "level": level, "skills": base + list(c)}, job).p_accept
                       for c in combinations(must, k))
            assert best >= prev
            prev = best


def test_oracle_scores_text_like_the_structured_job(tax, cpu_world):
    oracle = cpu_world.oracle
    for a in cpu_world.applications[:300]:
        s, j = cpu_world.seeker(a["seeker_id"]), cpu_world.job(a["job_id"])
        by_text, by_fields = oracle.score(s, j["jd_text"]), oracle.score_job(s, j)
        assert by_text.parse_ok
        assert by_text.p_accept == pytest.approx(by_fields.p_accept)
        assert by_text.seeker_interest == pytest.approx(by_fields.seeker_interest)


def test_oracle_on_unparseable_text_is_not_a_match(tax):
    seeker, _ = _pair(tax)
    sc = Oracle(tax).score(seeker, "We like nice people. Apply now!")
    assert not sc.parse_ok and sc.p_accept < 0.5 and not sc.two_sided
    assert 0.0 <= sc.p_accept <= 1.0 and 0.0 <= sc.seeker_interest <= 1.0


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.2, 0.49])
def test_a_jd_missing_any_required_field_is_never_accepted(tax, noise):
    """Every field the parser misses costs its recruiter check the factor UNKNOWN (0.45), so a JD
    that does not parse stays below p_accept 0.5 at any recruiter noise: "accepted" (parses and
    p_accept > 0.5) and "p_accept > 0.5" label every JD alike."""
    from girl_lib.world.parse import REQUIRED_FIELDS, ParsedJD

    oracle = Oracle(tax, noise=noise)
    seeker, job = _pair(tax)
    full = ParsedJD.from_job(job)
    assert full.ok and oracle.score_parsed(seeker, full).p_accept > 0.5
    blank = {"title": {"title": None, "occupation_id": None}, "occupation": {"occupation_id": None},
             "level": {"level": None}, "must_have": {"must_have": []},
             "location": {"location": None, "remote": False}, "salary": {"salary_min": None, "salary_max": None}}
    assert set(blank) == set(REQUIRED_FIELDS)
    for name, fields in blank.items():
        jd = replace(full, **fields).finish()
        sc = oracle.score_parsed(seeker, jd)
        assert not sc.parse_ok and name in jd.missing and sc.p_accept < 0.5, name


# ---------------------------------------------------------------------------------------------
# Two-sided behaviour
# ---------------------------------------------------------------------------------------------
def test_recruiter_acceptance_rate_is_in_a_sane_range(cpu_world, smoke_dir):
    assert 0.2 <= cpu_world.acceptance_rate() <= 0.45
    apps = read(smoke_dir, "applications")
    assert 0.15 <= sum(a["accepted"] for a in apps) / len(apps) <= 0.5


def test_seekers_apply_near_their_occupation_often_one_level_up(cpu_world):
    steps = cpu_world.level_steps()
    n = sum(steps.values())
    assert 0.15 <= steps[1] / n <= 0.5  # aspirational
    assert steps[0] / n >= 0.3
    by_step = cpu_world.acceptance_by_step()
    assert by_step[0][1] > 2 * by_step[1][1]  # recruiters turn the aspirational ones down
    own = sum(cpu_world.job(a["job_id"])["occupation_id"] == cpu_world.seeker(a["seeker_id"])["occupation_id"]
              for a in cpu_world.applications)
    assert own / n >= 0.5
    lo, hi = cpu_world.config.applications_per_seeker
    per = Counter(a["seeker_id"] for a in cpu_world.applications)
    assert max(per.values()) <= hi and sum(v >= lo for v in per.values()) / len(per) > 0.9


def test_recruiter_decisions_follow_the_oracle_up_to_noise(cpu_world):
    agree = sum(a["accepted"] == cpu_world.oracle.accepts(cpu_world.seeker(a["seeker_id"]), cpu_world.job(a["job_id"]))
                for a in cpu_world.applications)
    flips = 1 - agree / len(cpu_world.applications)
    assert 0.02 <= flips <= 0.08  # recruiter_noise = 0.05


# ---------------------------------------------------------------------------------------------
# Splits and derived files
# ---------------------------------------------------------------------------------------------
def test_splits_keep_val_test_and_cold_seekers_and_cold_jobs_out_of_train(smoke_dir):
    seekers = {s["id"]: s for s in read(smoke_dir, "seekers")}
    jobs = {j["id"]: j for j in read(smoke_dir, "jobs")}
    counts = Counter(s["split"] for s in seekers.values())
    assert counts == {"train": 33, "val": 6, "test": 6, "match": 9, "cold": 6}
    cold_jobs = {j for j, r in jobs.items() if r["cold_start"]}
    assert len(cold_jobs) == 4
    for kind in ("applications", "sft", "rm_pairs", "sequences"):
        for r in read(smoke_dir, kind):
            assert r["split"] == seekers[r["seeker_id"]]["split"]
            ids = {r.get("job_id"), r.get("chosen_job_id"), r.get("rejected_job_id"), r.get("next_job_id"),
                   *r.get("history_job_ids", [])} - {None}
            if r["split"] == "cold":
                assert ids <= cold_jobs  # cold seekers meet only unseen jobs
            else:
                assert not ids & cold_jobs  # cold jobs never reach train/val/test
    train_seekers = {r["seeker_id"] for r in read(smoke_dir, "sft") if r["split"] == "train"}
    assert all(seekers[s]["split"] == "train" for s in train_seekers)
    # The matching model's seekers: no SFT or reward-model training row comes from them.
    match = {s for s, r in seekers.items() if r["split"] == "match"}
    for kind in ("sft", "rm_pairs"):
        assert not match & {r["seeker_id"] for r in load_split(smoke_dir, kind, "train")}


def test_subsets_are_seeded_random_draws_not_the_first_rows(smoke_dir):
    rows = load_split(smoke_dir, "sft", "train")
    drawn = load_split(smoke_dir, "sft", "train", limit=10, seed=0)
    assert len(drawn) == 10 and drawn != rows[:10] and all(r in rows for r in drawn)
    assert load_split(smoke_dir, "sft", "train", limit=10, seed=0) == drawn  # seeded
    assert load_split(smoke_dir, "sft", "train", limit=10, seed=1) != drawn  # the seed matters
    assert load_split(smoke_dir, "sft", "train", limit=4, seed=0) == drawn[:4]  # prefix-stable
    assert draw(list(range(5)), None, "k") == draw(list(range(5)), -1, "k") and sorted(draw(list(range(5)), None, "k")) == [0, 1, 2, 3, 4]


def test_sft_and_sequences_are_derived_from_applications(smoke_dir):
    seekers = {s["id"]: s for s in read(smoke_dir, "seekers")}
    jobs = {j["id"]: j for j in read(smoke_dir, "jobs")}
    apps = read(smoke_dir, "applications")
    sft = read(smoke_dir, "sft")
    assert len(sft) == len(apps)
    for r in sft:
        assert r["prompt"] == make_prompt(seekers[r["seeker_id"]]["cv_text"])
        assert r["completion"] == jobs[r["job_id"]]["jd_text"]
    by_seeker: dict[str, list[dict]] = {}
    for a in apps:
        by_seeker.setdefault(a["seeker_id"], []).append(a)
    seqs = read(smoke_dir, "sequences")
    assert len(seqs) == sum(len(v) >= 3 for v in by_seeker.values()) > 0
    for q in seqs:
        hist = sorted(by_seeker[q["seeker_id"]], key=lambda a: a["ts"])
        assert q["history_job_ids"] == [a["job_id"] for a in hist[:-1]]
        assert q["next_job_id"] == hist[-1]["job_id"]
        assert q["history_titles"] == [jobs[a["job_id"]]["title"] for a in hist[:-1]]


def test_rm_pairs_chosen_is_oracle_better_and_both_kinds_exist(smoke_dir, tax):
    oracle = Oracle(tax)
    seekers = {s["id"]: s for s in read(smoke_dir, "seekers")}
    jobs = {j["id"]: j for j in read(smoke_dir, "jobs")}
    pairs = read(smoke_dir, "rm_pairs")
    kinds = Counter(p["kind"] for p in pairs)
    assert kinds["feedback"] > 0 and kinds["hard_negative"] > 0
    for p in pairs:
        s = seekers[p["seeker_id"]]
        c, r = jobs[p["chosen_job_id"]], jobs[p["rejected_job_id"]]
        assert p["chosen"] == c["jd_text"] and p["rejected"] == r["jd_text"]
        assert oracle.score_job(s, c).p_accept > oracle.score_job(s, r).p_accept
        if p["kind"] == "hard_negative":
            assert r["occupation_id"] == s["occupation_id"]
            failed = oracle.score_job(s, r).failed
            assert "level" in failed or "skills" in failed
    assert len({p["seeker_id"] for p in pairs if p["split"] == "train"}) >= 15


# ---------------------------------------------------------------------------------------------
# Loaders: every error names file, line and field
# ---------------------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for k in KINDS:
        (dst / FILES[k]).write_bytes((src / FILES[k]).read_bytes())
    return dst


def _edit_line(path: Path, line_no: int, fn) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_no - 1] = fn(lines[line_no - 1])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _edit_record(path: Path, line_no: int, fn) -> None:
    def edit(line: str) -> str:
        rec = json.loads(line)
        fn(rec)
        return json.dumps(rec, ensure_ascii=False)
    _edit_line(path, line_no, edit)


CASES = {
    "bad_json": ("jobs", 3, lambda p: _edit_line(p, 3, lambda s: s[:-5]), None),
    "missing": ("seekers", 4, lambda p: _edit_record(p, 4, lambda r: r.pop("cv_text")), "cv_text"),
    "wrong_type": ("applications", 5, lambda p: _edit_record(p, 5, lambda r: r.update(accepted="yes")), "accepted"),
    "int_as_bool": ("seekers", 2, lambda p: _edit_record(p, 2, lambda r: r.update(years_experience=True)),
                    "years_experience"),
    "bad_choice": ("rm_pairs", 2, lambda p: _edit_record(p, 2, lambda r: r.update(kind="other")), "kind"),
    "duplicate": ("sft", 2, lambda p: _edit_record(p, 2, lambda r: r.update(id="sft000001")), "id"),
    "dangling_seeker": ("applications", 6, lambda p: _edit_record(p, 6, lambda r: r.update(seeker_id="s99999")),
                        "seeker_id"),
    "dangling_job": ("sequences", 2, lambda p: _edit_record(p, 2, lambda r: r["history_job_ids"].__setitem__(0, "j99999")),
                     "history_job_ids"),
    "split_leak": ("sft", 3, lambda p: _edit_record(p, 3, lambda r: r.update(split="val" if r["split"] == "train" else "train")),
                   "split"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_errors_name_file_line_and_field(case, tmp_path):
    kind, line, break_it, field = CASES[case]
    d = _copy(SAMPLES, tmp_path / "data")
    break_it(d / FILES[kind])
    with pytest.raises(DataError) as err:
        validate_dir(d)
    msg = str(err.value)
    assert FILES[kind] in msg and f":{line}:" in msg, msg
    assert err.value.line == line
    if field:
        assert f"'{field}'" in msg and err.value.field == field, msg
    else:
        assert "JSON" in msg


def test_non_utf8_and_non_object_lines_are_errors_too(tmp_path):
    bad = tmp_path / "jobs.jsonl"
    bad.write_bytes(b'{"id": "j1", "jd_text": "ok"}\n{"id": "j2", "jd_text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"jobs.jsonl:2: .*UTF-8"):
        load_jsonl(bad)
    bad.write_text('{"id": "j1", "jd_text": "ok"}\n["j2"]\n')
    with pytest.raises(DataError, match=r"jobs.jsonl:2: .*JSON object"):
        load_jsonl(bad)


def test_load_jsonl_and_validate_path_on_single_files(tmp_path):
    assert validate_path(SAMPLES / "jobs.jsonl") == {"jobs": 16}
    assert len(load_jsonl(SAMPLES / "rm_pairs.jsonl")) == validate_dir(SAMPLES)["rm_pairs"]
    odd = tmp_path / "mystery.jsonl"
    odd.write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match="cannot tell the file kind"):
        validate_path(odd)
    with pytest.raises(DataError, match="not found"):
        load_jsonl(tmp_path / "seekers.jsonl")
    mine = tmp_path / "my_seekers.jsonl"  # a user's own CVs: only id, split and cv_text are required
    mine.write_text('{"id": "u1", "split": "test", "cv_text": "Ana, web developer"}\n\n')
    assert validate_path(mine) == {"seekers": 1}


def test_render_jd_is_what_jobs_carry(cpu_world, tax):
    for j in cpu_world.jobs[:40]:
        assert render_jd(j, j["jd_style"], tax) == j["jd_text"]


def test_load_split_partitions_the_file_and_respects_limit():
    from girl_lib.world import load_jsonl, load_split

    data = Path(__file__).resolve().parents[1] / "data_samples"
    rows = load_jsonl(data / "sft.jsonl", "sft")
    splits = {r["split"] for r in rows}
    parts = {s: load_split(data, "sft", s) for s in splits}
    assert sum(len(p) for p in parts.values()) == len(rows)
    assert all(r["split"] == s for s, p in parts.items() for r in p)
    two = load_split(data, "sft", "train", 2)
    assert len(two) == 2 and all(r in parts["train"] for r in two)  # a draw from the split
    assert load_split(data, "sft", "train", 0) == parts["train"]


# ---------------------------------------------------------------------------------------------
# Validation that means it: empty files, semantic checks, bounded inputs
# ---------------------------------------------------------------------------------------------
def test_empty_files_are_refused(tmp_path):
    from girl_lib.world.io import check_path

    empty = tmp_path / "one" / "jobs.jsonl"
    empty.parent.mkdir()
    for content in ("", "\n\n  \n"):  # nothing, or blank lines only
        empty.write_text(content)
        with pytest.raises(DataError) as err:
            validate_path(empty)
        assert str(err.value) == (f"{empty}: has no records (the file is empty); a jobs.jsonl file needs at least "
                                  "one JSON object per line")
    six = tmp_path / "six"
    six.mkdir()
    for kind in KINDS:
        (six / FILES[kind]).write_text("")
    with pytest.raises(DataError, match=r"seekers.jsonl: has no records"):
        check_path(six)


def test_single_file_validation_says_what_it_could_not_check():
    from girl_lib.world.io import check_path

    one = check_path(SAMPLES / "applications.jsonl")
    assert one["counts"] == {"applications": validate_dir(SAMPLES)["applications"]}
    assert len(one["not_checked"]) == 1 and one["not_checked"][0].startswith(
        "that its seeker and job ids exist in seekers.jsonl / jobs.jsonl")
    assert check_path(SAMPLES / "seekers.jsonl")["not_checked"] == []
    assert check_path(SAMPLES)["not_checked"] == []


def _first_line_changed(path: Path, fn) -> None:
    _edit_record(path, 1, fn)


SEMANTIC = {
    "ts_banana": ("applications", lambda r: r.update(ts="banana"),
                  "field 'ts' is 'banana', not an ISO-8601 time such as 2024-03-05T10:23:00Z"),
    "negative_salary": ("jobs", lambda r: r.update(salary_min=-5), "field 'salary_min' is -5; it must be >= 0"),
    "negative_expectation": ("seekers", lambda r: r.update(salary_expectation=-1),
                             "field 'salary_expectation' is -1; it must be >= 0"),
    "min_above_max": ("jobs", lambda r: r.update(salary_min=r["salary_max"] + 1),
                      "field 'salary_min' is {min}, above salary_max {max}; the band must have min <= max"),
    "empty_cv": ("seekers", lambda r: r.update(cv_text="  "), "field 'cv_text' must not be empty"),
    "empty_completion": ("sft", lambda r: r.update(completion=""), "field 'completion' must not be empty"),
    "chosen_is_rejected": ("rm_pairs", lambda r: r.update(rejected=r["chosen"]),
                           "field 'rejected' is the same text as 'chosen'; a preference pair needs two different JDs"),
}


@pytest.mark.parametrize("case", sorted(SEMANTIC))
def test_semantic_checks_name_file_line_and_field(case, tmp_path):
    kind, fn, message = SEMANTIC[case]
    d = _copy(SAMPLES, tmp_path / "data")
    _first_line_changed(d / FILES[kind], fn)
    rec = json.loads((d / FILES[kind]).read_text().splitlines()[0])
    message = message.format(min=rec.get("salary_min"), max=rec.get("salary_max"))
    for check in (validate_dir, lambda _: validate_path(d / FILES[kind])):
        with pytest.raises(DataError) as err:
            check(d)
        assert str(err.value) == f"{d / FILES[kind]}:1: {message}"


def test_duplicate_json_keys_are_refused(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"id": "j1", "jd_text": "Cloud engineer", "id": "j2"}\n')
    with pytest.raises(DataError) as err:
        load_jsonl(path)
    assert str(err.value) == f"{path}:1: field 'id' appears twice in one JSON object; keep one"


def test_deeply_nested_and_overlong_lines_are_refused(tmp_path, monkeypatch):
    import girl_lib.world.io as world_io

    path = tmp_path / "jobs.jsonl"
    path.write_text('{"id": "j1", "jd_text": "ok"}\n{"id": "j2", "jd_text": "x", "extra": ' + "[" * 50_000
                    + "]" * 50_000 + "}\n")
    with pytest.raises(DataError, match=r"jobs.jsonl:2: is nested too deeply"):
        load_jsonl(path)
    monkeypatch.setattr(world_io, "MAX_LINE_BYTES", 100)
    path.write_text('{"id": "j1", "jd_text": "' + "x" * 200 + '"}\n')
    with pytest.raises(DataError, match=r"jobs.jsonl:1: is longer than 100 bytes"):
        load_jsonl(path)


def test_missing_path_says_so():
    for missing in (Path("no/such/seekers.jsonl"), Path("no-such-file.txt"), Path("no-such-folder")):
        with pytest.raises(DataError) as err:
            validate_path(missing)
        assert str(err.value) == f"{missing}: not found; pass an existing .jsonl file or data folder"


def test_long_texts_are_cut_to_the_limit_with_one_notice(tmp_path, capsys):
    from girl_lib.world.io import MAX_TEXT_CHARS

    path = tmp_path / "seekers.jsonl"
    rows = [{"id": f"s{i}", "split": "train", "cv_text": ("word " * 200_000) if i else "short CV"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_jsonl(path)
    assert [len(r["cv_text"]) for r in loaded] == [8, MAX_TEXT_CHARS, MAX_TEXT_CHARS] and MAX_TEXT_CHARS == 8000
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"[girl] note: {path}: 2 record(s) with a text longer than 8,000 characters (first: line 2, "
                   "field 'cv_text'); cut to 8,000"]
    rows[1]["id"] = "s" * 9000  # an id is not a text: too long is an error, not a cut
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"seekers.jsonl:2: field 'id' is 9,000 characters long; at most 8,000"):
        load_jsonl(path)


def test_generated_world_passes_every_new_check(smoke_dir):
    counts = validate_dir(smoke_dir)
    assert all(n > 0 for n in counts.values()) and set(counts) == set(KINDS)
