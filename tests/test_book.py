"""The book: docs/chapters/ holds an executed, stamped, up-to-date copy of every chapter.

The copies are made by ``make book`` on a finished ``cpu`` run (girl_lib/book.py). The checker
itself is tested here on synthetic notebooks: a missing copy, a copy without outputs, one with an
error, one made from other source cells, a smoke copy — each must be reported; a good copy not.
"""
from __future__ import annotations

import base64
import io
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from girl_lib import book

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BOOK = ROOT / book.BOOK_DIR


# --------------------------------------------------------------------------------------------
# The real copies
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not BOOK.is_dir(), reason="docs/chapters/ does not exist yet: run "
                    "`make book RUN_DIR=<a finished cpu run dir>` to make the executed copies")
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_the_executed_copy_is_up_to_date(chapter):
    assert book.check_copy(chapter, BOOK / chapter.name) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_every_chapter_links_its_executed_copy_at_the_top(chapter):
    first = "".join(nbformat.read(str(chapter), as_version=4).cells[0]["source"])
    link = f"](../docs/chapters/{chapter.name})"
    assert link in first, f"{chapter.name}: the first cell links {link[2:-1]}"


# --------------------------------------------------------------------------------------------
# The checker, on synthetic notebooks
# --------------------------------------------------------------------------------------------
def chapter_nb() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("# Chapter 9\n\nWhat you will learn"),
        new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
        new_code_cell("print(1 + 1)"),
    ])


def executed(source: nbformat.NotebookNode, profile: str = "cpu") -> nbformat.NotebookNode:
    """What papermill and make_copy make of ``source``: injected parameters, outputs, the stamp."""
    nb = nbformat.reads(nbformat.writes(source), as_version=4)
    nb.cells.insert(2, new_code_cell(f"PROFILE = '{profile}'", metadata={"tags": [book.PARAMS_TAG]}))
    nb.cells[3].outputs = [new_output("stream", name="stdout", text="2\n")]
    return book.stamp(nb, source=source, commit="abc123", date="2026-12-01 00:00 UTC", profile=profile,
                      chapter="09_x.ipynb")


def write(nb, path: Path) -> Path:
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def source(tmp_path):
    return write(chapter_nb(), tmp_path / "09_x.ipynb")


def test_an_up_to_date_copy_passes(tmp_path, source):
    copy = write(executed(chapter_nb()), tmp_path / "copy.ipynb")
    assert book.check_copy(source, copy) == []


def test_a_missing_copy_fails(tmp_path, source):
    problems = book.check_copy(source, tmp_path / "nowhere.ipynb")
    assert len(problems) == 1 and "missing" in problems[0]


def test_a_copy_without_outputs_fails(tmp_path, source):
    nb = executed(chapter_nb())
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    problems = book.check_copy(source, write(nb, tmp_path / "copy.ipynb"))
    assert any("no outputs" in p for p in problems), problems


def test_a_copy_with_an_error_output_fails(tmp_path, source):
    nb = executed(chapter_nb())
    nb.cells[3].outputs.append(new_output("error", ename="ValueError", evalue="boom", traceback=[]))
    problems = book.check_copy(source, write(nb, tmp_path / "copy.ipynb"))
    assert any("error output" in p for p in problems), problems


def test_a_copy_of_other_source_cells_fails(tmp_path, source):
    old = chapter_nb()
    old.cells[2].source = "print(2 + 2)"  # the chapter has changed since the copy was made
    problems = book.check_copy(source, write(executed(old), tmp_path / "copy.ipynb"))
    assert len(problems) == 1 and "other source cells" in problems[0], problems


def test_a_markdown_edit_makes_a_copy_stale_too(tmp_path, source):
    old = chapter_nb()
    old.cells[0].source += " (and more)"
    problems = book.check_copy(source, write(executed(old), tmp_path / "copy.ipynb"))
    assert any("other source cells" in p for p in problems), problems


def test_a_smoke_copy_or_an_unstamped_one_fails(tmp_path, source):
    smoke = book.check_copy(source, write(executed(chapter_nb(), "smoke"), tmp_path / "smoke.ipynb"))
    assert any("'smoke' profile" in p for p in smoke), smoke
    nb = executed(chapter_nb())
    del nb.metadata[book.METADATA_KEY]
    unstamped = book.check_copy(source, write(nb, tmp_path / "plain.ipynb"))
    assert any("no stamp" in p for p in unstamped), unstamped


