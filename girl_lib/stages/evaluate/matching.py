"""Generation-enhanced person–job matching: do generated JDs help a conventional recommender?

The GIRL paper's second use of its generator: a matching model predicts whether a
(candidate, job) pair is a match; adding the JD the generator wrote *for the candidate* as extra
features raised AUC and lowered LogLoss, most in cold start (new people, new jobs), where the
model has no interaction history to lean on. Here the label is the recruiter's decision on a
real application (``applications.jsonl``: ``accepted``), and every text is embedded with the
same frozen sentence embedder (:mod:`girl_lib.embed`).

What the matching model sees for one application (seeker ``s`` applied to job ``j``):

================= ====================================================== ====================
feature set       user side                                               pair features
================= ====================================================== ====================
``cv``            ``e(CV_s)``                                             ``cos(e(CV_s), e(JD_j))``
``cv+generated``  ``e(CV_s)`` and ``e(G_s)``, G_s = the JD the generator  also
                  wrote for s (greedy)                                    ``cos(e(G_s), e(JD_j))``
================= ====================================================== ====================

and the job side ``e(JD_j)`` in both. Two models:

* ``logistic`` — logistic regression (scikit-learn) on ``[u ⊙ e(JD_j) for each user vector u]``
  plus the pair features, standardised: a linear model of embedding interactions.
* ``two_tower`` — a two-tower MLP (PyTorch): ``f(user side)`` and ``g(e(JD_j))``, each
  ``Linear → ReLU → Linear`` to ``eval.matching_hidden`` units; the logit is
  ``f·g / sqrt(h) + w·pair features + b``, trained with binary cross-entropy (AdamW, full batch,
  at most ``eval.matching_epochs`` epochs, keeping the epoch with the lowest loss on the applications of a
  held-out 20% of the training seekers; the pair features standardised with the training statistics). The towers are what a production recommender would
  precompute and index; the pair features let it start from plain similarity.

**Who trains it.** The matching model trains on the applications of the world's ``match``
seekers, whom no SFT, reward-model or RL example comes from: the generated-JD features are
out-of-sample for its training rows exactly as for its test rows.

**Uncertainty.** Each model is trained ``eval.matching_seeds`` times (seeds differ) and the
predictions averaged. AUC and LogLoss carry 95 % intervals from a bootstrap over test seekers
(all applications of a seeker move together), and the gain from the generated features is a
paired difference on the same resampled seekers, with its bootstrap p-value.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...metrics.scores import pairwise_auc
from ...stats import cluster_bootstrap

FEATURE_SETS = ("cv", "cv+generated")
MODELS = ("logistic", "two_tower")


def build_features(rows: Sequence[dict], cv_emb: dict, jd_emb: dict, gen_emb: dict | None) -> dict:
    """Arrays for a list of applications: ``user`` [n, d or 2d], ``job`` [n, d], ``pair`` [n, 1 or 2], ``y`` [n].

    ``cv_emb``/``gen_emb`` map seeker id -> vector, ``jd_emb`` job id -> vector (unit length).
    ``gen_emb=None`` gives the ``cv`` feature set.
    """
    cv = np.stack([cv_emb[r["seeker_id"]] for r in rows]).astype(np.float32)
    job = np.stack([jd_emb[r["job_id"]] for r in rows]).astype(np.float32)
    user_parts, pair = [cv], [np.sum(cv * job, axis=1)]
    if gen_emb is not None:
        gen = np.stack([gen_emb[r["seeker_id"]] for r in rows]).astype(np.float32)
        user_parts.append(gen)
        pair.append(np.sum(gen * job, axis=1))
    return {"user": np.concatenate(user_parts, axis=1), "job": job, "pair": np.stack(pair, axis=1),
            "y": np.array([int(r["accepted"]) for r in rows]), "seeker": np.array([r["seeker_id"] for r in rows]),
            "n_user_parts": len(user_parts)}


def _interactions(f: dict) -> np.ndarray:
    d = f["job"].shape[1]
    parts = [f["user"][:, i * d:(i + 1) * d] * f["job"] for i in range(f["n_user_parts"])]
    return np.concatenate(parts + [f["pair"]], axis=1)


def _select(f: dict, idx: np.ndarray) -> dict:
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in f.items()}


# --------------------------------------------------------------------------------------------
# The two models: fit(train) -> predict_proba(test)
# --------------------------------------------------------------------------------------------
def fit_predict_logistic(train: dict, tests: dict[str, dict], seed: int) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
    model.fit(_interactions(train), train["y"])
    return {k: model.predict_proba(_interactions(t))[:, 1] for k, t in tests.items()}


class TwoTower(nn.Module):
    """A user tower and a job tower whose dot product, plus a linear term on pair features, is the logit."""

    def __init__(self, d_user: int, d_job: int, n_pair: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.user = nn.Sequential(nn.Linear(d_user, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.job = nn.Sequential(nn.Linear(d_job, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.pair = nn.Linear(n_pair, 1)  # w . pair features + b

    def forward(self, u, j, p):
        return (self.user(u) * self.job(j)).sum(-1) / self.hidden ** 0.5 + self.pair(p).squeeze(-1)

    def start_constant(self, rate: float) -> None:
        """Start as the constant predictor: towers' product 0 (last user layer zero), bias = log-odds
        of the training acceptance rate. Otherwise the first hundred steps only learn the base rate."""
        rate = float(np.clip(rate, 1e-3, 1 - 1e-3))
        with torch.no_grad():
            nn.init.zeros_(self.user[-1].weight)
            nn.init.zeros_(self.user[-1].bias)
            self.pair.weight.zero_()
            self.pair.bias.fill_(float(np.log(rate / (1 - rate))))


def held_out_seekers(train: dict, seed: int, val_fraction: float) -> tuple[dict, dict | None]:
    """``(fit, val)``: all the rows of a random ``val_fraction`` of the training *seekers* held out.

    A bootstrap repeats rows; holding out whole seekers keeps copies out of both sides. ``val`` is
    ``None`` when there are too few seekers to hold any out.
    """
    seekers = np.unique(train["seeker"])
    held = set(np.random.default_rng(seed).permutation(seekers)[:int(round(val_fraction * len(seekers)))])
    in_val = np.array([s in held for s in train["seeker"]])
    if len(seekers) >= 5 and 0 < in_val.sum() < len(in_val):
        return _select(train, np.where(~in_val)[0]), _select(train, np.where(in_val)[0])
    return train, None


def fit_predict_two_tower(train: dict, tests: dict[str, dict], seed: int, hidden: int = 64, epochs: int = 150,
                          lr: float = 1e-2, weight_decay: float = 1e-3, val_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Train the two-tower MLP full-batch; keep the epoch with the lowest loss on held-out seekers.

    With a few hundred applications the towers can memorise the training pairs within tens of
    epochs; early stopping on held-out rows (drawn with ``seed``) picks the epoch before that.
    """
    torch.manual_seed(seed)
    # Similarities vary little (MiniLM cosines of JDs sit in a narrow band): standardise them with
    # the training statistics so the linear part does not need huge weights to use them.
    mu, sd = train["pair"].mean(0), train["pair"].std(0) + 1e-6
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    inputs = lambda f: (t(f["user"]), t(f["job"]), t((f["pair"] - mu) / sd))  # noqa: E731
    fit, val = held_out_seekers(train, seed, val_fraction)
    model = TwoTower(train["user"].shape[1], train["job"].shape[1], train["pair"].shape[1], hidden)
    model.start_constant(fit["y"].mean() if len(fit["y"]) else 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    x, y = inputs(fit), t(fit["y"])
    best, best_loss = copy.deepcopy(model.state_dict()), float("inf")
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        loss_fn(model(*x), y).backward()
        opt.step()
        if val is not None:
            model.eval()
            with torch.no_grad():
                v = float(loss_fn(model(*inputs(val)), t(val["y"])))
            if v < best_loss:
                best, best_loss = copy.deepcopy(model.state_dict()), v
    if val is not None:
        model.load_state_dict(best)
    model.eval()
    with torch.no_grad():
        return {k: torch.sigmoid(model(*inputs(f))).numpy() for k, f in tests.items()}


# The bootstrap calls these tens of thousands of times: plain numpy (the same numbers as
# metrics.binary_auc / metrics.log_loss, which validate their input through scikit-learn).
def _auc(y: np.ndarray, prob: np.ndarray) -> float | None:
    pos, neg = prob[y == 1], prob[y == 0]
    return pairwise_auc(pos, neg) if len(pos) and len(neg) else None


def _logloss(y: np.ndarray, prob: np.ndarray, eps: float = 1e-7) -> float | None:
    p = np.clip(prob, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else None


def ensemble_predictions(model: str, train: dict, tests: dict[str, dict], seeds: int, hidden: int, epochs: int,
                         lr: float, weight_decay: float) -> dict[str, np.ndarray]:
    """The mean predicted probability of ``seeds`` models that differ only in their seed.

    Averaging removes most of the training noise (initialisation, the early-stopping split), so
    what the intervals below measure is the test seekers' sampling, not one unlucky run.
    """
    runs = []
    for seed in range(seeds):
        if model == "logistic":
            runs.append(fit_predict_logistic(train, tests, seed))
        else:
            runs.append(fit_predict_two_tower(train, tests, seed, hidden, epochs, lr, weight_decay))
    return {s: np.mean([r[s] for r in runs], axis=0) for s in tests}


def score_with_intervals(y: np.ndarray, seeker: np.ndarray, with_: np.ndarray, without: np.ndarray,
                         seed: int = 0) -> dict:
    """AUC and LogLoss of both feature sets and their gain, bootstrapped over seekers.

    A seeker's applications are resampled together (:func:`girl_lib.stats.cluster_bootstrap`);
    the gain (with minus without) is computed on the same resampled seekers, so its interval and
    bootstrap p-value are paired.
    """
    out: dict = {"cv": {}, "cv+generated": {}, "gain": {}}
    for name, fn in (("auc", _auc), ("logloss", _logloss)):
        out["cv"][name] = cluster_bootstrap(lambda i: fn(y[i], without[i]), seeker, seed=seed)
        out["cv+generated"][name] = cluster_bootstrap(lambda i: fn(y[i], with_[i]), seeker, seed=seed)

        def gain(i, fn=fn):
            a, b = fn(y[i], with_[i]), fn(y[i], without[i])
            return None if a is None or b is None else a - b

        g = cluster_bootstrap(gain, seeker, seed=seed, null=0.0)
        out["gain"][name] = {"diff": g["value"], "ci": g["ci"], "p_value": g["p_value"], "n": g["n_groups"],
                             "test": "bootstrap"}
    return out


def run_matching(train_rows: Sequence[dict], test_rows: dict[str, Sequence[dict]], cv_emb: dict, jd_emb: dict,
                 gen_emb: dict, seeds: int = 3, models: Sequence[str] = MODELS, hidden: int = 64, epochs: int = 150,
                 lr: float = 1e-2, weight_decay: float = 1e-3) -> dict:
    """Train every model with and without generated-JD features; score on every test split.

    ``test_rows`` maps a split name (``test``, ``cold``) to its applications. Returns::

        {model: {feature_set: {split: {"auc": {value, ci, n_groups}, "logloss": {...}}}},
         "gain": {model: {split: {"auc": {diff, ci, p_value, n}, "logloss": {...}}}},   # with - without
         "cold_minus_test": {model: {diff, ci, p_value}},   # the AUC gain in cold start minus on test
         "n": {"train": .., split: ..}, "seekers": {...}, "positive_rate": {...}}
    """
    feats = {fs: {"train": build_features(train_rows, cv_emb, jd_emb, gen_emb if fs != "cv" else None),
                  **{s: build_features(r, cv_emb, jd_emb, gen_emb if fs != "cv" else None)
                     for s, r in test_rows.items()}} for fs in FEATURE_SETS}
    out: dict = {"n": {"train": len(train_rows), **{s: len(r) for s, r in test_rows.items()}},
                 "positive_rate": {s: (float(np.mean([x["accepted"] for x in r])) if r else None)
                                   for s, r in {"train": train_rows, **test_rows}.items()},
                 "seeds": seeds, "gain": {}, "cold_minus_test": {}}
    for m in models:
        probs = {fs: ensemble_predictions(m, feats[fs]["train"], {s: feats[fs][s] for s in test_rows}, seeds,
                                          hidden, epochs, lr, weight_decay) for fs in FEATURE_SETS}
        out[m] = {fs: {} for fs in FEATURE_SETS}
        out["gain"][m] = {}
        for s in test_rows:
            f = feats["cv"][s]
            scored = score_with_intervals(f["y"], f["seeker"], probs["cv+generated"][s], probs["cv"][s])
            for fs in FEATURE_SETS:
                out[m][fs][s] = scored[fs]
            out["gain"][m][s] = scored["gain"]
        if {"test", "cold"} <= set(test_rows):
            out["cold_minus_test"][m] = _cold_minus_test(feats["cv"], probs)
    return out


def _cold_minus_test(feats: dict, probs: dict) -> dict:
    """The AUC gain on cold-start seekers minus the gain on test seekers: two independent samples."""
    def gain(split, i):
        y = feats[split]["y"][i]
        a, b = _auc(y, probs["cv+generated"][split][i]), _auc(y, probs["cv"][split][i])
        return None if a is None or b is None else a - b

    def diff(i_test, i_cold):
        gt, gc = gain("test", i_test), gain("cold", i_cold)
        return None if gt is None or gc is None else gc - gt

    r = cluster_bootstrap(diff, feats["test"]["seeker"], feats["cold"]["seeker"], null=0.0)
    return {"diff": r["value"], "ci": r["ci"], "p_value": r["p_value"], "n": r["n_groups"], "test": "bootstrap"}
