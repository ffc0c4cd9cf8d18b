"""The library's architecture, checked: imports point down only, and no stage imports another.

Layers, lowest first (a module may import from lower layers, and from its own package):

    errors → checks → config, seeding → rundir → world → models, metrics, stats, embed, plots → fastpath
    → textgen, training, pooling, oracle_eval, claims, doctor, notebook, book → scoring, generators
    → stages (each stage on its own) → pipeline, exercises → report → cli

Internal imports sit at the top of each module, where a reader sees them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "girl_lib"

LAYERS = [
    ("errors",),
    ("hardware",),
    ("checks", "overrides"),
    ("config", "seeding"),
    ("rundir",),
    ("world",),
    ("models", "int8", "metrics", "stats", "embed", "plots"),
    ("fastpath",),
    ("textgen", "training", "pooling", "oracle_eval", "claims", "doctor", "notebook", "book"),
    ("scoring", "generators"),
    ("stages",),
    ("pipeline", "exercises"),
    ("report",),
    ("cli",),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit(module: str) -> str:
    """What a module belongs to: ``girl_lib.stages.ppo.loop`` → ``stages.ppo``, ``girl_lib.world.io`` → ``world``."""
    parts = module.split(".")[1:]
    if not parts:
        return ""
    if parts[0] == "stages" and len(parts) > 1:
        return "stages." + parts[1]
    return parts[0]


def layer(module: str) -> int:
    return LAYER_OF[unit(module).split(".")[0]]


def internal_imports(source: str, module: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at top level)`` for every ``girl_lib`` import in ``source``."""
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target]
            if node.module is None or target in ("girl_lib", "girl_lib.stages"):  # from . import x
                targets = [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            if t == "girl_lib" or t.startswith("girl_lib."):
                found.append((t, node.lineno, id(node) in top))
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    out = []
    for target, line, at_top in internal_imports(source, module, is_package):
        if unit(target) == unit(module):
            continue  # inside one package: world.io → world.taxonomy, stages.ppo.loop → stages.ppo.core
        where = f"{module}:{line} imports {target}"
        if not at_top:
            out.append(f"{where} inside a function (internal imports go at the top)")
        if unit(module).startswith("stages.") and unit(target).startswith("stages."):
            out.append(f"{where}: a stage never imports another stage")
        elif layer(target) >= layer(module):
            out.append(f"{where}: an import that points up or sideways")
    return out


def all_modules():
    for path in sorted(PKG.rglob("*.py")):
        if path.parent.name in ("rouge", "bleu"):  # the self-contained `evaluate` metric scripts
            continue
        yield path


def test_every_module_has_a_layer():
    for path in all_modules():
        assert unit(module_name(path)).split(".")[0] in LAYER_OF or path == PKG / "__init__.py", path


@pytest.mark.parametrize("path", list(all_modules()), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down_only(path):
    source = path.read_text(encoding="utf-8")
    assert violations(source, module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize("source, module, expected", [
    ("from ..reward import train\n", "girl_lib.stages.ppo.loop", "a stage never imports another stage"),
    ("from ...pipeline import run_stage\n", "girl_lib.stages.ppo.loop", "points up"),
    ("from .stages import sft\n", "girl_lib.training", "points up"),
    ("def f():\n    from .world import Oracle\n", "girl_lib.scoring", "inside a function"),
    ("from .cli import main\n", "girl_lib.pipeline", "points up"),
])
def test_the_checker_catches_what_it_forbids(source, module, expected):
    found = violations(source, module)
    assert len(found) == 1 and expected in found[0], found


def test_the_checker_allows_what_the_layers_allow():
    ok = ("from ...scoring import score\nfrom .core import compute_gae\nfrom ...world import Oracle\n")
    assert violations(ok, "girl_lib.stages.ppo.loop") == []
