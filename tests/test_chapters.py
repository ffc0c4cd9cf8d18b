"""What every chapter owes its reader: its papers at the top, a results box at the end computed
from the run directory, no internal wording, and pointers into the code that resolve."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from girl_lib import claims

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.py"))

# The arXiv ids each chapter must link at the top.
PAPERS = {
    "00": ["2307.02157", "2307.00457"],
    "01": ["2307.02157"],
    "02": ["2307.02157", "2106.09685"],
    "03": ["2307.02157", "2203.02155"],
    "04": ["2307.02157", "2403.17031", "2210.10760"],
    "05": ["2307.02157"],
    "06": ["2307.00457"],
}
# Words that belong to the people building the kit, not to the students reading it.
INTERNAL = re.compile(r"\bissues?\b|\bsessions?\b|previous recipe|not built yet", re.I)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def text(cell: dict) -> str:
    return "".join(cell["source"])


def test_every_chapter_is_listed():
    assert sorted(p.name[:2] for p in CHAPTERS) == sorted(PAPERS) == list(claims.CHAPTERS)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_the_papers_are_linked_at_the_top(path):
    first = text(cells(path)[0])
    for arxiv in PAPERS[path.name[:2]]:
        assert f"(https://arxiv.org/abs/{arxiv})" in first, f"{path.name}: no link to arXiv {arxiv} in the first cell"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_the_chapter_ends_with_its_results_box(path):
    last = cells(path)[-1]
    assert last["cell_type"] == "code"
    assert re.search(rf'chapter_box\("{path.name[:2]}", RUN_DIR\)', text(last)), \
        f"{path.name}: the last cell shows chapter_box(\"{path.name[:2]}\", RUN_DIR)"


@pytest.mark.parametrize("path", CHAPTERS + SOLUTIONS, ids=[p.name for p in CHAPTERS + SOLUTIONS])
def test_no_internal_wording(path):
    sources = [text(c) for c in cells(path)] if path.suffix == ".ipynb" else [path.read_text()]
    found = sorted({m.group(0) for s in sources for m in INTERNAL.finditer(s)})
    assert not found, f"{path.name} says {found}"


@pytest.mark.parametrize("words", ["see the issue", "this session", "the Previous Recipe", "not built yet (#3)"])
def test_the_wording_check_catches_what_it_forbids(words):
    assert INTERNAL.search(words)


def test_the_wording_check_allows_ordinary_words():
    assert not INTERNAL.search("tissue, issued by the reissue of a sessional recipe")


def test_the_implementation_map_of_chapter_04_points_at_real_code():
    """Every ``module:function`` in chapter 04's table of implementation details resolves."""
    path = next(p for p in CHAPTERS if p.name.startswith("04"))
    table = next(text(c) for c in cells(path) if "Where each implementation detail lives" in text(c))
    refs = re.findall(r"`(girl_lib(?:\.\w+)+):(\w+)`", table)
    assert len(refs) >= 10, refs
    for module, name in refs:
        assert hasattr(importlib.import_module(module), name), f"{module}:{name} does not exist"
    for detail in ("no dropout", "temperature", "cutting at EOS", "last token", "missing-EOS", "micro-batching"):
        assert detail in table, f"the table maps no line to '{detail}'"


# --------------------------------------------------------------------------------------------
# The box: computed from the run directory
# --------------------------------------------------------------------------------------------
def complete(run_dir: Path, stage: str, files: dict[str, dict]) -> None:
    folder = run_dir / ("eval" if stage == "evaluate" else stage)
    folder.mkdir(parents=True)
    for name, obj in files.items():
        (folder / name).write_text(json.dumps(obj))
    (folder / "manifest.json").write_text(json.dumps({"stage": stage, "profile": "cpu"}))


@pytest.mark.parametrize("chapter", claims.CHAPTERS)
def test_an_empty_run_dir_gives_every_box_without_a_figure(chapter, tmp_path):
    box = claims.chapter_box(chapter, tmp_path)
    assert box.startswith(f"### {claims.BOX_TITLE}")
    assert "%" not in box, "no figure before a stage has run"


def test_the_data_box_measures_the_two_sides(smoke_run):
    box = claims.chapter_box("01", smoke_run)
    assert "acceptance, one level up" in box and re.search(r"\d+\.\d % \[\d+\.\d, \d+\.\d\]", box)


def test_the_reward_box_judges_accuracy_against_chance(tmp_path):
    complete(tmp_path, "reward", {"metrics.json": {"pairwise_accuracy": 0.8, "n_pairs": 160,
                                                   "pairwise_accuracy_feedback": 0.85, "n_pairs_feedback": 100,
                                                   "blind_spot": {"n": 32, "zero_shot_rm_mean": 2.0,
                                                                  "sft_rm_mean": 0.5, "zero_shot_below_sft": False}}})
    box = claims.chapter_box("03", tmp_path)
    assert "**reproduced**" in box and "+30.0 [" in box
    assert "a blind spot PPO can exploit" in box
    complete(tmp_path / "b", "reward", {"metrics.json": {"pairwise_accuracy": 0.55, "n_pairs": 20}})
    assert "**inconclusive at this n**" in claims.chapter_box("03", tmp_path / "b")


def test_the_ppo_box_sets_the_reward_model_against_the_oracle(tmp_path):
    worse = {"diff": -0.2, "ci": [-0.35, -0.05], "n": 40, "p_value": 0.01}
    complete(tmp_path, "ppo", {"metrics.json": {"accept_rate_diff": worse, "rm_score_gain": 0.4,
                                                "eval": {"n_seekers": 40, "kl_exact_mean": 1.2, "paired": {}}}})
    box = claims.chapter_box("04", tmp_path)
    assert "**not reproduced**" in box and "2210.10760" in box
    assert "score rose while the oracle's acceptance did not" in box


def test_the_sft_box_reads_the_paired_difference(tmp_path):
    better = {"diff": 0.25, "ci": [0.1, 0.4], "n": 32, "p_value": 0.004}
    complete(tmp_path, "sft", {"metrics.json": {"eval_loss": 1.5, "eval_examples": 64,
                                                "oracle_val": {"sft_vs_zero_shot": {"accept_rate": better}}}})
    box = claims.chapter_box("02", tmp_path)
    assert "**reproduced**" in box and "n=32" in box and "1.500" in box


def test_an_unknown_chapter_has_no_box(tmp_path):
    with pytest.raises(ValueError):
        claims.chapter_box("07", tmp_path)
