"""Solutions to the exercises of chapter 06 (GenRec). Checked by tests/test_exercises.py."""
import math


def _distinct(ranked):
    return list(dict.fromkeys(ranked))


def ndcg_at_k(ranked_lists, targets, k):
    """Exercise 6.1: one relevant item per user, so the ideal DCG is 1."""
    total = 0.0
    for ranked, target in zip(ranked_lists, targets):
        top = _distinct(ranked)[:k]
        if target in top:
            total += 1 / math.log2(top.index(target) + 2)
    return total / len(targets) if targets else 0.0


def hit_rate_at_k(ranked_lists, targets, k):
    """Exercise 6.2: a hit when the target is among the first k distinct items."""
    hits = [target in _distinct(ranked)[:k] for ranked, target in zip(ranked_lists, targets)]
    return sum(hits) / len(hits) if hits else 0.0


def leave_one_out_user(sequence):
    """Exercise 6.3: last item = test, the one before = validation, earlier positions = training."""
    n = len(sequence)
    train = [(tuple(sequence[:t]), sequence[t]) for t in range(1, n - 2)]
    return train, (tuple(sequence[:n - 2]), sequence[n - 2]), (tuple(sequence[:n - 1]), sequence[n - 1])
