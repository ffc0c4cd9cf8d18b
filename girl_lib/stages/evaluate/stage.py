"""The evaluation stage: every generator arm side by side, and what their JDs are good for.

``girl evaluate`` (and the last step of ``girl run``) answers the GIRL paper's two claims on a
world whose ground truth we know:

1. **Generation quality** (:func:`quality_row`): on held-out *test* seekers, each arm
   (:mod:`girl_lib.generators`: zero-shot base, SFT, PPO, GRPO/RLOO when trained) writes one
   greedy JD per CV. Scored against the seeker's *accepted* real JDs (ROUGE-L, BLEU through
   ``evaluate`` with the kit's local metric modules), by the oracle (parse rate, recruiter
   acceptance, seeker interest, two-sided match, skill precision/recall/hallucination against
   the seeker's true skills), by the reward model, by an outside embedder (MiniLM cosine CV↔JD),
   and for form (words, tokens, EOS rate, distinct-1/2).
2. **Pairwise judge** (:mod:`girl_lib.stages.evaluate.judge`): win / tie / lose and advantage of
   each arm over each earlier one on level of detail, relevance and conciseness, both orders.
3. **Generation-enhanced matching** (:mod:`girl_lib.stages.evaluate.matching`): a matching model
   predicts the recruiter's decision on real applications with and without the generated-JD
   features; AUC / LogLoss on the test split and on the cold-start split, mean ± std over seeds.
4. **Grounding** (:mod:`girl_lib.stages.evaluate.grounding`): the generated JD's K nearest real
   postings, HR@K / NDCG@K against the postings whose recruiter would accept the seeker, vs the
   CV alone.

Every generated text is saved under ``<run-dir>/eval/texts/<arm>.json`` (by seeker id) and
reused: the test-seeker JDs of the best arm also feed the matching model, and a stage killed
midway generates only what is missing. Outputs: ``eval/metrics.json`` (the schema is in the
README), ``eval/*.png``, ``eval/job_embeddings.safetensors``; ``report.md`` shows them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ...config import GenerationConfig, Profile
from ...embed import load_embedder
from ...errors import GirlError
from ...generators import GENERATORS, LABELS, best_generator, generate_jds, is_trained, trained_generators
from ...metrics import load_metric
from ...metrics.scores import distinct_n
from ...oracle_eval import compare_reports, oracle_report
from ...rundir import atomic_write_json, is_complete, read_manifest, require_complete
from ...scoring import load_reward_model, score, scoring_bf16
from ...world import Oracle, draw, load_jsonl
from .grounding import evaluate_grounding, relevant_jobs
from .judge import compare, make_judge
from .matching import run_matching
from .report import FOLDER, save_plots


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def load_world(run_dir: Path) -> dict:
    """Seekers, jobs and applications of the run's ``data/`` (validated), indexed for lookups."""
    data_dir = require_complete(run_dir, "data")
    seekers = load_jsonl(data_dir / "seekers.jsonl", "seekers")
    jobs = load_jsonl(data_dir / "jobs.jsonl", "jobs")
    apps = load_jsonl(data_dir / "applications.jsonl", "applications")
    return {"seekers": seekers, "jobs": jobs, "applications": apps,
            "seeker_by_id": {s["id"]: s for s in seekers}, "job_by_id": {j["id"]: j for j in jobs}}


def draw_seekers(world: dict, split: str, n: int, seed: int) -> list[dict]:
    """A seeded random draw of ``n`` seekers of ``split`` (``n < 0``: all of them, 0: none)."""
    return draw([s for s in world["seekers"] if s["split"] == split], n, f"eval/{split}/{seed}")


def applications_of(world: dict, seekers: Sequence[dict]) -> list[dict]:
    ids = {s["id"] for s in seekers}
    return [a for a in world["applications"] if a["seeker_id"] in ids]


