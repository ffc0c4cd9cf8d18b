"""The kit's metrics, all offline (no hub download at run time).

* ``load_metric("rouge" | "bleu")`` — Hugging Face ``evaluate`` modules, loaded from the
  scripts shipped in this package (``rouge/rouge.py``, ``bleu/bleu.py``) instead of the Hub.
* :func:`rouge_l`, :func:`bleu` — the same scorers as plain functions returning one float.
* :mod:`.ranking` — HR@K and NDCG@K, one target (GenRec) or several (grounding).
* :mod:`.scores` — distinct-n, skill precision/recall/hallucination, AUC, log loss.

Importing this package is cheap: ``evaluate``, ``rouge-score`` and ``sacrebleu`` are imported
on first use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .overlap import bleu, rouge_l
from .ranking import hit_rate_at_k, hit_rate_at_k_multi, ndcg_at_k, ndcg_at_k_multi
from .scores import binary_auc, distinct_n, log_loss, pairwise_auc, skill_scores

__all__ = [
    "LOCAL_METRICS",
    "metric_path",
    "load_metric",
    "rouge_l",
    "bleu",
    "hit_rate_at_k",
    "ndcg_at_k",
    "hit_rate_at_k_multi",
    "ndcg_at_k_multi",
    "distinct_n",
    "skill_scores",
    "pairwise_auc",
    "binary_auc",
    "log_loss",
]

_HERE = Path(__file__).resolve().parent
LOCAL_METRICS = ("rouge", "bleu")


def metric_path(name: str) -> Path:
    """Folder of a local metric module. ``evaluate.load`` finds ``<folder>/<folder name>.py`` in it."""
    if name not in LOCAL_METRICS:
        raise ValueError(f"unknown metric {name!r}; local metrics: {', '.join(LOCAL_METRICS)}")
    return _HERE / name


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` on a metric shipped with the kit: no Hub, no network.

    ``evaluate.load("rouge")`` would download the script from the Hub; given a local folder it
    copies ``<folder>/<name>.py`` into its module cache (``HF_MODULES_CACHE``) and imports it.
    ``keep_in_memory=True`` by default, so ``compute`` writes no Arrow cache files either.
    Extra keyword arguments go to ``evaluate.load``.
    """
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_path(name)), **kwargs)
