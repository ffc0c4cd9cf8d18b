"""The papers' claims, one row each, with the kit's measured effect and a computed verdict.

Each row reads a paired difference (or a bootstrap difference) that a stage already wrote with
its interval, n and p-value, and turns it into a verdict with :func:`girl_lib.stats.verdict`:
*reproduced* when the whole 95 % interval lies above zero and the paired test agrees (p < 0.05),
*not reproduced* when the interval lies below zero, *inconclusive at this n* otherwise. Nothing here is typed in by hand: a claim whose
stage has not run is simply absent.

Every chapter ends with the box :func:`chapter_box`, "What the paper claims / what this run
shows": the claims its stage can judge, with their verdicts, and the stage's key figures with
their 95 % intervals, all read from the run directory the chapter ran on. So the box is true for
whatever profile ran; no figure in a chapter's text has to be typed in by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .metrics.scores import binary_auc
from .rundir import is_complete, stage_dir
from .stats import cluster_bootstrap, fmt_diff, fmt_rate, fmt_value, rate, verdict
from .world import LEVELS, load_jsonl

PAPER_GIRL = "GIRL (arXiv 2307.02157)"
PAPER_GENREC = "GenRec (arXiv 2307.00457)"
PAPER_INSTRUCTGPT = "InstructGPT (arXiv 2203.02155)"
PAPER_GAO = "Gao, Schulman & Hilton (arXiv 2210.10760)"


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


# --------------------------------------------------------------------------------------------
# The box at the end of every chapter
# --------------------------------------------------------------------------------------------
BOX_TITLE = "What the paper claims / what this run shows"
CHAPTERS = ("00", "01", "02", "03", "04", "05", "06")


def _read(run_dir: Path, stage: str, name: str = "metrics.json") -> dict | None:
    path = stage_dir(run_dir, stage) / name
    return json.loads(path.read_text()) if is_complete(stage_dir(run_dir, stage)) and path.is_file() else None


def figures_markdown(rows: list[tuple[str, str, object]]) -> list[str]:
    """A table of a stage's key figures: ``(figure, value [95 % CI], n)`` per row."""
    if not rows:
        return []
    return ["| figure | value [95 % CI] | n |", "|---|---|---|"] + [f"| {f} | {v} | {n} |" for f, v, n in rows]


def _not_run(stage: str, command: str) -> list[str]:
    return [f"The `{stage}` stage is not complete in this run directory, so there is nothing to show yet: "
            f"run this chapter (or `{command}`) first."]


def _versus_chance(accuracy: float | None, n: int) -> dict:
    """Pairwise accuracy as ``accuracy − 0.5`` with its Wilson interval shifted likewise (k = accuracy · n)."""
    if accuracy is None or not n:
        return {"diff": None, "ci": [None, None], "n": n, "p_value": None}
    r = rate(round(accuracy * n), n)
    return {"diff": r["rate"] - 0.5, "ci": [r["ci"][0] - 0.5, r["ci"][1] - 0.5], "n": n, "p_value": None}


def _auc_interval(rows: list[dict], seed: int = 0) -> dict:
    """AUC of ``score`` against ``oracle_accept`` over ``rows``, with a bootstrap interval over seekers."""
    if not rows:
        return {"value": None, "ci": [None, None]}
    labels = np.asarray([int(r["oracle_accept"]) for r in rows])
    scores = np.asarray([float(r["score"]) for r in rows])

    def auc(idx):
        y = labels[idx]
        return binary_auc(y, scores[idx]) if 0 < y.sum() < len(y) else None

    return cluster_bootstrap(auc, [r["seeker_id"] for r in rows], seed=seed)


def box_overview(run_dir: Path) -> list[str]:
    """Chapter 00: every claim the run directory can judge so far, and the stages it holds."""
    done = [s for s in ("data", "sft", "reward", "ppo", "genrec", "evaluate") if is_complete(stage_dir(run_dir, s))]
    lines = ["**The papers.** GIRL: an LLM fine-tuned on CV→JD pairs (SFT), a reward model trained on recruiter "
             "feedback, then PPO against it, writes the JD that suits a job seeker; the generated JDs also help a "
             "matching model. GenRec: an LLM writes the title of a user's next item.", "",
             f"**This run directory** holds the complete stages: {', '.join(done) or 'none yet'}. "
             "Every claim they can judge so far:", ""]
    return lines + claims_markdown(claims_for(run_dir))


