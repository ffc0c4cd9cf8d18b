"""GenRec — generative next-item recommendation (Ji et al., arXiv 2307.00457), on job applications.

A classic recommender *scores* every item of the catalogue and returns the top K. GenRec
instead *writes* the next item: the prompt holds an instruction and the user's history as item
titles, and a LoRA-tuned LLM answers with the title of the next item. Here the items are job
postings and the history is a seeker's applications; the same code runs on MovieLens
(:func:`girl_lib.stages.genrec.sequences.load_movielens`) and on the GenRec paper's own
instruction JSON (:mod:`girl_lib.stages.genrec.instructions`), whose records bring their own
instructions and are split by record instead of leave-one-out.

**Prompt** (:func:`make_prompt`). One of several paraphrased instructions (drawn per example with
a seeded RNG, so the model learns the task rather than one wording), then the history, oldest
first, one numbered title a line. The answer (the assistant turn) is the next item's title and
nothing else, closed by ``<|im_end|>``::

    <system> You are a recommender system. Answer with one title from the catalogue.
    <user>   Here is a job seeker's application history, oldest first. Predict the next ...
             1. Junior Cloud Engineer at Maes CommV
             2. Cloud Engineer at Stichting Brouwer
    <assistant> Senior Cloud Engineer at Reynaud S.A.S.<|im_end|>

Items are named ``"<title> at <company>"``: in the world, job titles alone repeat (see
:mod:`girl_lib.stages.genrec.sequences`), and a title must identify one posting for "exact title
match" to mean "the right posting".

**Training** (:func:`train`). TRL's ``SFTTrainer`` on those prompt/completion rows, loss on the
answer tokens only (``genrec.loss_on_prompt=true``: on the whole chat, as the paper's repository
trains), LoRA as in the paper: ``r=8, alpha=16`` on the attention's ``q_proj`` and ``v_proj``.
Examples come from the leave-one-out train part only.

**Decoding** (:func:`beam_search`). Beam search with ``num_beams=10`` returning all 10 beams
(``num_return_sequences=10``) gives a ranked list of 10 titles per user: the beam with the
highest length-normalised log-probability first. Repeated titles are dropped (two token
sequences can decode to the same text). Three ways to turn titles into items, reported apart:

* ``genrec_exact`` — the paper's protocol: a beam counts only if its text *is* a catalogue title.
  Titles the model made up (a real title with the wrong company, a new job) are misses.
* ``genrec_nearest`` — each beam mapped to the closest catalogue title (character n-gram TF-IDF
  cosine), then repeats dropped. Free: the same beams, mapped.
* ``genrec_constrained`` — the kit's improvement: beam search constrained to a **prefix trie**
  of the catalogue's titles (:class:`TitleTrie`). At each step only tokens that continue some
  catalogue title are allowed (a logits processor, :class:`TrieConstraint`), so every beam is a
  real item. Titles are ranked by the tuned model's own scores (``genrec.renormalise=true`` ranks
  them by their probability among catalogue titles instead; it measured worse). The user's history is closed in the trie for that user (``genrec.exclude_history``,
  the rule every method follows), so all 10 beams go to new items. A second beam search.

**Baselines** on the same split (:mod:`girl_lib.stages.genrec.baselines`): popularity, first-order transitions
(Markov), and SASRec, a small ID-based causal transformer standing in for the paper's P5.

**Outputs** in ``<run-dir>/genrec/``: ``adapter/`` (LoRA + tokenizer), ``predictions.jsonl`` (per
test user: history, target, every method's top 10), ``log_history.json`` and ``metrics.json``::

    {"popularity":         {"hr@5", "hr@10", "ndcg@5", "ndcg@10", "seconds"},
     "markov":             {... same keys ...},
     "sasrec":             {... same keys ...},
     "genrec_exact":       {... same keys ..., "valid_rate"},   # share of beams that are catalogue titles
     "genrec_nearest":     {... same keys ...},
     "genrec_constrained": {... same keys ..., "valid_rate"},   # absent with genrec.constrained=false
     "n_test_users", "n_users", "n_items", "n_train_examples", "domain", "base_model",
     "train_seconds", "train_loss", "decode_seconds", "constrained_decode_seconds", "seconds",
     ...}   # plus what the loader counted: n_records, unknown_fragments, ... (instruction JSON)

Every metric is a mean over the same ``n_test_users`` users; ``seconds`` is a method's wall time
(fitting + ranking; for GenRec, decoding only: training is ``train_seconds``).
"""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ...config import Profile
from ...errors import GirlError
from ...metrics.ranking import hit_rate_at_k, ndcg_at_k
from ...models import load_causal_lm
from ...rundir import ADAPTER, atomic_write_json, require_complete
from ...seeding import set_seed
from ...stats import cluster_bootstrap, fmt_diff, fmt_rate, fmt_value, paired_difference, rate
from ...training import peft_lora_config, precision_flags, save_adapter, trainer_args
from ...world import draw
from .baselines import Markov, Popularity, SASRecRecommender
from .decoding import SYSTEM_PROMPT, NearestTitle, TitleTrie, beam_search
from .instructions import load_instructions
from .sequences import (Example, SequenceData, Split, hr_curve, load_movielens_data, load_world_sequences,
                        rank_metrics, split_data)