def accepted_references(world: dict, seekers: Sequence[dict]) -> list[list[str]]:
    """Per seeker, the JD texts of the applications the recruiter accepted (may be empty)."""
    by_seeker: dict[str, list[str]] = {s["id"]: [] for s in seekers}
    for a in world["applications"]:
        if a["accepted"] and a["seeker_id"] in by_seeker:
            by_seeker[a["seeker_id"]].append(world["job_by_id"][a["job_id"]]["jd_text"])
    return [by_seeker[s["id"]] for s in seekers]


# --------------------------------------------------------------------------------------------
# Generation, saved and reused
# --------------------------------------------------------------------------------------------
def texts_path(run_dir: Path, arm: str) -> Path:
    return Path(run_dir) / FOLDER / "texts" / f"{arm}.json"


def eval_generation(cfg: Profile) -> GenerationConfig:
    """The generation settings of this stage: the profile's, in batches of ``eval.batch_size`` rows."""
    return replace(cfg.generation, batch_size=cfg.eval.batch_size or cfg.generation.batch_size)


def _fingerprint(cfg: Profile, run_dir: Path, arm: str) -> dict:
    """What the saved texts depend on: the model, the generation settings (the batch width too: in
    bf16 it can flip a near-tie), the arm's training run."""
    manifest = read_manifest(Path(run_dir) / arm) if arm != "zero_shot" else None
    return {"base_model": cfg.model.base_model, "generation": asdict(eval_generation(cfg)),
            "trained_at": (manifest or {}).get("finished_at")}


def load_texts(run_dir: Path, arm: str) -> dict:
    """``{seeker_id: {"text", "finished", "num_tokens"}}`` saved for ``arm`` (empty if none)."""
    path = texts_path(run_dir, arm)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())["by_seeker"]


def ensure_texts(cfg: Profile, run_dir: Path, arm: str, seekers: Sequence[dict], log=print) -> tuple[list[dict], float]:
    """The greedy JD of ``arm`` for every seeker, generating only those not saved yet.

    Returns ``(records in seeker order, seconds spent generating now)``. Saved texts are thrown
    away when the model, the generation settings or the arm's training run changed.
    """
    path = texts_path(run_dir, arm)
    fp = _fingerprint(cfg, run_dir, arm)
    saved = json.loads(path.read_text()) if path.is_file() else {}
    by_seeker = saved.get("by_seeker", {}) if saved.get("fingerprint") == fp else {}
    missing = [s for s in seekers if s["id"] not in by_seeker]
    seconds = 0.0
    if missing:
        log(f"[girl] evaluate: {LABELS[arm]} writes {len(missing)} JDs")
        t0 = time.time()
        out = generate_jds(cfg, run_dir, arm, [s["cv_text"] for s in missing], progress=True,
                           gen_cfg=eval_generation(cfg))
        seconds = time.time() - t0
        for s, text, fin, n in zip(missing, out.texts, out.finished, out.num_tokens):
            by_seeker[s["id"]] = {"text": text, "finished": fin, "num_tokens": n}
        atomic_write_json(path, {"arm": arm, "fingerprint": fp, "by_seeker": by_seeker})
    return [by_seeker[s["id"]] for s in seekers], seconds