def box_data(run_dir: Path) -> list[str]:
    """Chapter 01: the two sides of the synthetic world, measured on its applications."""
    lines = ["**The paper** trains on a large real recruitment platform: CVs, JDs and recruiters' decisions. Its "
             "premise is two-sided: what a seeker applies to is not what a recruiter accepts, which is why a "
             "reward model learns from recruiter feedback after SFT. **This run** replaces the platform with a "
             "synthetic world where that gap is known; its key figures:", ""]
    data = stage_dir(run_dir, "data")
    if not is_complete(data):
        return lines + _not_run("data", "girl data")
    seekers = {s["id"]: s for s in load_jsonl(data / "seekers.jsonl", "seekers")}
    jobs = {j["id"]: j for j in load_jsonl(data / "jobs.jsonl", "jobs")}
    apps = load_jsonl(data / "applications.jsonl", "applications")
    step = [LEVELS.index(jobs[a["job_id"]]["level"]) - LEVELS.index(seekers[a["seeker_id"]]["level"]) for a in apps]
    acc = [bool(a["accepted"]) for a in apps]

    def accepted(sel):
        picked = [a for a, keep in zip(acc, sel) if keep]
        return rate(sum(picked), len(picked))

    up = rate(sum(s > 0 for s in step), len(step))
    rows = [("seekers / jobs / applications", f"{len(seekers)} / {len(jobs)} / {len(apps)}", ""),
            ("applications that aim above the seeker's level", fmt_rate(up), up["n"])]
    for label, sel in (("acceptance, all applications", [True] * len(apps)),
                       ("acceptance, same level", [s == 0 for s in step]),
                       ("acceptance, one level up", [s == 1 for s in step])):
        r = accepted(sel)
        rows.append((label, fmt_rate(r), r["n"]))
    return lines + figures_markdown(rows)


def box_sft(run_dir: Path) -> list[str]:
    """Chapter 02: SFT against the zero-shot base, through the oracle, on held-out seekers."""
    lines = [f"**The paper**, {PAPER_GIRL}: supervised fine-tuning on CV→JD pairs teaches the LLM to write JDs "
             "that suit the seeker, better than the base LLM does.", ""]
    m = _read(run_dir, "sft")
    if m is None:
        return lines + _not_run("sft", "girl sft")
    ov = m.get("oracle_val", {})
    rows = []
    paired = ov.get("sft_vs_zero_shot", {})
    if "accept_rate" in paired:
        rows.append(_row("SFT writes JDs recruiters accept more often than the zero-shot base", PAPER_GIRL,
                         "oracle acceptance, SFT − zero-shot, val seekers", paired["accept_rate"], percent=True))
    ev = _read(run_dir, "evaluate")
    rows += [r for r in (generation_claims(ev) if ev else []) if "zero-shot" in r["claim"]]
    figures = []
    for arm, label in (("sft", "SFT"), ("zero_shot", "zero-shot base")):
        rep = ov.get(arm, {})
        for key, what in (("parse_rate", "JDs that parse"), ("accept_rate", "recruiter acceptance (oracle)"),
                          ("two_sided_rate", "two-sided match")):
            r = rep.get("intervals", {}).get(key)
            if r:
                figures.append((f"{what}, {label}, val seekers", fmt_rate(r), r["n"]))
    if m.get("eval_loss") is not None:
        figures.append(("eval loss (mean NLL per JD token)", f"{m['eval_loss']:.3f}", m.get("eval_examples")))
    return lines + claims_markdown(rows) + [""] + figures_markdown(figures)


def box_reward(run_dir: Path) -> list[str]:
    """Chapter 03: the reward model ranks held-out pairs, and agrees with the oracle, beyond chance?"""
    lines = [f"**The papers**, {PAPER_INSTRUCTGPT} and {PAPER_GIRL}: a reward model trained on pairwise "
             "comparisons predicts which of two answers the judges prefer, on pairs it has not seen.", ""]
    m = _read(run_dir, "reward")
    if m is None:
        return lines + _not_run("reward", "girl reward")
    rows = [_row("The reward model ranks held-out pairs better than chance", PAPER_INSTRUCTGPT,
                 "pairwise accuracy − 0.5, val pairs", _versus_chance(m.get("pairwise_accuracy"), m.get("n_pairs", 0)),
                 percent=True)]
    figures = []
    for kind in ("feedback", "hard_negative", "generated"):
        acc, n = m.get(f"pairwise_accuracy_{kind}"), m.get(f"n_pairs_{kind}", 0)
        if acc is not None and n:
            figures.append((f"pairwise accuracy, {kind.replace('_', ' ')} pairs", fmt_rate(rate(round(acc * n), n)), n))
    scores = _read(run_dir, "reward", "eval_scores.json") or {}
    for key, what in (("real", "AUC against the oracle, real val JDs"),
                      ("generated", "AUC against the oracle, SFT-written val JDs")):
        v = _auc_interval(scores.get(key, []))
        if v.get("value") is not None:
            figures.append((what, fmt_value(v), len(scores.get(key, []))))
    spot = m.get("blind_spot", {})
    if spot.get("n"):
        below = "yes" if spot["zero_shot_below_sft"] else "**no: a blind spot PPO can exploit**"
        figures.append(("mean score, zero-shot JDs vs SFT JDs (zero-shot below?)",
                        f"{spot['zero_shot_rm_mean']:+.2f} vs {spot['sft_rm_mean']:+.2f} ({below})", spot["n"]))
    return lines + claims_markdown(rows) + [""] + figures_markdown(figures)


