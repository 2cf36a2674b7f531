"""The report's figures, drawn with matplotlib (Agg: no display) into PNG data URIs, so the HTML
file carries its images and opens anywhere, offline. Each function draws one figure from
ReportData and returns its `data:image/png;base64,...` source, or None when there is nothing to
draw (an empty chart would say less than the sentence the page shows instead)."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: a headless backend, whatever the environment says

import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from trainer.report.data import ReportData  # noqa: E402

MODELS = ("two_tower", "popularity", "random")  # the evaluated models, in the tables' order
DPI = 96  # CSS pixels: a figure of 6.4 in is ~614 px wide, sharp enough, cheap to encode
COLORS = {"two_tower": "#1f6feb", "popularity": "#9a6700", "random": "#8c959f"}


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(
    width: float = 6.4, height: float = 3.4, left: float = 0.12, bottom: float = 0.16, **margins
) -> tuple[plt.Figure, Any]:
    """One axes with fixed margins: matplotlib's automatic layouts draw each figure twice, a
    third of the report's cost, for margins these few shapes know in advance."""
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(left=left, bottom=bottom, right=margins.get("right", 0.97), top=0.9)
    return fig, ax


def _row(columns: int) -> tuple[plt.Figure, Any]:
    fig, axes = plt.subplots(1, columns, figsize=(9.6, 3.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.17, top=0.88, wspace=0.3)
    return fig, axes


def stars(data: ReportData) -> str | None:
    if data.stars.is_empty():
        return None
    fig, ax = _figure()
    ax.bar([str(s) for s in data.stars["stars"]], data.stars["reviews"], color="#1f6feb")
    ax.set(xlabel="stars", ylabel="kept reviews", title="Stars distribution")
    return _png(fig)


def long_tail(data: ReportData) -> str | None:
    if data.per_reviewer.is_empty():
        return None
    fig, ax = _figure()
    for frame, what, color in (
        (data.per_reviewer, "reviewers", "#1f6feb"),
        (data.per_video, "videos", "#cf222e"),
    ):
        ax.scatter(frame["reviews"], frame[what], s=12, label=what, color=color, alpha=0.8)
    ax.set(xscale="log", yscale="log", xlabel="reviews (log)", ylabel="how many have that many")
    ax.set_title("Reviews per reviewer and per video (log–log)")
    ax.legend()
    return _png(fig)


def rejects(data: ReportData) -> str | None:
    if data.rejects.is_empty():
        return None
    frame = data.rejects.sort("lines")
    labels = [f"{s}: {r}" for s, r in zip(frame["stage"], frame["reason"], strict=True)]
    fig, ax = _figure(height=max(2.0, 0.3 * len(labels) + 1), left=0.4, bottom=0.12)
    ax.barh(labels, frame["lines"], color="#cf222e")
    ax.set(xlabel="lines", title="Rejected lines by reason")
    return _png(fig)


def catalog(data: ReportData) -> str | None:
    if not data.catalog:
        return None
    fig, ax = _figure(height=2.2, left=0.4, bottom=0.2)
    ax.barh(list(data.catalog), list(data.catalog.values()), color="#8250df")
    ax.set(xlabel="videos", title="Reviewed videos: registered in the app vs new")
    return _png(fig)


def training(data: ReportData) -> str | None:
    epochs = (data.run.get("notes") or {}).get("epochs") or []
    if not epochs:
        return None
    frame = pl.DataFrame(epochs)
    fig, ax = _figure(right=0.88)
    ax.plot(frame["epoch"], frame["loss"], marker="o", color="#57606a", label="train loss")
    ax.set(xlabel="epoch", ylabel="train loss", title="Training: loss and tune metrics")
    tune = ax.twinx()
    for column, color in (("tune recall@10", "#1f6feb"), ("tune ndcg@10", "#1a7f37")):
        if column in frame.columns:
            tune.plot(frame["epoch"], frame[column], marker=".", color=color, label=column)
    tune.set_ylabel("tune slice (selection)")
    best = (data.run.get("notes") or {}).get("best_epoch")
    if best:
        ax.axvline(best, color="#cf222e", linestyle="--", label=f"chosen epoch {best}")
    lines = ax.get_legend_handles_labels()
    more = tune.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    return _png(fig)


def models(data: ReportData) -> str | None:
    metrics = data.run.get("metrics") or {}
    names = [m for m in MODELS if m in metrics]
    if not names:
        return None
    champion = ((data.run.get("notes") or {}).get("gate") or {}).get("champion")
    gated = _gate_metric(data.run)
    fig, axes = _row(3)
    for ax, metric in zip(axes, ("recall@10", "ndcg@10", "coverage@10"), strict=True):
        values = [metrics[m]["metrics"].get(metric, 0.0) for m in names]
        errors = []
        for m, value in zip(names, values, strict=True):
            low, high = metrics[m].get("intervals", {}).get(metric, (value, value))
            errors.append((value - low, high - value))
        ax.bar(names, values, color=[COLORS[m] for m in names],
               yerr=list(zip(*errors, strict=True)), capsize=4)  # fmt: skip
        if champion is not None and metric == gated:
            ax.axhline(champion, color="#cf222e", linestyle="--", label="champion")
            ax.legend(fontsize=8)
        ax.set_title(metric + (" (95% CI)" if metric != "coverage@10" else ""))
        ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


def _gate_metric(run: dict[str, Any]) -> str:
    return ((run.get("notes") or {}).get("gate") or {}).get("metric", "recall@10")


def segments(data: ReportData) -> str | None:
    metrics = data.run.get("metrics") or {}
    names = [m for m in MODELS if m in metrics and metrics[m].get("by_activity")]
    if not names:
        return None
    fig, (left, right) = _row(2)
    width = 0.8 / len(names)
    for i, m in enumerate(names):
        activity = metrics[m]["by_activity"]
        x = [j + i * width for j in range(len(activity))]
        left.bar(x, [a["recall@10"] for a in activity.values()], width, label=m, color=COLORS[m])
        popularity = metrics[m].get("by_popularity", {})
        x = [j + i * width for j in range(len(popularity))]
        right.bar(x, [p["recall"] for p in popularity.values()], width, label=m, color=COLORS[m])
    left.set_xticks([j + 0.4 - width / 2 for j in range(len(activity))], list(activity))
    left.set(xlabel="train positives of the user", title="recall@10 by user activity")
    right.set_xticks([j + 0.4 - width / 2 for j in range(len(popularity))], list(popularity))
    right.set(xlabel="video popularity", title="recall@10 by video popularity")
    left.legend(fontsize=8)
    return _png(fig)


def history(data: ReportData) -> str | None:
    metric = _gate_metric(data.run)
    points = []
    for row in data.history:
        found = (row.get("metrics") or {}).get("two_tower") or {}
        if metric in found.get("metrics", {}):
            value = found["metrics"][metric]
            low, high = found.get("intervals", {}).get(metric, (value, value))
            points.append((row, value, low, high))
    if not points:
        return None
    fig, ax = _figure(width=max(6.4, 0.5 * len(points) + 2), bottom=0.3)
    for i, (row, value, low, high) in enumerate(points):
        forced = bool((row.get("notes") or {}).get("forced"))
        published = bool(row.get("published"))
        color = (
            "#1a7f37"
            if published
            else ("#cf222e" if row.get("gate_passed") is False else "#57606a")
        )
        ax.errorbar(i, value, yerr=[[value - low], [high - value]], fmt="*" if forced else "o",
                    markersize=12 if forced else 7, color=color,
                    markerfacecolor=color if published else "white", capsize=3)  # fmt: skip
    ax.set_xticks(range(len(points)), [p[0]["model_version"][-12:] for p in points],
                  rotation=45, ha="right", fontsize=8)  # fmt: skip
    ax.set(ylabel=f"two_tower valid {metric}", title=f"Runs: {metric} with its 95% CI")
    ax.text(0.01, 0.02, "filled: published · hollow red: gate failed · star: forced",
            transform=ax.transAxes, fontsize=8, color="#57606a")  # fmt: skip
    return _png(fig)


def all_figures(data: ReportData) -> dict[str, str | None]:
    """Every figure by its section's key (page.py's template names them)."""
    return {
        "stars": stars(data),
        "long_tail": long_tail(data),
        "rejects": rejects(data),
        "catalog": catalog(data),
        "training": training(data),
        "models": models(data),
        "segments": segments(data),
        "history": history(data),
    }
