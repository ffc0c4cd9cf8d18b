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
from ...stats import fmt_rate, fmt_value, rate


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
    proxy_up = _above(last["rm_score"], first["rm_score"])
    gold_up = _above(last["accept_rate"], first["accept_rate"])
    gold_fell = peak is not last and _above(peak["accept_rate"], last["accept_rate"])
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


def _logs(run_dir: Path) -> dict[str, list[dict]]:
    """Every PPO log of a run dir, by source: the stage itself, each β of a sweep, each long run."""
    found = {"ppo": _read_rows(run_dir / "ppo" / "log.jsonl")}
    for log in sorted(run_dir.glob("beta_sweep/beta_*/ppo/log.jsonl")):
        found[log.parent.parent.name] = _read_rows(log)
    for log in sorted(run_dir.glob("long_run/*/ppo/log.jsonl")):
        found[f"long run ({log.parent.parent.name})"] = _read_rows(log)
    return {k: v for k, v in found.items() if v}


def from_run(run_dir: Path, bins: int = 5) -> dict:
    """The curves of a run dir. Over-optimisation (against √KL): every run that optimised the
    reward model (the stage, a β sweep, ``long_run/rm``). Budget (against episodes): the longest
    run per reward (``long_run/<source>`` when there is one, else the stage)."""
    logs = _logs(Path(run_dir))
    proxy = [p for src, rows in logs.items() if src != "long run (oracle)" for p in points(rows, src)]
    if not proxy:
        return {"points": [], "by_sqrt_kl": [], "by_episodes": {}, "message": "no PPO log in this run dir"}
    by_kl = binned(proxy, "sqrt_kl", bins)
    budget = {"learned RM": logs.get("long run (rm)") or logs.get("ppo"), "oracle reward": logs.get("long run (oracle)")}
    by_episodes = {name: binned(points(rows, name), "episodes", bins) for name, rows in budget.items() if rows}
    return {"points": proxy, "by_sqrt_kl": by_kl, "by_episodes": by_episodes, "message": message(by_kl)}


def save_plot(curve: Mapping, path: Path) -> Path:
    """The proxy-vs-gold plot (against √KL) and the budget plot (acceptance against episodes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    plots.overoptimisation(curve["by_sqrt_kl"], ax=left, title="over-optimisation: proxy vs gold")
    plots.budget(curve["by_episodes"], ax=right)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    lines += ["", f"![over-optimisation]({plot.relative_to(run_dir)})"]
    return lines
