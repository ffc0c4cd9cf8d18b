"""Stage 2 — the reward model: a learned recruiter that scores how well a JD fits a CV.

GIRL's second stage imitates the *other* side of the market. SFT learned "jobs this person would
apply to"; the reward model learns "jobs whose recruiter would accept this person". PPO (stage 3)
then pushes the generator towards JDs the reward model likes, so everything the reward model
gets wrong, PPO will eventually find and exploit.

**The model.** The same base LLM as the generator, loaded as a *sequence classifier*
(``AutoModelForSequenceClassification`` with ``num_labels=1``): the language-model head is
replaced by ``score``, a single linear layer ``hidden_size -> 1``. Which hidden states does it
read? ``reward.pooling`` (:mod:`girl_lib.pooling`) decides:

* ``response_mean`` (the default): ``score`` on every token of the JD, averaged. Each JD token
  has attended to the CV before it, so "this must-have is in the CV" is written in that token's
  state; the mean adds the per-token evidence up. The JD is found after the chat template's
  assistant header (``<|im_start|>assistant\n``), so padding and the CV stay out of the pool.
* ``last``: Hugging Face's stock head, the hidden state of the *last real token* (the
  InstructGPT recipe). That token must gather the comparison through attention alone; with a
  few hundred pairs it does not (docs/results.md).

``reward.num_layers`` keeps only the base's first N layers (the best features for this task sit
mid-network: see :mod:`girl_lib.pooling`), which also makes every score cheaper. The pad token
must differ from every token of real text (``girl_lib.models`` uses ``<|endoftext|>``, never
EOS), and :func:`score` pads on the right. LoRA adapters on attention projections plus the fully
trainable ``score`` head (PEFT ``modules_to_save=["score"]``) are what we train; the base weights
stay frozen.

**The loss (Bradley–Terry).** Recruiters give us *comparisons*, not calibrated numbers: for one
CV, a JD whose recruiter accepted the person (``jd+``, "chosen") and one that rejected them
(``jd-``, "rejected"). The Bradley–Terry model says the chosen one wins with probability
``σ(r(cv, jd+) − r(cv, jd−))``; maximising the likelihood of the observed winners gives

    L(θ) = − E_(cv, jd+, jd−) [ log σ( r_θ(cv, jd+) − r_θ(cv, jd−) ) ]

(:func:`pairwise_loss`). Only *differences* of scores matter, so the scale's zero point is
arbitrary: a score of 2.3 means nothing alone, "2.3 vs 0.4 for the same CV" does. The loss is
``log 2 ≈ 0.693`` when the model cannot tell the two apart and falls towards 0 as the margin
grows. TRL's ``RewardTrainer`` implements exactly this loss; held-out *pairwise accuracy* (how
often ``r(jd+) > r(jd−)``) is its natural metric.

**The pairs** (``rm_pairs.jsonl``, built by ``girl data``):

* ``feedback`` — observed recruiter decisions: an accepted vs a rejected application of the same
  seeker (kept only where the ground-truth oracle agrees, so recruiter noise is not a lesson);
* ``hard_negative`` — an acceptable job vs a job of the *same occupation* that fails on level or
  on a must-have skill. Feedback pairs often differ in topic (a seeker applied to a related
  occupation and was turned down), and a model can win them by matching *topics* alone. PPO
  would then learn to write "the right kind of job" with the wrong level or skills and still be
  rewarded. Hard negatives close that shortcut: same topic, different details, so the reward
  model must read the level line and the must-have list.

And, built here (``reward.generated_pairs``, :mod:`~girl_lib.stages.reward.pairs`):

* ``generated`` — real JDs are all the reward model ever reads, yet PPO will show it *generated*
  ones: the zero-shot base's rambling, the SFT model's near misses. For train seekers, greedy
  zero-shot and SFT JDs are labelled by the oracle: a generated JD it rejects (or cannot parse)
  loses to one it accepts (generated, else the seeker's accepted real JD).
  ``reward.generated_samples`` adds that many *sampled* SFT JDs per seeker, drawn as PPO's
  rollouts are: the near misses PPO's reward must rank are the policy's own. The blind-spot check
  in ``metrics.json`` (``blind_spot``: mean score of zero-shot vs SFT JDs on val seekers; the
  zero-shot ones should score lower) shows whether that off-distribution lesson was needed.

**One text format, everywhere.** The reward model is trained on, and :func:`score` computes, the
same chat: ``[system = the world's SYSTEM_PROMPT, user = make_prompt(CV), assistant = JD]``
through the tokenizer's chat template — exactly what the generator sees plus the JD it writes.
So PPO can score a generated JD by passing its decoded text to :func:`score`. One truncation
rule, too: a chat over ``reward.max_length`` tokens has its CV cut
(:func:`girl_lib.scoring.fit_prompt`), in training rows before TRL sees them and in scoring.

**What it costs.** Every pair is two forward and backward passes over a few hundred tokens.
The ``cpu`` profile keeps 12 of SmolLM2-135M's 30 layers and trains LoRA on the top 8 of them
(backpropagation stops there), under bf16 autocast where the CPU computes it natively. What
that reaches, and the pooling ablation behind the default: docs/results.md (reward model).

Outputs in ``<run-dir>/reward/``: ``adapter/`` (LoRA + score head + tokenizer,
``save_pretrained``), ``metrics.json`` (held-out pairwise accuracy overall and per kind; AUC of
the score against the oracle's acceptance on val applications' real JDs and on JDs generated by
the SFT model, greedy and, with ``reward.eval_samples``, sampled as PPO's rollouts are, with
what picking the best of a seeker's samples by score buys, ``best_of_n``; the blind-spot check), ``eval_scores.json`` (the per-example scores behind those
figures, for plots), ``log_history.json`` (loss curve) and ``profile.json``.

**Where the code is**: ``pairs.py`` (the loss, preference rows, generated pairs),
``trainer.py`` (TRL's ``RewardTrainer``, :func:`train`, ``girl reward``), ``evaluation.py``
(held-out figures, the blind spot) and ``report.py`` (the notebook's plots).
"""
from .evaluation import (MAX_GENERATED_EVAL, best_of_n, blind_spot, evaluate_generated, evaluate_held_out,
                         evaluate_pairs, evaluate_real, evaluate_sampled, n_generated_eval, val_jds_of_both_arms)
from .pairs import (GENERATED, KINDS, accepted_real_jds, fitted_pair_prompt, generate_arms, generated_pairs,
                    judge_arms, label_generated, load_pairs, pairwise_loss, reward_datasets, sample_arm,
                    sample_jds, to_preference)
from .report import calibration_bins, compare_reward_models, load_eval_scores, plot_report, token_report
from .trainer import HEADLINE, count_too_long, make_trainer, peft_reward_config, run_stage, train

__all__ = [
    "KINDS", "GENERATED", "pairwise_loss", "to_preference", "fitted_pair_prompt", "load_pairs", "reward_datasets",
    "generate_arms", "sample_arm", "sample_jds", "accepted_real_jds", "judge_arms", "label_generated",
    "generated_pairs",
    "peft_reward_config", "make_trainer", "count_too_long", "train", "run_stage", "HEADLINE",
    "MAX_GENERATED_EVAL", "evaluate_pairs", "evaluate_real", "evaluate_generated", "evaluate_sampled",
    "n_generated_eval",
    "evaluate_held_out", "val_jds_of_both_arms", "blind_spot",
    "load_eval_scores", "compare_reward_models", "best_of_n", "calibration_bins", "plot_report", "token_report",
]
