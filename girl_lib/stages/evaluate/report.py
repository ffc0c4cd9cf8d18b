"""The evaluation stage's part of ``report.md``: tables and plots from ``eval/metrics.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ... import plots
from ...generators import LABELS
from ...rundir import STAGE_FOLDERS

FOLDER = STAGE_FOLDERS["evaluate"]


QUALITY_KEYS = ("parse_rate", "p_accept", "accept_rate", "seeker_interest", "two_sided_rate", "skill_precision",
                "skill_recall", "hallucinated_skill_rate", "rouge_l", "bleu", "rm_score", "cosine_cv_jd",
                "mean_words", "mean_tokens", "eos_rate", "distinct_1", "distinct_2")


PLOTS = {"quality": "quality.png", "judge": "judge.png", "matching": "matching.png", "grounding": "grounding.png"}


def save_plots(metrics: dict, out: Path) -> dict[str, Path]:
    """The four evaluation figures as PNGs in ``out``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = {}
    figs = {
        "quality": plots.compare_bars({LABELS[a]: metrics["quality"][a] for a in metrics["arms"]},
                                      ("parse_rate", "accept_rate", "seeker_interest", "two_sided_rate",
                                       "skill_precision", "skill_recall", "hallucinated_skill_rate"),
                                      title="generation quality on test seekers (oracle)").figure,
        "judge": plots.judge_bars(metrics["judge"]["comparisons"]).figure,
        "grounding": plots.grounding_bars(metrics["grounding"]).figure,
    }
    if "gain" in metrics["matching"]:
        figs["matching"] = plots.matching_bars(metrics["matching"]).figure
    for name, fig in figs.items():
        fig.tight_layout()
        fig.savefig(out / PLOTS[name], dpi=110)
        plt.close(fig)
        paths[name] = out / PLOTS[name]
    return paths


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def quality_markdown(metrics: dict, keys: Sequence[str] = QUALITY_KEYS) -> list[str]:
    arms = [a for a in metrics["arms"] if a in metrics["quality"]]
    lines = ["| metric | " + " | ".join(LABELS[a] for a in arms) + " |", "|---|" + "---:|" * len(arms)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_f(metrics["quality"][a].get(k)) for a in arms) + " |")
    return lines


def judge_markdown(metrics: dict) -> list[str]:
    lines = ["| A vs B | dimension | win | tie | lose | advantage |", "|---|---|---:|---:|---:|---:|"]
    for c in metrics["judge"]["comparisons"].values():
        for dim in ("detail", "relevance", "conciseness"):
            r = c[dim]
            lines.append(f"| {LABELS[c['a']]} vs {LABELS[c['b']]} | {dim} | {r['win']:.2f} | {r['tie']:.2f} | "
                         f"{r['lose']:.2f} | {r['advantage']:+.2f} |")
    return lines


def matching_markdown(metrics: dict) -> list[str]:
    m = metrics["matching"]
    if "gain" not in m:
        return [f"matching skipped: {m.get('skipped')}"]
    lines = ["| model | features | test AUC | test LogLoss | cold AUC | cold LogLoss |", "|---|---|---:|---:|---:|---:|"]
    for model in ("logistic", "two_tower"):
        for fs in ("cv", "cv+generated"):
            r = m[model][fs]
            cells = []
            for s in ("test", "cold"):
                cells += [f"{_f(r[s]['auc_mean'])} ± {_f(r[s]['auc_std'])}",
                          f"{_f(r[s]['logloss_mean'])} ± {_f(r[s]['logloss_std'])}"]
            lines.append(f"| {model} | {fs} | " + " | ".join(cells) + " |")
    return lines


def grounding_markdown(metrics: dict) -> list[str]:
    g = metrics["grounding"]
    k = g["k"]
    lines = [f"| query | HR@{k} | NDCG@{k} | seekers |", "|---|---:|---:|---:|"]
    for q in ["cv"] + [a for a in metrics["arms"] if a in g["by_query"]]:
        r = g["by_query"][q]
        name = "CV only" if q == "cv" else f"generated JD ({LABELS[q]})"
        lines.append(f"| {name} | {_f(r[f'hr@{k}'])} | {_f(r[f'ndcg@{k}'])} | {r['n']} |")
    return lines


def report_markdown(run_dir: Path) -> list[str]:
    """The evaluation section of ``report.md`` (empty when the stage has not run)."""
    path = Path(run_dir) / FOLDER / "metrics.json"
    if not path.is_file():
        return []
    m = json.loads(path.read_text())
    lines = ["", "## Evaluation", "",
             f"{m['n_test_seekers']} test seekers, greedy JDs; embedder `{m['embedder']}`; matching and "
             f"`girl recommend` use the `{m['best_arm']}` arm.", "", "### Generation quality", ""]
    lines += quality_markdown(m) + ["", f"![quality]({FOLDER}/{PLOTS['quality']})", "",
                                    f"### Pairwise judge ({m['judge']['kind']}, both orders)", ""]
    lines += judge_markdown(m) + ["", f"![judge]({FOLDER}/{PLOTS['judge']})", "",
                                  "### Generation-enhanced matching (mean ± std over seeds)", ""]
    lines += matching_markdown(m)
    if (Path(run_dir) / FOLDER / PLOTS["matching"]).is_file():
        lines += ["", f"![matching]({FOLDER}/{PLOTS['matching']})"]
    lines += ["", "### Grounding: generated JD -> real postings", ""] + grounding_markdown(m)
    lines += ["", f"![grounding]({FOLDER}/{PLOTS['grounding']})"]
    return lines
