"""The reward model's data: the Bradley–Terry loss, preference rows, and pairs of generated JDs."""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from ...config import Profile
from ...errors import GirlError
from ...generators import load_sft_model
from ...models import load_tokenizer
from ...rundir import is_complete
from ...scoring import fit_prompt
from ...textgen import generate_from_config
from ...training import split_seekers, to_chat
from ...world import SYSTEM_PROMPT, load_jsonl, load_split, make_prompt

KINDS = ("feedback", "hard_negative")  # the kinds of rm_pairs.jsonl (train and val)
GENERATED = "generated"  # train pairs whose rejected JD a model wrote (reward.generated_pairs)
GENERATING_ARMS = ("zero_shot", "sft")


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------
def pairwise_loss(chosen_scores, rejected_scores):
    """Bradley–Terry loss ``mean(-log σ(r+ − r−))`` over pairs (TRL's ``RewardTrainer`` loss).

    ``-log σ(x)`` is computed as ``softplus(-x)``, which stays finite for large ``|x|``.

    >>> import torch
    >>> round(float(pairwise_loss(torch.tensor([0.0]), torch.tensor([0.0]))), 4)  # log 2
    0.6931
    """
    import torch

    chosen = torch.as_tensor(chosen_scores, dtype=torch.float32)
    rejected = torch.as_tensor(rejected_scores, dtype=torch.float32)
    return torch.nn.functional.softplus(-(chosen - rejected)).mean()