# --------------------------------------------------------------------------------------------
# 1. Generation quality
# --------------------------------------------------------------------------------------------
def text_metrics(texts: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """ROUGE-L (mean best F1) and corpus BLEU through ``evaluate``, on seekers with a reference."""
    keep = [i for i, r in enumerate(references) if r]
    if not keep:
        return {"rouge_l": None, "bleu": None, "n_with_reference": 0}
    preds, refs = [texts[i] for i in keep], [list(references[i]) for i in keep]
    rouge = load_metric("rouge").compute(predictions=preds, references=refs, rouge_types=["rougeL"])["rougeL"]
    bleu = load_metric("bleu").compute(predictions=preds, references=refs)["score"]
    return {"rouge_l": float(rouge), "bleu": float(bleu), "n_with_reference": len(keep)}


def quality_row(seekers: Sequence[dict], records: Sequence[dict], references: Sequence[Sequence[str]],
                cv_emb: np.ndarray, jd_emb: np.ndarray, rm_scores: Sequence[float] | None, oracle) -> dict:
    """Every item-1 figure for one arm (see the module docstring)."""
    texts = [r["text"] for r in records]
    rep = oracle_report(list(seekers), texts, oracle)
    row = {k: rep.get(k) for k in ("n", "parse_rate", "p_accept", "accept_rate", "seeker_interest", "two_sided_rate",
                                   "skill_precision", "skill_recall", "hallucinated_skill_rate", "mean_words")}
    row["failed_checks"] = rep.get("failed_checks", {})
    row["intervals"], row["outcomes"] = rep.get("intervals", {}), rep.get("outcomes", {})
    row.update(text_metrics(texts, references))
    row["rm_score"] = float(np.mean(rm_scores)) if rm_scores is not None and len(rm_scores) else None
    row["cosine_cv_jd"] = float(np.mean(np.sum(cv_emb * jd_emb, axis=1))) if len(texts) else None
    row["mean_tokens"] = float(np.mean([r["num_tokens"] for r in records])) if records else None
    row["eos_rate"] = float(np.mean([r["finished"] for r in records])) if records else None
    row["distinct_1"], row["distinct_2"] = distinct_n(texts, 1), distinct_n(texts, 2)
    return row


def reward_scores(cfg: Profile, run_dir: Path, seekers: Sequence[dict], texts_by_arm: dict) -> dict | None:
    """The stage-2 reward model's score of every arm's JDs (None when no reward model is trained)."""
    if not is_complete(Path(run_dir) / "reward"):
        return None

    rm, tok = load_reward_model(cfg, run_dir)
    cvs = [s["cv_text"] for s in seekers]
    bf16 = scoring_bf16(cfg)
    out = {arm: score(rm, tok, cvs[:len(texts)], texts, batch_size=max(1, cfg.reward.batch_size * 2),
                      max_length=cfg.reward.max_length, bf16=bf16).tolist() for arm, texts in texts_by_arm.items()}
    del rm
    return out


# --------------------------------------------------------------------------------------------
# Embeddings of the real postings, cached for grounding and `girl recommend`
# --------------------------------------------------------------------------------------------
def job_embeddings(cfg: Profile, run_dir: Path, jobs: Sequence[dict], embedder) -> np.ndarray:
    """Unit embeddings of every posting's JD, cached in ``eval/job_embeddings.safetensors``.

    The cache is used only when it was made by the same embedder for the same job ids and texts.
    """
    import hashlib

    from safetensors.numpy import load_file, save_file

    path = Path(run_dir) / FOLDER / "job_embeddings.safetensors"
    digest = hashlib.sha256("\n".join(j["id"] + "\t" + j["jd_text"] for j in jobs).encode()).hexdigest()
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
        if meta.get("embedder") == embedder.name and meta.get("jobs_sha256") == digest:
            return load_file(str(path))["embeddings"]
    emb = embedder.encode([j["jd_text"] for j in jobs], progress=len(jobs) > 200)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"embeddings": np.ascontiguousarray(emb)}, str(tmp), metadata={"embedder": embedder.name, "jobs_sha256": digest})
    tmp.replace(path)
    return emb


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def arms_to_evaluate(cfg: Profile, run_dir: Path) -> list[str]:
    found = trained_generators(run_dir)
    if not cfg.eval.arms:
        return found
    for arm in cfg.eval.arms:
        if arm not in GENERATORS:
            raise GirlError(f"eval.arms: unknown arm '{arm}'; choose from {', '.join(GENERATORS)}")
        if not is_trained(run_dir, arm):
            raise GirlError(f"eval.arms: arm '{arm}' is not trained in '{run_dir}'; trained: {', '.join(found)}")
    return [a for a in GENERATORS if a in cfg.eval.arms]


def comparisons(arms: Sequence[str]) -> list[tuple[str, str]]:
    """Every (A, B) with A after B in :data:`GENERATORS` order: the later, more trained arm is A."""
    return [(arms[j], arms[i]) for j in range(len(arms)) for i in range(j)]


