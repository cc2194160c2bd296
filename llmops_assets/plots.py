"""Plots attached to materializations as markdown images, so the Dagster UI shows them inline."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from dagster import MetadataValue


def loss_curve_png(train: list[tuple[int, float]], validation: list[tuple[int, float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        axes.plot([s for s, _ in train], [v for _, v in train], label="train loss")
    if validation:
        axes.plot([s for s, _ in validation], [v for _, v in validation], marker="o", label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def markdown_image(path: Path) -> MetadataValue:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return MetadataValue.md(f"![{Path(path).stem}](data:image/png;base64,{encoded})")


def confusion_png(table: dict[str, dict[str, int]]) -> bytes:
    """Expected tool (rows) against answered tool (columns), counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(table)
    columns = sorted({c for row in table.values() for c in row} | set(rows))
    counts = [[table[r].get(c, 0) for c in columns] for r in rows]
    figure, axes = plt.subplots(figsize=(1.2 * len(columns) + 2, 0.6 * len(rows) + 1.5), dpi=100)
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("answered")
    axes.set_ylabel("expected")
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            axes.text(j, i, str(value), ha="center", va="center")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
