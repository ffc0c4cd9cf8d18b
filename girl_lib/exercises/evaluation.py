"""The checks of chapters 05-06: evaluation and GenRec.

Why these two together: both check how results are measured rather than how models are
trained (the Wilson interval, the exact McNemar test and the verdict of chapter 05; NDCG@K,
HR@K and the leave-one-out split of chapter 06), against :mod:`girl_lib.stats`,
:mod:`girl_lib.metrics.ranking` and the GenRec stage's own split.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from ..metrics import ranking
from ..stages.genrec.sequences import leave_one_out
from ..stats import mcnemar_exact, rate, verdict
from ._common import N_CASES, Outcome, _assert_close, _run, tolerance

# --------------------------------------------------------------------------------------------
# Chapter 05 — evaluation
# --------------------------------------------------------------------------------------------
def check_wilson(fn, quiet: bool = False) -> Outcome:
    """Exercise 5.1: ``wilson(k, n) -> (low, high)``, the 95 % Wilson score interval of k successes
    in n trials (:func:`girl_lib.stats.rate`)."""
    rng = random.Random(51)

    def cases(call):
        for i in range(N_CASES):
            n = rng.choice([1, 5, 20, 40, 200, 1000])
            k = rng.choice([0, n, rng.randint(0, n)])
            expected = rate(k, n)["ci"]
            got = call(k, n)
            _assert_close(list(got), expected, tolerance(torch.float64, 1, 16, ulps=1e4), f"case {i}: k={k}, n={n}")
        return N_CASES
    return _run("5.1", "wilson", fn, cases, quiet)


def check_mcnemar(fn, quiet: bool = False) -> Outcome:
    """Exercise 5.2: ``mcnemar(a, b) -> p``, the two-sided exact McNemar p-value of two arms'
    yes/no outcomes on the same seekers (:func:`girl_lib.stats.mcnemar_exact`)."""
    rng = np.random.default_rng(52)

    def cases(call):
        for i in range(N_CASES):
            n = int(rng.integers(1, 60))
            a = rng.random(n) < rng.uniform(0.1, 0.9)
            b = np.where(rng.random(n) < 0.7, a, rng.random(n) < 0.5)
            expected = mcnemar_exact(a, b)
            got = call(a.tolist(), b.tolist())
            _assert_close(float(got), expected, 1e-9, f"case {i}: a {a.astype(int).tolist()}, b {b.astype(int).tolist()}")
        return N_CASES
    return _run("5.2", "mcnemar", fn, cases, quiet)


def check_verdict(fn, quiet: bool = False) -> Outcome:
    """Exercise 5.3: ``verdict(ci, p_value) -> str``: "reproduced", "not reproduced" or
    "inconclusive" for the claim "the effect is positive" (:func:`girl_lib.stats.verdict`)."""
    cis = [(0.01, 0.2), (-0.2, -0.01), (-0.1, 0.1), (0.0, 0.3), (-0.3, 0.0), (None, None), (0.05, 0.1), (-0.5, -0.4)]
    ps = [None, 0.01, 0.2, 0.049, 0.05]

    def cases(call):
        n = 0
        for ci in cis:
            for p in ps:
                expected = verdict(list(ci), p_value=p)
                got = call(list(ci), p)
                assert got == expected, f"ci {ci}, p {p}: got {got!r}, expected {expected!r}"
                n += 1
        return n
    return _run("5.3", "verdict", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# Chapter 06 — GenRec
# --------------------------------------------------------------------------------------------
# Beam search can return the same title twice: a repeat must not push the target out of the top k.
REPEATS = [([["job1", "job1", "job1", "job2"]], ["job2"], 2), ([["job3", "job3", "job4", "job4", "job5"]], ["job5"], 3)]


def _ranked_case(rng: random.Random):
    items = [f"job{j}" for j in range(12)]
    users = rng.randint(1, 6)
    lists = [[rng.choice(items) for _ in range(rng.randint(0, 10))] for _ in range(users)]  # repeats happen
    targets = [rng.choice(items) for _ in range(users)]
    return lists, targets


def _check_ranking(number: str, name: str, metric, tol, seed: int, fn, quiet: bool) -> Outcome:
    """Run a learner's ranking metric against the library's on the repeat cases and seeded random
    ranked lists, k drawn from 1, 3, 5, 10; ``tol(lists)`` is the tolerance of one case."""
    rng = random.Random(seed)

    def cases(call):
        cases_ = REPEATS + [(*_ranked_case(rng), rng.choice([1, 3, 5, 10])) for _ in range(N_CASES)]
        for i, (lists, targets, k) in enumerate(cases_):
            _assert_close(float(call(lists, targets, k)), metric(lists, targets, k), tol(lists),
                          f"case {i}: k={k}, lists {lists}, targets {targets}")
        return len(cases_)
    return _run(number, name, fn, cases, quiet)


def check_ndcg_at_k(fn, quiet: bool = False) -> Outcome:
    """Exercise 6.1: ``ndcg_at_k(ranked_lists, targets, k) -> float``, the mean over users of
    ``1 / log2(rank + 1)`` for the target's 1-based rank in the top k (0 if absent), repeats in a
    list dropped first (:func:`girl_lib.metrics.ranking.ndcg_at_k`)."""
    # float64 maths, a mean of len(lists) terms of size <= 1: the tolerance of such a sum
    return _check_ranking("6.1", "ndcg_at_k", ranking.ndcg_at_k, lambda lists: tolerance(torch.float64, 1, len(lists)),
                          61, fn, quiet)


def check_hit_rate_at_k(fn, quiet: bool = False) -> Outcome:
    """Exercise 6.2: ``hit_rate_at_k(ranked_lists, targets, k) -> float``, the share of users whose
    target is among the first k distinct items (:func:`girl_lib.metrics.ranking.hit_rate_at_k`)."""
    return _check_ranking("6.2", "hit_rate_at_k", ranking.hit_rate_at_k, lambda lists: 1e-12, 62, fn, quiet)


def leave_one_out_questions(sequence: list[str]) -> tuple[list[tuple[tuple[str, ...], str]], tuple, tuple]:
    """One user's ``(train, val, test)`` questions as ``(history, target)`` pairs, from the GenRec
    stage's own :func:`girl_lib.stages.genrec.sequences.leave_one_out`."""
    split = leave_one_out({"user": list(sequence)})
    pairs = lambda examples: [(tuple(e.history), e.target) for e in examples]  # noqa: E731
    return pairs(split.train), pairs(split.val)[0], pairs(split.test)[0]


def check_leave_one_out(fn, quiet: bool = False) -> Outcome:
    """Exercise 6.3: ``leave_one_out_user(sequence) -> (train, val, test)`` for one user's items in time
    order; ``train`` a list of ``(history, target)`` pairs, ``val`` and ``test`` one pair each,
    histories as tuples (:func:`girl_lib.stages.genrec.sequences.leave_one_out`)."""
    rng = random.Random(63)

    def cases(call):
        for i in range(N_CASES):
            seq = [f"job{rng.randint(0, 99)}" for _ in range(rng.randint(3, 9))]
            expected = leave_one_out_questions(seq)
            train, val, test = call(list(seq))
            got = ([(tuple(h), t) for h, t in train], (tuple(val[0]), val[1]), (tuple(test[0]), test[1]))
            assert got == expected, f"case {i}: sequence {seq}\n  got      {got}\n  expected {expected}"
        return N_CASES
    return _run("6.3", "leave_one_out_user", fn, cases, quiet)
