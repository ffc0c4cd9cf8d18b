"""Linear probe of frozen base-model features for the reward task: which layer, which pooling.

    python benchmarks/probe_reward_features.py --profile cpu --run-dir runs/cpu --train-pairs 256 --val-pairs 64

Before training a reward model, ask how much of the answer its base already holds. For each
``rm_pairs.jsonl`` pair the frozen base LLM reads the two chats (``scoring.chat_ids``); features
are taken at several layers, pooled two ways (``last``: the last token, Hugging Face's stock
head; ``response_mean``: the mean over the JD's tokens, :mod:`girl_lib.pooling`), and an
L2-regularised logistic regression on ``features(jd+) - features(jd-)`` is fitted on the train
pairs and scored on held-out val pairs. The figures behind the ``cpu`` profile's
``reward.pooling`` and ``reward.num_layers`` came from this script. Without ``--run-dir`` a small
world is built in a temporary directory.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common


def features(model, tok, rows: list[dict], layers: list[int], batch_size: int, bf16: bool):
    """``{(pooling, layer): [2n, hidden]}``: chosen rows at even, rejected at odd indices."""
    import torch

    from girl_lib import scoring
    from girl_lib.pooling import response_header_ids, response_mask
    from girl_lib.textgen import right_pad

    header = response_header_ids(tok)
    seqs = [scoring.chat_ids(tok, r["prompt"], jd) for r in rows for jd in (r["chosen"], r["rejected"])]
    out = {(p, layer): [None] * len(seqs) for p in ("last", "response_mean") for layer in layers}
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask = right_pad([seqs[i] for i in idx], tok.pad_token_id)  # as scoring.score_prompts
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            resp = response_mask(ids, mask, header).unsqueeze(-1)
            for layer in layers:
                h = hidden[layer].float()
                mean = (h * resp).sum(1) / resp.sum(1)
                for k, i in enumerate(idx):
                    out[("last", layer)][i] = h[k, len(seqs[i]) - 1]
                    out[("response_mean", layer)][i] = mean[k]
    return {key: torch.stack(v) for key, v in out.items()}


def probe(train, val, c: float) -> tuple[float, float]:
    """Train and val pairwise accuracy of a logistic regression on feature differences."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def xy(f):
        d = (f[0::2] - f[1::2]).numpy()
        return np.concatenate([d, -d]), np.concatenate([np.ones(len(d)), np.zeros(len(d))])

    x, y = xy(train)
    xv, yv = xy(val)
    scale = x.std(0) + 1e-6  # standardised: LLM hidden states have a few huge dimensions
    clf = LogisticRegression(C=c, max_iter=3000).fit(x / scale, y)
    return float(clf.score(x / scale, y)), float(clf.score(xv / scale, yv))


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, help="a run dir with a complete data stage (default: a small temporary world)")
    p.add_argument("--train-pairs", type=int, default=256)
    p.add_argument("--val-pairs", type=int, default=64)
    p.add_argument("--layers", default="", help="comma-separated hidden-state indices (default: 5 spread over the depth)")
    p.add_argument("--C", type=float, default=0.01, help="inverse L2 strength of the logistic regression")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    cfg = _common.load_profile(args)

    from girl_lib import scoring, training
    from girl_lib.models import load_causal_lm
    from girl_lib.pipeline import run_stage
    from girl_lib.stages import reward

    with tempfile.TemporaryDirectory(prefix="girl-probe-") as tmp:
        run_dir = args.run_dir or Path(tmp)
        if args.run_dir is None:
            run_stage("data", cfg, run_dir, log=lambda *a: None)
        train = reward.load_pairs(run_dir / "data", "train", args.train_pairs)
        val = reward.load_pairs(run_dir / "data", "val", args.val_pairs)
    model, tok = load_causal_lm(cfg.model, device="cpu", seed=cfg.seed)
    n_layers = model.config.num_hidden_layers
    layers = [int(x) for x in args.layers.split(",") if x] or sorted({max(1, round(n_layers * f)) for f in
                                                                     (0.2, 0.4, 0.6, 0.8, 1.0)})
    bf16 = bool(training.precision_flags(cfg)["bf16"])
    t0 = time.time()
    f_train = features(model, tok, train, layers, args.batch_size, bf16)
    f_val = features(model, tok, val, layers, args.batch_size, bf16)
    seconds = time.time() - t0
    rows = []
    for (pooling, layer) in f_train:
        tr, va = probe(f_train[(pooling, layer)], f_val[(pooling, layer)], args.C)
        rows.append({"pooling": pooling, "layer": layer, "train_acc": round(tr, 3), "val_acc": round(va, 3)})
    best = max(rows, key=lambda r: r["val_acc"])
    result = {"model": cfg.model.base_model, "n_layers": n_layers, "train_pairs": len(train), "val_pairs": len(val),
              "C": args.C, "bf16_autocast": bf16, "feature_seconds": round(seconds, 1), "best": best, "results": rows}
    _common.emit("probe_reward_features", args, result, rows, ["pooling", "layer", "train_acc", "val_acc"])


if __name__ == "__main__":
    main()
