"""Plots the chapters and the report share (matplotlib only; every function returns the Axes)."""
from __future__ import annotations

from typing import Mapping, Sequence


def _axes(ax=None, figsize=(6, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def loss_curves(log_history: Sequence[Mapping], ax=None, title: str = "training loss"):
    """Training loss per logged step (and eval loss points) from a Trainer's ``log_history``."""
    ax = _axes(ax)
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train), marker=".", label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o", color="C3", label="eval loss (val)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / completion token)")
    ax.set_title(title)
    ax.legend()
    return ax


def compare_bars(reports: Mapping[str, Mapping[str, float]], keys: Sequence[str], ax=None,
                 title: str = "", ylim=(0, 1)):
    """Grouped bars: one group per metric ``key``, one bar per arm (e.g. zero-shot vs SFT)."""
    import numpy as np

    ax = _axes(ax, figsize=(max(6, 1.3 * len(keys)), 3.5))
    arms = list(reports)
    width = 0.8 / max(1, len(arms))
    x = np.arange(len(keys))
    for i, arm in enumerate(arms):
        values = [float(reports[arm].get(k) or 0.0) for k in keys]
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=arm)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [k.replace("_", "\n") for k in keys], fontsize=8)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend()
    return ax


# --------------------------------------------------------------------------------------------
# PPO (chapter 04): curves from <run-dir>/ppo/log.jsonl rows
# --------------------------------------------------------------------------------------------
PPO_CURVES = (
    ("objective/scores", "reward-model score"),
    ("oracle/accept_rate", "oracle: recruiter accepts"),
    ("objective/kl", "KL to SFT (nats / response)"),
    ("objective/entropy", "entropy (nats / token)"),
    ("response_length_mean", "response length (tokens)"),
    ("oracle/seeker_interest", "oracle: seeker interest"),
)


def ppo_curves(rows: Sequence[Mapping], curves=PPO_CURVES, ncols: int = 3, title: str = ""):
    """One small panel per logged metric against the PPO iteration; returns the figure."""
    import matplotlib.pyplot as plt

    nrows = -(-len(curves) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False)
    x = [r["iteration"] for r in rows]
    for ax, (key, label) in zip(axes.flat, curves):
        ax.plot(x, [r.get(key) for r in rows], marker=".")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def reward_vs_oracle(rows: Sequence[Mapping], ax=None, title: str = "reward-hacking watch"):
    """The reward model's score (left axis) and the oracle's verdict (right axis) per iteration.

    While both rise together, PPO is learning what the recruiter wants. A score that keeps
    rising while the oracle's acceptance stalls or falls is reward hacking: the policy found
    something the reward model likes and the recruiter does not.
    """
    ax = _axes(ax, figsize=(7, 3.5))
    x = [r["iteration"] for r in rows]
    ax.plot(x, [r["objective/scores"] for r in rows], marker=".", color="C0", label="RM score")
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward-model score", color="C0")
    ax2 = ax.twinx()
    ax2.plot(x, [r["oracle/accept_rate"] for r in rows], marker="s", color="C2", label="oracle accept rate")
    ax2.plot(x, [r["oracle/p_accept"] for r in rows], ls="--", color="C2", alpha=0.6, label="oracle p(accept)")
    ax2.set_ylabel("oracle (rollouts)", color="C2")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")
    ax.set_title(title)
    return ax