# Paraphrased instructions, one drawn per example (GenRec's prompts vary the wording the same way).
INSTRUCTIONS = {
    "jobs": (
        "Given the jobs this person applied to, in order, which job will they apply to next?",
        "Here is a job seeker's application history, oldest first. Predict the next job posting they will apply to.",
        "A candidate applied to the following jobs in this order. What is the most likely next job they apply to?",
        "Based on the sequence of job postings below, recommend the job this seeker is most likely to apply to next.",
        "These are the postings a job seeker applied to, from first to last. Name the posting they will apply to next.",
    ),
    "movies": (
        "Given the movies this user watched, in order, which movie will they watch next?",
        "Here is a user's viewing history, oldest first. Predict the next movie they will watch.",
        "A user watched the following movies in this order. What is the most likely next movie they watch?",
        "Based on the sequence of movies below, recommend the movie this user is most likely to watch next.",
        "These are the movies a user rated, from first to last. Name the movie they will watch next.",
    ),
}


# --------------------------------------------------------------------------------------------
# The prompt
# --------------------------------------------------------------------------------------------
def instruction_for(example: Example, domain: str, seed: int = 0, stage: str = "train") -> str:
    """One of ``INSTRUCTIONS[domain]``, drawn by a RNG seeded with (seed, stage, user, history length):
    the same example always gets the same wording, different examples different ones."""
    if domain not in INSTRUCTIONS:
        raise GirlError(f"unknown GenRec domain '{domain}'; choose one of {', '.join(INSTRUCTIONS)}")
    rng = random.Random(f"genrec:{seed}:{stage}:{example.user}:{len(example.history)}")
    return rng.choice(INSTRUCTIONS[domain])


def make_prompt(history_titles: Sequence[str], instruction: str) -> str:
    """The user message: the instruction, then the history, oldest first, one numbered title a line."""
    if not history_titles:
        raise GirlError("a GenRec prompt needs at least one item in the history")
    lines = "\n".join(f"{k}. {t}" for k, t in enumerate(history_titles, start=1))
    return f"{instruction}\n{lines}"


def chat_row(example: Example, data: SequenceData, seed: int = 0, stage: str = "train") -> dict:
    """TRL's conversational prompt/completion row for one example (the completion is the target's name).

    The instruction is the record's own when the data brings one (the GenRec paper's JSON), else
    one of :data:`INSTRUCTIONS` (:func:`instruction_for`)."""
    instruction = data.instructions.get(example.user) or instruction_for(example, data.domain, seed, stage)
    prompt = make_prompt([data.names[i] for i in example.history], instruction)
    return {"prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
            "completion": [{"role": "assistant", "content": data.names[example.target]}]}


