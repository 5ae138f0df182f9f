"""A PNG chart of each model's held-out metrics across its trained versions."""

from __future__ import annotations

import io
from typing import Any


def metrics_chart(series: dict[str, list[tuple[str, dict[str, Any]]]]) -> bytes | None:
    """One panel per model, one line per numeric metric, versions in training order.

    Uses matplotlib's object API (no pyplot global state), so it is safe in a worker thread.
    Returns None when no version has a metric to plot.
    """
    panels = {name: versions for name, versions in series.items()
              if any(_numeric(m) for _, m in versions)}
    if not panels:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2 * len(panels)), dpi=100)
    FigureCanvasAgg(fig)
    for i, (name, versions) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(len(panels), 1, i)
        labels = [v.split("-")[0] for v, _ in versions]
        metric_names = sorted({k for _, m in versions for k in _numeric(m)})
        for metric in metric_names:
            xs = [j for j, (_, m) in enumerate(versions) if metric in _numeric(m)]
            ys = [_numeric(versions[j][1])[metric] for j in xs]
            ax.plot(xs, ys, marker="o", label=metric)
        ax.set_title(f"{name}: held-out metrics by version")
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("n", "epochs", "seconds")}
