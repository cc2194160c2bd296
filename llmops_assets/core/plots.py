"""Plots people would rather see than read (loss curves, data profile, confusion matrix), as PNG bytes."""

from __future__ import annotations

import io


def loss_curve_png(train: list[tuple[int, float]], validation: list[tuple[int, float]]) -> bytes:
    plt = _pyplot()

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
    return _png(figure)


def data_profile_png(token_counts: list[int], per_tool: dict[str, int]) -> bytes:
    """Token lengths (histogram) and examples per tool (bars) of a curated dataset."""
    plt = _pyplot()

    figure, (lengths, tools) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
    lengths.hist(token_counts, bins=30, color="#4c72b0")
    lengths.set_xlabel("tokens per example")
    lengths.set_ylabel("examples")
    tools.bar(list(per_tool), list(per_tool.values()), color="#55a868")
    tools.set_ylabel("examples")
    tools.tick_params(axis="x", rotation=30)
    return _png(figure)


def confusion_png(table: dict[str, dict[str, int]]) -> bytes:
    """Expected tool (rows) against answered tool (columns), counts in the cells."""
    plt = _pyplot()

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
    return _png(figure)


def difference_bounds_png(kpis: dict[str, dict]) -> bytes:
    """Per KPI, the anytime-valid bounds on challenger minus champion (positive: the challenger is
    better), its point value and the non-inferiority margin it must clear."""
    plt = _pyplot()

    names = list(kpis)
    figure, axes = plt.subplots(figsize=(7, 0.7 * len(names) + 1.4), dpi=100)
    for row, name in enumerate(names):
        kpi = kpis[name]
        low, high = kpi["bounds"]
        color = {"worse": "#c44e52", "non-inferior": "#55a868"}.get(kpi["verdict"], "#8c8c8c")
        axes.plot([max(low, -1), min(high, 1)], [row, row], color=color, linewidth=6, solid_capstyle="butt")
        axes.plot([kpi["difference"]], [row], "k|", markersize=14)
        axes.plot([-kpi["margin"]], [row], "v", color="#4c72b0")
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(names)), [f"{n} (n={kpis[n]['n']})" for n in names])
    axes.set_xlabel("challenger - champion (bar: bounds, |: point, v: -margin)")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def study_history_png(trials: list[dict]) -> bytes:
    """A hyperparameter study: each trial's objective (pruned trials at their last report) and the
    best so far."""
    plt = _pyplot()

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    pruned = [t for t in trials if t["state"] == "PRUNED" and t["intermediate"]]
    axes.plot([t["number"] for t in complete], [t["value"] for t in complete], "o", label="completed")
    axes.plot([t["number"] for t in pruned], [t["intermediate"][-1][1] for t in pruned], "x", color="#c44e52",
              label="pruned (last report)")
    best, running = [], float("inf")
    for trial in sorted(complete, key=lambda t: t["number"]):
        running = min(running, trial["value"])
        best.append((trial["number"], running))
    if best:
        axes.step([n for n, _ in best], [v for _, v in best], where="post", color="black", label="best so far")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("trial")
    axes.set_ylabel("validation loss")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def importances_png(importances: dict[str, float]) -> bytes:
    """Each hyperparameter's importance for the objective (Optuna's evaluator)."""
    plt = _pyplot()

    figure, axes = plt.subplots(figsize=(6, 2.5), dpi=100)
    names = sorted(importances, key=importances.get)
    axes.barh(names, [importances[n] for n in names], color="#4c72b0")
    axes.set_xlabel("importance for the validation loss")
    axes.set_xlim(0, 1)
    if not names:
        axes.text(0.5, 0.5, "too few completed trials to tell", ha="center", va="center", transform=axes.transAxes)
    return _png(figure)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    _pyplot().close(figure)
    return buffer.getvalue()
