"""The classic next-item recommenders GenRec is compared with, on the same split and metrics.

* :class:`Popularity` — the most frequent training items, the same list for everybody.
* :class:`Markov` — first-order transitions: after item ``a``, the items that most often followed
  ``a`` in training; ties and short lists are filled by popularity.
* :class:`SASRecRecommender` — Kang & McAuley (2018), a small causal transformer over item ids
  trained with cross-entropy over all items; the ID-based stand-in for P5.

Each is fitted on :attr:`girl_lib.stages.genrec.sequences.Split.train_sequences` and ranks item
ids. Every recommender skips items already in the user's history when ``exclude_history`` is on
(a seeker does not apply twice to one posting; a MovieLens user rates a film once).
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from typing import Sequence


def _top(scores: dict[str, float], k: int, skip: set) -> list[str]:
    # Highest score first; ties broken by item id so the ranking is deterministic.
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])) if i not in skip][:k]


class Popularity:
    """Recommend the items that occur most often in the training sequences."""
    def __init__(self, train_sequences: dict[str, list[str]]):
        self.counts = Counter(i for seq in train_sequences.values() for i in seq)

    def recommend(self, history: Sequence[str], k: int = 10, exclude_history: bool = True) -> list[str]:
        return _top(self.counts, k, set(history) if exclude_history else set())


class Markov:
    """First-order transitions ``a -> b`` counted in the training sequences; popularity fills up."""
    def __init__(self, train_sequences: dict[str, list[str]]):
        self.popularity = Popularity(train_sequences)
        self.next: dict[str, Counter] = defaultdict(Counter)
        for seq in train_sequences.values():
            for a, b in zip(seq, seq[1:]):
                self.next[a][b] += 1

    def recommend(self, history: Sequence[str], k: int = 10, exclude_history: bool = True) -> list[str]:
        skip = set(history) if exclude_history else set()
        ranked = _top(self.next.get(history[-1], {}), k, skip) if history else []
        fill = self.popularity.recommend(history, k + len(ranked), exclude_history)
        return (ranked + [i for i in fill if i not in ranked])[:k]


def _torch():
    import torch
    from torch import nn

    return torch, nn


def make_sasrec(n_items: int, dim: int = 64, layers: int = 2, heads: int = 2, max_len: int = 50,
                dropout: float = 0.2):
    """A small SASRec: item + position embeddings, ``layers`` causal transformer blocks, and the
    item embedding matrix reused as the output layer (logits = h · E^T, as in the paper)."""
    torch, nn = _torch()

    class SASRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)  # index 0 = padding
            self.pos = nn.Embedding(max_len, dim)
            self.drop = nn.Dropout(dropout)
            block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
            self.max_len = max_len
            # Small initial embeddings (GPT-style): with PyTorch's N(0, 1) default the tied output
            # layer starts with logits of std ~sqrt(dim) and a cross-entropy in the tens.
            for emb in (self.item, self.pos):
                nn.init.normal_(emb.weight, std=0.02)
            with torch.no_grad():
                self.item.weight[0].zero_()

        def forward(self, seq):
            """``seq`` [B, L] item indices, **right**-padded with 0 -> logits [B, L, n_items + 1].

            Right padding plus the causal mask means a real position never sees a pad, so no
            key-padding mask is needed (and no fully masked attention row can produce NaN).
            """
            length = seq.shape[1]
            pos = torch.arange(length, device=seq.device)
            h = self.drop(self.item(seq) * math.sqrt(dim) + self.pos(pos)[None])
            causal = nn.Transformer.generate_square_subsequent_mask(length, device=seq.device)
            h = self.norm(self.blocks(h, mask=causal, is_causal=True))
            logits = h @ self.item.weight.T
            logits[..., 0] = float("-inf")  # never recommend padding
            return logits

    return SASRec()


class SASRecRecommender:
    """Train :func:`make_sasrec` on the training sequences; recommend from the last position."""
    def __init__(self, train_sequences: dict[str, list[str]], *, dim: int = 64, layers: int = 2, heads: int = 2,
                 max_len: int = 20, dropout: float = 0.2, epochs: int = 100, batch_size: int = 128,
                 learning_rate: float = 1e-3, seed: int = 0, progress: bool = False):
        torch, nn = _torch()
        items = sorted({i for s in train_sequences.values() for i in s})
        self.index = {item: k + 1 for k, item in enumerate(items)}
        self.items = [None] + items
        self.max_len = max_len
        torch.manual_seed(seed)
        self.model = make_sasrec(len(items), dim, layers, heads, max_len, dropout)
        seqs = [s[-(max_len + 1):] for s in train_sequences.values() if len(s) >= 2]
        self.losses: list[float] = []
        if not seqs:
            return
        # A model this small runs fastest on one CPU thread (two threads fight over a busy machine);
        # the previous setting is restored afterwards.
        threads = torch.get_num_threads()
        if next(self.model.parameters()).device.type == "cpu":
            torch.set_num_threads(1)
        try:
            self._fit(seqs, epochs, batch_size, learning_rate, seed, progress)
        finally:
            torch.set_num_threads(threads)
        self.model.eval()

    def _fit(self, seqs, epochs, batch_size, learning_rate, seed, progress):
        torch, nn = _torch()
        opt = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        rng = random.Random(seed)
        loss_fn = nn.CrossEntropyLoss(ignore_index=0)
        epochs_iter = range(epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs_iter = tqdm(epochs_iter, desc="sasrec", unit="epoch")
        self.model.train()
        for _ in epochs_iter:
            rng.shuffle(seqs)
            total = 0.0
            for b in range(0, len(seqs), batch_size):
                batch = seqs[b:b + batch_size]
                inputs = self._pad([s[:-1] for s in batch])
                targets = self._pad([s[1:] for s in batch])
                logits = self.model(inputs)
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
            self.losses.append(total / len(seqs))

    def _pad(self, seqs: Sequence[Sequence[str]]):
        torch, _ = _torch()
        width = max(len(s) for s in seqs)
        out = torch.zeros(len(seqs), width, dtype=torch.long)
        for r, s in enumerate(seqs):
            out[r, :len(s)] = torch.tensor([self.index.get(i, 0) for i in s], dtype=torch.long)
        return out

    def recommend_many(self, histories: Sequence[Sequence[str]], k: int = 10, exclude_history: bool = True,
                       batch_size: int = 256) -> list[list[str]]:
        torch, _ = _torch()
        out: list[list[str]] = []
        with torch.no_grad():
            for b in range(0, len(histories), batch_size):
                hs = [list(h)[-self.max_len:] for h in histories[b:b + batch_size]]
                hs_known = [[i for i in h if i in self.index] or [None] for h in hs]
                inputs = self._pad(hs_known)
                logits = self.model(inputs)
                last = torch.tensor([len(h) - 1 for h in hs_known])
                scores = logits[torch.arange(len(hs_known)), last]
                for h, row in zip(hs, scores):
                    if exclude_history:
                        row[[self.index[i] for i in h if i in self.index]] = float("-inf")
                    top = torch.topk(row, min(k, len(self.items) - 1)).indices.tolist()
                    out.append([self.items[t] for t in top if self.items[t] is not None and row[t] > float("-inf")])
        return out

    def recommend(self, history: Sequence[str], k: int = 10, exclude_history: bool = True) -> list[str]:
        return self.recommend_many([history], k, exclude_history)[0]