def user_prompt(example: Example, data: SequenceData, seed: int = 0, stage: str = "test") -> str:
    return chat_row(example, data, seed, stage)["prompt"][1]["content"]


# --------------------------------------------------------------------------------------------
# Training: LoRA SFT with TRL
# --------------------------------------------------------------------------------------------
def sample_train(examples: list[Example], n: int, seed: int) -> list[Example]:
    """At most ``n`` training examples (``n`` <= 0: all), a seeded sample in a fixed order."""
    if n <= 0 or n >= len(examples):
        return list(examples)
    return random.Random(f"genrec-train:{seed}").sample(examples, n)


def use_bf16(cfg: Profile) -> bool:
    """bf16 on a GPU that supports it, and bf16 *autocast* on a CPU that computes bf16 in hardware
    (the kit's one precision rule, :func:`girl_lib.models.train_precision`): faster there
    (measured: see docs/results.md). ``--set model.dtype=float32`` turns it off."""

    return bool(precision_flags(cfg)["bf16"])


def make_trainer(cfg: Profile, model, tokenizer, train_ds, output_dir: Path):
    """A TRL ``SFTTrainer``: loss on the answer only (``genrec.loss_on_prompt``: on the prompt too), the
    paper's LoRA, no checkpoints."""
    from trl import SFTConfig, SFTTrainer

    g = cfg.genrec
    args = SFTConfig(**trainer_args(
        cfg, output_dir, num_epochs=g.num_epochs, max_steps=g.max_steps, learning_rate=g.learning_rate,
        batch_size=g.batch_size, max_length=g.max_length,
        completion_only_loss=not g.loss_on_prompt, packing=False, gradient_checkpointing=False,
    ))
    return SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                      peft_config=peft_lora_config(g.lora))


def train(cfg: Profile, data: SequenceData, examples: list[Example], out: Path):
    """LoRA-tune the base model on ``examples``; returns ``(model, tokenizer, info)`` and saves the adapter."""
    from datasets import Dataset

    if not examples:
        raise GirlError("GenRec has no training examples: every user needs at least 4 items")
    rows = [chat_row(e, data, cfg.seed) for e in examples]
    model, tokenizer = load_causal_lm(cfg.model, device=cfg.device, seed=cfg.seed)
    set_seed(cfg.seed)
    trainer = make_trainer(cfg, model, tokenizer, Dataset.from_list(rows), out / "trainer")
    lost = sum(tokenizer.eos_token_id not in labels for labels in trainer.train_dataset["labels"])
    lost += len(rows) - len(trainer.train_dataset)
    if lost:
        raise GirlError(f"{lost} GenRec training examples are longer than genrec.max_length={cfg.genrec.max_length}; "
                        "raise it (--set genrec.max_length=...) or lower genrec.max_history")
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    model = trainer.model
    model.eval()
    save_adapter(model, tokenizer, out / ADAPTER)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    atomic_write_json(out / "log_history.json", trainer.state.log_history)
    return model, tokenizer, {"train_seconds": round(seconds, 1), "global_steps": result.global_step,
                              "first_loss": losses[0] if losses else None,
                              "train_loss": losses[-1] if losses else None}


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def load_data(cfg: Profile, run_dir: Path) -> SequenceData:
    """The world's sequences; MovieLens when ``genrec.movielens_dir`` is set; the GenRec paper's
    instruction JSON (split by record with the profile's seed) when ``genrec.instructions_json`` is."""
    g = cfg.genrec
    if g.movielens_dir and g.instructions_json:
        raise GirlError("set one of genrec.movielens_dir and genrec.instructions_json, not both")
    if g.instructions_json:
        return load_instructions(Path(g.instructions_json).expanduser(), seed=cfg.seed)
    if g.movielens_dir:
        return load_movielens_data(Path(g.movielens_dir).expanduser(), g.min_sequence_length)

    return load_world_sequences(require_complete(run_dir, "data"), g.job_name)


def _filter(ranked: list[str], history: Sequence[str], on: bool) -> list[str]:
    return [i for i in ranked if i not in set(history)] if on else ranked


