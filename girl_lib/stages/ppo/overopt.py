"""The over-optimisation curve of Gao, Schulman and Hilton (2022), from what PPO already logs.

Gao et al. needed a *gold* reward to watch a policy exploit its *proxy*; this kit's world has one:
the oracle recruiter. Every PPO iteration logs, on its own fresh samples, the reward model's raw
score (the proxy), the oracle's acceptance (the gold) and the KL to the SFT model (k1 summed over
each response, at the rollout temperature: ``objective/kl``). Binning iterations by √KL turns
one long run, and every β of a sweep (``<run>/beta_sweep/beta_*/ppo/log.jsonl``), into the curve:
the proxy rises with √KL; the gold rises with it while the proxy is right, and stalls or falls
once the policy finds the proxy's errors. The same points binned by episodes show where a budget
saturates.

What the curve can and cannot see: each point is a few dozen sampled JDs, so the acceptance
intervals are wide (Wilson, pooled over the iterations of a bin), and the verdict sentence says
"within noise" whenever they overlap.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ... import plots
from ...stats import fmt_diff, fmt_rate, fmt_value, paired_difference, rate, verdict
from .greedy_checks import arms_at_equal_kl, as_curve, extrapolate, read_checks


def points(rows: Sequence[Mapping], source: str = "ppo") -> list[dict]:
    """One point per logged iteration: √KL, episodes so far, the raw RM score, the oracle's acceptances."""
    out, before = [], 0
    for r in rows:
        n = int(r["episodes"]) - before
        before = int(r["episodes"])
        out.append({"source": source, "iteration": int(r["iteration"]), "episodes": int(r["episodes"]), "n": n,
                    "beta": r.get("beta"), "kl": float(r["objective/kl"]),
                    "sqrt_kl": math.sqrt(max(0.0, float(r["objective/kl"]))),
                    "rm_score": float(r.get("objective/scores_raw", r["objective/scores"])),
                    "rm_score_sq": r.get("objective/scores_raw_sq"),
                    "accepted": int(round(float(r["oracle/accept_rate"]) * n))})
    return out


def _score_ci(group: Sequence[Mapping]) -> dict:
    """The mean raw RM score of a bin's JDs with a 95 % t-interval: over every JD when the log
    has each iteration's mean square (their spread), else over the iterations' means."""
    n = np.array([p["n"] for p in group], dtype=float)
    means = np.array([p["rm_score"] for p in group], dtype=float)
    m = float((n * means).sum() / n.sum())
    if all(p.get("rm_score_sq") is not None for p in group) and n.sum() > 1:
        second = float((n * np.array([p["rm_score_sq"] for p in group])).sum() / n.sum())
        count, sd = n.sum(), math.sqrt(max(0.0, second - m * m) * n.sum() / (n.sum() - 1))
    elif len(group) > 1:
        count, sd = len(group), float(means.std(ddof=1))
    else:
        return {"value": m, "ci": [None, None]}
    half = float(sps.t.ppf(0.975, count - 1) * sd / math.sqrt(count))
    return {"value": m, "ci": [m - half, m + half]}


def binned(pts: Sequence[Mapping], by: str = "sqrt_kl", bins: int = 5) -> list[dict]:
    """Equal-count bins of iterations ordered by ``by``: the x mean and range, the RM score's mean
    with a t-interval over iterations, and the acceptance pooled over the bin's JDs (Wilson)."""
    ordered = sorted(pts, key=lambda p: p[by])
    out = []
    for chunk in np.array_split(np.arange(len(ordered)), min(bins, len(ordered))):
        group = [ordered[i] for i in chunk]
        n, k = sum(p["n"] for p in group), sum(p["accepted"] for p in group)
        out.append({by: float(np.mean([p[by] for p in group])), "range": [group[0][by], group[-1][by]],
                    "iterations": len(group), "n": n, "rm_score": _score_ci(group),
                    "accept_rate": {"value": k / n if n else None, **rate(k, n)}})
    return out


def _above(a: dict, b: dict) -> bool:
    """Whether interval ``a`` lies wholly above interval ``b``."""
    return None not in (a["ci"][0], b["ci"][1]) and a["ci"][0] > b["ci"][1]


