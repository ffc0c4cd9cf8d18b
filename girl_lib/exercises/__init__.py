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

The package: :mod:`._common` holds the shared machinery, :mod:`.basics` the checks of
chapters 00-02, :mod:`.rewards` those of 03-04, :mod:`.evaluation` those of 05-06, and
:mod:`._registry` the list of them all. This module re-exports the public names, so
``from girl_lib import exercises; exercises.check_gae(gae)`` works as it always has.
"""
from __future__ import annotations

from ._common import Exercise, Outcome, tolerance
from ._common import N_CASES, NotAttempted  # noqa: F401  (public attributes, outside __all__ as before)
from ._registry import EXERCISES, for_chapter
from .basics import (check_acceptance_by_step, check_chat_prompt, check_left_pad, check_level_factor,
                     check_lora_count, check_lora_merge, check_masked_nll, check_sft_batch, check_write_jd,
                     completion_nll)
from .basics import smoke_tokenizer, smoke_world  # noqa: F401  (as above)
from .evaluation import (check_hit_rate_at_k, check_leave_one_out, check_mcnemar, check_ndcg_at_k, check_verdict,
                         check_wilson, leave_one_out_questions)
from .evaluation import REPEATS  # noqa: F401  (as above)
from .rewards import (check_auc, check_bt_loss, check_clipped_surrogate, check_gae, check_jd_mask,
                      check_kl_estimates, check_per_token_rewards)

__all__ = [
    "EXERCISES", "Exercise", "Outcome", "for_chapter", "tolerance", "completion_nll", "leave_one_out_questions",
    "check_chat_prompt", "check_left_pad",
    "check_level_factor", "check_write_jd", "check_acceptance_by_step",
    "check_masked_nll", "check_sft_batch", "check_lora_merge", "check_lora_count",
    "check_bt_loss", "check_auc", "check_jd_mask",
    "check_per_token_rewards", "check_gae", "check_kl_estimates", "check_clipped_surrogate",
    "check_wilson", "check_mcnemar", "check_verdict",
    "check_ndcg_at_k", "check_hit_rate_at_k", "check_leave_one_out",
]
