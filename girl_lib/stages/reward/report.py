"""Small analysis helpers for the notebook: the per-example scores, calibration, plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...errors import GirlError
from ...metrics.scores import binary_auc
from ...pooling import token_scores
from ...scoring import chat_ids
from ...stats import cluster_bootstrap, paired_difference
from ...world import make_prompt
from .pairs import KINDS


def load_eval_scores(run_dir: Path) -> dict:
    """The per-example scores behind ``metrics.json`` (``pairs``, ``real``, ``generated``, ``sampled``)."""
    path = Path(run_dir) / "reward" / "eval_scores.json"
    if not path.is_file():
        raise GirlError(f"no {path}; run 'girl reward' first")
    return json.loads(path.read_text())


def _aligned(rows_a: list[dict], rows_b: list[dict], key, what: str, names: tuple[str, str]) -> list[tuple]:
    """Rows of two reward models' evaluations matched by ``key``; refused when the sets differ."""
    a, b = {key(r): r for r in rows_a}, {key(r): r for r in rows_b}
    if a.keys() != b.keys():
        only = sorted(map(str, a.keys() ^ b.keys()))[:3]
        raise GirlError(f"{what}: {names[0]} and {names[1]} were not evaluated on the same examples "
                        f"({len(a)} vs {len(b)}; e.g. {', '.join(only)}): compare reward models of one data stage")
    return [(a[k], b[k]) for k in sorted(a, key=str)]


def _auc_difference(pairs: list[tuple], seed: int) -> dict:
    """``AUC(a) - AUC(b)`` against the oracle on the same JDs, resampling seekers (both models together)."""
    labels = [int(ra["oracle_accept"]) for ra, _ in pairs]
    sa, sb = [ra["score"] for ra, _ in pairs], [rb["score"] for _, rb in pairs]

    def diff(idx):
        y = [labels[i] for i in idx]
        if not 0 < sum(y) < len(y):
            return None
        return binary_auc(y, [sa[i] for i in idx]) - binary_auc(y, [sb[i] for i in idx])

    out = cluster_bootstrap(diff, [ra["seeker_id"] for ra, _ in pairs], seed=seed, null=0.0)
    return {"diff": out["value"], "ci": out["ci"], "p_value": out.get("p_value"), "n": len(pairs),
            "n_seekers": out["n_groups"], "positives": sum(labels)}


def compare_reward_models(run_a: Path, run_b: Path, seed: int = 0) -> dict:
    """Two reward models evaluated on the same held-out examples, compared pairwise.

    For questions such as "does bf16 autocast cost the reward model accuracy?": train the reward
    stage twice on one data stage (and one SFT stage, which writes the generated JDs), once with
    ``--set model.dtype=float32``, each in its own run dir, then compare. Every figure is a
    paired difference ``a - b`` on the same examples, so the two models' shared luck cancels:

    * ``pairwise_accuracy``: the held-out pairs each model ranks right, exact McNemar test;
    * ``auc_real`` / ``auc_generated`` / ``auc_sampled``: the AUC against the oracle on real val
      JDs, on the SFT model's greedy JDs and on its sampled JDs (``reward.eval_samples``; ``None``
      when either model has none), a bootstrap over seekers (both models' scores resampled
      together, a seeker's samples as one cluster), with a two-sided bootstrap p-value.

    A pair of evaluations on different examples (another data stage, other sizes, sampled JDs
    that differ) is refused.
    """
    names = (str(run_a), str(run_b))
    ev_a, ev_b = load_eval_scores(run_a), load_eval_scores(run_b)
    pairs = _aligned(ev_a["pairs"], ev_b["pairs"], lambda r: r["id"], "held-out pairs", names)
    out = {"a": names[0], "b": names[1],
           "pairwise_accuracy": paired_difference([float(ra["chosen"] > ra["rejected"]) for ra, _ in pairs],
                                                  [float(rb["chosen"] > rb["rejected"]) for _, rb in pairs],
                                                  seed=seed)}
    for kind in KINDS:
        sel = [(ra, rb) for ra, rb in pairs if ra["kind"] == kind]
        out[f"pairwise_accuracy_{kind}"] = paired_difference(
            [float(ra["chosen"] > ra["rejected"]) for ra, _ in sel],
            [float(rb["chosen"] > rb["rejected"]) for _, rb in sel], seed=seed)
    for part, key in (("real", lambda r: (r["seeker_id"], r["job_id"])), ("generated", lambda r: r["seeker_id"]),
                      ("sampled", lambda r: (r["seeker_id"], r["sample"]))):
        a_rows, b_rows = ev_a.get(part, []), ev_b.get(part, [])
        if part == "sampled" and not (a_rows and b_rows):
            out["auc_sampled"] = None  # reward.eval_samples was 0 for one of them
            continue
        rows = _aligned(a_rows, b_rows, key, f"{part} JDs", names)
        differ = sum(ra.get("text") != rb.get("text") for ra, rb in rows)
        if differ:
            raise GirlError(f"{part} JDs: {differ} of {len(rows)} texts differ between {names[0]} and {names[1]} "
                            "(sampled on another machine or thread count?): the AUCs are not on the same JDs")
        out[f"auc_{part}"] = _auc_difference(rows, seed) if rows else None
    return out


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
