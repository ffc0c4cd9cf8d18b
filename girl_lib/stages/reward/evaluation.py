"""How good is the reward model: held-out pairs, real and generated JDs, and its blind spot."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

from ...config import Profile
from ...errors import GirlError
from ...generators import load_sft_model, reusable_val_generations
from ...metrics.scores import binary_auc
from ...rundir import is_complete
from ...scoring import score, score_prompts, scoring_bf16
from ...stats import paired_difference
from ...textgen import generate_from_config
from ...training import split_seekers
from ...world import SYSTEM_PROMPT, Oracle, draw, load_jsonl, make_prompt
from .pairs import KINDS, accepted, fitted_pair_prompt, generate_arms, load_pairs, pairwise_loss, sample_jds

MAX_GENERATED_EVAL = 64  # the blind-spot check scores at most this many zero-shot JDs (they ramble: slow on a CPU)


def _accuracy(chosen, rejected) -> float | None:
    return float((chosen > rejected).float().mean()) if len(chosen) else None


def evaluate_pairs(model, tokenizer, pairs: list[dict], batch_size: int = 16, max_length: int | None = None,
                   bf16: bool = False) -> tuple[dict, list[dict]]:
    """Held-out pairwise accuracy and loss, overall and per kind; plus the per-pair scores.

    Each pair is scored with its prompt fitted as for training (:func:`fitted_pair_prompt`): the
    model reads exactly the token ids it would have trained on.
    """
    import torch

    if not pairs:
        return {"n_pairs": 0, "pairwise_accuracy": None, "pair_loss": None}, []
    prompts = [fitted_pair_prompt(tokenizer, r, max_length) for r in pairs]
    jds = [r["chosen"] for r in pairs] + [r["rejected"] for r in pairs]
    s = score_prompts(model, tokenizer, prompts + prompts, jds,
                      batch_size=batch_size, max_length=max_length, bf16=bf16)
    chosen, rejected = s[:len(pairs)], s[len(pairs):]
    m = {"n_pairs": len(pairs), "pairwise_accuracy": _accuracy(chosen, rejected),
         "pair_loss": float(pairwise_loss(chosen, rejected)),
         "mean_margin": float((chosen - rejected).mean())}
    for kind in KINDS:
        sel = torch.tensor([r["kind"] == kind for r in pairs])
        m[f"n_pairs_{kind}"] = int(sel.sum())
        m[f"pairwise_accuracy_{kind}"] = _accuracy(chosen[sel], rejected[sel])
    rows = [{"id": r["id"], "kind": r["kind"], "chosen": float(c), "rejected": float(x)}
            for r, c, x in zip(pairs, chosen, rejected)]
    return m, rows


def _auc(labels: list[int], scores: list[float]) -> float | None:
    return binary_auc(labels, scores) if 0 < sum(labels) < len(labels) else None


def evaluate_real(model, tokenizer, data_dir: Path, limit: int, batch_size: int = 16,
                  max_length: int | None = None, bf16: bool = False, oracle=None) -> tuple[dict, list[dict]]:
    """Score val applications' real JDs; AUC against the oracle's label (p_accept > 0.5).

    Also the AUC against the recruiters' observed decision (``accepted``, which includes their
    noise), and the mean/std of the scores (for reference: PPO standardises its rewards with
    the statistics of the SFT policy's own samples, not of real JDs).
    """
    seekers = {s["id"]: s for s in load_jsonl(Path(data_dir) / "seekers.jsonl", "seekers")}
    jobs = {j["id"]: j for j in load_jsonl(Path(data_dir) / "jobs.jsonl", "jobs")}
    apps = [a for a in load_jsonl(Path(data_dir) / "applications.jsonl", "applications") if a["split"] == "val"]
    apps = draw(apps, limit, "reward/real") if limit and limit > 0 else apps  # a seeded draw, not the first rows
    if not apps:
        return {"n_real": 0, "auc_real": None}, []
    oracle = oracle or Oracle()
    cvs = [seekers[a["seeker_id"]]["cv_text"] for a in apps]
    jds = [jobs[a["job_id"]]["jd_text"] for a in apps]
    s = score(model, tokenizer, cvs, jds, batch_size=batch_size, max_length=max_length, bf16=bf16).tolist()
    p = [oracle.score(seekers[a["seeker_id"]], jd).p_accept for a, jd in zip(apps, jds)]
    label = [int(x > 0.5) for x in p]
    rows = [{"seeker_id": a["seeker_id"], "job_id": a["job_id"], "score": si, "p_accept": pi,
             "oracle_accept": bool(li), "accepted": a["accepted"]} for a, si, pi, li in zip(apps, s, p, label)]
    mean = sum(s) / len(s)
    m = {"n_real": len(apps), "auc_real": _auc(label, s), "real_positive_rate": sum(label) / len(label),
         "auc_real_observed": _auc([int(a["accepted"]) for a in apps], s),
         "score_mean": mean, "score_std": math.sqrt(sum((x - mean) ** 2 for x in s) / len(s))}
    return m, rows


def _val_seekers_of_sft(cfg: Profile, run_dir: Path, n: int, part: str) -> tuple[list[dict], dict | None]:
    """The first ``n`` val seekers (seeded) whose SFT JDs the ``part`` AUC reads; or, when there is
    no complete SFT stage or no val seeker, no seekers and the metrics that say it was skipped."""
    why = None
    if not is_complete(Path(run_dir) / "sft"):
        why = "skipped: no complete SFT stage in this run dir (run 'girl sft' first)"
    seekers = [] if why else split_seekers(Path(run_dir) / "data", n, seed=cfg.seed)
    if not why and not seekers:
        why = "skipped: no val seekers"
    return seekers, ({f"n_{part}": 0, f"auc_{part}": None, f"{part}_note": why} if why else None)


def evaluate_generated(cfg: Profile, run_dir: Path, model, tokenizer, n: int, bf16: bool = False,
                       oracle=None) -> tuple[dict, list[dict]]:
    """The same AUC on JDs the SFT model writes (greedy) for val seekers — where PPO will look.

    Labels are :func:`~.pairs.accepted` (parses and ``p_accept > 0.5``), as for sampled JDs. Skipped, with a note, when ``<run-dir>/sft`` is not complete.
    """
    seekers, skipped = _val_seekers_of_sft(cfg, run_dir, n, "generated")
    if skipped:
        return skipped, []
    # The SFT stage already wrote greedy JDs for the first val seekers: reuse them when they match.
    reused = reusable_val_generations(cfg, run_dir, [x["id"] for x in seekers])
    t0 = time.time()
    if reused is not None:
        texts, finished = reused["texts"], reused["finished"]
    else:
        gen_model, gen_tok = load_sft_model(cfg, run_dir)
        out = generate_from_config(gen_model, gen_tok, [make_prompt(x["cv_text"]) for x in seekers], cfg.generation,
                                   system_prompt=SYSTEM_PROMPT)
        texts, finished = out.texts, out.finished
        del gen_model
    oracle = oracle or Oracle()
    generation_seconds = time.time() - t0
    s = score(model, tokenizer, [x["cv_text"] for x in seekers], texts, batch_size=cfg.reward.batch_size * 2,
              max_length=cfg.reward.max_length, bf16=bf16).tolist()
    sc = [oracle.score(x, t) for x, t in zip(seekers, texts)]
    label = [int(accepted(o)) for o in sc]
    rows = [{"seeker_id": x["id"], "score": si, "p_accept": o.p_accept, "oracle_accept": bool(li),
             "parse_ok": o.parse_ok, "finished": f, "text": t}
            for x, si, o, li, f, t in zip(seekers, s, sc, label, finished, texts)]
    auc = _auc(label, s)
    m = {"n_generated": len(seekers), "auc_generated": auc, "generated_positive_rate": sum(label) / len(label),
         "generated_parse_rate": sum(o.parse_ok for o in sc) / len(sc),
         "generation_seconds": round(generation_seconds, 1), "reused_sft_generations": reused is not None}
    m["generated_note"] = ("greedy SFT JDs for val seekers, labelled by the oracle" if auc is not None else
                           "AUC undefined: the oracle put every generated JD in the same class")
    return m, rows


def evaluate_sampled(cfg: Profile, run_dir: Path, model, tokenizer, n: int, samples: int, bf16: bool = False,
                     oracle=None) -> tuple[dict, list[dict]]:
    """The same AUC on ``samples`` JDs per val seeker *sampled* from the SFT model as PPO's
    rollouts are (:func:`~.pairs.sample_jds`): the distribution PPO's reward comes from.

    Greedy JDs are one point of that distribution; a reward model can rank them and still fail on
    the samples. Labels are :func:`~.pairs.accepted` (parses and ``p_accept > 0.5``). The draws are
    seeded (``seed + 1``, apart from the training pairs' draws), so two reward models of one run
    dir score the same JDs on one machine, which :func:`~.report.compare_reward_models` checks.
    Off (``n_sampled`` 0, a note) when ``samples`` is 0 or there is no complete SFT stage.
    """
    if samples <= 0:
        return {"n_sampled": 0, "auc_sampled": None, "sampled_note": "off (reward.eval_samples=0)"}, []
    seekers, skipped = _val_seekers_of_sft(cfg, run_dir, n, "sampled")
    if skipped:
        return skipped, []
    t0 = time.time()
    gen_model, gen_tok = load_sft_model(cfg, run_dir)
    draws = sample_jds(cfg, gen_model, gen_tok, [make_prompt(x["cv_text"]) for x in seekers], samples, cfg.seed + 1)
    del gen_model
    generation_seconds = time.time() - t0
    oracle = oracle or Oracle()
    rows = [{"seeker_id": x["id"], "sample": j, "text": texts[i]}
            for j, texts in enumerate(draws) for i, x in enumerate(seekers)]
    by_id = {x["id"]: x for x in seekers}
    s = score(model, tokenizer, [by_id[r["seeker_id"]]["cv_text"] for r in rows], [r["text"] for r in rows],
              batch_size=cfg.reward.batch_size * 2, max_length=cfg.reward.max_length, bf16=bf16).tolist()
    for r, si in zip(rows, s):
        v = oracle.score(by_id[r["seeker_id"]], r["text"])
        r.update(score=si, p_accept=v.p_accept, parse_ok=v.parse_ok, oracle_accept=accepted(v))
    label = [int(r["oracle_accept"]) for r in rows]
    auc = _auc(label, s)
    m = {"n_sampled": len(rows), "auc_sampled": auc, "sampled_positive_rate": sum(label) / len(label),
         "sampled_parse_rate": sum(r["parse_ok"] for r in rows) / len(rows),
         "sampled_seconds": round(generation_seconds, 1),
         "sampled_note": (f"{samples} SFT JDs sampled at T={cfg.ppo.temperature} for each of {len(seekers)} val "
                          "seekers, labelled by the oracle" if auc is not None else
                          "AUC undefined: the oracle put every sampled JD in the same class")}
    return m, rows


def best_of_n(rows: Sequence[dict], seed: int = 0) -> dict:
    """What selection by the reward model's score buys on sampled JDs (``eval_scores.json``'s
    ``sampled`` rows, ``reward.eval_samples`` = n of them per seeker).

    For each seeker, keep the JD the model scores highest and ask the oracle about it. Compared
    with a random draw (the seeker's mean acceptance over its n JDs) and with the oracle's own pick
    (accepted if any of the n is). Best-of-n is the yardstick for RL against a reward model: it
    moves at most ``log n - (n - 1)/n`` nats of KL from the sampling policy (``kl_bound``), so
    "how much of the oracle's headroom does the model's pick capture" says what PPO at that KL
    can expect from this reward. ``gain``: best-of-n minus a random draw, paired over seekers.
    """
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["seeker_id"], []).append(r)
    sizes = {len(v) for v in by.values()}
    if not by:
        raise GirlError("best_of_n: no sampled JDs (run the reward stage with --set reward.eval_samples=n)")
    if len(sizes) != 1:
        raise GirlError(f"best_of_n: seekers have different numbers of sampled JDs ({sorted(sizes)})")
    n, ids = sizes.pop(), sorted(by)
    pick = [float(max(by[i], key=lambda r: r["score"])["oracle_accept"]) for i in ids]
    draw = [sum(r["oracle_accept"] for r in by[i]) / n for i in ids]
    oracle_pick = [float(any(r["oracle_accept"] for r in by[i])) for i in ids]
    return {"n": n, "n_seekers": len(ids), "kl_bound": math.log(n) - (n - 1) / n,
            "best_of_n": sum(pick) / len(ids), "random_draw": sum(draw) / len(ids),
            "oracle_pick": sum(oracle_pick) / len(ids), "gain": paired_difference(pick, draw, seed=seed)}


def n_generated_eval(cfg: Profile) -> int:
    """How many val seekers get an SFT-generated JD scored: every one the SFT stage already wrote a
    greedy JD for (``sft.oracle_eval_seekers``), so nothing is generated again and only scoring
    costs. The AUC's interval needs them: SFT's JDs are accepted about 15 % of the time, so 64 JDs
    hold about 10 positives and an AUC interval about 0.4 wide (``cpu-full``, docs/results.md)."""
    return max(1, cfg.sft.oracle_eval_seekers)


def evaluate_held_out(cfg: Profile, run_dir: Path, model, tokenizer) -> tuple[dict, dict]:
    """Pairwise accuracy on val pairs, AUC against the oracle on real and on SFT-generated JDs
    (greedy; and sampled with ``reward.eval_samples``, with :func:`best_of_n` when there are two or
    more a seeker), and the blind-spot check (:func:`blind_spot`).

    All through :func:`girl_lib.scoring.score`, the exact function PPO calls. Returns the
    metrics and the per-example rows behind them (``pairs``, ``real``, ``generated``, ``sampled``).
    """
    r, data_dir = cfg.reward, Path(run_dir) / "data"
    bs, bf16 = r.batch_size * 2, scoring_bf16(cfg)
    oracle = Oracle(noise=cfg.data.recruiter_noise)
    val_pairs = load_pairs(data_dir, "val", r.max_eval_pairs, seed=cfg.seed)
    pair_m, pair_rows = evaluate_pairs(model, tokenizer, val_pairs, bs, r.max_length, bf16)
    real_m, real_rows = evaluate_real(model, tokenizer, data_dir, r.max_eval_pairs, bs, r.max_length, bf16, oracle)
    gen_m, gen_rows = evaluate_generated(cfg, run_dir, model, tokenizer, n_generated_eval(cfg), bf16, oracle)
    smp_m, smp_rows = evaluate_sampled(cfg, run_dir, model, tokenizer, n_generated_eval(cfg), r.eval_samples,
                                       bf16, oracle)
    if smp_rows and r.eval_samples >= 2:  # best of 1 is a random draw
        smp_m["best_of_n"] = best_of_n(smp_rows, seed=cfg.seed)
    spot = blind_spot(cfg, run_dir, model, tokenizer, bf16, oracle)
    return ({**pair_m, **real_m, **gen_m, **smp_m, "blind_spot": spot},
            {"pairs": pair_rows, "real": real_rows, "generated": gen_rows, "sampled": smp_rows})


# --------------------------------------------------------------------------------------------
# The blind spot: JDs unlike anything the reward model trained on
# --------------------------------------------------------------------------------------------
def val_jds_of_both_arms(cfg: Profile, run_dir: Path, seekers: list[dict]) -> tuple[dict[str, list[str]], str]:
    """``({"zero_shot": texts, "sft": texts}, source)`` for these val seekers: the SFT stage's own
    greedy JDs (``sft/oracle_val.json``) when it wrote both arms for them with today's
    generation settings, else generated now (:func:`~.pairs.generate_arms`)."""
    ids = [s["id"] for s in seekers]
    if reusable_val_generations(cfg, run_dir, ids) is not None:
        comp = json.loads((Path(run_dir) / "sft" / "oracle_val.json").read_text())
        zero_shot = comp.get("zero_shot", {}).get("texts", [])
        if len(zero_shot) >= len(ids):
            return {"zero_shot": zero_shot[:len(ids)], "sft": comp["sft"]["texts"][:len(ids)]}, "sft/oracle_val.json"
    return generate_arms(cfg, run_dir, seekers), "generated"


def blind_spot(cfg: Profile, run_dir: Path, model, tokenizer, bf16: bool, oracle) -> dict:
    """The mean reward-model score of zero-shot vs SFT JDs for the same val seekers.

    The zero-shot base rambles and rarely writes a JD the oracle accepts; a reward model that
    scores its JDs *above* the SFT model's has a blind spot PPO will find (``zero_shot_below_sft``
    should be true). The oracle's acceptance rates of both arms are shown beside. For the first
    ``min(sft.zero_shot_seekers, sft.oracle_eval_seekers, 64)`` val seekers (the SFT stage's own
    JDs are reused); skipped, with a note, without a complete SFT stage.
    """
    if not is_complete(Path(run_dir) / "sft"):
        return {"n": 0, "note": "skipped: no complete SFT stage in this run dir (run 'girl sft' first)"}
    n = min(MAX_GENERATED_EVAL, max(1, cfg.sft.zero_shot_seekers), max(1, cfg.sft.oracle_eval_seekers))
    seekers = split_seekers(Path(run_dir) / "data", n, seed=cfg.seed)  # those the SFT stage wrote both arms for
    if not seekers:
        return {"n": 0, "note": "skipped: no val seekers"}
    texts, source = val_jds_of_both_arms(cfg, run_dir, seekers)
    cvs = [s["cv_text"] for s in seekers]
    out: dict = {"n": len(seekers), "source": source}
    for arm, arm_texts in texts.items():
        s = score(model, tokenizer, cvs, arm_texts, batch_size=cfg.reward.batch_size * 2,
                  max_length=cfg.reward.max_length, bf16=bf16)
        out[f"{arm}_rm_mean"] = float(s.mean())
        out[f"{arm}_oracle_accept_rate"] = sum(oracle.score(x, t).p_accept > 0.5
                                               for x, t in zip(seekers, arm_texts)) / len(seekers)
    out["zero_shot_below_sft"] = out["zero_shot_rm_mean"] < out["sft_rm_mean"]
    return out
