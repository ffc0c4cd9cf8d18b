"""Text-overlap metrics as plain functions: ROUGE-L and corpus BLEU.

The same scorers as the local ``evaluate`` modules in ``rouge/`` and ``bleu/`` (rouge-score and
sacrebleu), without ``evaluate``'s machinery: one call, one float. Use them when you only need a
number; use :func:`girl_lib.metrics.load_metric` when you want the ``evaluate`` interface
(``add_batch``, several keys, per-example lists).

A generated JD is compared with the JDs the seeker actually applied to, and a seeker may have
several, so ``references`` may be a list of strings (one per prediction) or a list of lists.
"""
from __future__ import annotations

from typing import Sequence, Union

References = Sequence[Union[str, Sequence[str]]]


def _as_lists(predictions: Sequence[str], references: References) -> list[list[str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    for i, r in enumerate(refs):
        if not r:
            raise ValueError(f"prediction {i} has no reference")
    return refs


def rouge_l(predictions: Sequence[str], references: References, use_stemmer: bool = False) -> float:
    """Mean ROUGE-L F1 in [0, 1]; with several references, the best one per prediction.

    ROUGE-L F1 of a prediction P and a reference R: with ``L = LCS(P, R)`` the length of their
    longest common subsequence of tokens, ``precision = L / |P|``, ``recall = L / |R|``, and
    ``F1 = 2 p r / (p + r)``. Tokens are rouge-score's: lowercased, split on anything outside
    ``[a-z0-9]``. Identical texts score 1, texts with no shared token 0. An empty corpus scores 0.
    """
    from rouge_score import rouge_scorer  # imports nltk: keep it off the package import path

    refs = _as_lists(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    scores = [scorer.score_multi(r, p)["rougeL"].fmeasure for p, r in zip(predictions, refs)]
    return float(sum(scores) / len(scores)) if scores else 0.0


def bleu(predictions: Sequence[str], references: References, tokenize: str = "13a") -> float:
    """sacrebleu corpus BLEU on its usual 0-100 scale; several references per prediction allowed.

    BLEU pools the clipped n-gram matches (n = 1..4) of all predictions before dividing, so it is
    a corpus score, not a mean of sentence scores: ``BP * exp(mean_n log p_n)`` with ``p_n`` the
    corpus n-gram precision and ``BP = min(1, exp(1 - ref_len / hyp_len))``. With several
    references an n-gram may match up to its count in any one of them. Predictions may have
    different numbers of references (missing ones are passed to sacrebleu as ``None``).
    """
    import sacrebleu

    refs = _as_lists(predictions, references)
    if not refs:
        return 0.0
    n_streams = max(len(r) for r in refs)
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(n_streams)]
    return float(sacrebleu.corpus_bleu(list(predictions), streams, tokenize=tokenize).score)
