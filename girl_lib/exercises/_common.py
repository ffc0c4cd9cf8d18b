"""The machinery every exercise check shares, and nothing chapter-specific.

Why a module of its own: the per-chapter modules (:mod:`.basics`, :mod:`.rewards`,
:mod:`.evaluation`) all build their checks from these pieces, and the registry
(:mod:`._registry`) lists :class:`Exercise` records, so they sit below both. Here:

* :data:`N_CASES`, how many seeded random cases a check runs;
* :class:`NotAttempted`, :class:`Outcome` and :class:`Exercise`;
* :func:`tolerance`, the dtype- and magnitude-aware absolute tolerance;
* ``_call`` / ``_run``, which turn a TODO stub into "not attempted yet" and print the verdict;
* ``_assert_close`` and ``_prefix_mask``, the comparison and the padding mask the checks use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

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
