"""GIRL kit: generative job recommendation with LLMs, as a notebook-first teaching library.

Layers, lowest first (imports point down only; ``tests/test_layering.py`` checks it):

* base: ``errors``, ``config`` (profiles), ``seeding``, ``rundir`` (stage folders, manifests,
  atomic writes) and ``world/`` (the synthetic recruiting world);
* shared: ``models`` (base models, offline), ``textgen`` (batched generation), ``training`` (what
  every trainer shares), ``pooling`` and ``scoring`` (the reward model as a scorer),
  ``generators`` (loading any trained JD writer), ``oracle_eval``, ``embed``, ``metrics/``,
  ``plots``;
* ``stages/``: ``data``, ``sft``, ``reward``, ``ppo/`` (with GRPO/RLOO), ``genrec/``,
  ``evaluate/`` — no stage imports another;
* ``pipeline`` (runs the stages in order), ``report`` (``report.md``), ``cli`` (``girl``).
"""
__version__ = "0.1.0"
