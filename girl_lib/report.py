"""``<run-dir>/report.md``: what ran, how long it took, and each stage's headline figures.

A table of the stages, the papers' claims with their measured effects and computed verdicts
(:mod:`girl_lib.claims`), then (when ``girl evaluate`` has run) the evaluation's tables and plots
(:func:`girl_lib.stages.evaluate.report.report_markdown`), and the over-optimisation curve of
the PPO run (:mod:`girl_lib.stages.ppo.overopt`). A complete stage whose upstream output
changed since it ran is shown as out of date, with the reason.
"""
from __future__ import annotations

import json
from pathlib import Path

from .claims import claims_for, claims_markdown
from .pipeline import STAGES, upstream_change
from .rundir import atomic_write_text, read_manifest, stage_dir
from .stages.evaluate.report import report_markdown
from .stages.ppo import overopt


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
            why = upstream_change(stage.name, run_dir)
            status = f"out of date: {why}" if why else "done"
            lines.append(f"| {stage.name} | {status} | {manifest.get('seconds', 0):.1f} | `{summary}` |")
        elif stage.in_run:
            lines.append(f"| {stage.name} | not run | | |")

    lines += ["", "## The papers' claims", "",
              "Each verdict is computed from the 95 % interval of the effect and its paired test: *reproduced* "
              "when the interval lies above zero and p < 0.05, *not reproduced* when it lies below zero, "
              "*inconclusive* otherwise.", ""]
    lines += claims_markdown(claims_for(run_dir))
    lines += overopt.markdown(run_dir)
    lines += report_markdown(run_dir)
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
