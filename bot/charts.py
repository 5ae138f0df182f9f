"""A PNG chart of each model's held-out metrics across its trained versions."""

from __future__ import annotations

import io
from typing import Any


NOT_HELD_OUT_PREFIXES = ("train_",)  # measured on the training data: not a held-out figure
NOT_METRICS = ("n", "epochs", "seconds")  # counts and durations stored beside the metrics
NOT_METRIC_SUFFIXES = tuple(f"_{name}" for name in NOT_METRICS)  # test_n, epoch_seconds, ...


def held_out_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The numeric held-out figures of a version's metrics: no counts (`test_n`), durations or
    training-data figures (`train_loss`), which would flatten the axis or mislabel the chart."""
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in NOT_METRICS and not k.endswith(NOT_METRIC_SUFFIXES)
            and not k.startswith(NOT_HELD_OUT_PREFIXES)}


def chart_lines(versions: list[tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[int, float]]]:
    """One model's panel: metric -> [(version index, value)], versions in training order."""
    figures = [held_out_metrics(m) for _, m in versions]
    names = sorted({k for f in figures for k in f})
    return {name: [(j, f[name]) for j, f in enumerate(figures) if name in f] for name in names}


def metrics_chart(series: dict[str, list[tuple[str, dict[str, Any]]]]) -> bytes | None:
    """One panel per model, one line per held-out metric (`chart_lines`), versions in training order.

    Uses matplotlib's object API (no pyplot global state), so it is safe in a worker thread.
    Returns None when no version has a metric to plot.
    """
    panels = {name: (versions, chart_lines(versions)) for name, versions in series.items()}
    panels = {name: panel for name, panel in panels.items() if panel[1]}
    if not panels:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2 * len(panels)), dpi=100)
    FigureCanvasAgg(fig)
    for i, (name, (versions, lines)) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(len(panels), 1, i)
        labels = [v.split("-")[0] for v, _ in versions]
        for metric, points in lines.items():
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=metric)
        ax.set_title(f"{name}: held-out metrics by version")
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