def choose_arms(cfg: Profile, run_dir: Path) -> tuple[list[str], list[str], str]:
    """``(arms to evaluate, the trained ones among them, the matching arm)``.

    The matching model and `girl recommend` use the best trained arm (zero-shot if none is
    trained); it is evaluated too, even when ``eval.arms`` leaves it out.
    """
    arms = arms_to_evaluate(cfg, run_dir)
    trained = [a for a in arms if a != "zero_shot"]
    match_arm = best_generator(run_dir, cfg.name) if is_trained(run_dir, "sft") else "zero_shot"
    if match_arm not in arms:
        arms.append(match_arm)
    return arms, trained, match_arm


def arm_seekers(e, arm: str, test: Sequence[dict], match_arm: str) -> list[dict]:
    """The test seekers ``arm`` writes for: all of them, or the first ``eval.zero_shot_seekers``
    for the zero-shot arm, whose JDs run to the token limit (the draw is random, so a prefix is
    too), unless it is the matching arm (nothing trained), which needs every test seeker's JD."""
    if arm == "zero_shot" and arm != match_arm and e.zero_shot_seekers >= 0:
        return list(test[:e.zero_shot_seekers])
    return list(test)


def generate_all(cfg: Profile, run_dir: Path, arms: Sequence[str], match_arm: str, test: Sequence[dict],
                 match_seekers: Sequence[dict], log=print) -> tuple[dict, list[dict], dict]:
    """``(records by arm on its test seekers, the matching arm's records on match_seekers, seconds by arm)``.

    Every arm writes a JD for its test seekers (:func:`arm_seekers`); the matching arm also for
    the seekers the matching model trains on and the cold-start ones, in the same call (one model
    load, full batches). Saved texts are reused (:func:`ensure_texts`).
    """
    gen_seconds: dict[str, float] = {}
    records: dict[str, list[dict]] = {}
    extra: list[dict] = []
    for arm in arms:
        mine = arm_seekers(cfg.eval, arm, test, match_arm)
        more = list(match_seekers) if arm == match_arm else []
        got, gen_seconds[arm] = ensure_texts(cfg, run_dir, arm, mine + more, log)
        records[arm] = got[:len(mine)]
        if arm == match_arm:
            extra = got[len(mine):]
    return records, extra, gen_seconds


def reference_similarity(world: dict, test: Sequence[dict], job_emb: np.ndarray, texts: dict, gen_emb: dict):
    """``similarity(seeker, jd)``: cosine of the JD's embedding with the mean embedding of the real
    postings whose recruiter accepted the seeker (None when there is none). No oracle involved.

    The JDs' embeddings were computed already (``gen_emb``, per arm in ``texts`` order).
    """
    job_index = {j["id"]: i for i, j in enumerate(world["jobs"])}
    accepted: dict[str, list[int]] = {s["id"]: [] for s in test}
    for a in world["applications"]:
        if a["accepted"] and a["seeker_id"] in accepted:
            accepted[a["seeker_id"]].append(job_index[a["job_id"]])
    centre = {sid: job_emb[idx].mean(0) for sid, idx in accepted.items() if idx}
    emb_of = {t: v for arm in texts for t, v in zip(texts[arm], gen_emb[arm])}

    def similarity(seeker: dict, jd: str) -> float | None:
        c = centre.get(seeker["id"])
        if c is None or jd not in emb_of:
            return None
        return float(emb_of[jd] @ c / (np.linalg.norm(c) + 1e-12))

    return similarity


def _prefix(row: dict, n: int) -> dict:
    """The outcome lists of a quality row cut to its first ``n`` seekers."""
    return {"n": n, "outcomes": {k: v[:n] for k, v in row["outcomes"].items()}}


def compare_arms(quality: dict, arms: Sequence[str], seed: int) -> dict:
    """Every later arm minus every earlier one on the oracle's per-seeker outcomes (paired), over the
    seekers both wrote for (the zero-shot arm writes for a prefix of the test seekers)."""
    out = {}
    for a, b in comparisons([x for x in GENERATORS if x in arms]):
        n = min(quality[a]["n"], quality[b]["n"])
        out[f"{a}_vs_{b}"] = {"a": a, "b": b, **compare_reports(_prefix(quality[a], n), _prefix(quality[b], n), seed=seed)}
    return out


