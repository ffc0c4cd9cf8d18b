"""Exercises: write a function in a chapter, then check it against the kit's own implementation.

Every chapter has a few. The exercise cell defines a function whose body is the learner's to
write (until then it raises ``NotImplementedError``); the cell after it calls the matching
``check_*`` function here::

    def gae(rewards, values, mask, gamma, lam):
        # TODO: your code
        raise NotImplementedError

    exercises.check_gae(gae)

A check

* prints **not attempted yet**, with what to do, when the function is ``None`` or raises
  ``NotImplementedError``, and returns a false :class:`Outcome`. A chapter therefore runs green before anyone
  has tried an exercise: that is how CI runs every chapter;
* otherwise calls the function on seeded random inputs (the same every time) and compares each
  answer with the library's (or PyTorch's, TRL's, PEFT's) own implementation; the first
  disagreement raises ``AssertionError`` naming the input, the expected and the received value;
* prints **correct** and returns a true :class:`Outcome` when every case agrees.

Floating-point answers are compared with a tolerance derived from the dtype of the inputs, the
size of the numbers involved and how many of them are summed (:func:`tolerance`): a correct
answer computed in another order passes; a sign flip or an off-by-one mask does not.

Solutions: ``notebooks/solutions/chNN_*.py``, one function per exercise, named as in
:data:`EXERCISES`. ``tests/test_exercises.py`` passes every solution to its check (so the
checks are known to accept a right answer) and a deliberately wrong answer to every check (so
they are known to reject one).
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from .config import resolve_profile
from .metrics import ranking
from .metrics.scores import binary_auc
from .models import load_causal_lm, load_tokenizer
from .pooling import response_mask
from .stages.genrec.sequences import leave_one_out
from .stages.ppo import core
from .stages.reward.pairs import pairwise_loss
from .stats import mcnemar_exact, rate, verdict
from .textgen import left_pad
from .world import LEVELS, Oracle, ParsedJD, generate_world, parse_jd

N_CASES = 20  # seeded random cases per check


# --------------------------------------------------------------------------------------------
# The machinery every check shares
# --------------------------------------------------------------------------------------------
class NotAttempted(Exception):
    """The learner's function is still the TODO stub."""


@dataclass(frozen=True)
class Outcome:
    """What a check found: true when the function passed, false when it was not attempted yet.

    A chapter's check cell ends with the call, so Jupyter would print the returned value under
    the check's own message; an ``Outcome`` displays nothing there (the message says it all).
    """
    number: str
    passed: bool

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        """Nothing: the check has printed its verdict."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its number (``"4.2"``), the chapter, the function the learner writes and its check."""
    number: str
    chapter: str
    name: str
    title: str
    check: Callable


def tolerance(dtype: torch.dtype, magnitude: float, n_terms: int = 1, ulps: float = 64) -> float:
    """Absolute tolerance for a quantity computed two ways in ``dtype``.

    ``ulps`` units of ``eps(dtype)`` at ``magnitude`` (the size of the numbers involved, not of
    the result, which may cancel to ~0), times ``n_terms`` (a sum of n terms rounded in another
    order can differ by about ``n · eps · max|term|``). 64 ulps leaves room for another but
    equivalent formula (``log(sigmoid(x))`` against ``-softplus(-x)``); a wrong formula misses
    by far more.
    """
    return float(ulps * torch.finfo(dtype).eps * max(float(magnitude), 1.0) * max(n_terms, 1))


def _call(fn: Callable | None, *args, **kwargs):
    if fn is None:
        raise NotAttempted
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotAttempted from None


def _run(ex_number: str, name: str, fn: Callable | None, cases: Callable[[Callable], int],
         quiet: bool = False) -> Outcome:
    """Run ``cases(call)``, print the verdict; a false :class:`Outcome` when not attempted, true when correct.

    ``cases`` calls the learner's function through ``call`` and asserts each answer; it returns
    how many cases it checked.
    """
    try:
        n = cases(lambda *a, **k: _call(fn, *a, **k))
    except NotAttempted:
        if not quiet:
            print(f"exercise {ex_number} ({name}): not attempted yet. Write the body of `{name}` in the cell "
                  f"above, run it, then run this cell again. (Stuck? notebooks/solutions/ has a solution.)")
        return Outcome(ex_number, False)
    if not quiet:
        print(f"exercise {ex_number} ({name}): correct on all {n} cases.")
    return Outcome(ex_number, True)


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(x.detach() if torch.is_tensor(x) else x, dtype=torch.float64)


