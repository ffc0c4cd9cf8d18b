"""Solutions to the exercises of chapter 03 (the reward model). Checked by tests/test_exercises.py."""
import torch


def bt_loss(chosen, rejected):
    """Exercise 3.1: -log sigmoid(margin) = softplus(-margin), finite for any margin."""
    margin = torch.as_tensor(chosen, dtype=torch.float32) - torch.as_tensor(rejected, dtype=torch.float32)
    return torch.nn.functional.softplus(-margin).mean()


def auc(labels, scores):
    """Exercise 3.2: over every (positive, negative) pair, 1 if the positive scores higher, 1/2 on a tie."""
    pos = [s for y, s in zip(labels, scores) if y == 1]
    neg = [s for y, s in zip(labels, scores) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def jd_mask(input_ids, attention_mask, header):
    """Exercise 3.3: find the last place the header starts; the JD is every real token after it."""
    k = len(header)
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for row in range(input_ids.shape[0]):
        ids = input_ids[row].tolist()
        starts = [i for i in range(len(ids) - k + 1) if ids[i:i + k] == list(header)]
        first = starts[-1] + k
        mask[row, first:] = attention_mask[row, first:].bool()
    return mask