def judge_arms(e, oracle, test: Sequence[dict], texts: dict, arms: Sequence[str], similarity=None) -> dict:
    """Item 2: every later arm against every earlier one on the first ``eval.judge_pairs`` test seekers."""
    judge = make_judge(e, oracle, similarity)
    judged = {}
    for a, b in comparisons([x for x in GENERATORS if x in arms]):
        n = min(len(texts[a]), len(texts[b]))  # the seekers both arms wrote for
        n = min(n, e.judge_pairs) if e.judge_pairs > 0 else n
        judged[f"{a}_vs_{b}"] = {"a": a, "b": b, **compare(judge, test[:n], texts[a][:n], texts[b][:n])}
    return {"kind": judge.name, "comparisons": judged,
            "unparsed": getattr(judge, "unparsed", 0), "model": e.judge_model if judge.name == "endpoint" else None}


def seeker_embeddings(embedder, test: Sequence[dict], cv_emb_test, gen_emb_test, match_seekers: Sequence[dict],
                      match_records: Sequence[dict]) -> tuple[dict, dict]:
    """``(CV embedding by seeker id, generated-JD embedding by seeker id)`` for the matching model.

    The test seekers' embeddings are reused; the matching seekers' CVs and JDs are encoded now.
    """
    cv_emb, gen_emb = {}, {}
    for s, v in zip(test, cv_emb_test):
        cv_emb[s["id"]] = v
    for s, v in zip(test, gen_emb_test):
        gen_emb[s["id"]] = v
    if match_seekers:
        for s, v in zip(match_seekers, embedder.encode([s["cv_text"] for s in match_seekers])):
            cv_emb[s["id"]] = v
        for s, v in zip(match_seekers, embedder.encode([r["text"] for r in match_records])):
            gen_emb[s["id"]] = v
    return cv_emb, gen_emb


def matching_section(e, world: dict, match_arm: str, test: Sequence[dict], train_m: Sequence[dict],
                     cold_m: Sequence[dict], cv_emb: dict, gen_emb: dict, job_emb: np.ndarray) -> dict:
    """Item 3: the matching model with and without the generated-JD features (skipped when the
    training applications are all accepted or all rejected)."""
    job_index = {j["id"]: i for i, j in enumerate(world["jobs"])}
    jd_emb = {jid: job_emb[i] for jid, i in job_index.items()}
    train_rows = applications_of(world, train_m)
    tests = {"test": applications_of(world, test), "cold": applications_of(world, cold_m)}
    matching = {"arm": match_arm, "seekers": {"train": len(train_m), "test": len(test), "cold": len(cold_m)},
                "train_seeker_ids": [s["id"] for s in train_m]}
    if train_rows and len({r["accepted"] for r in train_rows}) == 2:
        matching.update(run_matching(train_rows, tests, cv_emb, jd_emb, gen_emb, seeds=e.matching_seeds,
                                     hidden=e.matching_hidden, epochs=e.matching_epochs, lr=e.matching_lr,
                                     weight_decay=e.matching_weight_decay))
    else:
        matching["skipped"] = "the training applications need both accepted and rejected ones"
    return matching


