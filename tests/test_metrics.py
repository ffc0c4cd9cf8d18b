"""Unit tests of girl_lib.metrics against hand-computed values, and offline evaluate.load."""
from __future__ import annotations

import os

# Offline before anything imports evaluate / datasets / huggingface_hub (they read these at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"

import math  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from girl_lib.metrics import (  # noqa: E402
    binary_auc,
    bleu,
    distinct_n,
    hit_rate_at_k,
    hit_rate_at_k_multi,
    load_metric,
    log_loss,
    metric_path,
    ndcg_at_k,
    ndcg_at_k_multi,
    pairwise_auc,
    rouge_l,
    skill_scores,
)

L2 = math.log2


# --------------------------------------------------------------------------------------------
# ranking
# --------------------------------------------------------------------------------------------
def test_single_target_hr_ndcg():
    ranked, target = [["a", "b", "c"]], ["b"]
    # b is at rank 2: HR@1 = 0, HR@2 = 1; NDCG@2 = 1/log2(2+1) = 0.6309; NDCG@1 = 0
    assert hit_rate_at_k(ranked, target, 1) == 0.0
    assert hit_rate_at_k(ranked, target, 2) == 1.0
    assert ndcg_at_k(ranked, target, 2) == pytest.approx(1 / L2(3))
    assert ndcg_at_k(ranked, target, 1) == 0.0
    # two users: one hit at rank 1 (NDCG 1), one miss (0) -> means 0.5 and 0.5
    assert hit_rate_at_k([["a", "b"], ["x", "y"]], ["a", "q"], 2) == 0.5
    assert ndcg_at_k([["a", "b"], ["x", "y"]], ["a", "q"], 2) == 0.5


def test_duplicates_count_once():
    # [a, a, b] dedupes to [a, b]: b moves to rank 2 and enters the top 2
    assert hit_rate_at_k([["a", "a", "b"]], ["b"], 2) == 1.0
    assert ndcg_at_k([["a", "a", "b"]], ["b"], 2) == pytest.approx(1 / L2(3))
    # a repeated relevant item is one hit, not two: DCG = 1 (rank 1), IDCG(|rel|=1) = 1
    assert ndcg_at_k_multi([["a", "a", "c"]], [{"a"}], 3) == pytest.approx(1.0)


def test_multi_relevant_hr_ndcg():
    ranked, rel = [["a", "b", "c", "d"]], [{"b", "d", "e"}]
    # k=3: hits b@2 -> DCG = 1/log2(3); IDCG over min(3, 3) = 3 items: 1 + 1/log2(3) + 1/log2(4)
    idcg3 = 1 + 1 / L2(3) + 1 / L2(4)
    assert ndcg_at_k_multi(ranked, rel, 3) == pytest.approx((1 / L2(3)) / idcg3)  # 0.2961
    # k=4: hits b@2, d@4 -> DCG = 1/log2(3) + 1/log2(5); IDCG still over min(3, 4) = 3 items
    assert ndcg_at_k_multi(ranked, rel, 4) == pytest.approx((1 / L2(3) + 1 / L2(5)) / idcg3)  # 0.4982
    assert hit_rate_at_k_multi(ranked, rel, 1) == 0.0
    assert hit_rate_at_k_multi(ranked, rel, 2) == 1.0
    # one relevant item found at rank 1 with k=5: IDCG over min(1, 5) = 1 -> perfect score
    assert ndcg_at_k_multi([["a", "x", "y"]], [{"a"}], 5) == 1.0
    # single-target and multi-target agree when each set has one item
    lists, targets = [["a", "b", "c"], ["c", "a", "b"]], ["b", "b"]
    assert ndcg_at_k_multi(lists, [{t} for t in targets], 3) == pytest.approx(ndcg_at_k(lists, targets, 3))
    # an empty relevant set scores 0
    assert ndcg_at_k_multi([["a"]], [set()], 3) == 0.0


def test_ranking_input_checks():
    with pytest.raises(ValueError):
        hit_rate_at_k([["a"]], ["a"], 0)
    with pytest.raises(ValueError):
        ndcg_at_k([["a"]], ["a", "b"], 1)


# --------------------------------------------------------------------------------------------
# distinct-n, skills
# --------------------------------------------------------------------------------------------
def test_distinct_n():
    texts = ["The cat sat", "the cat ran"]
    # bigrams: (the cat) (cat sat) | (the cat) (cat ran): 4 in total, 3 unique -> 0.75
    assert distinct_n(texts, 2) == 0.75
    # unigrams: the cat sat the cat ran: 6 in total, 4 unique -> 2/3 ("The" == "the")
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    # n-grams do not cross texts: "a" + "b" has no bigram at all
    assert distinct_n(["a", "b"], 2) == 0.0


def test_skill_scores():
    s = skill_scores(["Python", "SQL", "Docker", "Kubernetes", "python"], ["python", "sql ", "Java"])
    # P = {python, sql, docker, kubernetes}, T = {python, sql, java}: 2 hits
    # precision 2/4, recall 2/3, hallucinated {docker, kubernetes}: 2/4
    assert s == pytest.approx({"precision": 0.5, "recall": 2 / 3, "hallucination_rate": 0.5})
    assert skill_scores([], ["python"]) == {"precision": 0.0, "recall": 0.0, "hallucination_rate": 0.0}
    assert skill_scores(["go"], []) == {"precision": 0.0, "recall": 1.0, "hallucination_rate": 1.0}
    assert skill_scores([], []) == {"precision": 1.0, "recall": 1.0, "hallucination_rate": 0.0}


