"""The update: clipped losses over shuffled minibatches, micro-batched."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
from torch import nn

from .core import logprobs_from_logits, policy_loss, value_loss
from .rollout import by_length, select_rows, to_device


def ppo_loss(logits: torch.Tensor, values: torch.Tensor, mb: dict, p) -> tuple[torch.Tensor, dict]:
    """``policy_loss + vf_coef * value_loss`` for one micro-batch, as token means over its mask.

    ``logits`` ``[b, R, vocab]`` and ``values`` ``[b, R]`` come from the model's forward on the
    rows of ``mb`` (:func:`select_rows`); ``mb`` holds the rollout's ``logprobs``, ``values``,
    ``advantages``, ``returns``, ``responses`` and ``response_mask``. Masked positions change
    nothing: every reduction skips them.
    """
    mask = mb["response_mask"]
    new_logprobs = logprobs_from_logits(logits, mb["responses"], p.temperature)
    pg_loss, pg_stats = policy_loss(new_logprobs, mb["logprobs"], mb["advantages"], mask, p.cliprange)
    vf_loss, vf_stats = value_loss(values.float(), mb["values"], mb["returns"], mask, p.cliprange_value)
    loss = pg_loss + p.vf_coef * vf_loss
    stats = {"pg_loss": pg_loss.detach(), "vf_loss": vf_loss.detach(), **pg_stats, **vf_stats}
    return loss, stats


def accumulate_minibatch(model, batch: dict, idx: torch.Tensor, p, accelerator=None) -> dict:
    """Backpropagate the loss of one minibatch (rows ``idx``), ``p.micro_batch_size`` rows at a time.

    The minibatch loss is a mean over all its real tokens. A micro-batch holding ``n_m`` of the
    minibatch's ``N`` tokens contributes ``loss_m * n_m / N``, so the accumulated gradient is
    exactly the gradient of the minibatch loss, whatever the micro-batch size (averaging the
    micro-batch losses instead would weigh a token of a short micro-batch more). Returns the
    minibatch's statistics, token-weighted the same way. Gradients are left in ``.grad``.
    """
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    # The gradient is a sum over rows, so their order is free: sorted by length, a micro-batch
    # holds rows of similar length and wastes little compute on padding.
    idx = by_length(batch, torch.as_tensor(idx, dtype=torch.long))
    n_tokens = batch["response_mask"][idx].sum()
    starts = list(range(0, len(idx), p.micro_batch_size))
    stats: dict[str, torch.Tensor] = {}
    for k, start in enumerate(starts):
        mb = to_device(select_rows(batch, idx[start:start + p.micro_batch_size]), device)
        weight = mb["response_mask"].sum() / n_tokens.to(device)
        # Under DDP, synchronise gradients only on the minibatch's last micro-batch.
        last = k == len(starts) - 1
        sync = nullcontext() if (accelerator is None or last) else accelerator.no_sync(model)
        with sync:
            logits, values = model(mb["input_ids"], mb["attention_mask"], mb["context_length"])
            loss, s = ppo_loss(logits, values, mb, p)
            scaled = loss * weight
            if accelerator is not None:
                accelerator.backward(scaled)
            else:
                scaled.backward()
        for key, val in s.items():
            stats[key] = stats.get(key, 0.0) + val.float().cpu() * weight.cpu()
    return stats


def ppo_update(model, optimizer, batch: dict, p, seed: int, accelerator=None,
               param_groups: Sequence[Sequence[nn.Parameter]] = ()) -> list[dict]:
    """``p.ppo_epochs`` passes over the rollout batch in shuffled minibatches; one optimizer step each.

    [detail] Each epoch reshuffles (a seeded ``torch.Generator``); each minibatch's gradient
    is clipped to ``p.max_grad_norm`` — each group of ``param_groups`` on its own (the policy's
    LoRA and the value head: the head's gradient, large while it learns, must not shrink the
    policy's step) — before the AdamW step. Returns one stats dict per minibatch, in order; the
    first is the first minibatch of the first epoch, where the policy has not moved yet, so
    its ratio is 1, approxkl 0 and clipfrac 0.
    """
    n = batch["responses"].shape[0]
    gen = torch.Generator().manual_seed(seed)
    all_stats = []
    for _ in range(p.ppo_epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, p.minibatch_size):
            idx = order[start:start + p.minibatch_size]
            stats = accumulate_minibatch(model, batch, idx, p, accelerator)
            for i, group in enumerate(param_groups):
                clip = accelerator.clip_grad_norm_ if accelerator is not None else nn.utils.clip_grad_norm_
                stats[f"grad_norm_{i}"] = torch.as_tensor(clip(group, p.max_grad_norm)).float()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            all_stats.append(stats)
    return all_stats