def _assert_close(got, expected, tol: float, what: str) -> None:
    got_t, exp_t = _as_tensor(got), _as_tensor(expected)
    assert got_t.shape == exp_t.shape, f"{what}: shape {tuple(got_t.shape)}, expected {tuple(exp_t.shape)}"
    if got_t.numel() == 0:
        return
    worst = float((got_t - exp_t).abs().max())
    assert worst <= tol, (f"{what}: differs by up to {worst:.3g} (tolerance {tol:.3g})\n"
                          f"  got      {got_t.tolist()}\n  expected {exp_t.tolist()}")


def _prefix_mask(rng: torch.Generator, batch: int, width: int, min_len: int = 1) -> torch.Tensor:
    """A ``[batch, width]`` bool mask of real tokens first, then padding (each row >= ``min_len`` long)."""
    lengths = torch.randint(min_len, width + 1, (batch,), generator=rng)
    return torch.arange(width)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------------------------
# Chapter 00 — setup
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def smoke_tokenizer():
    """The tokenizer every profile shares (SmolLM2's), for checks run without a chapter's ``tok``."""
    return load_tokenizer(resolve_profile("smoke").model)


def check_chat_prompt(fn, tok=None, quiet: bool = False) -> Outcome:
    """Exercise 0.1: ``chat_prompt(system, user) -> str``, the text the chat template renders for a
    system and a user turn, ready for the assistant's answer (``add_generation_prompt=True``)."""
    tok = tok or smoke_tokenizer()
    rng = random.Random(1)
    words = ["Python", "engineer", "Berlin", "senior", "write", "a", "JD", "for", "this", "CV:", "\n", "cloud"]

    def cases(call):
        for i in range(N_CASES):
            system = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
            user = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            expected = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            got = call(system, user)
            assert got == expected, (f"case {i}: for system={system!r}, user={user!r}\n"
                                     f"  got      {got!r}\n  expected {expected!r}")
        return N_CASES
    return _run("0.1", "chat_prompt", fn, cases, quiet)