# --------------------------------------------------------------------------------------------
# AUC, log loss
# --------------------------------------------------------------------------------------------
def test_pairwise_auc_with_ties():
    # pairs (pos, neg): (3,2)=1 (3,1)=1 (2,2)=0.5 (2,1)=1 -> 3.5 / 4 = 0.875
    assert pairwise_auc([3, 2], [2, 1]) == 0.875
    assert pairwise_auc([1, 1], [1]) == 0.5
    assert pairwise_auc([0], [1, 2]) == 0.0
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40), rng.integers(0, 5, 30)  # many ties
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert pairwise_auc(pos, neg) == pytest.approx(brute)
    with pytest.raises(ValueError):
        pairwise_auc([], [1])


def test_binary_auc_matches_pairwise_with_and_without_sklearn(monkeypatch):
    labels, scores = [1, 1, 0, 0], [3, 2, 2, 1]
    assert binary_auc(labels, scores) == 0.875  # same pairs as above
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)  # import -> ImportError: numpy path
    assert binary_auc(labels, scores) == 0.875
    with pytest.raises(ValueError):
        binary_auc([1, 1], [0.2, 0.3])


def test_log_loss(monkeypatch):
    # -(ln 0.8 + ln(1 - 0.4)) / 2 = (0.22314 + 0.51083) / 2 = 0.36698
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(expected)
    # p = 0 for a positive is clipped to eps: -ln(1e-7) = 16.118, not inf
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(expected)


# --------------------------------------------------------------------------------------------
# ROUGE-L and BLEU: plain functions
# --------------------------------------------------------------------------------------------
PREDS = ["the cat sat on the mat", "a b c d"]
REFS = [["the cat lay on a mat", "dog"], ["a x b y"]]
# pred 1 vs "the cat lay on a mat": LCS = the cat on mat (4); p = 4/6, r = 4/6 -> F1 = 2/3
#        vs "dog": 0 -> max over references = 2/3
# pred 2 vs "a x b y": LCS = a b (2); p = 2/4, r = 2/4 -> F1 = 0.5
# mean = (2/3 + 0.5) / 2 = 0.58333
ROUGE_L_HAND = (2 / 3 + 0.5) / 2


def test_rouge_l_by_hand():
    assert rouge_l(PREDS, REFS) == pytest.approx(ROUGE_L_HAND)
    assert rouge_l(["Senior Data Engineer, Berlin"], ["senior data engineer berlin"]) == 1.0
    assert rouge_l(["python developer"], ["nurse"]) == 0.0
    with pytest.raises(ValueError):
        rouge_l(["x"], [[]])


# hyp "a b c d e" vs ref "a b c d f": 1..4-gram matches 4/5, 3/4, 2/3, 1/2; equal lengths, BP = 1
BLEU_ONE = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25  # 66.87
# corpus: add hyp "x y z w v" == its ref: matches pool to 9/10, 7/8, 5/6, 3/4 (not a mean of sentences)
BLEU_CORPUS = 100 * (9 / 10 * 7 / 8 * 5 / 6 * 3 / 4) ** 0.25  # 83.76


def test_bleu_by_hand():
    assert bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(BLEU_ONE)
    assert bleu(["a b c d e", "x y z w v"], [["a b c d f"], ["x y z w v"]]) == pytest.approx(BLEU_CORPUS)
    # a second reference equal to the hypothesis makes it perfect; reference counts may differ
    assert bleu(["a b c d e", "x y z w v"], [["a b c d f", "a b c d e"], ["x y z w v"]]) == pytest.approx(100.0)


# --------------------------------------------------------------------------------------------
# evaluate.load on the local modules, with the network cut
# --------------------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_metric_folders_hold_a_script_named_like_the_folder():
    # evaluate.load(<folder>) looks for <folder>/<folder name>.py
    for name in ("rouge", "bleu"):
        assert (metric_path(name) / f"{name}.py").is_file()
    with pytest.raises(ValueError):
        metric_path("meteor")


def test_evaluate_load_rouge_offline(no_network):
    rouge = load_metric("rouge")
    out = rouge.compute(predictions=PREDS, references=REFS)
    assert set(out) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert out["rougeL"] == pytest.approx(rouge_l(PREDS, REFS))
    assert out["rougeL"] == pytest.approx(ROUGE_L_HAND)
    same = rouge.compute(predictions=["senior data engineer"], references=["senior data engineer"])
    assert same["rougeL"] == 1.0
    disjoint = rouge.compute(predictions=["senior data engineer"], references=["registered nurse"])
    assert disjoint["rougeL"] == 0.0
    per = rouge.compute(predictions=PREDS, references=REFS, rouge_types=["rougeL"], use_aggregator=False)
    assert per["rougeL"] == pytest.approx([2 / 3, 0.5])


def test_evaluate_load_bleu_offline(no_network):
    metric = load_metric("bleu")
    preds, refs = ["a b c d e", "x y z w v"], [["a b c d f"], ["x y z w v"]]
    out = metric.compute(predictions=preds, references=refs)
    assert out["score"] == pytest.approx(bleu(preds, refs))
    assert out["score"] == pytest.approx(BLEU_CORPUS)
    assert out["counts"] == [9, 7, 5, 3] and out["totals"] == [10, 8, 6, 4]
    # predictions may have different numbers of references
    uneven = [["a b c d f", "a b c d e"], ["x y z w v"]]
    assert metric.compute(predictions=preds, references=uneven)["score"] == pytest.approx(100.0)
    # single reference strings are accepted too
    assert metric.compute(predictions=["a b c d e"], references=["a b c d f"])["score"] == pytest.approx(BLEU_ONE)
