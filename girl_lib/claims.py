"""The papers' claims, one row each, with the kit's measured effect and a computed verdict.

Each row reads a paired difference (or a bootstrap difference) that a stage already wrote with
its interval, n and p-value, and turns it into a verdict with :func:`girl_lib.stats.verdict`:
*reproduced* when the whole 95 % interval lies above zero and the paired test agrees (p < 0.05),
*not reproduced* when the interval lies below zero, *inconclusive at this n* otherwise. Nothing here is typed in by hand: a claim whose
stage has not run is simply absent.
"""
from __future__ import annotations

import json
from pathlib import Path

from .rundir import stage_dir
from .stats import fmt_diff, verdict

PAPER_GIRL = "GIRL (arXiv 2307.02157)"
PAPER_GENREC = "GenRec (arXiv 2307.00457)"


def _row(claim: str, paper: str, measure: str, d: dict, percent: bool) -> dict:
    return {"claim": claim, "paper": paper, "measure": measure, "effect": d.get("diff"), "ci": d.get("ci"),
            "n": d.get("n"), "p_value": d.get("p_value"), "test": d.get("test"),
            "verdict": verdict(d.get("ci") or [None, None], p_value=d.get("p_value")), "percent": percent}


def generation_claims(ev: dict) -> list[dict]:
    """SFT beats the base LLM, and RL beats SFT, on the recruiter's acceptance of the written JDs."""
    rows = []
    paired = ev.get("paired", {})
    for key, claim in (("sft_vs_zero_shot", "SFT writes JDs recruiters accept more often than the zero-shot base"),
                       ("ppo_vs_sft", "RL (PPO) writes JDs recruiters accept more often than SFT"),
                       ("grpo_vs_sft", "RL (GRPO) writes JDs recruiters accept more often than SFT"),
                       ("rloo_vs_sft", "RL (RLOO) writes JDs recruiters accept more often than SFT")):
        if key in paired:
            rows.append(_row(claim, PAPER_GIRL, f"oracle acceptance, {paired[key]['a']} − {paired[key]['b']}, "
                             "test seekers", paired[key]["accept_rate"], percent=True))
    return rows


def matching_claims(ev: dict, model: str = "two_tower") -> list[dict]:
    """Generated JDs as features raise a matching model's AUC, and more so in cold start."""
    m = ev.get("matching", {})
    if model not in m.get("gain", {}):
        return []
    gain = m["gain"][model]
    rows = [_row("Generated JDs as features improve person-job matching", PAPER_GIRL,
                 f"AUC gain ({model}), test seekers", gain["test"]["auc"], percent=False)]
    if "cold" in gain:
        rows.append(_row("… also in cold start (new people, new jobs)", PAPER_GIRL,
                         f"AUC gain ({model}), cold-start seekers", gain["cold"]["auc"], percent=False))
    if model in m.get("cold_minus_test", {}):
        rows.append(_row("… more so in cold start than for known jobs", PAPER_GIRL,
                         f"AUC gain cold − gain test ({model})", m["cold_minus_test"][model], percent=False))
    return rows


def genrec_claims(gr: dict) -> list[dict]:
    """GenRec recommends the next item better than an ID-based sequential recommender."""
    paired = gr.get("paired", {})
    for variant in ("genrec_constrained", "genrec_exact"):
        key = f"{variant}_vs_sasrec"
        if key in paired:
            return [_row("Generative next-item recommendation beats an ID-based recommender", PAPER_GENREC,
                         f"HR@10, {variant} − SASRec, test users", paired[key], percent=True)]
    return []


def claims(eval_metrics: dict | None, genrec_metrics: dict | None) -> list[dict]:
    """Every claim the given metrics can judge, in the papers' order."""
    rows = []
    if eval_metrics:
        rows += generation_claims(eval_metrics) + matching_claims(eval_metrics)
    if genrec_metrics:
        rows += genrec_claims(genrec_metrics)
    return rows


def claims_for(run_dir: Path) -> list[dict]:
    """:func:`claims` from ``eval/metrics.json`` and ``genrec/metrics.json`` of a run dir."""
    def read(stage: str) -> dict | None:
        path = stage_dir(run_dir, stage) / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else None

    return claims(read("evaluate"), read("genrec"))


def claims_markdown(rows: list[dict]) -> list[str]:
    """The claims table: claim, measure, effect [95 % CI], n, p, verdict."""
    if not rows:
        return ["No claim can be judged yet: run `girl evaluate` (and `girl genrec`)."]
    lines = ["| claim | paper | measure | effect [95 % CI], n, p | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        effect = fmt_diff({"diff": r["effect"], "ci": r["ci"], "n": r["n"], "p_value": r["p_value"]},
                          digits=1 if r["percent"] else 3, percent=r["percent"])
        shown = "inconclusive at this n" if r["verdict"] == "inconclusive" else r["verdict"]
        lines.append(f"| {r['claim']} | {r['paper']} | {r['measure']} | {effect} | **{shown}** |")
    return lines
