"""Plots written into run directories (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hwnas.jsonio import atomic_write_bytes  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def pareto_plot(candidates: Sequence[dict[str, Any]], *, budgets: Sequence[float], winners: Sequence[dict[str, Any]],
                path: str | Path, title: str) -> Path:
    """Accuracy vs predicted latency of every evaluated candidate, budget lines and winners marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    lat = [c["latency_ms"] for c in candidates]
    acc = [100 * c["accuracy"] for c in candidates]
    ax.scatter(lat, acc, s=10, alpha=0.5, label=f"evaluated ({len(candidates)})")
    for b in budgets:
        ax.axvline(b, color="tab:red", linestyle="--", linewidth=1)
    ax.plot([], [], color="tab:red", linestyle="--", label="latency budget")
    if winners:
        ax.scatter([w["latency_ms"] for w in winners], [100 * w["accuracy"] for w in winners], marker="*", s=160,
                   color="tab:orange", edgecolor="black", zorder=3, label="winner")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("accuracy with inherited weights (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def alpha_heatmap(history: Sequence[dict[str, Any]], *, decision_names: Sequence[str],
                  option_names: Sequence[Sequence[str]], path: str | Path, title: str) -> Path:
    """Per decision, the probability of each option over epochs (from history lines with ``probs``).

    One row per (decision, option), one column per epoch; colour = probability.
    """
    rows = [h for h in history if "probs" in h]
    if not rows:
        raise ValueError("no history line has 'probs'")
    labels, matrix = [], []
    for d, name in enumerate(decision_names):
        for o, opt in enumerate(option_names[d]):
            labels.append(f"{name}={opt}")
            matrix.append([r["probs"][d][o] for r in rows])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(rows) + 3), max(4.0, 0.16 * len(labels) + 1)))
    im = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=5)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([str(r.get("epoch", i + 1)) for i, r in enumerate(rows)], fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="probability")
    return _save(fig, path)


def write_controller_plot(samples: list[dict[str, Any]], curve: list[dict[str, Any]], *,
                          used_latency: Callable[[dict[str, Any]], float], target: float, path, title: str):
    """MnasNet: mean reward and baseline per controller step (left); every sampled model's latency, ms,
    as ``used_latency`` gives it (right)."""
    import io

    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [s["step"] for s in curve]
    ax1.plot(steps, [s["mean_reward"] for s in curve], label="mean reward")
    ax1.plot(steps, [s["baseline"] for s in curve], label="baseline", linestyle="--")
    ax1.set_xlabel("controller step")
    ax1.set_ylabel("reward ACC·(LAT/T)^w")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.scatter([r["step"] + 1 for r in samples], [used_latency(r) for r in samples], s=6, alpha=0.4,
                label="sampled models")
    ax2.plot(steps, [np.mean([used_latency(r) for r in samples if r["step"] + 1 == s]) for s in steps],
             color="black", label="mean")
    ax2.axhline(target, color="tab:red", linestyle="--", label=f"T = {target:g} ms")
    ax2.set_xlabel("controller step")
    ax2.set_ylabel("latency (ms)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
