"""The evaluation stage's part of ``report.md``: tables and plots from ``eval/metrics.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ... import plots
from ...generators import LABELS
from ...rundir import STAGE_FOLDERS
from ...stats import fmt_diff, fmt_rate, fmt_value

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
        "judge": plots.judge_bars(metrics["judge"]["comparisons"], dims=_judge_dims(metrics)).figure,
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


def _judge_dims(metrics: dict) -> tuple[str, ...]:
    first = next(iter(metrics["judge"]["comparisons"].values()), {})
    return tuple(d for d in first if isinstance(first[d], dict) and "win" in first[d])


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _cell(row: dict, key: str) -> str:
    """A rate with its Wilson interval where the row has one (``20.0 % [12.1, 31.2]``), else the value."""
    if key in row.get("intervals", {}):
        return fmt_rate(row["intervals"][key])
    return _f(row.get(key))


def quality_markdown(metrics: dict, keys: Sequence[str] = QUALITY_KEYS) -> list[str]:
    arms = [a for a in metrics["arms"] if a in metrics["quality"]]
    # Arms may write for different numbers of seekers (the zero-shot arm for fewer): n per column.
    lines = ["| metric | " + " | ".join(f"{LABELS[a]} (n = {metrics['quality'][a].get('n')})" for a in arms) + " |",
             "|---|" + "---:|" * len(arms)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_cell(metrics["quality"][a], k) for a in arms) + " |")
    return lines


def paired_markdown(metrics: dict, keys: Sequence[str] = ("accept_rate", "two_sided_rate", "parse_rate",
                                                        "seeker_interest")) -> list[str]:
    """Every later arm minus every earlier one on the same test seekers: difference, 95 % CI, n, p."""
    lines = ["| A − B | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for c in metrics.get("paired", {}).values():
        cells = [fmt_diff(c[k], percent=k.endswith("_rate")) for k in keys if k in c]
        lines.append(f"| {LABELS[c['a']]} − {LABELS[c['b']]} | " + " | ".join(cells) + " |")
    return lines


def judge_markdown(metrics: dict) -> list[str]:
    lines = ["| A vs B | dimension | win [95 % CI] | tie | lose [95 % CI] | advantage (paired CI, n, p) |",
             "|---|---|---:|---:|---:|---|"]
    for c in metrics["judge"]["comparisons"].values():
        for dim in [d for d in c if isinstance(c[d], dict) and "win" in c[d]]:
            r = c[dim]
            win = fmt_rate({"rate": r["win"], "ci": r["win_ci"]}) if "win_ci" in r else f"{r['win']:.2f}"
            lose = fmt_rate({"rate": r["lose"], "ci": r["lose_ci"]}) if "lose_ci" in r else f"{r['lose']:.2f}"
            adv = fmt_diff(r["advantage_test"]) if "advantage_test" in r else f"{r['advantage']:+.2f}"
            lines.append(f"| {LABELS[c['a']]} vs {LABELS[c['b']]} | {dim} | {win} | {r['tie']:.2f} | {lose} | {adv} |")
    return lines


def matching_markdown(metrics: dict) -> list[str]:
    m = metrics["matching"]
    if "gain" not in m:
        return [f"matching skipped: {m.get('skipped')}"]
    lines = ["| model | features | test AUC | test LogLoss | cold AUC | cold LogLoss |", "|---|---|---:|---:|---:|---:|"]
    for model in ("logistic", "two_tower"):
        for fs in ("cv", "cv+generated"):
            r = m[model][fs]
            cells = [fmt_value(r[s][k]) for s in ("test", "cold") if s in r for k in ("auc", "logloss")]
            lines.append(f"| {model} | {fs} | " + " | ".join(cells) + " |")
    lines += ["", "| model | gain from generated JDs | test | cold start |", "|---|---|---|---|"]
    for model in ("logistic", "two_tower"):
        for k in ("auc", "logloss"):
            g = m["gain"][model]
            lines.append(f"| {model} | {k} | " + " | ".join(fmt_diff(g[s][k], digits=3, percent=False)
                                                           for s in ("test", "cold") if s in g) + " |")
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
    lines += quality_markdown(m) + ["", "Paired differences on the same seekers (exact McNemar for rates, "
                                    "Wilcoxon for means):", ""] + paired_markdown(m)
    lines += ["", f"![quality]({FOLDER}/{PLOTS['quality']})", "",
              f"### Pairwise judge ({m['judge']['kind']}, both orders)", ""]
    lines += judge_markdown(m) + ["", f"![judge]({FOLDER}/{PLOTS['judge']})", "",
                                  "### Generation-enhanced matching (95 % CIs over test seekers)", ""]
    lines += matching_markdown(m)
    if (Path(run_dir) / FOLDER / PLOTS["matching"]).is_file():
        lines += ["", f"![matching]({FOLDER}/{PLOTS['matching']})"]
    lines += ["", "### Grounding: generated JD -> real postings", ""] + grounding_markdown(m)
    lines += ["", f"![grounding]({FOLDER}/{PLOTS['grounding']})"]
    return lines
