"""Grounding: from a generated JD to the real postings closest to it.

A generated JD describes a job that may not exist. *Grounding* (the journal version of GIRL)
maps it back to real postings: embed the generated JD, embed every real JD once, and return the
``K`` nearest by cosine similarity. That is what ``girl recommend`` prints.

How good is it? The oracle knows which recruiters would accept the seeker (every check passes:
:meth:`girl_lib.world.Oracle.accepts`), so we score the top-K list against *those* postings:
``HR@K`` (at least one of them in the list) and ``NDCG@K`` (higher when they come first; see
:mod:`girl_lib.metrics.ranking`). The baseline is the same retrieval from the CV alone: if
writing the JD first does not beat embedding the CV directly, the generator adds nothing here.
Seekers for whom no posting at all would accept them cannot be helped by any ranking; they are
left out of the means and counted (``n_without_relevant``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...metrics.ranking import hit_rate_at_k_multi, ndcg_at_k_multi
from ...stats import cluster_bootstrap, rate


def top_k(query_emb: np.ndarray, item_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [n, k], similarities [n, k])`` of the ``k`` most similar items per query row.

    Rows are unit vectors, so the dot product is the cosine similarity. Ties keep item order.
    """
    sims = np.asarray(query_emb, dtype=np.float32) @ np.asarray(item_emb, dtype=np.float32).T
    k = min(k, sims.shape[1])
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


def relevant_jobs(seekers: Sequence[dict], jobs: Sequence[dict], oracle) -> list[set[str]]:
    """Per seeker, the ids of the postings whose recruiter rule accepts this seeker."""
    return [{j["id"] for j in jobs if oracle.accepts(s, j)} for s in seekers]


def ranking_scores(ranked_ids: Sequence[Sequence[str]], relevant: Sequence[set], k: int, seed: int = 0) -> dict:
    """HR@K and NDCG@K over the seekers that have at least one relevant posting, with 95 % intervals
    (HR@K: Wilson over seekers; NDCG@K: bootstrap over seekers)."""
    keep = [i for i, rel in enumerate(relevant) if rel]
    ranked = [ranked_ids[i] for i in keep]
    rel = [relevant[i] for i in keep]
    out = {f"hr@{k}": hit_rate_at_k_multi(ranked, rel, k) if keep else None,
           f"ndcg@{k}": ndcg_at_k_multi(ranked, rel, k) if keep else None,
           "n": len(keep), "n_without_relevant": len(relevant) - len(keep)}
    hits = [int(hit_rate_at_k_multi([r], [x], k)) for r, x in zip(ranked, rel)]
    ndcg = np.array([ndcg_at_k_multi([r], [x], k) for r, x in zip(ranked, rel)])
    out["intervals"] = {f"hr@{k}": rate(sum(hits), len(hits)),
                        f"ndcg@{k}": cluster_bootstrap(lambda i: float(ndcg[i].mean()), np.arange(len(ndcg)), seed=seed)}
    return out


def evaluate_grounding(queries: dict[str, np.ndarray], job_emb: np.ndarray, job_ids: Sequence[str],
                       relevant: Sequence[set], k: int) -> dict:
    """``{query source: ranking_scores}`` for each source (``cv``, an arm's generated JDs, ...).

    A source with fewer rows than ``relevant`` (an arm that wrote for a prefix of the seekers) is
    scored on that prefix.
    """
    out = {}
    for name, emb in queries.items():
        idx, _ = top_k(emb, job_emb, k)
        out[name] = ranking_scores([[job_ids[i] for i in row] for row in idx], relevant[:len(emb)], k)
    return out