def message(curve: Sequence[Mapping]) -> str:
    """One sentence on what the curve shows, computed from its intervals (never typed in)."""
    if len(curve) < 2:
        return "too few iterations for a curve"
    first, last = curve[0], curve[-1]
    peak = max(curve, key=lambda b: b["accept_rate"]["value"])
    gold_up = _above(last["accept_rate"], first["accept_rate"])
    gold_fell = peak is not last and _above(peak["accept_rate"], last["accept_rate"])
    return _sentence(first, last, peak, _above(last["rm_score"], first["rm_score"]), gold_up, gold_fell)


def greedy_message(curve: Sequence[Mapping]) -> str:
    """:func:`message` for greedy checks, whose points share their seekers: the gold's rise (last
    point − first) and fall (peak − last) are judged by paired tests on the per-seeker verdicts
    (:func:`girl_lib.stats.verdict` of a paired bootstrap CI with exact McNemar), not by overlap."""
    if len(curve) < 2:
        return "too few checks for a curve"
    first, last = curve[0], curve[-1]
    peak = max(curve, key=lambda b: b["accept_rate"]["value"])

    def beyond_noise(a: Mapping, b: Mapping) -> bool:
        d = paired_difference(a["accepted"], b["accepted"])
        return verdict(d["ci"], 0.0, d["p_value"]) == "reproduced"

    gold_fell = peak is not last and beyond_noise(peak, last)
    return _sentence(first, last, peak, _above(last["rm_score"], first["rm_score"]), beyond_noise(last, first), gold_fell)


def _sentence(first: Mapping, last: Mapping, peak: Mapping, proxy_up: bool, gold_up: bool, gold_fell: bool) -> str:
    span = f"from √KL {first['sqrt_kl']:.2f} to {last['sqrt_kl']:.2f}"
    if gold_fell:
        return (f"over-optimisation: the oracle's acceptance peaks at √KL {peak['sqrt_kl']:.2f} "
                f"({100 * peak['accept_rate']['value']:.0f} %) and falls beyond noise to "
                f"{100 * last['accept_rate']['value']:.0f} % at √KL {last['sqrt_kl']:.2f}"
                + (", while the reward model's score keeps rising" if proxy_up else ""))
    if proxy_up and gold_up:
        return f"no over-optimisation yet: the reward model's score and the oracle's acceptance both rise {span}"
    if proxy_up:
        return (f"the reward model's score rises {span} but the oracle's acceptance does not move beyond "
                "noise: the proxy's gains do not transfer to the gold reward at this budget")
    if gold_up:
        return f"the oracle's acceptance rises {span} while the reward model's score does not move beyond noise"
    return f"neither the reward model's score nor the oracle's acceptance moves beyond noise {span}"


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _sub_runs(run_dir: Path) -> dict[str, Path]:
    """Every PPO run of a run dir, by source: the stage itself, each β of a sweep, each long run."""
    found = {"ppo": run_dir}
    for sub in sorted(run_dir.glob("beta_sweep/beta_*")):
        found[sub.name] = sub
    for sub in sorted(run_dir.glob("long_run/*")):
        found[f"long run ({sub.name})"] = sub
    return found


def _logs(run_dir: Path) -> dict[str, list[dict]]:
    """Every PPO log of a run dir, by source (:func:`_sub_runs`)."""
    found = {k: _read_rows(sub / "ppo" / "log.jsonl") for k, sub in _sub_runs(run_dir).items()}
    return {k: v for k, v in found.items() if v}


def _checks(run_dir: Path) -> dict[str, list[dict]]:
    """Every run's greedy checks (``ppo/checks.json``, :mod:`greedy_checks`), by source."""
    found = {k: read_checks(sub) for k, sub in _sub_runs(run_dir).items()}
    return {k: v for k, v in found.items() if v}


def _budget_sources(found: Mapping[str, list]) -> dict[str, list]:
    """The longest run per reward: ``long_run/<source>`` when there is one, else the stage."""
    budget = {"learned RM": found.get("long run (rm)") or found.get("ppo"), "oracle reward": found.get("long run (oracle)")}
    return {k: v for k, v in budget.items() if v}


