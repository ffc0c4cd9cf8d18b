"""Plots the chapters and the report share (matplotlib only; every function returns the Axes)."""
from __future__ import annotations

from typing import Mapping, Sequence


def _axes(ax=None, figsize=(6, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def loss_curves(log_history: Sequence[Mapping], ax=None, title: str = "training loss"):
    """Training loss per logged step (and eval loss points) from a Trainer's ``log_history``."""
    ax = _axes(ax)
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train), marker=".", label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o", color="C3", label="eval loss (val)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / completion token)")
    ax.set_title(title)
    ax.legend()
    return ax


def compare_bars(reports: Mapping[str, Mapping[str, float]], keys: Sequence[str], ax=None,
                 title: str = "", ylim=(0, 1)):
    """Grouped bars: one group per metric ``key``, one bar per arm (e.g. zero-shot vs SFT)."""
    import numpy as np

    ax = _axes(ax, figsize=(max(6, 1.3 * len(keys)), 3.5))
    arms = list(reports)
    width = 0.8 / max(1, len(arms))
    x = np.arange(len(keys))
    for i, arm in enumerate(arms):
        values = [float(reports[arm].get(k) or 0.0) for k in keys]
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=arm)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [k.replace("_", "\n") for k in keys], fontsize=8)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend()
    return ax