def run_evaluation(cfg: Profile, run_dir: Path, log=print) -> dict:
    """Items 1-4 of the module docstring; returns the content of ``eval/metrics.json``."""
    t_start = time.time()
    run_dir = Path(run_dir)
    e = cfg.eval
    world = load_world(run_dir)
    oracle = Oracle(noise=cfg.data.recruiter_noise)
    arms, trained, match_arm = choose_arms(cfg, run_dir)
    test = draw_seekers(world, "test", e.max_test_seekers, cfg.seed)
    if not test:
        raise GirlError(f"no test seekers to evaluate: {run_dir / 'data' / 'seekers.jsonl'} has none in split 'test' "
                        f"or eval.max_test_seekers is 0 (it is {e.max_test_seekers}; -1 means all)")
    # The matching model trains on the `match` split: seekers no SFT, reward-model or RL example
    # comes from, so generated-JD features are out-of-sample on its training rows too.
    train_m = draw_seekers(world, "match", e.matching_train_seekers, cfg.seed)
    cold_m = draw_seekers(world, "cold", e.matching_cold_seekers, cfg.seed)

    # -- generation: every arm on the test seekers; the matching arm on its extra seekers too ----
    records, extra, gen_seconds = generate_all(cfg, run_dir, arms, match_arm, test, train_m + cold_m, log)
    texts = {arm: [r["text"] for r in records[arm]] for arm in arms}

    # -- embeddings ---------------------------------------------------------------------------------
    embedder = load_embedder(e.embedder, cfg.device)
    t0 = time.time()
    jobs = world["jobs"]
    job_emb = job_embeddings(cfg, run_dir, jobs, embedder)
    cv_emb_test = embedder.encode([s["cv_text"] for s in test])
    gen_emb_test = {arm: embedder.encode(texts[arm]) for arm in arms}
    embed_seconds = time.time() - t0

    # -- 1. quality ---------------------------------------------------------------------------------
    refs = accepted_references(world, test)
    rm = reward_scores(cfg, run_dir, test, texts)
    quality = {}
    for arm in arms:
        n = len(records[arm])
        quality[arm] = quality_row(test[:n], records[arm], refs[:n], cv_emb_test[:n], gen_emb_test[arm],
                                   rm[arm] if rm else None, oracle)
    # -- 2. judge -----------------------------------------------------------------------------------
    paired = compare_arms(quality, arms, cfg.seed)
    similarity = reference_similarity(world, test, job_emb, texts, gen_emb_test)
    judge_out = judge_arms(e, oracle, test, texts, arms, similarity)
    # -- 3. matching --------------------------------------------------------------------------------
    cv_emb, gen_emb = seeker_embeddings(embedder, test, cv_emb_test, gen_emb_test[match_arm], train_m + cold_m, extra)
    matching = matching_section(e, world, match_arm, test, train_m, cold_m, cv_emb, gen_emb, job_emb)
    # -- 4. grounding -------------------------------------------------------------------------------
    relevant = relevant_jobs(test, jobs, oracle)
    queries = {"cv": cv_emb_test, **gen_emb_test}
    grounding = {"k": e.top_k, "pool": len(jobs),
                 "by_query": evaluate_grounding(queries, job_emb, [j["id"] for j in jobs], relevant, e.top_k)}

    return {
        "profile": cfg.name, "base_model": cfg.model.base_model, "arms": [a for a in GENERATORS if a in arms],
        "trained_arms": trained, "best_arm": match_arm, "embedder": embedder.name,
        "n_test_seekers": len(test), "test_seeker_ids": [s["id"] for s in test],
        "quality": quality, "paired": paired, "judge": judge_out, "matching": matching, "grounding": grounding,
        "timing": {"generation_s": {a: round(v, 1) for a, v in gen_seconds.items()},
                   "embedding_s": round(embed_seconds, 1), "total_s": round(time.time() - t_start, 1)},
    }


def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl evaluate``: write ``eval/metrics.json`` and the plots; return the headline figures."""
    run_dir = Path(run_dir)
    out = run_dir / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    metrics = run_evaluation(cfg, run_dir)
    atomic_write_json(out / "metrics.json", metrics)
    save_plots(metrics, out)
    return headline(metrics)


def headline(metrics: dict) -> dict:
    """A few figures for the manifest and the report's stage table."""
    head: dict = {}
    for arm, row in metrics["quality"].items():
        head[f"{arm}_accept_rate"] = row["accept_rate"]
        head[f"{arm}_two_sided_rate"] = row["two_sided_rate"]
    m = metrics["matching"]
    if "two_tower" in m:
        for split in ("test", "cold"):
            head[f"matching_auc_gain_{split}"] = m["gain"]["two_tower"][split]["auc"]["diff"]
    k = metrics["grounding"]["k"]
    for q, r in metrics["grounding"]["by_query"].items():
        head[f"grounding_{q}_hr@{k}"] = r[f"hr@{k}"]
    return head
