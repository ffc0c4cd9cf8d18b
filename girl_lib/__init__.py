"""GIRL kit: generative job recommendation with LLMs, as a notebook-first teaching library.

Modules, in layers (arrows only point down):
``config`` (profiles) → ``world`` (synthetic recruiting world) → ``models`` (base models) →
stages → ``report`` → ``cli``. See DESIGN.md and the README.
"""
__version__ = "0.1.0"