def kl_tradeoff(results: Sequence[Mapping], x: str = "kl", y: str = "score", ax=None,
                title: str = "reward vs KL across β"):
    """One point per β (``ppo.beta_sweep`` results): what the policy gained against how far it moved."""
    ax = _axes(ax, figsize=(5, 3.5))
    xs, ys = [r[x] for r in results], [r[y] for r in results]
    ax.plot(xs, ys, "o-")
    for r, xi, yi in zip(results, xs, ys):
        ax.annotate(f"β={r['beta']:g}", (xi, yi), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("KL to SFT (nats / response)" if x == "kl" else x)
    ax.set_ylabel("reward-model score" if y == "score" else y)
    ax.set_title(title)
    return ax


def _err(values: Sequence[Mapping]) -> list[list[float]]:
    """Matplotlib's asymmetric error bars from ``{"value", "ci"}`` records (0 where no interval)."""
    lo = [v["value"] - v["ci"][0] if v["ci"][0] is not None else 0.0 for v in values]
    hi = [v["ci"][1] - v["value"] if v["ci"][1] is not None else 0.0 for v in values]
    return [lo, hi]


def overoptimisation(curve: Sequence[Mapping], x: str = "sqrt_kl", ax=None, title: str = "proxy vs gold reward"):
    """Gao et al. (2022)'s plot from ``ppo.overopt.binned``: the reward model's raw score (proxy,
    left axis) and the oracle's acceptance (gold, right axis), each with its 95 % interval."""
    ax = _axes(ax, figsize=(6, 3.5))
    xs = [b[x] for b in curve]
    rm, acc = [b["rm_score"] for b in curve], [b["accept_rate"] for b in curve]
    ax.errorbar(xs, [v["value"] for v in rm], yerr=_err(rm), fmt="o-", color="C0", capsize=3,
                label="reward model (proxy)")
    ax.set_xlabel("√KL(π ‖ SFT)" if x == "sqrt_kl" else "episodes" if x == "episodes" else x)
    ax.set_ylabel("RM score (raw)", color="C0")
    ax2 = ax.twinx()
    ax2.errorbar(xs, [v["value"] for v in acc], yerr=_err(acc), fmt="s--", color="C2", capsize=3,
                 label="oracle acceptance (gold)")
    ax2.set_ylabel("oracle acceptance", color="C2")
    ax2.set_ylim(0, max(0.5, max((v["ci"][1] or 0) for v in acc) * 1.1))
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")
    ax.set_title(title)
    return ax


def budget(curves: Mapping[str, Sequence[Mapping]], ax=None, title: str = "budget: acceptance against episodes",
           ylabel: str = "oracle acceptance (rollouts)"):
    """The oracle's acceptance against episodes, one line per reward PPO optimised, with 95 %
    intervals: of the rollouts (``ppo.overopt.from_run``'s ``by_episodes``) or of the greedy
    checks (its ``greedy.by_episodes``)."""
    ax = _axes(ax, figsize=(6, 3.5))
    for i, (name, bins) in enumerate(curves.items()):
        acc = [b["accept_rate"] for b in bins]
        ax.errorbar([b["episodes"] for b in bins], [v["value"] for v in acc], yerr=_err(acc), fmt="o-",
                    color=f"C{i + 2}", capsize=3, label=f"PPO on the {name}")
    ax.set_xlabel("episodes (rollouts)")
    ax.set_ylabel(ylabel)
    if curves:
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title)
    return ax


# --------------------------------------------------------------------------------------------
# Evaluation (chapter 05): eval/metrics.json sections
# --------------------------------------------------------------------------------------------
_ARM_LABELS = {"zero_shot": "zero-shot", "sft": "SFT", "ppo": "PPO", "grpo": "GRPO", "rloo": "RLOO"}


def judge_bars(comparisons: Mapping[str, Mapping], dims=("detail", "relevance", "conciseness"), ax=None,
               title: str = "pairwise judge: A vs B (both orders)"):
    """Stacked horizontal bars win / tie / lose, one row per (comparison, dimension)."""
    rows = [(f"{_ARM_LABELS.get(c['a'], c['a'])} vs {_ARM_LABELS.get(c['b'], c['b'])}: {d}", c[d])
            for c in comparisons.values() for d in dims]
    ax = _axes(ax, figsize=(7, 0.35 * max(3, len(rows)) + 1))
    for y, (label, r) in enumerate(rows):
        left = 0.0
        for key, color in (("win", "C2"), ("tie", "0.75"), ("lose", "C3")):
            ax.barh(y, r[key], left=left, color=color, label=key if y == 0 else None)
            left += r[key]
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of test seekers")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def matching_bars(matching: Mapping, metric: str = "auc", ax=None,
                  title: str = "person-job matching: without / with generated-JD features"):
    """AUC (or LogLoss) per model and split, without vs with generated JDs, with 95 % bootstrap CIs."""
    import numpy as np

    groups = [(m, s) for m in ("logistic", "two_tower") if m in matching for s in ("test", "cold")
              if s in matching[m]["cv"]]
    ax = _axes(ax, figsize=(7, 3.5))
    x = np.arange(len(groups))
    for i, (fs, color) in enumerate((("cv", "C0"), ("cv+generated", "C1"))):
        cells = [matching[m][fs][s][metric] for m, s in groups]
        values = [c["value"] or 0.0 for c in cells]
        err = np.array([[max(0.0, (c["value"] or 0) - (c["ci"][0] if c["ci"][0] is not None else c["value"] or 0)),
                         max(0.0, (c["ci"][1] if c["ci"][1] is not None else c["value"] or 0) - (c["value"] or 0))]
                        for c in cells]).T
        bars = ax.bar(x + (i - 0.5) * 0.38, values, 0.38, yerr=err, capsize=3, color=color, label=fs)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, [f"{m}\n{s}" for m, s in groups], fontsize=8)
    ax.set_ylabel(metric.upper() if metric == "auc" else "LogLoss")
    if metric == "auc":
        ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
        ax.set_ylim(0.4, 1.0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def grounding_bars(grounding: Mapping, ax=None, title: str = "grounding: retrieve real postings"):
    """HR@K and NDCG@K per query source (the CV alone, then each arm's generated JD)."""
    k = grounding["k"]
    reports = {("CV only" if q == "cv" else _ARM_LABELS.get(q, q)): {f"HR@{k}": r[f"hr@{k}"], f"NDCG@{k}": r[f"ndcg@{k}"]}
               for q, r in grounding["by_query"].items()}
    return compare_bars(reports, (f"HR@{k}", f"NDCG@{k}"), ax=ax, title=title)
