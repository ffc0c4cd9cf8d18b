"""Project conventions that users and CI rely on."""
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_follows_the_skeleton(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and 'PROFILE = "smoke"' in "".join(params[0]["source"])
    sources = ["".join(c["source"]) for c in cells]
    assert cells[0]["cell_type"] == "markdown" and "What you will learn" in sources[0]
    install = [s for s in sources if "google.colab" in s]
    assert len(install) == 1, "one Colab-only install cell"
    # The repository URL is set in one place, empty until the user names their copy: no invented address.
    assert re.search(r'^REPO_URL = ""$', install[0], re.M) and "github.com" not in install[0]
    assert any("setup(PROFILE, OVERRIDES)" in s for s in sources), "no versions/device/seed cell"
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), "clear outputs before committing"
