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
