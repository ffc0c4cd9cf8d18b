"""Small metrics of the kit: diversity, skill faithfulness, AUC and log loss.

* :func:`distinct_n` — how repetitive a set of generated JDs is (mode collapse shows up here
  long before it shows in the reward).
* :func:`skill_scores` — do the skills a generated JD asks for match the seeker's real skills,
  and how many are invented?
* :func:`pairwise_auc`, :func:`binary_auc`, :func:`log_loss` — for reward models (does the
  accepted JD score above the rejected one?) and for the person–job matching model of the GIRL
  paper (AUC / LogLoss, normal and cold-start).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


# --------------------------------------------------------------------------------------------
# diversity
# --------------------------------------------------------------------------------------------
def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams / total n-grams over the whole corpus.

    Tokens are lowercased whitespace-separated words; n-grams never cross from one text to the
    next. 1.0 = no n-gram repeats anywhere, near 0 = the same phrases over and over. A corpus
    with no n-gram at all (every text shorter than ``n`` words) scores 0.0.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    total, unique = 0, set()
    for text in texts:
        tokens = text.lower().split()
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


# --------------------------------------------------------------------------------------------
# skills
# --------------------------------------------------------------------------------------------
def _skill_set(skills: Iterable[str]) -> set[str]:
    return {s.strip().casefold() for s in skills if s.strip()}


def skill_scores(predicted_skills: Iterable[str], true_skills: Iterable[str]) -> dict[str, float]:
    """Precision, recall and hallucination rate of a predicted skill list against the truth.

    Skills compare case-insensitively after stripping spaces; repeats count once. With
    ``P`` = predicted set, ``T`` = true set::

        precision          = |P & T| / |P|
        recall             = |P & T| / |T|
        hallucination_rate = |P - T| / |P|     (= 1 - precision when P is not empty)

    Empty lists (no division by zero, no NaN):

    * ``P`` empty: ``hallucination_rate = 0`` (nothing was invented) and ``precision = 0``
      (saying nothing earns nothing), except that both empty is a perfect match (1, 1, 0).
    * ``T`` empty: ``recall = 1`` (nothing to miss); every predicted skill is a hallucination.
    """
    p, t = _skill_set(predicted_skills), _skill_set(true_skills)
    hits = len(p & t)
    if not p:
        precision, hallucination = (1.0 if not t else 0.0), 0.0
    else:
        precision, hallucination = hits / len(p), len(p - t) / len(p)
    recall = hits / len(t) if t else 1.0
    return {"precision": precision, "recall": recall, "hallucination_rate": hallucination}


# --------------------------------------------------------------------------------------------
# AUC and log loss
# --------------------------------------------------------------------------------------------
def pairwise_auc(pos_scores: Sequence[float], neg_scores: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2 (Mann–Whitney U / n_p n_n).

    For a reward model: positives = scores of accepted JDs, negatives = rejected ones; 0.5 is
    chance. Computed with a sorted search, ``O((n_p + n_n) log n_n)``, not all pairs.
    """
    pos, neg = np.asarray(pos_scores, dtype=float), np.sort(np.asarray(neg_scores, dtype=float))
    if pos.size == 0 or neg.size == 0:
        raise ValueError("pairwise_auc needs at least one positive and one negative score")
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    below_or_tied = np.searchsorted(neg, pos, side="right")
    wins = below.sum() + 0.5 * (below_or_tied - below).sum()
    return float(wins / (pos.size * neg.size))


def binary_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC AUC of ``scores`` for 0/1 ``labels``: the pairwise AUC of positives against negatives.

    Uses scikit-learn's ``roc_auc_score`` when installed, else :func:`pairwise_auc` (the same
    number). Needs both classes present.
    """
    y, s = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError("binary_auc needs both classes (0 and 1) among the labels")
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return pairwise_auc(s[y == 1], s[y == 0])
    return float(roc_auc_score(y, s))


def log_loss(labels: Sequence[int], probs: Sequence[float], eps: float = 1e-7) -> float:
    """Mean binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))``, ``p`` clipped to ``[eps, 1 - eps]``.

    The clip keeps one confident mistake (``p = 0`` for a positive) from making the loss
    infinite. Uses scikit-learn's ``log_loss`` on the clipped probabilities when installed.
    """
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probs, dtype=float), eps, 1.0 - eps)
    if y.size == 0:
        raise ValueError("log_loss needs at least one example")
    try:
        from sklearn.metrics import log_loss as sk_log_loss
    except ImportError:
        return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))
    return float(sk_log_loss(y.astype(int), p, labels=[0, 1]))