def box_ppo(run_dir: Path) -> list[str]:
    """Chapter 04: PPO against SFT on held-out seekers, the reward model's view beside the oracle's."""
    lines = [f"**The papers.** {PAPER_GIRL}: PPO against the reward model aligns the generator with recruiter "
             f"feedback, so recruiters accept its JDs more often than the SFT model's. {PAPER_GAO}: optimising a "
             "learned reward model raises its score further than the true reward; past a point the true reward "
             "falls. Here the oracle is the true reward.", ""]
    m = _read(run_dir, "ppo")
    if m is None:
        return lines + _not_run("ppo", "girl ppo")
    ev = m.get("eval", {})
    rows = []
    if "accept_rate_diff" in m:
        rows.append(_row("RL (PPO) writes JDs recruiters accept more often than SFT", PAPER_GIRL,
                         "oracle acceptance, PPO − SFT, val seekers", m["accept_rate_diff"], percent=True))
    full_eval = _read(run_dir, "evaluate")
    rows += [r for r in (generation_claims(full_eval) if full_eval else []) if "(PPO)" in r["claim"]]
    figures = []
    paired = ev.get("paired", {})
    if "p_accept" in paired:
        figures.append(("mean acceptance probability, PPO − SFT (oracle)", fmt_diff(paired["p_accept"], 3, False), ""))
    if "two_sided_rate" in paired:
        figures.append(("two-sided match, PPO − SFT (oracle)", fmt_diff(paired["two_sided_rate"]), ""))
    if "rm_score_gain" in m:
        figures.append(("reward-model score, PPO − SFT (mean, no interval)", f"{m['rm_score_gain']:+.3f}",
                        ev.get("n_seekers", "")))
    if ev.get("kl_exact_mean") is not None:
        figures.append(("exact KL(PPO ‖ SFT) along PPO's greedy JDs, nats", f"{ev['kl_exact_mean']:.3f}",
                        ev.get("n_seekers", "")))
    out = lines + claims_markdown(rows) + [""] + figures_markdown(figures)
    if "rm_score_gain" in m and rows:
        rose = m["rm_score_gain"] > 0
        oracle_up = rows[0]["verdict"] == "reproduced"
        if rose and not oracle_up:
            out += ["", "The reward model's score rose while the oracle's acceptance did not rise measurably: the "
                    "pattern Gao et al. describe, or a run too short and too small to show a gain. The "
                    "reward-hacking watch above tells the two apart over iterations."]
        elif rose and oracle_up:
            out += ["", "The reward model's score and the oracle's acceptance rose together: at this KL the learned "
                    "reward still points the way the true one does."]
        else:
            out += ["", "The reward model's score did not rise on held-out seekers: PPO found no direction the "
                    "reward model prefers within this budget and KL leash."]
    return out


def box_evaluation(run_dir: Path) -> list[str]:
    """Chapter 05: every generation and matching claim of GIRL, on the test seekers."""
    lines = [f"**The paper**, {PAPER_GIRL}, claims (a) zero-shot < SFT < PPO on how well the written JD suits the "
             "seeker, and (b) that generated JDs, as extra features, improve a person–job matching model, more "
             "so in cold start.", ""]
    ev = _read(run_dir, "evaluate")
    if ev is None:
        return lines + _not_run("evaluate", "girl evaluate")
    return lines + claims_markdown(generation_claims(ev) + matching_claims(ev))


def box_genrec(run_dir: Path) -> list[str]:
    """Chapter 06: GenRec against the ID-based recommender, and every method's HR@10."""
    lines = [f"**The paper**, {PAPER_GENREC}: an LLM that writes the next item's title recommends well; here it is "
             "compared with popularity, first-order Markov transitions and an ID-based SASRec.", ""]
    m = _read(run_dir, "genrec")
    if m is None:
        return lines + _not_run("genrec", "girl genrec")
    figures = [(f"HR@10, {name}", fmt_rate(v["intervals"]["hr@10"]), v["intervals"]["hr@10"]["n"])
               for name, v in m.items() if isinstance(v, dict) and "hr@10" in v.get("intervals", {})]
    return lines + claims_markdown(genrec_claims(m)) + [""] + figures_markdown(figures)


BOXES = {"00": box_overview, "01": box_data, "02": box_sft, "03": box_reward, "04": box_ppo,
         "05": box_evaluation, "06": box_genrec}


def chapter_box(chapter: str, run_dir: Path) -> str:
    """The markdown of chapter ``chapter``'s closing box, from what ``run_dir`` holds now.

    A heading, the paper's claim in words, then the claims the chapter's stage can judge (with
    computed verdicts, :func:`claims_markdown`) and the stage's key figures with their 95 %
    intervals. A stage that has not run says so instead of showing a figure.
    """
    if chapter not in BOXES:
        raise ValueError(f"no box for chapter {chapter!r}; chapters: {', '.join(CHAPTERS)}")
    return "\n".join([f"### {BOX_TITLE}", ""] + BOXES[chapter](Path(run_dir)))