def test_the_hash_ignores_the_stamp_and_the_injected_parameters():
    src = chapter_nb()
    copy = executed(src)
    assert book.source_hash(copy) == book.source_hash(src)
    assert copy.metadata[book.METADATA_KEY]["source_hash"] == book.source_hash(src)
    stamp = copy.cells[0]
    assert book.STAMP_TAG in stamp.metadata["tags"] and "abc123" in stamp.source and "cpu" in stamp.source
    assert book.source_hash(book.stamp(copy, source=src, commit="d", date="x", profile="cpu", chapter="c")) \
        == book.source_hash(src), "stamping twice keeps one stamp cell"
    assert sum(book.STAMP_TAG in c.metadata.get("tags", []) for c in copy.cells) == 1


def test_shrink_outputs_cuts_long_texts_and_scales_wide_pngs():
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (2000, 500), "white").save(png, format="PNG")
    nb = chapter_nb()
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="x" * 50_000),
                           new_output("display_data", data={"image/png": base64.b64encode(png.getvalue()).decode(),
                                                            "text/plain": "<Figure>"})]
    counts = book.shrink_outputs(nb, max_chars=1000, max_png_width=400)
    assert counts["texts_cut"] == 1 and counts["pngs_scaled"] == 1
    text = nb.cells[2].outputs[0]["text"]
    assert len(text) < 1200 and "characters cut" in text
    img = Image.open(io.BytesIO(base64.b64decode(nb.cells[2].outputs[1]["data"]["image/png"])))
    assert img.size == (400, 100)


def test_shrink_outputs_keeps_the_last_state_of_a_progress_bar():
    nb = chapter_nb()
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="[girl] training\n"),
                           new_output("stream", name="stderr", text="sasrec:   0%|          | 0/40\r"),
                           new_output("stream", name="stderr", text="\rsasrec:  50%|#####     | 20/40"),
                           new_output("stream", name="stderr", text="\rsasrec: 100%|##########| 40/40\n"),
                           new_output("stream", name="stdout", text="HR@10 32.0 %\n"),
                           new_output("display_data", data={"text/plain": "table"}),
                           new_output("stream", name="stdout", text="done\n")]
    counts = book.shrink_outputs(nb)
    assert counts["streams_joined"] == 2
    outs = nb.cells[2].outputs
    assert [(o["output_type"], o.get("name")) for o in outs] == [
        ("stream", "stdout"), ("stream", "stderr"), ("stream", "stdout"), ("display_data", None), ("stream", "stdout")]
    assert outs[1]["text"] == "sasrec: 100%|##########| 40/40\n"  # one line, its final state
    assert outs[0]["text"] == "[girl] training\n" and outs[2]["text"] == "HR@10 32.0 %\n"
    assert book.as_terminal("a\rb\nc\r\n") == "b\nc\n"


def test_clear_outputs_leaves_a_committable_chapter(tmp_path):
    nb = executed(chapter_nb())
    nb.cells[3].execution_count = 4
    path = write(nb, tmp_path / "x.ipynb")
    assert book.clear_outputs(path) is True
    cleared = nbformat.read(str(path), as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cleared.cells if c.cell_type == "code")
    assert book.clear_outputs(path) is False


def test_make_book_is_a_make_target_with_profile_cpu_full_and_a_run_dir():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book: PROFILE = cpu-full$", makefile, re.M)
    recipe = re.search(r"^book: install\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "scripts/make_book.py --profile $(PROFILE)" in recipe and "--run-dir $(RUN_DIR)" in recipe


def test_make_book_check_reports_a_missing_copy(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_book
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert make_book.main(["--check", "--out", str(tmp_path), "00"]) == 1
    assert "missing" in capsys.readouterr().out


def test_a_new_chapter_links_its_executed_copy(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import new_chapter
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    path = new_chapter.new_chapter(tmp_path / "07_x.ipynb", "Chapter 7 — X", "- something")
    first = "".join(nbformat.read(str(path), as_version=4).cells[0]["source"])
    assert "](../docs/chapters/07_x.ipynb)" in first


def test_the_stamped_commit_ignores_the_book_itself(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "a@b.c")
    git("config", "user.name", "a")
    (tmp_path / "docs" / "chapters").mkdir(parents=True)
    (tmp_path / "docs" / "chapters" / "00_x.ipynb").write_text("{}")
    (tmp_path / "notebooks.txt").write_text("a")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    assert not book.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "docs" / "chapters" / "00_x.ipynb").write_text("{ }")  # a copy rewritten: still clean
    assert not book.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "notebooks.txt").write_text("b")  # a source changed: dirty
    assert book.git_commit(tmp_path).endswith("-dirty")
