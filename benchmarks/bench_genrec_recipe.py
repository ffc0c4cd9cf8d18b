"""What GenRec needs: HR@K of trie-constrained GenRec under several training recipes, on val users.

    python benchmarks/bench_genrec_recipe.py --profile cpu --users 64 \
        --variant base \
        --variant "prompt-loss: genrec.loss_on_prompt=true" \
        --variant "steps x2: genrec.max_train_examples=256"

Each ``--variant "NAME: KEY=VALUE; KEY=VALUE"`` is the profile plus those overrides (``base``:
none). For every variant the script trains GenRec's LoRA as the stage does
(:func:`girl_lib.stages.genrec.stage.train`, the same seeded sample of train examples; a variant
that changes only decoding, e.g. ``genrec.num_beams``, reuses an earlier variant's adapter), then
runs the trie-constrained beam search, history excluded inside the search, on a seeded draw of
**val** users (history ``s_1 .. s_{n-2}``, target ``s_{n-1}``): recipes are chosen here, and the
stage's test users stay unseen until the chosen recipe is scored on them.

Popularity and Markov (fitted on the train part, as in the stage) are scored on the same users,
so each variant's row carries its paired HR@10 difference to Markov (exact McNemar p). Every
rate has its Wilson 95 % interval. The data are ``<run-dir>/data`` (built first if missing).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import _common


# genrec fields that change only decoding or the baselines: variants differing only in these reuse
# the adapter trained for an earlier variant (training is seeded, so it would come out the same).
DECODE_ONLY = {"num_beams", "beam_batch_size", "max_new_tokens", "constrained", "renormalise", "length_penalty",
               "exclude_history", "max_test_users"}


def training_key(cfg) -> str:
    """What decides the trained adapter: the profile minus decoding-only genrec fields."""
    import json
    from dataclasses import asdict

    d = asdict(cfg)
    d["genrec"] = {k: v for k, v in d["genrec"].items() if k not in DECODE_ONLY and not k.startswith("sasrec")}
    d.pop("eval", None)
    return json.dumps(d, sort_keys=True, default=str)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"NAME: K=V; K=V"`` -> ``(NAME, ["K=V", "K=V"])``; a bare name has no overrides."""
    name, _, rest = text.partition(":")
    return name.strip(), [kv.strip() for kv in rest.split(";") if kv.strip()]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", default=[], help='"NAME: KEY=VALUE; ..." (repeatable; default: base)')
    p.add_argument("--users", type=int, default=64, help="val users scored (a seeded draw; <= 0: all)")
    p.add_argument("--run-dir", type=Path, help="run folder whose data/ to read (default: runs/<profile>)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()

    import torch

    from girl_lib.config import parse_override_args, resolve_profile
    from girl_lib.rundir import is_complete
    from girl_lib.stages import data as data_stage
    from girl_lib.stages.genrec import stage as genrec
    from girl_lib.stages.genrec.baselines import Markov, Popularity
    from girl_lib.stages.genrec.decoding import TitleTrie, beam_search
    from girl_lib.stages.genrec.sequences import load_world_sequences, split_data
    from girl_lib.stats import fmt_rate, paired_difference, rate
    from girl_lib.world import draw

    if args.threads:
        torch.set_num_threads(args.threads)
    base = _common.load_profile(args)
    run_dir = args.run_dir or Path("runs") / base.name
    if not is_complete(run_dir / "data"):
        data_stage.run_stage(base, run_dir)
    loaded = {}  # job name format -> SequenceData (the items and users are the same; their names differ)
    variants = [parse_variant(v) for v in args.variant] or [("base", [])]

    rows, results, baselines, trained = [], {}, None, {}
    for name, overrides in variants:
        cfg = resolve_profile(args.profile, parse_override_args([*args.set, *overrides]))
        g = cfg.genrec
        if g.job_name not in loaded:
            loaded[g.job_name] = load_world_sequences(run_dir / "data", g.job_name)
        data = loaded[g.job_name]
        split = split_data(data, g.max_history)
        users = draw(split.val, args.users if args.users > 0 else None, f"genrec/val/{cfg.seed}")
        targets = [e.target for e in users]
        if baselines is None:  # the same users for every variant (their draw does not depend on genrec.*)
            baselines = {m: [int(t in cls(split.train_sequences).recommend(e.history, 10, g.exclude_history))
                             for e, t in zip(users, targets)] for m, cls in (("popularity", Popularity), ("markov", Markov))}
            for m, hits in baselines.items():
                rows.append({"variant": m, "HR@10": fmt_rate(rate(sum(hits), len(hits)))})
        examples = genrec.sample_train(split.train, g.max_train_examples, cfg.seed)
        key = training_key(cfg)
        if key not in trained:
            out = Path(tempfile.mkdtemp(prefix="genrec-recipe-"))
            try:
                model, tokenizer, info = genrec.train(cfg, data, examples, out)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            reused = False
            trained = {key: (model.merge_and_unload(), tokenizer, info)}  # one model held at a time
        else:
            reused = True
        model, tokenizer, info = trained[key]
        by_name = {n: i for i, n in data.names.items()}
        prompts = [genrec.user_prompt(e, data, cfg.seed, stage="val") for e in users]
        exclude = [[data.names[i] for i in e.history] for e in users] if g.exclude_history else None
        t0 = time.time()
        beams = beam_search(model, tokenizer, prompts, num_beams=g.num_beams, batch_size=g.beam_batch_size,
                            trie=TitleTrie(tokenizer, list(by_name)), exclude=exclude, renormalise=g.renormalise,
                            length_penalty=g.length_penalty,
                            bf16=genrec.use_bf16(cfg),
                            fast_decode=cfg.generation.fast_decode)
        decode_s = time.time() - t0
        ranked = genrec.as_items(beams, users, by_name, g.exclude_history)
        hits5, _ = genrec.per_user(ranked, targets, 5)
        hits10, ndcg10 = genrec.per_user(ranked, targets, 10)
        vs = paired_difference(hits10, baselines["markov"], seed=cfg.seed)
        results[name] = {"overrides": overrides, "adapter_reused": reused, "n_users": len(users),
                         "n_train_examples": len(examples),
                         "global_steps": info["global_steps"], "train_seconds": info["train_seconds"],
                         "train_loss": info["train_loss"], "decode_seconds_per_user": round(decode_s / len(users), 2),
                         "hr@5": rate(sum(hits5), len(hits5)), "hr@10": rate(sum(hits10), len(hits10)),
                         "ndcg@10": round(sum(ndcg10) / len(ndcg10), 4), "hr@10_minus_markov": vs}
        rows.append({"variant": name, "examples": len(examples), "steps": info["global_steps"],
                     "train s": info["train_seconds"], "loss": info["train_loss"],
                     "decode s/user": round(decode_s / len(users), 2), "HR@5": fmt_rate(results[name]["hr@5"]),
                     "HR@10": fmt_rate(results[name]["hr@10"]), "NDCG@10": results[name]["ndcg@10"],
                     "- Markov (p)": f"{100 * vs['diff']:+.1f} ({vs['p_value']:.2g})"})
        print(f"[bench] {name}: HR@10 {fmt_rate(results[name]['hr@10'])}", flush=True)
    result = {"n_users": len(targets), "baselines_hr@10": {m: rate(sum(h), len(h)) for m, h in baselines.items()},
              "variants": results}
    _common.emit("genrec_recipe", args, result, rows,
                 ["variant", "examples", "steps", "train s", "loss", "decode s/user", "HR@5", "HR@10", "NDCG@10",
                  "- Markov (p)"])


if __name__ == "__main__":
    main()
