"""The checks of chapters 00-02: setup, the data and SFT.

Why these three together: they are the chapters that need the kit's own artefacts (the smoke
profile's tokenizer, world and model, each loaded once and cached here) rather than plain
random tensors. Also here: :func:`completion_nll`, the reference SFT loss chapter 02 prints
next to ``model(**batch).loss``.
"""
from __future__ import annotations

import dataclasses
import random
from functools import lru_cache

import torch

from ..config import resolve_profile
from ..models import load_causal_lm, load_tokenizer
from ..textgen import left_pad
from ..world import LEVELS, Oracle, ParsedJD, generate_world, parse_jd
from ._common import N_CASES, Outcome, _assert_close, _run, tolerance

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