def as_items(beams: Sequence[Sequence[str]], test: Sequence[Example], by_name: dict,
             exclude_history: bool) -> list[list]:
    """Each user's beams as item ids (exact title match; a made-up title stays a miss), minus their history."""
    return [_filter([by_name.get(t, f"<not in catalogue: {t}>") for t in b], e.history, exclude_history)
            for b, e in zip(beams, test)]


def valid_rate(beams: Sequence[Sequence[str]], by_name: dict) -> float:
    """The share of beams that are catalogue titles."""
    n_beams = max(1, sum(len(b) for b in beams))
    return round(sum(t in by_name for b in beams for t in b) / n_beams, 4)


def run_baselines(cfg: Profile, split: Split, test: Sequence[Example], k: int, score) -> None:
    """Popularity, Markov and SASRec: fitted on s_1 .. s_{n-2}, each reads the whole test history."""
    g = cfg.genrec
    for name, cls in (("popularity", Popularity), ("markov", Markov)):
        t0 = time.time()
        model = cls(split.train_sequences)
        score(name, [model.recommend(e.history, k, g.exclude_history) for e in test], time.time() - t0)
    t0 = time.time()
    sasrec = SASRecRecommender(split.train_sequences, dim=g.sasrec_dim, layers=g.sasrec_layers,
                               heads=g.sasrec_heads, max_len=max(g.max_history, 2), dropout=g.sasrec_dropout,
                               epochs=g.sasrec_epochs, learning_rate=g.sasrec_learning_rate, seed=cfg.seed,
                               progress=True)
    score("sasrec", sasrec.recommend_many([e.history for e in test], k, g.exclude_history), time.time() - t0,
          final_loss=round(sasrec.losses[-1], 4) if sasrec.losses else None)


def run_genrec(cfg: Profile, data: SequenceData, split: Split, test: Sequence[Example], out: Path, metrics: dict,
               score) -> tuple[list[list[str]], list[list[str]] | None]:
    """Train GenRec, then score its free beams (exact and nearest title) and its constrained ones.

    Returns ``(beams, constrained_beams)`` per test user (``None``: ``genrec.constrained`` off).
    """
    g = cfg.genrec
    set_seed(cfg.seed)
    train_examples = sample_train(split.train, g.max_train_examples, cfg.seed)
    metrics["n_train_examples"] = len(train_examples)
    model, tokenizer, info = train(cfg, data, train_examples, out)
    metrics.update(info)
    model = model.merge_and_unload()  # LoRA folded into the weights: decoding pays no adapter overhead
    by_name = {n: i for i, n in data.names.items()}
    prompts = [user_prompt(e, data, cfg.seed) for e in test]

    t0 = time.time()
    bf16 = use_bf16(cfg)
    beams = beam_search(model, tokenizer, prompts, num_beams=g.num_beams, max_new_tokens=g.max_new_tokens,
                        batch_size=g.beam_batch_size, length_penalty=g.length_penalty, bf16=bf16,
                        fast_decode=cfg.generation.fast_decode, progress=True)
    metrics["decode_seconds"] = round(time.time() - t0, 1)
    score("genrec_exact", as_items(beams, test, by_name, g.exclude_history), metrics["decode_seconds"],
          valid_rate=valid_rate(beams, by_name))
    nearest = NearestTitle(list(by_name))
    mapped = [_filter(list(dict.fromkeys(by_name[t] for t in nearest.map(b))), e.history, g.exclude_history)
              for b, e in zip(beams, test)]
    score("genrec_nearest", mapped, metrics["decode_seconds"])

    constrained_beams = None
    if g.constrained:
        t0 = time.time()
        trie = TitleTrie(tokenizer, list(by_name))
        # The history is excluded inside the search (every method's rule): no beam is spent on it.
        exclude = [[data.names[i] for i in e.history] for e in test] if g.exclude_history else None
        constrained_beams = beam_search(model, tokenizer, prompts, num_beams=g.num_beams, batch_size=g.beam_batch_size,
                                        trie=trie, exclude=exclude, renormalise=g.renormalise,
                                        length_penalty=g.length_penalty, bf16=bf16,
                                        fast_decode=cfg.generation.fast_decode, progress=True)
        metrics["constrained_decode_seconds"] = round(time.time() - t0, 1)
        score("genrec_constrained", as_items(constrained_beams, test, by_name, g.exclude_history),
              metrics["constrained_decode_seconds"], valid_rate=valid_rate(constrained_beams, by_name))
    return beams, constrained_beams