# --------------------------------------------------------------------------------------------
# Data: rm_pairs.jsonl rows -> TRL's conversational preference format (explicit prompt)
# --------------------------------------------------------------------------------------------
def to_preference(prompt: str, chosen: str, rejected: str) -> dict:
    """One TRL preference row with an explicit prompt, in conversational form.

    ``prompt`` = [system, user], ``chosen``/``rejected`` = [assistant]. TRL concatenates
    ``prompt + chosen`` and ``prompt + rejected`` and applies the chat template to each, which
    is exactly the text :func:`~girl_lib.scoring.score_prompts` builds at inference.
    """
    return {**to_chat(prompt),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def fitted_pair_prompt(tokenizer, row: dict, max_length: int | None) -> str:
    """The row's prompt with its CV cut so that both of its chats fit ``max_length``
    (:func:`girl_lib.scoring.fit_prompt`, the rule scoring applies too): one prompt for both sides."""
    return fit_prompt(tokenizer, row["prompt"], [row["chosen"], row["rejected"]], max_length)


def load_pairs(data_dir: Path, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Validated rows of ``rm_pairs.jsonl`` for one split: all, or a seeded random draw of ``limit``.

    A malformed line raises the world loader's :class:`~girl_lib.errors.DataError` (file, line,
    field): nothing is silently dropped.
    """
    return load_split(data_dir, "rm_pairs", split, limit, seed=seed)


def reward_datasets(data_dir: Path, cfg: Profile, tokenizer=None, extra: list[dict] = ()):
    """``(train, val)`` ``datasets.Dataset`` objects of preference rows (val may be ``None``).

    ``extra`` rows (generated pairs) join the train split. Every prompt is fitted to
    ``reward.max_length`` (:func:`fitted_pair_prompt`) before TRL sees it, so TRL drops nothing
    that the CV alone makes too long. ``tokenizer``: the base model's, loaded when not given.
    """
    from datasets import Dataset

    train = load_pairs(data_dir, "train", cfg.reward.max_train_pairs, seed=cfg.seed) + list(extra)
    val = load_pairs(data_dir, "val", cfg.reward.max_eval_pairs, seed=cfg.seed)
    if not train:
        raise GirlError(f"{Path(data_dir) / 'rm_pairs.jsonl'} has no train pairs; "
                        "rebuild the data with 'girl data --force'")
    tok = tokenizer if tokenizer is not None else load_tokenizer(cfg.model, seed=cfg.seed)

    def pref(rows):
        return Dataset.from_list([to_preference(fitted_pair_prompt(tok, r, cfg.reward.max_length), r["chosen"],
                                                r["rejected"]) for r in rows])

    return pref(train), (pref(val) if val else None)


# --------------------------------------------------------------------------------------------
# Generated pairs: where PPO will look (off the distribution of real JDs)
# --------------------------------------------------------------------------------------------
def sample_arm(j: int) -> str:
    """The name of the ``j``-th sampled SFT arm (1-based): ``sft_sample_1``, ``sft_sample_2``, ..."""
    return f"sft_sample_{j}"


def generate_arms(cfg: Profile, run_dir: Path, seekers: list[dict], samples: int = 0) -> dict[str, list[str]]:
    """Greedy JDs of the zero-shot base and of the SFT model for ``seekers``, ``{arm: texts}``;
    with ``samples`` > 0, also that many sampled SFT JDs per seeker (arms :func:`sample_arm`).

    One model: the SFT model, and the base as that model with its adapter disabled. The samples
    are drawn as PPO's rollouts are (plain temperature sampling at ``ppo.temperature``, seeded by
    the run's ``seed``), all in one batched call: each prompt repeated ``samples`` times.
    """
    model, tok = load_sft_model(cfg, run_dir)
    prompts = [make_prompt(s["cv_text"]) for s in seekers]
    out = {}
    with model.disable_adapter():
        out["zero_shot"] = generate_from_config(model, tok, prompts, cfg.generation, system_prompt=SYSTEM_PROMPT).texts
    out["sft"] = generate_from_config(model, tok, prompts, cfg.generation, system_prompt=SYSTEM_PROMPT).texts
    for j, texts in enumerate(sample_jds(cfg, model, tok, prompts, samples, seed=cfg.seed)):
        out[sample_arm(j + 1)] = texts
    del model
    return out


def sample_jds(cfg: Profile, model, tokenizer, prompts: list[str], samples: int, seed: int) -> list[list[str]]:
    """``samples`` JDs per prompt drawn as PPO's rollouts are: plain temperature sampling at
    ``ppo.temperature``, all in one seeded, batched call (each prompt repeated ``samples`` times).

    Returns one list per draw: ``out[j][i]`` is prompt ``i``'s ``j``-th JD. ``[]`` when ``samples`` is 0.
    """
    if samples <= 0:
        return []
    rollout = replace(cfg.generation, temperature=cfg.ppo.temperature)
    texts = generate_from_config(model, tokenizer, [p for p in prompts for _ in range(samples)], rollout,
                                 do_sample=True, system_prompt=SYSTEM_PROMPT, seed=seed).texts
    return [texts[j::samples] for j in range(samples)]  # prompt i's draws sit at i*samples .. +samples-1


def accepted_real_jds(data_dir: Path, seeker_ids: set[str], oracle) -> dict[str, list[str]]:
    """Per seeker, the real JDs of their own applications that the oracle accepts (``p_accept > 0.5``)."""
    seekers = {s["id"]: s for s in load_jsonl(Path(data_dir) / "seekers.jsonl", "seekers") if s["id"] in seeker_ids}
    jobs = {j["id"]: j for j in load_jsonl(Path(data_dir) / "jobs.jsonl", "jobs")}
    out: dict[str, list[str]] = {sid: [] for sid in seeker_ids}
    for a in load_jsonl(Path(data_dir) / "applications.jsonl", "applications"):
        if a["seeker_id"] in seekers and oracle.score_job(seekers[a["seeker_id"]], jobs[a["job_id"]]).p_accept > 0.5:
            out[a["seeker_id"]].append(jobs[a["job_id"]]["jd_text"])
    return out


def accepted(verdict) -> bool:
    """The oracle accepts a JD: it parses and ``p_accept > 0.5``.

    In this world the first implies the second's failure: each field the parser misses costs a
    recruiter check the factor 0.45, so an unparseable JD's ``p_accept`` stays below 0.5. The
    parse test keeps the label right for an oracle with other constants."""
    return verdict.parse_ok and verdict.p_accept > 0.5


def judge_arms(seekers: list[dict], texts_by_arm: dict[str, list[str]], oracle) -> dict[str, list]:
    """The oracle's verdict on every generated JD, ``{arm: [verdict per seeker]}``: computed once,
    read by :func:`label_generated` and by the stage's summary."""
    return {arm: [oracle.score(s, t) for s, t in zip(seekers, texts)] for arm, texts in texts_by_arm.items()}


def label_generated(seekers: list[dict], texts_by_arm: dict[str, list[str]], real: dict[str, list[str]],
                    oracle, seed: int = 0, verdicts: dict[str, list] | None = None) -> list[dict]:
    """Pairs ``kind="generated"``, labelled by the oracle: an accepted JD beats a generated one
    that is unparseable or rejected.

    For each seeker, each generated JD the oracle does not accept (``parse_ok`` and
    ``p_accept > 0.5``) is a rejected side; its chosen side is the seeker's accepted generated
    JD when one arm wrote one (same distribution, the subtlest lesson: the first accepted arm in
    ``texts_by_arm``'s order), else one of their accepted real JDs (a seeded choice). Seekers with
    no accepted JD at all give no pair. ``verdicts`` (from :func:`judge_arms`) saves judging again.
    """
    verdicts = verdicts if verdicts is not None else judge_arms(seekers, texts_by_arm, oracle)
    rng = random.Random(f"reward/generated/{seed}")
    pairs = []
    for i, s in enumerate(seekers):
        mine = {arm: verdicts[arm][i] for arm in texts_by_arm}
        good = [texts_by_arm[a][i] for a, v in mine.items() if accepted(v)]
        for arm, v in mine.items():
            if accepted(v):
                continue
            chosen, source = (good[0], "generated") if good else (
                (rng.choice(real[s["id"]]), "real") if real.get(s["id"]) else (None, None))
            if chosen is None:
                continue
            pairs.append({"id": f"gen-{s['id']}-{arm}", "kind": GENERATED, "split": "train",
                          "prompt": make_prompt(s["cv_text"]), "chosen": chosen, "rejected": texts_by_arm[arm][i],
                          "chosen_source": source, "rejected_arm": arm, "rejected_parse_ok": v.parse_ok,
                          "rejected_p_accept": v.p_accept})
    return pairs


def generated_pairs(cfg: Profile, run_dir: Path, oracle) -> tuple[list[dict], dict]:
    """``reward.generated_pairs`` train seekers' zero-shot and SFT JDs (greedy, plus
    ``reward.generated_samples`` sampled SFT JDs each) as labelled pairs, and a summary.

    Skipped (no pairs, a note) when the option is 0 or the SFT stage is not complete.
    """
    n, k = cfg.reward.generated_pairs, cfg.reward.generated_samples
    if n <= 0:
        return [], {"generated_pairs_note": "off (reward.generated_pairs=0)"}
    if not is_complete(Path(run_dir) / "sft"):
        return [], {"generated_pairs_note": "skipped: no complete SFT stage in this run dir (run 'girl sft' first)"}
    data_dir = Path(run_dir) / "data"
    seekers = split_seekers(data_dir, n, split="train", seed=cfg.seed)
    texts = generate_arms(cfg, run_dir, seekers, samples=k)
    verdicts = judge_arms(seekers, texts, oracle)
    pairs = label_generated(seekers, texts, accepted_real_jds(data_dir, {s["id"] for s in seekers}, oracle),
                            oracle, cfg.seed, verdicts)
    n_accepted = {a: sum(map(accepted, vs)) for a, vs in verdicts.items()}
    summary = {"generated_pairs_seekers": len(seekers),
               "generated_pairs_rejected_by_arm": {a: sum(p["rejected_arm"] == a for p in pairs) for a in texts},
               "generated_pairs_accepted_by_arm": n_accepted,
               "generated_pairs_chosen_real": sum(p["chosen_source"] == "real" for p in pairs),
               "generated_pairs_note": "greedy zero-shot and SFT JDs" + (
                   f" and {k} SFT JDs sampled at T={cfg.ppo.temperature}" if k else "")
               + " for train seekers, labelled by the oracle"}
    return pairs, summary
