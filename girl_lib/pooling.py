"""How the reward model turns a sequence of hidden states into one score.

Hugging Face's ``*ForSequenceClassification`` reads the score off the **last real token**. That
token has to gather, through attention alone, everything that decides the reward: here, whether
each must-have skill of the JD is among the CV's skills, whether the level, salary band and city
fit. A linear probe on frozen SmolLM2-135M features (``benchmarks/probe_reward_features.py``)
shows how little of that the last token holds and how much the JD's own tokens do, with the
best features in the middle of the network (the table: docs/results.md, reward model).

Why the mean works: in a causal LM the hidden state of a JD token like "penetration testing
tool" has attended to the CV before it, so whether the skill *appears in the CV* is written in
that token's state (copying/induction heads do exactly this); the mean adds those per-token
signals up. The last token would have to learn that aggregation from a few hundred pairs.

So the kit offers ``reward.pooling``:

* ``last`` — Hugging Face's default, the InstructGPT recipe;
* ``response_mean`` — ``r(cv, jd) = mean over the response tokens t of w · h_t``: the ``score``
  head is applied to every token (as Hugging Face already does) and averaged over the tokens
  after the last *assistant header* of the chat template (``<|im_start|>assistant\\n`` for
  SmolLM2), found in ``input_ids``. The CV's tokens are left out: they are identical for the
  two JDs of a pair, and across CVs they would only add noise.

and ``reward.num_layers``: keep only the first N transformer layers of the base (0 = all). The
probe's best features sit in the middle of the network, and a shorter backbone is cheaper to
run on every pair and on every PPO rollout; the ``cpu`` profile keeps 12 of 30.

Both are applied by :func:`prepare_reward_model` at load time (training and reloading alike);
the saved adapter holds only the LoRA and ``score`` weights, so the pooling choice is recorded
in ``reward/metrics.json`` and checked when the model is reloaded.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .errors import GirlError

POOLINGS = ("last", "response_mean")


def response_header_ids(tokenizer) -> list[int]:
    """Token ids the chat template puts before an assistant turn (the generation prompt).

    Computed, not hard-coded: the difference between the template with and without
    ``add_generation_prompt`` (``<|im_start|>assistant\\n`` for ChatML models like SmolLM2,
    ``<|start_header_id|>assistant<|end_header_id|>\\n\\n`` for Llama 3).
    """
    msgs = [{"role": "user", "content": "x"}]
    plain = list(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"])
    gen = list(tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                             return_dict=True)["input_ids"])
    header = gen[len(plain):]
    if gen[:len(plain)] != plain or not header:
        raise GirlError("this tokenizer's chat template has no separate assistant header; "
                        "use --set reward.pooling=last")
    return [int(t) for t in header]


def response_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  header: Sequence[int]) -> torch.Tensor:
    """``[B, T]`` bool: the real tokens after the **last** occurrence of ``header`` in each row.

    Raises ``ValueError`` naming the rows without a header (a sequence truncated from the left
    past its assistant turn, or a text not built with the chat template): never a silent score.
    """
    n, width = input_ids.shape
    h = torch.as_tensor(list(header), dtype=input_ids.dtype, device=input_ids.device)
    k = len(h)
    real = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    if width < k:
        raise ValueError("sequences are shorter than the assistant header")
    hit = (input_ids.unfold(1, k, 1) == h).all(-1)  # [B, T-k+1]: header starts here
    pos = torch.arange(hit.shape[1], device=input_ids.device)
    last = torch.where(hit, pos, torch.full_like(pos, -1)).max(dim=1).values  # [B]
    missing = (last < 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"rows {missing[:5]} have no assistant header {list(header)}: "
                         "response_mean pooling needs the chat-template text (or use reward.pooling=last)")
    start = last + k  # first response token
    cols = torch.arange(width, device=input_ids.device)
    mask = (cols[None, :] >= start[:, None]) & real
    empty = (mask.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty[:5]} have an empty response after the assistant header")
    return mask


class ResponseMeanPooling:
    """Mixin for a Hugging Face ``*ForSequenceClassification``: mean of per-token scores over the
    response (see the module docstring). Set ``girl_response_header`` on the instance."""

    girl_response_header: list[int]

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
                return_dict=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutputWithPast

        if input_ids is None:
            raise ValueError("response_mean pooling needs input_ids (it locates the assistant header)")
        if labels is not None:
            raise ValueError("response_mean pooling returns scores only; compute the loss outside "
                             "(TRL's RewardTrainer does)")
        for key in ("output_attentions", "output_hidden_states", "use_cache", "past_key_values"):
            kwargs.pop(key, None)
        backbone = getattr(self, self.base_model_prefix)
        hidden = backbone(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False, **kwargs).last_hidden_state
        per_token = self.score(hidden).float()  # [B, T, num_labels], as the stock head computes it
        mask = response_mask(input_ids, attention_mask, self.girl_response_header).unsqueeze(-1)
        pooled = (per_token * mask).sum(1) / mask.sum(1)  # the mean in fp32, whatever autocast did
        return SequenceClassifierOutputWithPast(logits=pooled)


def truncate_layers(model, num_layers: int) -> None:
    """Keep the first ``num_layers`` decoder layers (in place). ``0`` or more than the model has: all."""
    backbone = getattr(model, model.base_model_prefix)
    layers = backbone.layers
    if num_layers <= 0 or num_layers >= len(layers):
        return
    backbone.layers = layers[:num_layers]
    for cfg in {id(model.config): model.config, id(backbone.config): backbone.config}.values():
        cfg.num_hidden_layers = num_layers
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = list(cfg.layer_types)[:num_layers]


def prepare_reward_model(model, tokenizer, pooling: str, num_layers: int = 0):
    """Apply ``reward.num_layers`` and ``reward.pooling`` to a freshly loaded sequence classifier."""
    if pooling not in POOLINGS:
        raise GirlError(f"unknown reward.pooling '{pooling}'; choose one of {', '.join(POOLINGS)}")
    truncate_layers(model, num_layers)
    if pooling == "response_mean":
        header = response_header_ids(tokenizer)
        cls = type(model)
        if not issubclass(cls, ResponseMeanPooling):
            model.__class__ = type(f"ResponseMean{cls.__name__}", (ResponseMeanPooling, cls), {})
        model.girl_response_header = header
    return model


def token_scores(model, tokenizer, input_ids: Sequence[int]) -> list[tuple[str, float]]:
    """``(token, w · h_t)`` for each response token of one chat (``response_mean`` pooling only).

    The reward is the mean of these numbers, so they show *where* in a JD the score comes from:
    e.g. a must-have skill the CV lacks pulling it down. Works on the bare model and on the
    PEFT-wrapped one (the hook sits on whichever ``score`` module runs).
    """
    if not isinstance(_unwrap(model), ResponseMeanPooling):
        raise GirlError("token scores need reward.pooling=response_mean")
    ids = torch.as_tensor([list(input_ids)], device=next(model.parameters()).device)
    captured: list[torch.Tensor] = []
    handle = _unwrap(model).score.register_forward_hook(lambda mod, args, out: captured.append(out))
    try:
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        handle.remove()
    per_token = captured[0][0, :, 0].float().cpu()
    mask = response_mask(ids, None, _unwrap(model).girl_response_header)[0].cpu()
    return [(tokenizer.decode([int(t)]), float(s)) for t, s, m in zip(ids[0].tolist(), per_token, mask) if m]


def _unwrap(model):
    """The ``*ForSequenceClassification`` under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