def write_predictions(path: Path, data: SequenceData, test: Sequence[Example], beams: list[list[str]],
                      constrained_beams: list[list[str]] | None, ranked: dict, k: int) -> None:
    """``predictions.jsonl``: per test user, the history, the target, the beams and every method's top ``k``."""
    with open(path, "w", encoding="utf-8") as fh:
        for j, e in enumerate(test):
            row = {"user": e.user, "history": [data.names[i] for i in e.history], "target": data.names[e.target],
                   "beams": beams[j], **({"constrained_beams": constrained_beams[j]} if constrained_beams else {})}
            row.update({m: [data.names.get(i, i) for i in lists[j][:k]] for m, lists in ranked.items()})
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def per_user(lists: Sequence[Sequence[str]], targets: Sequence[str], k: int) -> tuple[list[int], list[float]]:
    """Each test user's hit (0/1) and NDCG at ``k``: the units every interval resamples."""
    hits = [int(hit_rate_at_k([r], [t], k)) for r, t in zip(lists, targets)]
    ndcg = [float(ndcg_at_k([r], [t], k)) for r, t in zip(lists, targets)]
    return hits, ndcg


def rank_intervals(lists: Sequence[Sequence[str]], targets: Sequence[str], seed: int, ks=(5, 10)) -> dict:
    """``{"intervals": {"hr@K": Wilson rate, "ndcg@K": bootstrap over users}}``."""
    out = {}
    for k in ks:
        hits, ndcg = per_user(lists, targets, k)
        out[f"hr@{k}"] = rate(sum(hits), len(hits))
        values = np.asarray(ndcg)
        out[f"ndcg@{k}"] = cluster_bootstrap(lambda i: float(values[i].mean()), np.arange(len(values)), seed=seed)
    return {"intervals": out}


def compare_methods(ranked: dict, targets: Sequence[str], seed: int, k: int = 10) -> dict:
    """Each GenRec variant minus each baseline on HR@k over the same users (paired, exact McNemar)."""
    hits = {name: per_user(lists, targets, k)[0] for name, lists in ranked.items()}
    return {f"{a}_vs_{b}": {"a": a, "b": b, "metric": f"hr@{k}", **paired_difference(hits[a], hits[b], seed=seed)}
            for a in ranked if a.startswith("genrec") for b in ranked if not b.startswith("genrec")}


