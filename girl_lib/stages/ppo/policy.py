"""The policy: LoRA over the merged SFT model, and a value head on the same forward pass."""
from __future__ import annotations

import torch
from torch import nn


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions ``0, 1, 2, ...`` counted over real tokens only (left pads get 0).

    ``generate`` numbers a left-padded prompt this way, so the forward passes of PPO must too, or
    the log-probabilities it recomputes are not those of the distribution it sampled from.
    (LLaMA's rotary embeddings only see *relative* positions, so for it a uniform shift happens
    to change nothing; a model with absolute position embeddings would be silently wrong.)
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class PolicyWithValueHead(nn.Module):
    """The PEFT policy and a scalar value head sharing one forward pass.

    ``forward(input_ids, attention_mask, context_length)`` takes prompt+response rows (prompt
    left-padded to ``context_length`` columns, response after it) and returns, for the response
    positions only, ``(logits [B, R, vocab], values [B, R])``. Position ``t`` holds the
    prediction *of* response token ``t`` (the hidden state of the token before it): the state
    in which the policy chose action ``t``, and that state's value.

    Every pass through it is float32: a policy loaded in a half type (``model.dtype=bfloat16``)
    is upcast here, in place (each bf16 value is exact in float32: the same model, computed
    without bf16's 8-bit rounding, which would move a log-prob of a logit ~20 by ~0.1 and make
    PPO's ratios and KL noise). bf16 stays on the fast rollout path only (girl_lib.textgen).

    The value head starts at zero; the loop may then set its bias to the mean return of the
    first rollout batch (``ppo.value_head_init=mean_return``).
    """
    def __init__(self, policy, value_backbone_grad: bool = False):
        super().__init__()
        if any(p.is_floating_point() and p.dtype != torch.float32 for p in policy.parameters()):
            policy.float()
        self.policy = policy
        hidden_size = policy.get_base_model().config.hidden_size
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.value_backbone_grad = value_backbone_grad

    def forward(self, input_ids, attention_mask, context_length: int):
        lm = self.policy.get_base_model()  # the LoRA layers are injected in place: they run here too
        hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids_from_mask(attention_mask),
                                  use_cache=False).last_hidden_state
        # Logits at position i predict token i+1: the response tokens are predicted from
        # positions context_length-1 ... end-1. Slicing BEFORE the LM head skips the prompt's
        # logits (vocab 49k x ~250 prompt tokens: most of the head's cost and memory).
        h = hidden[:, context_length - 1: -1]
        logits = lm.get_output_embeddings()(h)
        v_in = h if self.value_backbone_grad else h.detach()
        values = self.value_head(v_in.float()).squeeze(-1)  # fp32 head, whatever the LLM's dtype
        return logits, values
