"""``<run-dir>/report.md``: what ran, how long it took, and each stage's headline figures.

A table of the stages, then (when ``girl evaluate`` has run) the evaluation's tables and plots
(:func:`girl_lib.stages.evaluate.report.report_markdown`).
"""
from __future__ import annotations

import json
from pathlib import Path

from .pipeline import STAGES
from .rundir import atomic_write_text, read_manifest, stage_dir
from .stages.evaluate.report import report_markdown


def write_report(run_dir: Path, profile: str) -> Path:
    run_dir = Path(run_dir)
    lines = [f"# GIRL kit run report — profile `{profile}`", "",
             "| stage | status | seconds | summary |", "|---|---|---:|---|"]
    for stage in STAGES:
        manifest = read_manifest(stage_dir(run_dir, stage.name))
        if manifest:
            summary = json.dumps(manifest.get("result", {}), sort_keys=True)
            if len(summary) > 160:
                summary = summary[:157] + "..."
            lines.append(f"| {stage.name} | done | {manifest['seconds']:.1f} | `{summary}` |")
        elif stage.in_run:
            lines.append(f"| {stage.name} | not run | | |")

    lines += report_markdown(run_dir)
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
