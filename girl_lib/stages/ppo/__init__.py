"""Stage 3 — PPO: the JD generator learns from the (learned) recruiter, with a leash to SFT.

TRL removed its ``PPOTrainer`` (huggingface/trl#7020), so the kit owns this loop. It is written
to be read top to bottom, like CleanRL's ``ppo.py``; the maths lives in
:mod:`girl_lib.stages.ppo.core` (re-exported here) and every implementation detail of Huang et
al. (2024), "The N Implementation Details of RLHF with PPO", is marked ``[detail]`` where the
code does it.

**The objective.** For a CV ``x`` the policy ``π_θ`` writes a JD ``y``; the reward model of
stage 2 scores it, ``r(x, y)``. We maximise the score without drifting far from the SFT model
``π_ref`` (which writes fluent, parseable JDs; the reward model was never trained on garbage)::

    max_θ  E_x E_{y ~ π_θ(.|x)} [ r(x, y) − β · KL(π_θ(.|x) || π_ref(.|x)) ]

The KL of a whole response is the sum of per-token log-ratios, so the objective becomes a
per-token reward (:func:`compute_rewards`): ``−β · (log π_θ − log π_ref)`` (k1) at every token, plus
the score at the last real token. Each token is an action, GAE turns those rewards into
advantages (:func:`compute_gae`), and PPO's clipped surrogate (:func:`policy_loss`) and clipped
value loss (:func:`value_loss`) update the policy and a value head for a few epochs.

**The models, and why only one copy of the LLM.**

* *Policy*: the SFT model. Its LoRA adapter is **merged** into the base weights, then a fresh
  LoRA is added for PPO (``B = 0`` at init, so the policy starts exactly as the SFT model).
* *Reference*: the same model inside ``with policy.disable_adapter():`` — the merged SFT
  weights. No second copy. (Training the SFT adapter itself would make "adapter disabled" the
  zero-shot base model, and the KL penalty would pull towards a model that cannot write a JD.)
* *Value head*: ``nn.Linear(hidden_size, 1)`` on the policy's last hidden state, so ONE forward
  pass gives the logits and the values. A separate value model (what InstructGPT and TRL's
  ``PPOTrainer`` used: a copy of the reward model) is a better critic — its own features, no
  interference with the policy — but costs a second LLM in memory and a second forward and
  backward per step: twice the compute on a 2-core CPU. By default the head reads the hidden
  state *detached* (``ppo.value_backbone_grad=False``): the value loss trains the head only,
  so a large early value error cannot push the policy's LoRA around (the classic failure of a
  shared trunk); the head is a linear probe of the policy's own features. With ``λ = 0.95`` a
  useless critic leaves early tokens almost no credit (``0.95^100 ≈ 0.006``), so it is helped
  to learn fast: its weight starts at zero and its bias at the mean return of the first rollout
  batch (``ppo.value_head_init=mean_return``); its value loss is not clipped for the first
  ``ppo.value_warmup_iterations`` iterations (clipped at ``±0.2`` per iteration, a head at 0
  would need many iterations to reach returns of order 1); it has its own, larger learning
  rate (``ppo.value_head_lr``). ``val/explained_variance`` in the log shows whether it learns.
* *Reward*: the stage-2 model, :func:`girl_lib.scoring.score` on the decoded JD, standardised
  with its mean and std on the SFT policy's own samples (:mod:`girl_lib.stages.ppo.normalize`).
  With ``ppo.samples_per_prompt = k > 1`` each seeker gets k JDs and each JD's score loses the
  mean of the other k − 1 (:func:`leave_one_out_baseline`, RLOO's baseline inside PPO): with a
  critic that learns slowly, the reward then compares JDs for one seeker instead of seekers.
  Two rule-based terms are subtracted after standardising: ``ppo.missing_eos_penalty`` for a
  response that never stopped, and ``ppo.format_penalty`` (off by default) for a JD the world's
  parser cannot read (:func:`~girl_lib.stages.ppo.rollout.apply_format_penalty`): the reward
  models score those like parsed, rejected JDs, so without it an invented job title costs nothing.

**Precision.** Every PPO forward pass, log-prob and KL is float32 (a policy loaded in bf16 is
upcast: :class:`PolicyWithValueHead`); bf16 appears only on the fast rollout path, whose
samples are then scored in float32.

**One iteration** (:func:`train`, :mod:`girl_lib.stages.ppo.loop`): draw seekers → sample JDs →
score them → per-token rewards and advantages → ``ppo_epochs`` passes over shuffled minibatches
(micro-batched, gradients accumulated) → adapt β → log → checkpoint. Logged to
``<run-dir>/ppo/log.jsonl`` with TRL's metric names.

**Where the code is**, in the order a reader meets it: ``core.py`` (the maths: masked means,
GAE, the clipped losses, the KL controllers), ``policy.py`` (:class:`PolicyWithValueHead`),
``normalize.py`` (the score normaliser), ``rollout.py`` (the sampler, batches, no-grad forward
passes, advantages), ``update.py`` (the micro-batched
PPO update), ``loop.py`` (:func:`train`), ``checkpoint.py`` (atomic checkpoints, the log),
``evaluate.py`` (PPO vs SFT on held-out seekers), ``stage.py`` (``girl ppo``) and
``grpo_rloo.py`` (TRL's GRPO and RLOO as comparison arms).

**Scaling out.** The loop runs under 🤗 ``accelerate``: one process by default; under a
multi-process launcher every process samples its own rollouts (seed + rank), gradients are
averaged by DDP, metrics are averaged across processes and only the main process writes files
(:func:`girl_lib.pipeline.run_stage` is rank-aware: every rank trains, rank 0 writes the manifest)::

    torchrun --nproc_per_node 2 -m girl_lib.cli ppo --profile smoke --run-dir D
    accelerate launch --multi_gpu --num_processes 2 -m girl_lib.cli ppo --profile smoke --run-dir D

Both start two processes, on GPUs or (``--profile`` cpu/smoke: ``Accelerator(cpu=True)``, the
gloo backend) on CPU cores. ``accelerate launch --cpu --num_processes 2`` starts only ONE
process: accelerate runs several CPU processes only through MPI (``--mpirun_hostfile``).

Outputs in ``<run-dir>/ppo/``: ``log.jsonl`` (one line per iteration), ``checkpoint/`` (the
last saved iteration: adapter, value head, optimizer, ``state.json``; a killed run resumes from
it), ``score_norm.json`` (the score normaliser, computed once, reused on resume), ``adapter/``
(the final policy LoRA, relative to the merged SFT model), ``metrics.json``
(PPO vs SFT on held-out seekers, through the oracle and the reward model) and ``profile.json``.
Comparison arms on the same reward and budget, TRL's GRPO and RLOO:
:mod:`girl_lib.stages.ppo.grpo_rloo` (``girl ppo --algo grpo|rloo``).
"""
from .checkpoint import LOG, read_log
from .core import (AdaptiveKLController, FixedKLController, compute_gae, compute_rewards, entropy_from_logits,
                   explained_variance, kl_penalty, leave_one_out_baseline, logprobs_from_logits, masked_mean,
                   masked_var, masked_whiten, policy_loss, truncate_after_eos, value_loss)