def run_stage(cfg: Profile, run_dir: Path) -> dict:
    """``girl genrec``: baselines, GenRec training, beam search, HR@K/NDCG@K into ``genrec/metrics.json``."""
    t_start = time.time()
    g = cfg.genrec
    out = Path(run_dir) / "genrec"
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(cfg, run_dir)
    if data.stats:
        print("[girl] genrec: data: " + ", ".join(f"{k} {v}" for k, v in data.stats.items()))
    split = split_data(data, g.max_history)
    test = draw(split.test, g.max_test_users if g.max_test_users > 0 else None, f"genrec/test/{cfg.seed}")
    targets = [e.target for e in test]
    k = max(10, g.num_beams)
    metrics: dict = {"n_users": len(data.sequences), "n_items": len(data.names), "n_test_users": len(test),
                     "domain": data.domain, "base_model": cfg.model.base_model, **data.stats}
    ranked: dict[str, list[list[str]]] = {}

    def score(name: str, lists: list[list[str]], seconds: float, **extra) -> None:
        """Record one method's ranked lists and HR@K/NDCG@K (over ``test``), and print its headline."""
        ranked[name] = lists
        metrics[name] = {**rank_metrics(lists, targets), **rank_intervals(lists, targets, cfg.seed),
                         "seconds": round(seconds, 2), **extra}
        print(f"[girl] genrec: {name:<19} HR@10 {fmt_rate(metrics[name]['intervals']['hr@10'])}  "
              f"NDCG@10 {metrics[name]['ndcg@10']:.3f}")

    run_baselines(cfg, split, test, k, score)
    beams, constrained_beams = run_genrec(cfg, data, split, test, out, metrics, score)
    write_predictions(out / "predictions.jsonl", data, test, beams, constrained_beams, ranked, k)
    metrics["paired"] = compare_methods(ranked, targets, cfg.seed)
    metrics["seconds"] = round(time.time() - t_start, 1)
    atomic_write_json(out / "metrics.json", metrics)
    (out / "profile.json").write_text(cfg.to_json())
    return {m: {"hr@10": round(v["hr@10"], 4), "ndcg@10": round(v["ndcg@10"], 4)}
            for m, v in metrics.items() if isinstance(v, dict) and "hr@10" in v} | {"n_test_users": len(test)}


def load_results(run_dir: Path) -> tuple[dict, list[dict]]:
    """``(metrics, predictions)`` of a finished ``girl genrec`` run (what the notebook plots)."""
    out = Path(run_dir) / "genrec"
    if not (out / "metrics.json").is_file():
        raise GirlError(f"no GenRec results in {out}; run 'girl genrec' first")
    metrics = json.loads((out / "metrics.json").read_text())
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return metrics, preds


METHODS = ("popularity", "markov", "sasrec", "genrec_exact", "genrec_nearest", "genrec_constrained")


def results_table(metrics: dict) -> list[dict]:
    """One row per method present: ``{"method", "hr@5", "hr@10", "ndcg@5", "ndcg@10"}``, each a string
    with its 95 % interval where ``metrics.json`` has one (``"34.4 % [20.4, 51.7]"``, ``"0.172 [0.088,
    0.267]"``: Wilson for HR, a bootstrap over users for NDCG), else the rounded number."""
    rows = []
    for m in (m for m in METHODS if m in metrics):
        ci = metrics[m].get("intervals", {})
        row = {"method": m}
        for key in ("hr@5", "hr@10", "ndcg@5", "ndcg@10"):
            if key in ci:
                row[key] = fmt_rate(ci[key]) if key.startswith("hr") else fmt_value(ci[key])
            else:
                row[key] = round(metrics[m][key], 4)
        rows.append(row)
    return rows


def comparison_table(metrics: dict, method: str = "genrec_constrained") -> list[dict]:
    """``method`` against every other method on the same users: one row each, ``{"vs", "hr@10
    difference"}`` as ``"-3.1 [-25.0, +18.8] pts, n=32, p=1"`` (a paired bootstrap interval and
    the exact McNemar test, from ``metrics["paired"]``)."""
    paired = metrics.get("paired", {})
    return [{"vs": d["b"], "hr@10 difference": fmt_diff(d)} for d in paired.values()
            if d["a"] == method and d["metric"] == "hr@10"]


def hr_curves(predictions: Sequence[dict], max_k: int = 10) -> dict[str, list[float]]:
    """``{method: [HR@1, ..., HR@max_k]}`` from ``predictions.jsonl`` rows (items compared by name)."""
    targets = [p["target"] for p in predictions]
    return {m: hr_curve([p[m] for p in predictions], targets, max_k) for m in METHODS if predictions and m in predictions[0]}


def plot_hr_curves(curves: dict[str, list[float]], ax=None, title: str = "HR@K"):
    """HR@K against K, one line per method (GenRec variants solid, baselines dashed)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    for method, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, label=method,
                linestyle="-" if method.startswith("genrec") else "--")
    ax.set_xlabel("K (length of the recommended list)")
    ax.set_ylabel("HR@K")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
