"""The book: executed copies of the chapters, for reading every output without running anything.

``make book`` (``scripts/make_book.py``) runs every chapter of ``notebooks/`` with papermill
under one profile and one run directory, and writes the executed copy of ``notebooks/NN_name.ipynb``
to ``docs/chapters/NN_name.ipynb``. The source chapters stay committed without outputs (so a diff
shows what changed in the text and code); the copies are what a reader opens on a code host.

A copy can go stale: someone edits a chapter and forgets to rerun the book. So each copy is
**stamped**, in its metadata (``metadata["girl_book"]``) and in a first markdown cell, with

* the git commit it was made from (``-dirty`` when the working tree had uncommitted changes),
* the date and time it ran (UTC) and the profile it ran under,
* :func:`source_hash`: a hash of the chapter's code and markdown cell sources, computed the same
  way from the source chapter and from the copy (the stamp cell and papermill's
  ``injected-parameters`` cell are left out of the copy's hash).

:func:`check_copy` compares a copy with its source (missing, no outputs, an error output, made
from other source cells, a smoke-profile copy) and ``tests/test_book.py`` runs it on every
chapter. Outputs are kept readable: a text output longer than :data:`MAX_TEXT_CHARS` keeps its
head and tail, and a PNG wider than :data:`MAX_PNG_WIDTH` pixels is scaled down
(:func:`shrink_outputs`).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import subprocess
import tempfile
from pathlib import Path

BOOK_DIR = Path("docs") / "chapters"
STAMP_TAG = "book-stamp"  # the copy's first cell, added by stamp()
PARAMS_TAG = "injected-parameters"  # papermill's cell with the values it was given
METADATA_KEY = "girl_book"
MAX_TEXT_CHARS = 12_000  # a longer text output keeps its first and last halves of this
MAX_PNG_WIDTH = 900  # pixels: about a figure of 9 inches at 100 dpi
BOOK_PROFILES = ("cpu", "cpu-full", "gpu")  # a book shows a real run: smoke's random tiny model writes noise


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def source_cells(nb: dict) -> list[tuple[str, str]]:
    """``(cell type, source)`` of every code and markdown cell that came from the source chapter.

    The copy's stamp cell and papermill's injected parameters are not part of the chapter, so
    they are left out: the list is the same for a chapter and for its executed copy.
    """
    return [(c["cell_type"], _text(c["source"])) for c in nb["cells"]
            if c["cell_type"] in ("code", "markdown") and not ({STAMP_TAG, PARAMS_TAG} & set(_tags(c)))]


def source_hash(nb: dict) -> str:
    """SHA-256 (hex) of :func:`source_cells`: equal exactly when the code and markdown are."""
    blob = json.dumps(source_cells(nb), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def read(path: Path) -> dict:
    import nbformat

    return nbformat.read(str(path), as_version=4)


def git_commit(repo: Path) -> str:
    """``HEAD``'s commit hash, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git.

    The book's own folder does not count: rewriting the copies while the book is made must not
    mark the later chapters dirty.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                f":(exclude){BOOK_DIR.as_posix()}"], cwd=repo, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def stamp(nb: dict, *, source: dict, commit: str, date: str, profile: str, chapter: str) -> dict:
    """Record where the copy ``nb`` comes from: metadata and a first markdown cell (``book-stamp``).

    ``source`` is the source chapter's notebook; its :func:`source_hash` is stored, so that
    :func:`check_copy` can tell later whether the chapter has changed since.
    """
    import nbformat

    info = {"chapter": chapter, "commit": commit, "date": date, "profile": profile,
            "source_hash": source_hash(source)}
    nb["metadata"][METADATA_KEY] = info
    nb["cells"] = [c for c in nb["cells"] if STAMP_TAG not in _tags(c)]
    text = (f"> **Executed copy** of [`notebooks/{chapter}`](../../notebooks/{chapter}), with every output, "
            f"made by `make book` under the `{profile}` profile on {date} from commit `{commit[:12]}`"
            f"{' (with uncommitted changes)' if commit.endswith('-dirty') else ''}. Source cells hash "
            f"`{info['source_hash'][:12]}`. To run it yourself, open the source chapter.")
    cell = nbformat.v4.new_markdown_cell(text, metadata={"tags": [STAMP_TAG]})
    nb["cells"].insert(0, cell)
    return nb


def _shrink_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit:,} characters cut by make book ...]\n{text[-half:]}"


def as_terminal(text: str) -> str:
    """What a terminal would leave of ``text``: on each line, only what follows its last carriage
    return (a tqdm bar rewrites its line with ``\r``; a notebook file keeps every state)."""
    lines = text.split("\n")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines)


def _merge_streams(outputs: list) -> tuple[list, int]:
    """Consecutive stream outputs of one name joined into one (papermill stores each write apart)."""
    merged, joined = [], 0
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] = _text(merged[-1].get("text", "")) + _text(out.get("text", ""))
            joined += 1
        else:
            merged.append(out)
    return merged, joined


