"""The scatter plot of a ranking check: supernet vs. stand-alone accuracy (matplotlib, Agg, PNG)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hwnas.jsonio import atomic_write_bytes  # noqa: E402


def rank_scatter(pairs: Sequence[dict[str, Any]], *, kendall_tau: float | None, spearman: float | None,
                 path: str | Path, title: str) -> Path:
    """One point per architecture: accuracy with inherited weights (x, %) vs. stand-alone (y, %),
    coloured by predicted latency (ms); the rank correlations in the title. Written atomically."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    x = [100 * p["supernet_accuracy"] for p in pairs]
    y = [100 * p["standalone_accuracy"] for p in pairs]
    ms = [p["predicted_latency_ms"] for p in pairs]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    points = ax.scatter(x, y, c=ms, cmap="viridis", s=36, edgecolor="black", linewidth=0.5)
    for p, xi, yi in zip(pairs, x, y):
        ax.annotate(str(p["index"]), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7)
    fig.colorbar(points, ax=ax, label="predicted latency (ms)")
    ax.set_xlabel("accuracy with inherited supernet weights (%)")
    ax.set_ylabel("stand-alone accuracy (%)")
    ax.set_title(f"{title}\n{len(pairs)} archs: Kendall tau-b {fmt(kendall_tau)}, Spearman rho {fmt(spearman)}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
