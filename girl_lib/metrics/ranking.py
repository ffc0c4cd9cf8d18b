"""Top-K ranking metrics: hit rate and NDCG.

Two settings appear in the kit:

* **Leave-one-out** (GenRec): each user has exactly one held-out next job; the model returns a
  ranked list (e.g. its 10 beams). ``HR@K`` = 1 if the target is in the top K.
  ``NDCG@K = 1 / log2(rank + 1)`` with the 1-based rank of the target (0 if not in the top K):
  rank 1 -> 1.0, rank 2 -> 0.631, rank 3 -> 0.5. The ideal DCG of one relevant item is 1.
* **Several relevant items** (grounding a generated JD to real postings): any posting the seeker
  was accepted for is relevant. ``HR@K`` = 1 if any relevant item is in the top K;
  ``NDCG@K = DCG@K / IDCG@K`` with binary gains, ``DCG = sum over relevant hits of
  1/log2(rank + 1)`` and ``IDCG`` the DCG of a perfect list, i.e. over ``min(|relevant|, K)``
  items.

Every function returns the mean over users. A ranked list may repeat an item (beam search can
produce the same title twice): repeats are dropped, keeping the first occurrence, so an item
counts once and the items after it move up.
"""
from __future__ import annotations

import math
from typing import Hashable, Iterable, Sequence, TypeVar

Item = TypeVar("Item", bound=Hashable)


def dedupe(ranked: Iterable[Item]) -> list[Item]:
    """The list without repeats, first occurrence kept, order preserved."""
    return list(dict.fromkeys(ranked))


def _check(ranked_lists: Sequence, targets: Sequence, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(ranked_lists) != len(targets):
        raise ValueError(f"{len(ranked_lists)} ranked lists but {len(targets)} targets")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _dcg(top: Sequence[Hashable], relevant: set) -> float:
    return sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(top, start=1) if item in relevant)


# ---- one target per user (leave-one-out) ---------------------------------------------------
def hit_rate_at_k(ranked_lists: Sequence[Sequence[Hashable]], targets: Sequence[Hashable], k: int) -> float:
    """Share of users whose target is among the first ``k`` (deduplicated) items."""
    _check(ranked_lists, targets, k)
    return _mean([float(t in dedupe(r)[:k]) for r, t in zip(ranked_lists, targets)])


def ndcg_at_k(ranked_lists: Sequence[Sequence[Hashable]], targets: Sequence[Hashable], k: int) -> float:
    """Mean of ``1 / log2(rank + 1)`` (1-based rank of the target in the top ``k``; 0 if absent)."""
    _check(ranked_lists, targets, k)
    return _mean([_dcg(dedupe(r)[:k], {t}) for r, t in zip(ranked_lists, targets)])


# ---- several relevant items per user -------------------------------------------------------
def hit_rate_at_k_multi(
    ranked_lists: Sequence[Sequence[Hashable]], relevant_sets: Sequence[Iterable[Hashable]], k: int
) -> float:
    """Share of users with at least one relevant item in the top ``k``. An empty set scores 0."""
    _check(ranked_lists, relevant_sets, k)
    return _mean(
        [float(any(i in set(rel) for i in dedupe(r)[:k])) for r, rel in zip(ranked_lists, relevant_sets)]
    )


def ndcg_at_k_multi(
    ranked_lists: Sequence[Sequence[Hashable]], relevant_sets: Sequence[Iterable[Hashable]], k: int
) -> float:
    """Mean binary-gain ``DCG@k / IDCG@k``, ``IDCG`` over ``min(|relevant|, k)`` items.

    A user with an empty relevant set scores 0 (nothing can be found) and still counts in the mean.
    """
    _check(ranked_lists, relevant_sets, k)
    scores = []
    for ranked, rel in zip(ranked_lists, relevant_sets):
        rel = set(rel)
        ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
        scores.append(_dcg(dedupe(ranked)[:k], rel) / ideal if ideal > 0 else 0.0)
    return _mean(scores)