def check_left_pad(fn, quiet: bool = False) -> Outcome:
    """Exercise 0.2: ``left_pad(seqs, pad_id) -> (input_ids, attention_mask)``, two long tensors,
    the pads on the left (:func:`girl_lib.textgen.left_pad`: how a batch of prompts is generated)."""
    rng = random.Random(2)

    def cases(call):
        for i in range(N_CASES):
            seqs = [[rng.randint(3, 999) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(1, 5))]
            pad = rng.choice([0, 2, 7])
            ids, mask = call(seqs, pad)
            exp_ids, exp_mask = left_pad(seqs, pad)
            for got, exp, what in ((ids, exp_ids, "input_ids"), (mask, exp_mask, "attention_mask")):
                got = torch.as_tensor(got)
                assert got.tolist() == exp.tolist(), (f"case {i}: {what} for {seqs} (pad {pad})\n"
                                                      f"  got      {got.tolist()}\n  expected {exp.tolist()}")
        return N_CASES
    return _run("0.2", "left_pad", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# Chapter 01 — the data
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def smoke_world():
    """The smoke profile's synthetic world (seconds), for checks run without a chapter's ``world``."""
    return generate_world(resolve_profile("smoke").data)


def check_level_factor(fn, quiet: bool = False) -> Outcome:
    """Exercise 1.1: ``level_factor(seeker_level, job_level) -> float``, the recruiter's level check
    (:meth:`girl_lib.world.Oracle.recruiter_factors`): 1 when it passes, the penalty otherwise."""
    oracle = Oracle()

    def cases(call):
        n = 0
        for s_level in LEVELS:
            for j_level in LEVELS:
                seeker = {"level": s_level, "skills": []}
                expected = oracle.recruiter_factors(seeker, ParsedJD(level=j_level))["level"]
                got = call(s_level, j_level)
                assert abs(float(got) - expected) < 1e-12, \
                    f"seeker {s_level}, job {j_level}: got {got}, expected {expected}"
                n += 1
        return n
    return _run("1.1", "level_factor", fn, cases, quiet)


def check_write_jd(fn, world=None, quiet: bool = False) -> Outcome:
    """Exercise 1.2: ``write_jd(job) -> str``, a JD text from which the parser reads every field
    back, so that the oracle judges the text exactly as it judges the job record."""
    world = world or smoke_world()
    rng = random.Random(3)
    jobs = rng.sample(world.jobs, min(N_CASES, len(world.jobs)))
    oracle = world.oracle

    def cases(call):
        for job in jobs:
            text = call(job)
            parsed = parse_jd(text, world.taxonomy)
            assert parsed.ok, f"job {job['id']}: the parser could not read {parsed.missing} from\n{text}"
            for seeker in rng.sample(world.seekers, 3):
                got = oracle.score(seeker, text).recruiter
                expected = oracle.score_job(seeker, job).recruiter
                assert got == expected, (f"job {job['id']}, seeker {seeker['id']}: the recruiter's checks read "
                                         f"{got} from your text, {expected} from the job record\n{text}")
        return len(jobs)
    return _run("1.2", "write_jd", fn, cases, quiet)


def check_acceptance_by_step(fn, world=None, quiet: bool = False) -> Outcome:
    """Exercise 1.3: ``acceptance_by_step(applications, seekers, jobs) -> {step: (n, rate)}``, with
    ``seekers`` and ``jobs`` dicts by id and step = job level minus seeker level
    (:meth:`girl_lib.world.World.acceptance_by_step`)."""
    world = world or smoke_world()
    rng = random.Random(4)
    seekers = {s["id"]: s for s in world.seekers}
    jobs = {j["id"]: j for j in world.jobs}

    def cases(call):
        for i in range(N_CASES):
            apps = rng.sample(world.applications, rng.randint(1, len(world.applications)))
            expected = dataclasses.replace(world, applications=apps).acceptance_by_step()
            got = call(apps, seekers, jobs)
            assert set(got) == set(expected), f"case {i}: steps {sorted(got)}, expected {sorted(expected)}"
            for k, (n, r) in expected.items():
                assert got[k][0] == n and abs(got[k][1] - r) < 1e-12, \
                    f"case {i}: step {k:+d}: got {got[k]}, expected {(n, r)}"
        return N_CASES
    return _run("1.3", "acceptance_by_step", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# Chapter 02 — SFT
# --------------------------------------------------------------------------------------------
def completion_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The SFT loss of a causal LM: next-token cross-entropy, mean over the labelled tokens.

    ``logits`` ``[B, T, V]`` at position ``t`` predict token ``t + 1``, so they are compared with
    ``labels[:, 1:]``; a label ``-100`` (prompt or padding) is skipped. What transformers'
    ``ForCausalLMLoss`` computes inside ``model(..., labels=labels).loss``.
    """
    shifted, targets = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(shifted.float(), targets, ignore_index=-100)


def check_masked_nll(fn, quiet: bool = False) -> Outcome:
    """Exercise 2.1: ``masked_nll(logits, labels) -> scalar``, the SFT loss on the completion tokens
    only (:func:`completion_nll`; transformers computes the same inside the model)."""
    gen = torch.Generator().manual_seed(21)
    rng = random.Random(21)

    def cases(call):
        for i in range(N_CASES):
            b, t, v = rng.randint(1, 4), rng.randint(3, 11), rng.randint(5, 40)
            logits = 3 * torch.randn(b, t, v, generator=gen)
            labels = torch.randint(0, v, (b, t), generator=gen)
            for row in range(b):
                prompt = rng.randint(1, t - 2)  # -100 on the prompt ...
                length = rng.randint(prompt + 2, t)  # ... and on the padding after the real tokens
                labels[row, :prompt] = -100
                labels[row, length:] = -100
            expected = completion_nll(logits, labels)
            got = call(logits.clone(), labels.clone())
            n = int((labels[:, 1:] != -100).sum())
            _assert_close(got, expected, tolerance(torch.float32, 10 + logits.abs().max(), n * 2), f"case {i}")
        return N_CASES
    return _run("2.1", "masked_nll", fn, cases, quiet)


def check_sft_batch(fn, pad_id: int = 0, quiet: bool = False) -> Outcome:
    """Exercise 2.2: ``sft_batch(examples, pad_id) -> {"input_ids", "attention_mask", "labels"}``:
    tokenised examples (``input_ids``, ``labels`` with -100 on the prompt) right-padded into one
    batch, labels padded with -100 (TRL's ``DataCollatorForLanguageModeling``, what
    ``SFTTrainer`` feeds the model)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(pad_token_id=pad_id)
    rng = random.Random(22)

    def cases(call):
        for i in range(N_CASES):
            examples = []
            for _ in range(rng.randint(1, 4)):
                ids = [rng.randint(3, 500) for _ in range(rng.randint(2, 10))]
                cut = rng.randint(1, len(ids) - 1)
                examples.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:]})
            expected = collator([{k: list(v) for k, v in e.items()} for e in examples])
            got = call([{k: list(v) for k, v in e.items()} for e in examples], pad_id)
            for key in ("input_ids", "attention_mask", "labels"):
                g = torch.as_tensor(got[key]).tolist()
                assert g == expected[key].tolist(), f"case {i}: {key}\n  got      {g}\n  expected {expected[key].tolist()}"
        return N_CASES
    return _run("2.2", "sft_batch", fn, cases, quiet)


