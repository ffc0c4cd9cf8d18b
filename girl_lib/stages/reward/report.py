"""Small analysis helpers for the notebook: the per-example scores, calibration, plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...errors import GirlError
from ...pooling import token_scores
from ...scoring import chat_ids
from ...world import make_prompt
from .pairs import KINDS


def load_eval_scores(run_dir: Path) -> dict:
    """The per-example scores behind ``metrics.json`` (``pairs``, ``real``, ``generated``)."""
    path = Path(run_dir) / "reward" / "eval_scores.json"
    if not path.is_file():
        raise GirlError(f"no {path}; run 'girl reward' first")
    return json.loads(path.read_text())


def calibration_bins(scores: Sequence[float], labels: Sequence[int], n_bins: int = 5) -> list[dict]:
    """Equal-count bins of the score: mean score and the oracle's acceptance rate in each.

    A useful reward model gives a rising staircase: higher score, more often accepted.
    """
    pairs = sorted(zip(scores, labels))
    n_bins = max(1, min(n_bins, len(pairs)))
    out = []
    for b in range(n_bins):
        chunk = pairs[b * len(pairs) // n_bins:(b + 1) * len(pairs) // n_bins]
        if chunk:
            out.append({"score": sum(s for s, _ in chunk) / len(chunk),
                        "accept_rate": sum(int(y) for _, y in chunk) / len(chunk), "n": len(chunk)})
    return out


def plot_report(run_dir: Path, n_bins: int = 5):
    """Three panels from ``eval_scores.json``: score histograms by oracle label, calibration,
    and pairwise accuracy per pair kind. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    ev = load_eval_scores(run_dir)
    metrics = json.loads((Path(run_dir) / "reward" / "metrics.json").read_text())
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
    real = ev["real"]
    edges = np.histogram_bin_edges([r["score"] for r in real] or [0.0], bins=20)  # shared by both labels
    for label, color, name in ((True, "tab:green", "oracle accepts"), (False, "tab:red", "oracle rejects")):
        ax[0].hist([r["score"] for r in real if r["oracle_accept"] == label], bins=edges, alpha=0.6,
                   color=color, label=name)
    ax[0].set(title=f"val applications (AUC {_fmt(metrics.get('auc_real'))})", xlabel="reward score", ylabel="count")
    ax[0].legend()
    for rows, name, marker in ((real, "real JDs", "o"), (ev["generated"], "SFT-generated JDs", "s")):
        if rows:
            bins = calibration_bins([r["score"] for r in rows], [r["oracle_accept"] for r in rows], n_bins)
            ax[1].plot([b["score"] for b in bins], [b["accept_rate"] for b in bins], marker=marker, label=name)
    ax[1].set(title="calibration: score bin vs oracle acceptance", xlabel="mean score in bin",
              ylabel="oracle acceptance rate", ylim=(-0.05, 1.05))
    ax[1].legend()
    names = ["overall", *KINDS]
    accs = [metrics.get("pairwise_accuracy"), *(metrics.get(f"pairwise_accuracy_{k}") for k in KINDS)]
    ns = [metrics.get("n_pairs"), *(metrics.get(f"n_pairs_{k}") for k in KINDS)]
    ax[2].bar(names, [a or 0 for a in accs], color=["tab:gray", "tab:blue", "tab:orange"])
    for i, (a, n) in enumerate(zip(accs, ns)):
        ax[2].text(i, (a or 0) + 0.02, f"{_fmt(a)}\nn={n}", ha="center")
    ax[2].axhline(0.5, ls="--", color="k", lw=0.8)
    ax[2].set(title="held-out pairwise accuracy", ylim=(0, 1.15))
    fig.tight_layout()
    return fig


def token_report(model, tokenizer, cv_text: str, jd_texts: Sequence[str], labels: Sequence[str] = (),
                 words: bool = True):
    """Where a score comes from (``response_mean`` pooling): one bar chart per JD of its tokens'
    contributions ``w · h_t`` (the score is their mean), red below the JD's mean, green above.
    ``words=True`` averages the sub-word tokens of each word so the x axis stays readable.
    Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(jd_texts), 1, figsize=(16, 2.6 * len(jd_texts)), squeeze=False)
    for k, jd in enumerate(jd_texts):
        toks = token_scores(model, tokenizer, chat_ids(tokenizer, make_prompt(cv_text), jd))
        mean = sum(s for _, s in toks) / len(toks)
        if words:  # a new word starts at a token that begins with a space or a newline
            merged: list[list] = []
            for t, s in toks:
                if merged and not t[:1].isspace() and t[:1] not in "·@;":
                    merged[-1][0] += t
                    merged[-1][1].append(s)
                else:
                    merged.append([t, [s]])
            toks = [(t, sum(v) / len(v)) for t, v in merged]
        ax = axes[k, 0]
        vals = [s - mean for _, s in toks]
        ax.bar(range(len(toks)), vals, color=["tab:green" if v >= 0 else "tab:red" for v in vals])
        ax.set_xticks(range(len(toks)), [t.strip() or repr(t) for t, _ in toks], rotation=90, fontsize=7)
        label = labels[k] if k < len(labels) else f"JD {k + 1}"
        ax.set(title=f"{label}: score {mean:+.2f}, the mean of its tokens' contributions "
                     "(bars: each word's contribution minus that mean)", ylabel="contribution − score")
    fig.tight_layout()
    return fig


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
