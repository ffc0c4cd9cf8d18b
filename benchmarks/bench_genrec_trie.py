"""GenRec's constrained decoding on a large catalogue: trie build, beam search per user, memory.

    python benchmarks/bench_genrec_trie.py --profile smoke                       # 10,000 titles, tiny model
    python benchmarks/bench_genrec_trie.py --profile cpu --titles 20000 --users 8 --threads 1

The catalogue is synthetic and job-like: every ESCO ICT occupation label and alternative title,
with a level word and one of 16 made-up companies (``"Senior Cloud Engineer at Brouwer"``),
a seeded draw of ``--titles`` distinct ones. Titles share long prefixes, as real catalogues do,
which is where a token trie branches least and runs deepest.

Reported: the trie's build time, nodes and memory (``tracemalloc``: Python objects allocated
while building), the cost of one :meth:`TitleTrie.allowed` call on the full trie and on a trie
of a tenth of the titles (equal costs: a decoding step does no work proportional to the
catalogue), and the seconds per user of a constrained beam search (``genrec.num_beams`` beams)
against a free one of the same length on the same prompts, plus the share of constrained beams
that are catalogue titles (1.0 by construction). Peak RSS covers the whole process, model
included.
"""
from __future__ import annotations

import random
import time
import tracemalloc

import _common

LEVEL_WORDS = ("Junior", "", "Senior", "Lead")
COMPANIES = ("Acme", "Brouwer", "Reynaud", "Maes", "Novak", "Lindqvist", "Okafor", "Ferreira", "Kowalski",
             "Moreau", "Jansen", "Rossi", "Schmidt", "Dubois", "Nieminen", "Horvat")


def synthetic_titles(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct job-like titles: occupation x level x company, a seeded draw."""
    from girl_lib.world import load_taxonomy

    occupations = load_taxonomy().occupations
    base = sorted({t for o in occupations for t in (o.label, *o.alt_titles)})
    pool = sorted({f"{level} {b.title()} at {c}".strip() for b in base for level in LEVEL_WORDS for c in COMPANIES})
    if n > len(pool):
        raise SystemExit(f"--titles {n}: the synthetic catalogue has {len(pool)} distinct titles at most")
    return random.Random(seed).sample(pool, n)


def allowed_cost_us(trie, tokenizer, titles: list[str], calls: int = 2000) -> float:
    """Microseconds per :meth:`TitleTrie.allowed` call, over every prefix of a few titles."""
    rng = random.Random(1)
    prefixes = []
    for title in rng.sample(titles, min(20, len(titles))):
        ids = tokenizer.encode(title, add_special_tokens=False)
        prefixes += [ids[:k] for k in range(len(ids) + 1)]
    t0 = time.perf_counter()
    for k in range(calls):
        trie.allowed(prefixes[k % len(prefixes)])
    return round((time.perf_counter() - t0) / calls * 1e6, 2)


def build_trie(tokenizer, titles: list[str]):
    """``(trie, seconds, tracemalloc peak MB, tracemalloc MB still held)`` of one build."""
    from girl_lib.stages.genrec.decoding import TitleTrie

    tracemalloc.start()
    t0 = time.perf_counter()
    trie = TitleTrie(tokenizer, titles)
    seconds = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return trie, round(seconds, 3), round(peak / 2**20, 1), round(current / 2**20, 1)


def user_prompts(titles: list[str], users: int, history: int, seed: int = 0) -> list[str]:
    """One GenRec prompt per user: ``history`` catalogue titles drawn at random."""
    from girl_lib.stages.genrec.stage import INSTRUCTIONS, make_prompt

    rng = random.Random(seed)
    return [make_prompt(rng.sample(titles, history), INSTRUCTIONS["jobs"][u % len(INSTRUCTIONS["jobs"])])
            for u in range(users)]


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--titles", type=int, default=10_000, help="catalogue size (distinct titles)")
    p.add_argument("--users", type=int, default=4, help="prompts to decode")
    p.add_argument("--history", type=int, default=5, help="titles per prompt")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--no-free", action="store_true", help="skip the free beam search used for comparison")
    args = p.parse_args(argv)
    cfg = _common.load_profile(args)

    import torch

    from girl_lib.fastpath import torch_threads
    from girl_lib.models import load_causal_lm
    from girl_lib.stages.genrec.decoding import beam_search

    g = cfg.genrec
    titles = synthetic_titles(args.titles, cfg.seed)
    model, tok = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    trie, build_s, trie_peak_mb, trie_held_mb = build_trie(tok, titles)
    small, *_ = build_trie(tok, titles[:max(1, len(titles) // 10)])
    prompts = user_prompts(titles, args.users, args.history, cfg.seed)
    catalogue = set(titles)
    timing = {}
    with torch_threads(args.threads):
        for mode in ("constrained",) + (() if args.no_free else ("free",)):
            t0 = time.perf_counter()
            beams = beam_search(model, tok, prompts, num_beams=g.num_beams, batch_size=g.beam_batch_size,
                                max_new_tokens=trie.max_len, trie=trie if mode == "constrained" else None,
                                fast_decode=cfg.generation.fast_decode)
            timing[mode] = (round((time.perf_counter() - t0) / len(prompts), 4), beams)
    constrained = timing["constrained"][1]
    n_beams = sum(len(b) for b in constrained)
    result = {"model": cfg.model.base_model, "titles": trie.n_titles, "trie_nodes": trie.n_nodes,
              "trie_max_tokens": trie.max_len, "trie_build_s": build_s, "trie_tracemalloc_peak_mb": trie_peak_mb,
              "trie_tracemalloc_held_mb": trie_held_mb, "allowed_us": allowed_cost_us(trie, tok, titles),
              "allowed_us_tenth_catalogue": allowed_cost_us(small, tok, titles[:small.n_titles]),
              "users": len(prompts), "num_beams": g.num_beams, "beam_batch_size": g.beam_batch_size,
              "threads": args.threads or torch.get_num_threads(),
              "constrained_s_per_user": timing["constrained"][0],
              "free_s_per_user": timing["free"][0] if "free" in timing else None,
              "constrained_beams": n_beams,
              "constrained_valid_share": round(sum(t in catalogue for b in constrained for t in b) / max(1, n_beams), 4)}
    rows = [{"phase": "trie build", "titles": trie.n_titles, "seconds": build_s, "mem_mb": trie_peak_mb},
            {"phase": "constrained beams", "titles": trie.n_titles, "s_per_user": result["constrained_s_per_user"]}]
    if "free" in timing:
        rows.append({"phase": "free beams", "s_per_user": result["free_s_per_user"]})
    _common.emit("genrec_trie", args, result, rows, ["phase", "titles", "seconds", "s_per_user", "mem_mb"])


if __name__ == "__main__":
    main()