def _shrink_png(data: str, max_width: int) -> str:
    from PIL import Image

    raw = base64.b64decode(data)
    img = Image.open(io.BytesIO(raw))
    if img.width <= max_width:
        return data
    height = round(img.height * max_width / img.width)
    out = io.BytesIO()
    img.resize((max_width, height), Image.LANCZOS).save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def shrink_outputs(nb: dict, max_chars: int = MAX_TEXT_CHARS, max_png_width: int = MAX_PNG_WIDTH) -> dict:
    """Keep outputs readable: long texts keep head and tail, wide PNGs are scaled down.

    Progress-bar widgets (``application/vnd.jupyter.widget-view+json``) are dropped: they show
    nothing outside a live kernel. Text progress bars keep their last state only: consecutive
    stream outputs are joined and each line shows what a terminal would (:func:`as_terminal`).
    Returns counts of what changed.
    """
    counts = {"texts_cut": 0, "pngs_scaled": 0, "widgets_dropped": 0, "streams_joined": 0}
    for cell in nb["cells"]:
        if cell.get("outputs"):
            cell["outputs"], joined = _merge_streams(cell["outputs"])
            counts["streams_joined"] += joined
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = as_terminal(_text(out.get("text", "")))
                new = _shrink_text(text, max_chars)
                counts["texts_cut"] += new != text
                out["text"] = new
            data = out.get("data", {})
            for mime in list(data):
                if mime == "application/vnd.jupyter.widget-view+json":
                    del data[mime]
                    counts["widgets_dropped"] += 1
                elif mime == "image/png":
                    new = _shrink_png(_text(data[mime]).replace("\n", ""), max_png_width)
                    counts["pngs_scaled"] += new != _text(data[mime]).replace("\n", "")
                    data[mime] = new
                elif mime.startswith("text/"):
                    text = _text(data[mime])
                    new = _shrink_text(text, max_chars)
                    counts["texts_cut"] += new != text
                    data[mime] = new
    return counts


def has_outputs(nb: dict) -> bool:
    """At least one code cell of the chapter holds an output."""
    return any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code" and PARAMS_TAG not in _tags(c))


def check_copy(source_path: Path, copy_path: Path) -> list[str]:
    """Everything wrong with the executed copy of a chapter; ``[]`` when it is up to date.

    Problems: the copy is missing; it has no stamp; its profile is not a real one
    (:data:`BOOK_PROFILES`); it holds no output, or an error output; it was made from other
    source cells than the chapter's now (the chapter changed since: rerun ``make book``).
    """
    source_path, copy_path = Path(source_path), Path(copy_path)
    if not copy_path.is_file():
        return [f"{copy_path} is missing: run `make book` (see the Makefile)"]
    copy = read(copy_path)
    problems = []
    info = copy.get("metadata", {}).get(METADATA_KEY)
    if not info:
        problems.append(f"{copy_path} has no stamp (metadata '{METADATA_KEY}'): make it with `make book`")
    elif info.get("profile") not in BOOK_PROFILES:
        problems.append(f"{copy_path} ran under the '{info.get('profile')}' profile; the book shows "
                        f"{' or '.join(BOOK_PROFILES)}")
    if not has_outputs(copy):
        problems.append(f"{copy_path} has no outputs: it was not executed")
    errors = [i for i, c in enumerate(copy["cells"]) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        problems.append(f"{copy_path} holds an error output in cell(s) {errors}")
    want = source_hash(read(source_path))
    if source_hash(copy) != want:
        problems.append(f"{copy_path} was made from other source cells than {source_path} has now "
                        f"(copy {source_hash(copy)[:12]}, source {want[:12]}): rerun `make book`")
    elif info and info.get("source_hash") != want:
        problems.append(f"{copy_path}'s stamp names source hash {str(info.get('source_hash'))[:12]}, "
                        f"the source is {want[:12]}")
    return problems


def execute(source_path: Path, output_path: Path, profile: str, run_dir: Path | None, timeout: int | None = None,
            log_output: bool = True) -> None:
    """Run one chapter with papermill (``PROFILE``, and ``RUN_DIR`` when given), from its own folder."""
    import papermill

    params = {"PROFILE": profile}
    if run_dir is not None:
        params["RUN_DIR"] = str(Path(run_dir).resolve())
    papermill.execute_notebook(str(source_path), str(output_path), parameters=params,
                               cwd=str(Path(source_path).resolve().parent), log_output=log_output,
                               progress_bar=False, execution_timeout=timeout)


def make_copy(source_path: Path, book_dir: Path, profile: str, run_dir: Path | None, repo: Path,
              timeout: int | None = None, log_output: bool = True) -> Path:
    """Execute a chapter and write its stamped, shrunk copy to ``book_dir/<same name>``.

    The copy is written only once the whole chapter ran: a failing cell leaves the old copy (or
    none) in place, and papermill's error names the cell.
    """
    import nbformat

    source_path = Path(source_path)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit(repo)
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / source_path.name
        execute(source_path, executed, profile, run_dir, timeout, log_output)
        nb = read(executed)
    stamp(nb, source=read(source_path), commit=commit, date=date, profile=profile, chapter=source_path.name)
    shrink_outputs(nb)
    target = Path(book_dir) / source_path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))
    return target


def clear_outputs(path: Path) -> bool:
    """Remove every output and execution count from a source chapter, in place; True when it changed.

    The chapters are committed this way (``tests/test_project.py`` checks it).
    """
    import nbformat

    nb = read(path)
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            changed |= bool(cell.get("outputs")) or cell.get("execution_count") is not None
            cell["outputs"], cell["execution_count"] = [], None
    if changed:
        nbformat.write(nb, str(path))
    return changed