def check_lora_merge(fn, quiet: bool = False) -> Outcome:
    """Exercise 2.3: ``lora_merge(W, A, B, alpha, r) -> W'``, the weight a LoRA layer computes with,
    ``W + (alpha / r) · B A``; checked against PEFT's own ``merge_and_unload`` of a LoRA linear layer."""
    from peft import LoraConfig, get_peft_model

    gen = torch.Generator().manual_seed(23)

    def cases(call):
        for i in range(N_CASES // 2):
            d_in, d_out = (int(x) for x in torch.randint(2, 12, (2,), generator=gen))
            r = int(torch.randint(1, 5, (1,), generator=gen))
            alpha = int(torch.randint(1, 33, (1,), generator=gen))
            module = torch.nn.Sequential()
            module.add_module("proj", torch.nn.Linear(d_in, d_out, bias=False))
            with torch.no_grad():
                module.proj.weight.copy_(torch.randn(d_out, d_in, generator=gen))
            W = module.proj.weight.detach().clone()
            peft_model = get_peft_model(module, LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"]))
            layer = peft_model.base_model.model.proj
            with torch.no_grad():
                layer.lora_B["default"].weight.copy_(torch.randn(d_out, r, generator=gen))  # B starts at 0: move it
                layer.lora_A["default"].weight.copy_(torch.randn(r, d_in, generator=gen))
            A = layer.lora_A["default"].weight.detach().clone()
            B = layer.lora_B["default"].weight.detach().clone()
            expected = peft_model.merge_and_unload().proj.weight.detach()
            got = call(W.clone(), A.clone(), B.clone(), alpha, r)
            mag = W.abs().max() + alpha / r * B.abs().max() * A.abs().max() * r
            _assert_close(got, expected, tolerance(torch.float32, mag, r + 1), f"case {i} (r={r}, alpha={alpha})")
        return N_CASES // 2
    return _run("2.3", "lora_merge", fn, cases, quiet)


@lru_cache(maxsize=1)
def _smoke_model():
    return load_causal_lm(resolve_profile("smoke").model)[0]


def check_lora_count(fn, model=None, quiet: bool = False) -> Outcome:
    """Exercise 2.4: ``lora_count(model, r, target_modules) -> int``, how many parameters a LoRA of
    rank ``r`` on ``target_modules`` trains; checked against PEFT's count of trainable parameters
    (:func:`girl_lib.training.lora_trainable_count` computes the same)."""
    from peft import LoraConfig, get_peft_model

    options = [("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"),
               ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), ("down_proj",)]
    rng = random.Random(24)

    def cases(call):
        n = 0
        net = model if model is not None else _smoke_model()  # loaded only once the learner has tried
        for targets in options:
            r = rng.choice([1, 4, 8, 16])
            got = call(net, r, targets)
            copy = get_peft_model(_copy_module(net), LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets)))
            expected = sum(p.numel() for p in copy.parameters() if p.requires_grad)
            assert int(got) == expected, f"r={r}, target_modules={targets}: got {got}, expected {expected}"
            n += 1
        return n
    return _run("2.4", "lora_count", fn, cases, quiet)


def _copy_module(model):
    import copy

    return copy.deepcopy(model)


# --------------------------------------------------------------------------------------------
# Chapter 03 — the reward model
# --------------------------------------------------------------------------------------------
def check_bt_loss(fn, quiet: bool = False) -> Outcome:
    """Exercise 3.1: ``bt_loss(chosen, rejected) -> scalar``, the Bradley–Terry loss
    ``mean(-log σ(r+ − r−))`` (:func:`girl_lib.stages.reward.pairwise_loss`)."""
    gen = torch.Generator().manual_seed(31)

    def cases(call):
        for i in range(N_CASES):
            n = int(torch.randint(1, 9, (1,), generator=gen))
            scale = float(torch.tensor([0.1, 1.0, 5.0])[torch.randint(0, 3, (1,), generator=gen)])
            chosen, rejected = scale * torch.randn(n, generator=gen), scale * torch.randn(n, generator=gen)
            expected = pairwise_loss(chosen, rejected)
            got = call(chosen.clone(), rejected.clone())
            _assert_close(got, expected, tolerance(torch.float32, 1 + 2 * scale * 4, n), f"case {i}")
        return N_CASES
    return _run("3.1", "bt_loss", fn, cases, quiet)