def greedy_from_run(run_dir: Path) -> dict:
    """The curves from the greedy checks of a run dir's snapshots (empty when none was checked).

    Over-optimisation: every check of every run that optimised the reward model, by √KL (the SFT
    point once). Budget: the checks of the longest run per reward, by episodes, with PPO − SFT
    paired and the straight-line projection of the episodes that +10 points would need.
    """
    checks = _checks(Path(run_dir))
    proxy, seen_sft = [], False
    for src, rows in checks.items():
        if src == "long run (oracle)":
            continue
        for r in rows:
            if r["iteration"] == 0:
                if seen_sft:
                    continue
                seen_sft = True
            proxy.append({**r, "source": src})
    curve = sorted(as_curve(proxy), key=lambda b: b["sqrt_kl"])
    budget = _budget_sources(checks)
    ppo_rm = budget.get("learned RM") or []
    return {"checks": checks, "arms_at_equal_kl": arms_at_equal_kl(Path(run_dir), ppo_rm), "by_sqrt_kl": curve,
            "message": greedy_message(curve) if curve else (
                "no greedy check of a run against the reward model: the over-optimisation curve needs one "
                "(the oracle-reward run's checks give only its budget)" if checks else "no greedy checks"),
            "by_episodes": {name: as_curve(rows) for name, rows in budget.items()},
            "rows_by_episodes": budget,
            "extrapolation": {name: extrapolate(rows) for name, rows in budget.items()}}


def from_run(run_dir: Path, bins: int = 5) -> dict:
    """The curves of a run dir. Over-optimisation (against √KL): every run that optimised the
    reward model (the stage, a β sweep, ``long_run/rm``). Budget (against episodes): the longest
    run per reward (``long_run/<source>`` when there is one, else the stage). Both from the
    rollouts PPO logged; ``"greedy"`` holds the same curves from the greedy checks of the
    snapshots, when there are any (:func:`greedy_from_run`)."""
    logs = _logs(Path(run_dir))
    greedy = greedy_from_run(Path(run_dir))
    proxy = [p for src, rows in logs.items() if src != "long run (oracle)" for p in points(rows, src)]
    if not proxy:
        return {"points": [], "by_sqrt_kl": [], "by_episodes": {}, "message": "no PPO log in this run dir",
                "greedy": greedy}
    by_kl = binned(proxy, "sqrt_kl", bins)
    by_episodes = {name: binned(points(rows, name), "episodes", bins) for name, rows in _budget_sources(logs).items()}
    return {"points": proxy, "by_sqrt_kl": by_kl, "by_episodes": by_episodes, "message": message(by_kl),
            "greedy": greedy}


def draw(curve: Mapping, left, right, name: str = "") -> str:
    """Both panels on two matplotlib axes, from the greedy checks when the run has them (else from
    the rollouts); returns the sentence that goes with them."""
    greedy = curve.get("greedy") or {}
    suffix = f" ({name})" if name else ""
    if greedy.get("by_sqrt_kl"):
        plots.overoptimisation(greedy["by_sqrt_kl"], ax=left, title=f"proxy vs gold, greedy checks{suffix}")
        plots.budget(greedy["by_episodes"], ax=right, ylabel="oracle acceptance (greedy, val)")
        return greedy["message"]
    plots.overoptimisation(curve["by_sqrt_kl"], ax=left, title=f"proxy vs gold, rollouts{suffix}")
    plots.budget(curve["by_episodes"], ax=right)
    return curve["message"]


