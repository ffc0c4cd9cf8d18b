"""The chapters' exercises: every check accepts its solution, rejects a wrong answer, and leaves an
unattempted exercise alone (so a chapter runs green before anyone tries it)."""
from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import torch

from girl_lib import exercises
from girl_lib.exercises import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "notebooks" / "solutions"
CHAPTERS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def solution_module(chapter: str):
    path = next(SOLUTIONS.glob(f"ch{chapter}_*.py"))
    spec = importlib.util.spec_from_file_location(f"solution_{chapter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("number", list(EXERCISES))
def test_the_solution_passes_its_check(number):
    ex = EXERCISES[number]
    fn = getattr(solution_module(ex.chapter), ex.name)
    assert ex.check(fn, quiet=True), f"exercise {number}: the solution in notebooks/solutions was not accepted"


# --------------------------------------------------------------------------------------------
# One deliberately wrong answer per exercise: a sign flipped, an off-by-one, a forgotten mask.
# --------------------------------------------------------------------------------------------
LEVELS = ("junior", "mid", "senior", "lead")


def _dedupe(xs):
    return list(dict.fromkeys(xs))


def wrong_chat_prompt(system, user):  # forgets the assistant header the model answers after
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"


def wrong_left_pad(seqs, pad_id):  # pads on the right
    width = max(len(s) for s in seqs)
    ids = torch.tensor([list(s) + [pad_id] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    return ids, mask


def wrong_level_factor(seeker_level, job_level):  # the gap the wrong way round
    gap = LEVELS.index(job_level) - LEVELS.index(seeker_level)
    return 1.0 if gap in (0, 1) else 0.25 if gap == -1 else 0.05 if gap < -1 else 0.3


def wrong_write_jd(job):  # no salary line: the parser cannot read it
    where = "Remote" if job["remote"] else job["location"]
    return f"Title: {job['title']}\nLevel: {job['level']}\nMust-have: {', '.join(job['must_have'])}\nLocation: {where}"


def wrong_acceptance_by_step(applications, seekers, jobs):  # seeker minus job
    out = {}
    for a in applications:
        k = LEVELS.index(seekers[a["seeker_id"]]["level"]) - LEVELS.index(jobs[a["job_id"]]["level"])
        n, acc = out.get(k, (0, 0))
        out[k] = (n + 1, acc + a["accepted"])
    return {k: (n, acc / n) for k, (n, acc) in sorted(out.items())}


def wrong_masked_nll(logits, labels):  # no shift: position t scored against its own token
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100)


def wrong_sft_batch(examples, pad_id):  # labels padded with the pad token: the loss would train on padding
    width = max(len(e["input_ids"]) for e in examples)
    pad = lambda xs, v: list(xs) + [v] * (width - len(xs))  # noqa: E731
    return {"input_ids": torch.tensor([pad(e["input_ids"], pad_id) for e in examples]),
            "attention_mask": torch.tensor([pad([1] * len(e["input_ids"]), 0) for e in examples]),
            "labels": torch.tensor([pad(e["labels"], pad_id) for e in examples])}


def wrong_lora_merge(W, A, B, alpha, r):  # scaled by alpha instead of alpha / r
    return W + alpha * (B @ A)


def wrong_lora_count(model, r, target_modules):  # counts A only
    return sum(r * m.in_features for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in target_modules)


def wrong_bt_loss(chosen, rejected):  # the sign of the margin flipped
    return torch.nn.functional.softplus(torch.as_tensor(chosen) - torch.as_tensor(rejected)).mean()


def wrong_auc(labels, scores):  # a tie counts as a loss
    pos = [s for y, s in zip(labels, scores) if y == 1]
    neg = [s for y, s in zip(labels, scores) if y == 0]
    return sum(p > n for p in pos for n in neg) / (len(pos) * len(neg))


def wrong_jd_mask(input_ids, attention_mask, header):  # after the first header, not the last
    k = len(header)
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for row in range(input_ids.shape[0]):
        ids = input_ids[row].tolist()
        first = next(i for i in range(len(ids) - k + 1) if ids[i:i + k] == list(header)) + k
        mask[row, first:] = attention_mask[row, first:].bool()
    return mask


def wrong_per_token_rewards(scores, logprobs, ref_logprobs, mask, beta):  # the score on the last column, padding or not
    rewards = torch.where(mask, -beta * (logprobs - ref_logprobs), torch.zeros_like(logprobs))
    rewards[:, -1] += scores
    return rewards


def wrong_gae(rewards, values, mask, gamma, lam):  # the padding's values leak into the last real token
    adv = torch.zeros_like(rewards)
    nxt = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros(rewards.shape[0])
        nxt = rewards[:, t] + gamma * next_value - values[:, t] + gamma * lam * nxt
        adv[:, t] = nxt
    adv = torch.where(mask, adv, torch.zeros_like(adv))
    return adv, torch.where(mask, adv + values, torch.zeros_like(adv))


def wrong_kl_estimates(logprobs, ref_logprobs):  # k3 with the ratio upside down
    log_r = logprobs - ref_logprobs
    return logprobs - ref_logprobs, torch.exp(log_r) - 1 - log_r


def wrong_clipped_surrogate(new_logprobs, old_logprobs, advantages, mask, eps):  # the optimistic min
    ratio = torch.exp(new_logprobs - old_logprobs)
    loss = torch.min(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - eps, 1 + eps))
    return (loss * mask).sum() / mask.sum()


def wrong_wilson(k, n):  # the normal-approximation (Wald) interval
    p, z = k / n, 1.959963984540054
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def wrong_mcnemar(a, b):  # a binomial test over all pairs, not the discordant ones
    from scipy import stats

    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    return stats.binomtest(only_a, len(a), 0.5).pvalue


def wrong_verdict(ci, p_value):  # ignores the paired test
    lo, hi = ci
    if lo is None or hi is None:
        return "inconclusive"
    return "reproduced" if lo > 0 else "not reproduced" if hi < 0 else "inconclusive"


def wrong_ndcg_at_k(ranked_lists, targets, k):  # 1 / log2(rank) with the rank counted from 2: off by one
    total = 0.0
    for ranked, target in zip(ranked_lists, targets):
        top = _dedupe(ranked)[:k]
        if target in top:
            total += 1 / math.log2(top.index(target) + 3)
    return total / len(targets)


def wrong_hit_rate_at_k(ranked_lists, targets, k):  # repeats not dropped
    return sum(t in r[:k] for r, t in zip(ranked_lists, targets)) / len(targets)


def wrong_leave_one_out_user(sequence):  # the validation target is the test target
    n = len(sequence)
    train = [(tuple(sequence[:t]), sequence[t]) for t in range(1, n - 2)]
    return train, (tuple(sequence[:n - 1]), sequence[n - 1]), (tuple(sequence[:n - 1]), sequence[n - 1])


WRONG = {number: globals()[f"wrong_{ex.name}"] for number, ex in EXERCISES.items()}


@pytest.mark.parametrize("number", list(EXERCISES))
def test_a_wrong_answer_fails_its_check(number):
    with pytest.raises(AssertionError):
        EXERCISES[number].check(WRONG[number], quiet=True)


def _stub(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("fn", [None, _stub], ids=["None", "raises NotImplementedError"])
def test_an_unattempted_exercise_is_not_a_failure(fn, capsys):
    outcome = exercises.check_gae(fn)
    assert not outcome and "not attempted yet" in capsys.readouterr().out


def test_a_passing_check_says_so():
    outcome = exercises.check_gae(solution_module("04").gae)
    assert outcome and outcome.passed and outcome.number == "4.2"


def test_completion_nll_is_what_transformers_computes(tiny_model):
    model, _ = tiny_model
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 500, (2, 12), generator=gen)
    labels = ids.clone()
    labels[0, :5], labels[1, :3], labels[1, 10:] = -100, -100, -100
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    assert abs(float(exercises.completion_nll(out.logits, labels)) - float(out.loss)) < 1e-5


def test_tolerance_grows_with_magnitude_and_terms_only():
    base = exercises.tolerance(torch.float32, 1.0)
    assert base == pytest.approx(64 * torch.finfo(torch.float32).eps)
    assert exercises.tolerance(torch.float32, 10.0, 3) == pytest.approx(30 * base)
    assert exercises.tolerance(torch.float64, 1.0) < base


# --------------------------------------------------------------------------------------------
# The chapters and the exercises agree
# --------------------------------------------------------------------------------------------
def _sources(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_every_chapter_has_2_to_4_exercises_with_a_stub_and_a_check(chapter):
    mine = exercises.for_chapter(chapter)
    assert 2 <= len(mine) <= 4, f"chapter {chapter}: {len(mine)} exercises"
    code = _sources(CHAPTERS[chapter])
    for ex in mine:
        stubs = [s for s in code if re.search(rf"^def {ex.name}\(", s, re.M)]
        assert len(stubs) == 1, f"exercise {ex.number}: one cell defines {ex.name}"
        assert "raise NotImplementedError" in stubs[0] and "TODO" in stubs[0], "the learner's cell is a stub"
        calls = [s for s in code if re.search(rf"exercises\.{ex.check.__name__}\({ex.name}\b", s)]
        assert len(calls) == 1, f"exercise {ex.number}: one cell calls {ex.check.__name__}({ex.name}, ...)"
        assert code.index(stubs[0]) < code.index(calls[0])


def test_every_exercise_has_a_solution_file():
    for chapter in {ex.chapter for ex in EXERCISES.values()}:
        module = solution_module(chapter)
        for ex in exercises.for_chapter(chapter):
            assert callable(getattr(module, ex.name, None)), f"{ex.number}: {ex.name} missing from the solutions"