from .evaluate import evaluate, exact_kl_along
from .loop import LOG_KEYS, train
from .normalize import score_norm, starting_policy_stats
from .policy import PolicyWithValueHead
from .rollout import (apply_format_penalty, apply_missing_eos_penalty, build_batch, compute_advantages, mean_return,
                      rollout_forward, sample_responses, select_rows)
from .stage import run_stage
from .update import accumulate_minibatch, ppo_loss, ppo_update

__all__ = [
    # the maths (core)
    "masked_mean", "masked_var", "masked_whiten", "compute_gae", "kl_penalty", "compute_rewards",
    "policy_loss", "value_loss", "logprobs_from_logits", "entropy_from_logits", "truncate_after_eos",
    "explained_variance", "leave_one_out_baseline",
    "AdaptiveKLController", "FixedKLController",
    # the loop, in the order it runs
    "PolicyWithValueHead", "score_norm", "starting_policy_stats", "sample_responses", "build_batch",
    "rollout_forward", "apply_missing_eos_penalty", "apply_format_penalty", "mean_return", "compute_advantages",
    "select_rows", "ppo_loss", "accumulate_minibatch", "ppo_update", "train", "evaluate", "exact_kl_along",
    "run_stage", "read_log", "LOG", "LOG_KEYS",
]