def save_plot(curve: Mapping, path: Path) -> Path:
    """The proxy-vs-gold plot (against √KL) and the budget plot (acceptance against episodes):
    from the greedy checks when the run has them, else from the rollouts."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    draw(curve, left, right)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def equal_kl_markdown(arms: Sequence[Mapping]) -> list[str]:
    """The table of :func:`greedy_checks.arms_at_equal_kl` (nothing when no arm was trained)."""
    if not arms:
        return []
    lines = ["", "**GRPO and RLOO at equal achieved KL.** Each arm against SFT, and against the PPO check whose "
             "exact KL is nearest its own, paired on the same val seekers:", "",
             "| arm | exact KL | acceptance | arm − SFT | PPO check (KL) | arm − PPO at that KL | interest |",
             "|---|---:|---|---|---|---|---:|"]
    for a in arms:
        lines.append(f"| {a['algo'].upper()} | {a['kl']:.2f} | {fmt_rate(a['accept_rate'])} | {fmt_diff(a['vs_sft'])} "
                     f"| iteration {a['ppo_iteration']} ({a['ppo_kl']:.2f}): {fmt_rate(a['ppo_accept_rate'])} "
                     f"| {fmt_diff(a['vs_ppo_at_kl'])} | {a['seeker_interest']:.3f} |")
    beyond = [a["algo"].upper() for a in arms if not a["within_range"]]
    if beyond:
        lines += ["", f"{' and '.join(beyond)} reached a KL outside the PPO checks' range: the nearest check is not at "
                  "equal KL. A fair comparison needs a longer PPO run or the arm at a larger β."]
    return lines


def greedy_markdown(greedy: Mapping) -> list[str]:
    """The greedy checks' tables, the curve's computed sentence and the budget's projection."""
    if not greedy.get("checks"):
        return []
    lines = ["", "### The greedy checks: budget and over-optimisation", "",
             "Every few iterations the policy's greedy JDs for PPO's held-out val seekers: acceptance with "
             "its Wilson interval, PPO − SFT paired (bootstrap CI, exact McNemar p), the reward model's raw "
             "score with its t-interval, the exact KL to the SFT model along those JDs. Iteration 0 is SFT."]
    for src, rows in greedy["checks"].items():
        lines += ["", f"**{src}**", "", "| iteration | episodes | √KL | RM score | acceptance | PPO − SFT | interest | parse |",
                  "|---:|---:|---:|---|---|---|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['iteration']} | {r['episodes']} | {r['sqrt_kl']:.2f} | {fmt_value(r['rm_score'], 2)} "
                         f"| {fmt_rate(r['accept_rate'])} | {fmt_diff(r['vs_sft']) if r['iteration'] else '—'} "
                         f"| {r['seeker_interest']:.3f} | {100 * r['parse_rate']:.0f} % |")
    lines += ["", f"**What the greedy curve shows:** {greedy['message']}."]
    lines += equal_kl_markdown(greedy.get("arms_at_equal_kl") or [])
    for name, ex in greedy["extrapolation"].items():
        rows = greedy["rows_by_episodes"][name]
        best = max((r for r in rows if r["iteration"]), key=lambda r: r["vs_sft"]["diff"], default=None)
        if best is None:
            continue
        text = (f"Budget, PPO on the {name}: the largest gain over SFT, {fmt_diff(best['vs_sft'])}, at "
                f"{best['episodes']} episodes (iteration {best['iteration']}). ")
        if ex["episodes"] is None:
            text += "The checks' gains do not grow with episodes, so no budget for +10 points can be projected."
        else:
            text += (f"A straight line through the checks' gains ({ex['slope_per_100_episodes'] * 100:+.1f} points "
                     f"per 100 episodes) reaches +10 points at about {ex['episodes']:.0f} episodes: a projection "
                     "that assumes the gain keeps growing linearly, not a measurement.")
        lines += ["", text]
    return lines


def markdown(run_dir: Path) -> list[str]:
    """The report's section: the curve's table, its computed sentence and its plot."""
    curve = from_run(run_dir)
    if not curve["points"]:
        return []
    plot = save_plot(curve, Path(run_dir) / "ppo" / "overoptimisation.png")
    sources = sorted({p["source"] for p in curve["points"]})
    lines = ["", "## Over-optimisation: the reward model (proxy) against the oracle (gold)", "",
             f"Every PPO iteration's rollouts ({', '.join(sources)}), binned by √KL to the SFT model; "
             "RM score with its t-interval, acceptance with its Wilson interval (95 %).", "",
             "| √KL | iterations | JDs | RM score | oracle acceptance |", "|---:|---:|---:|---|---|"]
    for b in curve["by_sqrt_kl"]:
        lines.append(f"| {b['sqrt_kl']:.2f} | {b['iterations']} | {b['n']} | {fmt_value(b['rm_score'])} "
                     f"| {fmt_rate(b['accept_rate'])} |")
    lines += ["", f"**What it shows:** {curve['message']}.", ""]
    for name, bins_ in curve["by_episodes"].items():
        lines.append(f"Budget, PPO on the {name}: " + "; ".join(
            f"{b['range'][0]}–{b['range'][1]} episodes {fmt_rate(b['accept_rate'])}" for b in bins_) + ".")
    lines += greedy_markdown(curve["greedy"])
    lines += ["", f"![over-optimisation]({plot.relative_to(run_dir)})"
              + (" (both panels from the greedy checks)" if curve["greedy"].get("by_sqrt_kl") else "")]
    return lines