def check_auc(fn, quiet: bool = False) -> Outcome:
    """Exercise 3.2: ``auc(labels, scores) -> float``, the probability that a random positive
    outscores a random negative, a tie counting one half (:func:`girl_lib.metrics.scores.binary_auc`)."""
    rng = np.random.default_rng(32)

    def cases(call):
        for i in range(N_CASES):
            n = int(rng.integers(2, 30))
            labels = rng.integers(0, 2, n)
            labels[:2] = [0, 1]  # both classes present
            rng.shuffle(labels)
            scores = rng.normal(size=n) + 0.8 * labels
            if i % 2:
                scores = np.round(scores, 0)  # ties
            expected = binary_auc(labels.tolist(), scores.tolist())
            got = call(labels.tolist(), scores.tolist())
            _assert_close(float(got), expected, 1e-9, f"case {i}: labels {labels.tolist()}, scores {scores.tolist()}")
        return N_CASES
    return _run("3.2", "auc", fn, cases, quiet)


def check_jd_mask(fn, quiet: bool = False) -> Outcome:
    """Exercise 3.3: ``jd_mask(input_ids, attention_mask, header) -> bool [B, T]``, the tokens the
    ``response_mean`` head averages over: the real tokens after the **last** assistant header
    (:func:`girl_lib.pooling.response_mask`)."""
    gen = torch.Generator().manual_seed(33)
    header = [1, 77, 88]

    def cases(call):
        for i in range(N_CASES):
            b = int(torch.randint(1, 5, (1,), generator=gen))
            rows, masks = [], []
            for _ in range(b):
                n = int(torch.randint(8, 16, (1,), generator=gen))
                row = torch.randint(100, 200, (n,), generator=gen)
                for _ in range(int(torch.randint(1, 3, (1,), generator=gen))):  # one header, sometimes two
                    at = int(torch.randint(0, n - len(header) - 1, (1,), generator=gen))
                    row[at:at + len(header)] = torch.tensor(header)
                real = int(torch.randint(0, 3, (1,), generator=gen))  # right padding
                rows.append(row)
                masks.append(torch.tensor([1] * (n - real) + [0] * real))
            width = max(len(r) for r in rows)
            ids = torch.stack([torch.cat([r, torch.zeros(width - len(r), dtype=torch.long)]) for r in rows])
            am = torch.stack([torch.cat([m, torch.zeros(width - len(m), dtype=torch.long)]) for m in masks])
            try:
                expected = response_mask(ids, am, header)
            except ValueError:
                continue  # a case where the padding swallowed every JD token: not a question
            got = torch.as_tensor(call(ids.clone(), am.clone(), list(header))).bool()
            assert got.tolist() == expected.tolist(), (f"case {i}: input_ids {ids.tolist()}, attention_mask "
                                                       f"{am.tolist()}\n  got      {got.int().tolist()}\n"
                                                       f"  expected {expected.int().tolist()}")
        return N_CASES
    return _run("3.3", "jd_mask", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# Chapter 04 — PPO
# --------------------------------------------------------------------------------------------
def _rollout_case(gen: torch.Generator):
    b = int(torch.randint(1, 5, (1,), generator=gen))
    t = int(torch.randint(1, 13, (1,), generator=gen))
    mask = _prefix_mask(gen, b, t)
    logprobs = -torch.rand(b, t, generator=gen) * 4
    ref_logprobs = logprobs + 0.5 * torch.randn(b, t, generator=gen)
    return b, t, mask, logprobs, ref_logprobs


def check_per_token_rewards(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.1: ``per_token_rewards(scores, logprobs, ref_logprobs, mask, beta) -> [B, T]``:
    ``-β·(log π − log π_ref)`` at every real token, plus the score at the last real one, 0 at
    padding (:func:`girl_lib.stages.ppo.compute_rewards`)."""
    gen = torch.Generator().manual_seed(41)

    def cases(call):
        for i in range(N_CASES):
            b, t, mask, lp, ref = _rollout_case(gen)
            scores = 2 * torch.randn(b, generator=gen)
            beta = float(torch.rand(1, generator=gen)) * 0.3
            expected, _, _ = core.compute_rewards(scores, lp, ref, mask, beta)
            got = call(scores.clone(), lp.clone(), ref.clone(), mask.clone(), beta)
            _assert_close(got, expected, tolerance(torch.float32, 10, 3), f"case {i} (mask {mask.int().tolist()})")
        return N_CASES
    return _run("4.1", "per_token_rewards", fn, cases, quiet)


def check_gae(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.2: ``gae(rewards, values, mask, gamma, lam) -> (advantages, returns)``,
    generalised advantage estimation over real tokens, 0 at padding (:func:`girl_lib.stages.ppo.compute_gae`)."""
    gen = torch.Generator().manual_seed(42)

    def cases(call):
        for i in range(N_CASES):
            b, t, mask, _, _ = _rollout_case(gen)
            rewards, values = torch.randn(b, t, generator=gen), torch.randn(b, t, generator=gen)
            gamma = 1.0 if i % 2 == 0 else 0.9
            lam = float(torch.tensor([0.0, 0.5, 0.95, 1.0])[i % 4])
            exp_adv, exp_ret = core.compute_gae(rewards, values, mask, gamma, lam)
            adv, ret = call(rewards.clone(), values.clone(), mask.clone(), gamma, lam)
            tol = tolerance(torch.float32, 8, 2 * t)
            _assert_close(adv, exp_adv, tol, f"case {i}: advantages (gamma {gamma}, lam {lam}, mask {mask.int().tolist()})")
            _assert_close(ret, exp_ret, tol, f"case {i}: returns (gamma {gamma}, lam {lam}, mask {mask.int().tolist()})")
        return N_CASES
    return _run("4.2", "gae", fn, cases, quiet)


def check_kl_estimates(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.3: ``kl_estimates(logprobs, ref_logprobs) -> (k1, k3)``, the two per-token
    estimators of KL(π ‖ π_ref) on tokens sampled from π (:func:`girl_lib.stages.ppo.kl_penalty`)."""
    gen = torch.Generator().manual_seed(43)

    def cases(call):
        for i in range(N_CASES):
            _, _, _, lp, ref = _rollout_case(gen)
            k1, k3 = call(lp.clone(), ref.clone())
            mag = float(torch.exp((ref - lp).abs()).max()) + 4
            _assert_close(k1, core.kl_penalty(lp, ref, "k1"), tolerance(torch.float32, mag), f"case {i}: k1")
            _assert_close(k3, core.kl_penalty(lp, ref, "k3"), tolerance(torch.float32, mag, 3), f"case {i}: k3")
        return N_CASES
    return _run("4.3", "kl_estimates", fn, cases, quiet)


def check_clipped_surrogate(fn, quiet: bool = False) -> Outcome:
    """Exercise 4.4: ``clipped_surrogate(new_logprobs, old_logprobs, advantages, mask, eps) -> scalar``,
    PPO's clipped policy loss, a mean over the real tokens (:func:`girl_lib.stages.ppo.policy_loss`)."""
    gen = torch.Generator().manual_seed(44)

    def cases(call):
        for i in range(N_CASES):
            b, t, mask, old, _ = _rollout_case(gen)
            new = old + 0.4 * torch.randn(b, t, generator=gen)
            adv = torch.randn(b, t, generator=gen)
            eps = float(torch.tensor([0.1, 0.2, 0.3])[i % 3])
            expected, _ = core.policy_loss(new, old, adv, mask, eps)
            got = call(new.clone(), old.clone(), adv.clone(), mask.clone(), eps)
            mag = float((adv.abs() * torch.exp(new - old)).max()) + 1
            _assert_close(got, expected, tolerance(torch.float32, mag, b * t), f"case {i} (eps {eps})")
        return N_CASES
    return _run("4.4", "clipped_surrogate", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# Chapter 05 — evaluation
# --------------------------------------------------------------------------------------------
def check_wilson(fn, quiet: bool = False) -> Outcome:
    """Exercise 5.1: ``wilson(k, n) -> (low, high)``, the 95 % Wilson score interval of k successes
    in n trials (:func:`girl_lib.stats.rate`)."""
    rng = random.Random(51)

    def cases(call):
        for i in range(N_CASES):
            n = rng.choice([1, 5, 20, 40, 200, 1000])
            k = rng.choice([0, n, rng.randint(0, n)])
            expected = rate(k, n)["ci"]
            got = call(k, n)
            _assert_close(list(got), expected, tolerance(torch.float64, 1, 16, ulps=1e4), f"case {i}: k={k}, n={n}")
        return N_CASES
    return _run("5.1", "wilson", fn, cases, quiet)


def check_mcnemar(fn, quiet: bool = False) -> Outcome:
    """Exercise 5.2: ``mcnemar(a, b) -> p``, the two-sided exact McNemar p-value of two arms'
    yes/no outcomes on the same seekers (:func:`girl_lib.stats.mcnemar_exact`)."""
    rng = np.random.default_rng(52)

    def cases(call):
        for i in range(N_CASES):
            n = int(rng.integers(1, 60))
            a = rng.random(n) < rng.uniform(0.1, 0.9)
            b = np.where(rng.random(n) < 0.7, a, rng.random(n) < 0.5)
            expected = mcnemar_exact(a, b)
            got = call(a.tolist(), b.tolist())
            _assert_close(float(got), expected, 1e-9, f"case {i}: a {a.astype(int).tolist()}, b {b.astype(int).tolist()}")
        return N_CASES
    return _run("5.2", "mcnemar", fn, cases, quiet)


def check_verdict(fn, quiet: bool = False) -> Outcome:
    """Exercise 5.3: ``verdict(ci, p_value) -> str``: "reproduced", "not reproduced" or
    "inconclusive" for the claim "the effect is positive" (:func:`girl_lib.stats.verdict`)."""
    cis = [(0.01, 0.2), (-0.2, -0.01), (-0.1, 0.1), (0.0, 0.3), (-0.3, 0.0), (None, None), (0.05, 0.1), (-0.5, -0.4)]
    ps = [None, 0.01, 0.2, 0.049, 0.05]

    def cases(call):
        n = 0
        for ci in cis:
            for p in ps:
                expected = verdict(list(ci), p_value=p)
                got = call(list(ci), p)
                assert got == expected, f"ci {ci}, p {p}: got {got!r}, expected {expected!r}"
                n += 1
        return n
    return _run("5.3", "verdict", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# Chapter 06 — GenRec
# --------------------------------------------------------------------------------------------
# Beam search can return the same title twice: a repeat must not push the target out of the top k.
REPEATS = [([["job1", "job1", "job1", "job2"]], ["job2"], 2), ([["job3", "job3", "job4", "job4", "job5"]], ["job5"], 3)]


def _ranked_case(rng: random.Random):
    items = [f"job{j}" for j in range(12)]
    users = rng.randint(1, 6)
    lists = [[rng.choice(items) for _ in range(rng.randint(0, 10))] for _ in range(users)]  # repeats happen
    targets = [rng.choice(items) for _ in range(users)]
    return lists, targets


def check_ndcg_at_k(fn, quiet: bool = False) -> Outcome:
    """Exercise 6.1: ``ndcg_at_k(ranked_lists, targets, k) -> float``, the mean over users of
    ``1 / log2(rank + 1)`` for the target's 1-based rank in the top k (0 if absent), repeats in a
    list dropped first (:func:`girl_lib.metrics.ranking.ndcg_at_k`)."""
    rng = random.Random(61)

    def cases(call):
        cases_ = REPEATS + [(*_ranked_case(rng), rng.choice([1, 3, 5, 10])) for _ in range(N_CASES)]
        for i, (lists, targets, k) in enumerate(cases_):
            expected = ranking.ndcg_at_k(lists, targets, k)
            got = call(lists, targets, k)
            _assert_close(float(got), expected, tolerance(torch.float64, 1, len(lists)),
                          f"case {i}: k={k}, lists {lists}, targets {targets}")
        return len(cases_)
    return _run("6.1", "ndcg_at_k", fn, cases, quiet)


def check_hit_rate_at_k(fn, quiet: bool = False) -> Outcome:
    """Exercise 6.2: ``hit_rate_at_k(ranked_lists, targets, k) -> float``, the share of users whose
    target is among the first k distinct items (:func:`girl_lib.metrics.ranking.hit_rate_at_k`)."""
    rng = random.Random(62)

    def cases(call):
        cases_ = REPEATS + [(*_ranked_case(rng), rng.choice([1, 3, 5, 10])) for _ in range(N_CASES)]
        for i, (lists, targets, k) in enumerate(cases_):
            expected = ranking.hit_rate_at_k(lists, targets, k)
            got = call(lists, targets, k)
            _assert_close(float(got), expected, 1e-12, f"case {i}: k={k}, lists {lists}, targets {targets}")
        return len(cases_)
    return _run("6.2", "hit_rate_at_k", fn, cases, quiet)


def leave_one_out_questions(sequence: list[str]) -> tuple[list[tuple[tuple[str, ...], str]], tuple, tuple]:
    """One user's ``(train, val, test)`` questions as ``(history, target)`` pairs, from the GenRec
    stage's own :func:`girl_lib.stages.genrec.sequences.leave_one_out`."""
    split = leave_one_out({"user": list(sequence)})
    pairs = lambda examples: [(tuple(e.history), e.target) for e in examples]  # noqa: E731
    return pairs(split.train), pairs(split.val)[0], pairs(split.test)[0]


def check_leave_one_out(fn, quiet: bool = False) -> Outcome:
    """Exercise 6.3: ``leave_one_out_user(sequence) -> (train, val, test)`` for one user's items in time
    order; ``train`` a list of ``(history, target)`` pairs, ``val`` and ``test`` one pair each,
    histories as tuples (:func:`girl_lib.stages.genrec.sequences.leave_one_out`)."""
    rng = random.Random(63)

    def cases(call):
        for i in range(N_CASES):
            seq = [f"job{rng.randint(0, 99)}" for _ in range(rng.randint(3, 9))]
            expected = leave_one_out_questions(seq)
            train, val, test = call(list(seq))
            got = ([(tuple(h), t) for h, t in train], (tuple(val[0]), val[1]), (tuple(test[0]), test[1]))
            assert got == expected, f"case {i}: sequence {seq}\n  got      {got}\n  expected {expected}"
        return N_CASES
    return _run("6.3", "leave_one_out_user", fn, cases, quiet)


# --------------------------------------------------------------------------------------------
# The list, in chapter order
# --------------------------------------------------------------------------------------------
EXERCISES: dict[str, Exercise] = {e.number: e for e in (
    Exercise("0.1", "00", "chat_prompt", "the chat template by hand", check_chat_prompt),
    Exercise("0.2", "00", "left_pad", "a left-padded batch of prompts", check_left_pad),
    Exercise("1.1", "01", "level_factor", "the recruiter's level check", check_level_factor),
    Exercise("1.2", "01", "write_jd", "a JD the oracle reads exactly", check_write_jd),
    Exercise("1.3", "01", "acceptance_by_step", "acceptance by level step", check_acceptance_by_step),
    Exercise("2.1", "02", "masked_nll", "the SFT loss on completion tokens", check_masked_nll),
    Exercise("2.2", "02", "sft_batch", "a padded SFT batch", check_sft_batch),
    Exercise("2.3", "02", "lora_merge", "the LoRA update W + (alpha/r) B A", check_lora_merge),
    Exercise("2.4", "02", "lora_count", "LoRA's trainable parameters", check_lora_count),
    Exercise("3.1", "03", "bt_loss", "the Bradley-Terry pairwise loss", check_bt_loss),
    Exercise("3.2", "03", "auc", "AUC with ties", check_auc),
    Exercise("3.3", "03", "jd_mask", "the tokens response_mean pools", check_jd_mask),
    Exercise("4.1", "04", "per_token_rewards", "per-token rewards with the KL penalty", check_per_token_rewards),
    Exercise("4.2", "04", "gae", "generalised advantage estimation", check_gae),
    Exercise("4.3", "04", "kl_estimates", "the k1 and k3 KL estimators", check_kl_estimates),
    Exercise("4.4", "04", "clipped_surrogate", "PPO's clipped surrogate", check_clipped_surrogate),
    Exercise("5.1", "05", "wilson", "the Wilson interval", check_wilson),
    Exercise("5.2", "05", "mcnemar", "the exact McNemar test", check_mcnemar),
    Exercise("5.3", "05", "verdict", "a verdict from an interval and a test", check_verdict),
    Exercise("6.1", "06", "ndcg_at_k", "NDCG@K", check_ndcg_at_k),
    Exercise("6.2", "06", "hit_rate_at_k", "HR@K", check_hit_rate_at_k),
    Exercise("6.3", "06", "leave_one_out_user", "the leave-one-out split", check_leave_one_out),
)}


def for_chapter(chapter: str) -> list[Exercise]:
    """The exercises of chapter ``"NN"``, in order."""
    return [e for e in EXERCISES.values() if e.chapter == chapter]


__all__ = (["EXERCISES", "Exercise", "Outcome", "for_chapter", "tolerance", "completion_nll", "leave_one_out_questions"]
           + [e.check.__name__ for e in EXERCISES.values()])
