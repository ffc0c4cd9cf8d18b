"""Greedy checks of a PPO run's snapshots: the budget curve and the over-optimisation curve.

PPO's log watches its own rollouts, sampled at ``ppo.temperature``; at this scale a third of them
do not parse, so their acceptance says little about the greedy policy that the evaluation judges
(the log's acceptance stays flat while the greedy JDs' acceptance rises). With
``ppo.snapshot_every = k`` the loop keeps the adapter every ``k`` iterations (``ppo/snapshots/``);
:func:`check_snapshots` then writes each snapshot's greedy JDs for the same held-out val seekers
as PPO's own final check and records, per snapshot:

* the oracle's acceptance (Wilson interval) and PPO − SFT, paired (bootstrap CI, exact McNemar);
* the reward model's mean raw score (t-interval): the proxy;
* the exact ``KL(π ‖ π_SFT)`` summed along those greedy JDs (on the first ``kl_seekers`` of them).

Iteration 0 is the SFT model itself (KL 0). Against episodes the rows are the budget curve (where
does acceptance saturate?); against √KL they are Gao, Schulman and Hilton (2022)'s curve, the
proxy and the gold reward on the same greedy JDs.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ...config import Profile
from ...errors import GirlError
from ...generators import load_policy
from ...rundir import atomic_write_json
from ...scoring import load_reward_model
from ...stats import paired_difference, rate
from ...world import Oracle
from .checkpoint import CHECKS, CHECKS_TEXTS, SNAPSHOTS, list_snapshots, read_log
from .evaluate import evaluate
from .grpo_rloo import read_metrics
from .policy import PolicyWithValueHead


def mean_ci(values: Sequence[float]) -> dict:
    """``{"value", "ci"}``: a mean with its 95 % t-interval (no interval below two values)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return {"value": None, "ci": [None, None]}
    m = float(x.mean())
    if len(x) < 2:
        return {"value": m, "ci": [None, None]}
    half = float(sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return {"value": m, "ci": [m - half, m + half]}


def texts_digest(texts: Sequence[str]) -> str:
    """A short fingerprint of a list of JDs: two checks wrote the same JDs exactly when it matches."""
    return hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()[:16]


def check_row(iteration: int, episodes: int, report: dict, rm_scores: Sequence[float], kl: float | None,
              sft_report: dict, seed: int = 0, texts: Sequence[str] | None = None) -> dict:
    """One snapshot's figures from its oracle report and RM scores; PPO − SFT paired on the same seekers."""
    accepted = report["outcomes"]["accepted"]
    return {"texts_digest": texts_digest(texts) if texts is not None else None,
        "iteration": iteration, "episodes": episodes, "n": report["n"],
        "accept_rate": {"value": report["accept_rate"], **rate(sum(accepted), len(accepted))},
        "vs_sft": paired_difference(accepted, sft_report["outcomes"]["accepted"], seed=seed),
        "seeker_interest": report["seeker_interest"], "parse_rate": report["parse_rate"],
        "p_accept": report["p_accept"], "mean_words": report["mean_words"],
        "rm_score": mean_ci(rm_scores),
        "kl_exact": kl, "sqrt_kl": math.sqrt(max(0.0, kl)) if kl is not None else None,
        "accepted": accepted,
    }


def read_checks(run_dir: Path) -> list[dict]:
    """The rows of ``<run_dir>/ppo/checks.json``, by iteration (``[]`` when there is none)."""
    path = Path(run_dir) / "ppo" / CHECKS
    if not path.is_file():
        return []
    return sorted(json.loads(path.read_text())["rows"], key=lambda r: r["iteration"])


def check_snapshots(cfg: Profile, run_dir: Path, kl_seekers: int = 32, log=print) -> list[dict]:
    """Greedy JDs of every snapshot in ``<run_dir>/ppo/snapshots/`` for the val seekers of PPO's own
    check (``ppo.eval_seekers``, else ``sft.oracle_eval_seekers``); rows into ``ppo/checks.json``.

    Resumable: a snapshot already in ``checks.json`` is not checked again. Each check costs one
    greedy generation of the val seekers plus the exact KL on ``kl_seekers`` of them. The JDs
    themselves go to ``ppo/checks_texts.json`` (by iteration), to read how they change.

    A reloaded snapshot holds the same weights as the policy in memory at that iteration, but its
    greedy JDs need not match that policy's to the character: once measured (the last snapshot of
    a 16-iteration run against the stage's own final check, 128 val seekers), the oracle's
    verdicts agreed on every seeker and the mean RM score within 0.002, the texts did not. Most
    likely floating-point near-ties between two tokens, which the last bits of a matmul decide.
    """
    run_dir = Path(run_dir)
    out = run_dir / "ppo"
    snaps = list_snapshots(out)
    if not snaps:
        raise GirlError(f"no snapshots in {out / SNAPSHOTS}; train PPO with --set ppo.snapshot_every=N first")
    rows = {r["iteration"]: r for r in read_checks(run_dir)}
    texts_path = out / CHECKS_TEXTS
    texts = json.loads(texts_path.read_text())["texts"] if texts_path.is_file() else {}
    episodes = {int(r["iteration"]): int(r["episodes"]) for r in read_log(run_dir)}
    rm, rm_tok = load_reward_model(cfg, run_dir)
    oracle = Oracle(noise=cfg.data.recruiter_noise)
    for iteration, snap in snaps:
        if iteration in rows:
            continue
        t0 = time.time()
        policy, tok = load_policy(cfg, run_dir, adapter_dir=snap, is_trainable=False)
        ev = evaluate(cfg, run_dir, PolicyWithValueHead(policy), tok, rm, rm_tok, oracle, kl_seekers=kl_seekers)
        sft = ev["sft"]["report"]
        if 0 not in rows:  # the starting point: the SFT model's own greedy JDs, KL 0
            rows[0] = check_row(0, 0, sft, ev["sft"]["rm_scores"], 0.0, sft, seed=cfg.seed, texts=ev["texts"]["sft"])
        rows[iteration] = check_row(iteration, episodes.get(iteration, iteration * cfg.ppo.rollout_batch_size),
                                    ev["ppo"]["report"], ev["ppo"]["rm_scores"], ev.get("kl_exact_mean"), sft,
                                    seed=cfg.seed, texts=ev["texts"]["ppo"])
        rows[iteration]["seconds"] = round(time.time() - t0, 1)
        texts.setdefault("0", ev["texts"]["sft"])
        texts[str(iteration)] = ev["texts"]["ppo"]
        atomic_write_json(texts_path, {"seeker_ids": ev["seeker_ids"], "texts": texts})
        atomic_write_json(out / CHECKS, {"n_seekers": ev["n_seekers"], "kl_seekers": ev.get("kl_exact_n"),
                                         "seeker_ids": ev["seeker_ids"],
                                         "rows": [rows[k] for k in sorted(rows)]})
        r = rows[iteration]
        log(f"[girl] check of iteration {iteration}: accept {100 * r['accept_rate']['value']:.1f} % "
            f"(PPO − SFT {100 * r['vs_sft']['diff']:+.1f} pts), RM {r['rm_score']['value']:.2f}, "
            f"KL {r['kl_exact']:.2f} ({r['seconds']:.0f} s)")
        del policy
    return [rows[k] for k in sorted(rows)]


def extrapolate(rows: Sequence[Mapping], target: float = 0.10) -> dict:
    """Episodes at which PPO − SFT acceptance would reach ``target``: a straight line through the
    origin (iteration 0 is SFT, gain 0) fitted by least squares to the checks' paired gains.

    A projection, not a measurement: it assumes the gain keeps growing linearly with episodes,
    which a saturating curve does not. ``None`` when the fitted slope is not positive.
    """
    pts = [(r["episodes"], r["vs_sft"]["diff"]) for r in rows if r["episodes"] > 0 and r["vs_sft"]["diff"] is not None]
    if not pts:
        return {"slope_per_100_episodes": None, "episodes": None}
    e, g = np.array(pts, dtype=float).T
    slope = float((e * g).sum() / (e * e).sum())
    return {"slope_per_100_episodes": 100 * slope, "episodes": target / slope if slope > 0 else None}


def as_curve(rows: Sequence[Mapping]) -> list[dict]:
    """The rows in the shape the over-optimisation plot and its sentence read (``overopt.message``)."""
    return [{"sqrt_kl": r["sqrt_kl"], "episodes": r["episodes"], "iteration": r["iteration"], "n": r["n"],
             "rm_score": r["rm_score"], "accept_rate": r["accept_rate"], "accepted": r["accepted"]}
            for r in rows if r["sqrt_kl"] is not None]


def arms_at_equal_kl(run_dir: Path, ppo_rows: Sequence[Mapping], algos: Sequence[str] = ("grpo", "rloo")) -> list[dict]:
    """GRPO and RLOO against PPO *at the KL each reached*, not at the same β.

    For every arm trained in ``<run_dir>/<algo>/``: its achieved KL (exact, along its greedy val
    JDs), its acceptance, the PPO check whose KL is nearest, and arm − that PPO policy paired on
    the same val seekers (bootstrap CI, exact McNemar p). Arms evaluated on other seekers than
    the checks are skipped: a paired comparison needs the same people. ``within_range`` says
    whether the arm's KL lies inside the checks' KL range: outside it the nearest check is not at
    equal KL, and a fair comparison needs more PPO iterations or the arm at a larger β.
    """
    out = []
    if not ppo_rows:
        return out
    for algo in algos:
        m = read_metrics(run_dir, algo, missing_ok=True)
        if m is None:
            continue
        rep, kl = m["eval"]["ppo"]["report"], m.get("achieved_kl")
        accepted = rep["outcomes"]["accepted"]
        if kl is None or len(accepted) != ppo_rows[0]["n"]:
            continue
        near = min(ppo_rows, key=lambda r: abs(r["kl_exact"] - kl))
        kls = [r["kl_exact"] for r in ppo_rows]
        out.append({"algo": algo, "kl": kl, "n": len(accepted),
                    "accept_rate": {"value": rep["accept_rate"], **rate(sum(accepted), len(accepted))},
                    "vs_sft": m["accept_rate_diff"], "seeker_interest": rep["seeker_interest"],
                    "parse_rate": rep["parse_rate"], "rm_score": m["eval"]["ppo"]["rm_score_mean"],
                    "ppo_iteration": near["iteration"], "ppo_kl": near["kl_exact"], "ppo_accept_rate": near["accept_rate"],
                    "vs_ppo_at_kl": paired_difference(accepted, near["accepted"]),
                    "within_range": min(kls) <= kl <= max(kls),
                    "seconds_per_iteration": m.get("seconds_per_iteration")})
    return out
