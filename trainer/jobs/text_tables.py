"""Plain-text tables for the terminal and CI logs (and GitHub job summaries, as Markdown)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pipeline's types, for annotations only (it imports this module)
    from trainer.jobs.pipeline import Outcome, PipelineOptions

METRIC_COLUMNS = ("recall@10", "recall@20", "precision@10", "map@10", "ndcg@10", "coverage@10")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    out = [line, "-" * len(line)]
    for row in cells:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(out)


def metrics_table(
    results: dict[str, dict[str, float]], columns: Sequence[str] = METRIC_COLUMNS
) -> str:
    rows = [
        [name, *(metrics.get(c, float("nan")) for c in columns)]
        for name, metrics in results.items()
    ]
    return table(["model", *columns], rows)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def report_tables(evaluations: dict) -> str:
    """The metrics table (with 95% bootstrap intervals over users), then the first model's
    breakdown by user activity and by video popularity."""
    rows = []
    for name, result in evaluations.items():
        m = result.metrics
        low, high = result.intervals.get("recall@10", (float("nan"), float("nan")))
        rows.append(
            [name, *(m.get(c, float("nan")) for c in METRIC_COLUMNS), f"[{low:.4f}, {high:.4f}]"]
        )
    out = [table(["model", *METRIC_COLUMNS, "recall@10 95% CI"], rows)]
    first = next(iter(evaluations.values()), None)
    if first is not None and first.by_activity:
        out.append("")
        out.append(
            table(
                ["train positives", "users", "recall@10", "ndcg@10"],
                [
                    [b, v["users"], v["recall@10"], v["ndcg@10"]]
                    for b, v in first.by_activity.items()
                ],
            )
        )
        out.append("")
        out.append(
            table(
                ["video popularity", "valid items", "recall@10", "share of top-10"],
                [
                    [b, v["valid_items"], v["recall"], v["share_of_recommendations"]]
                    for b, v in first.by_popularity.items()
                ],
            )
        )
    return "\n".join(out)


def markdown_table(evaluations: dict) -> str:
    """The metrics table as GitHub Markdown (job summaries)."""
    head = ["model", *METRIC_COLUMNS, "recall@10 95% CI"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, result in evaluations.items():
        low, high = result.intervals.get("recall@10", (float("nan"), float("nan")))
        cells = [_fmt(result.metrics.get(c, float("nan"))) for c in METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | [{low:.4f}, {high:.4f}] |")
    return "\n".join(lines)


def summary_text(outcome: Outcome, options: PipelineOptions) -> str:
    """The pipeline's closing summary for stdout: model, tables, verdict, what was published."""
    trained, verdict, published, error, stages = (
        outcome.trained, outcome.verdict, outcome.published, outcome.error, outcome.stages
    )  # fmt: skip
    lines = [
        "",
        f"model {trained.artifact.version} on {trained.data.n_users:,} users, "
        f"{trained.data.n_items:,} videos (data {trained.data.fingerprint})",
        report_tables(trained.evaluations),
        "",
        f"gate: {'PASSED' if verdict.passed else 'FAILED'}: {verdict.reason}",
    ]
    if options.force and not verdict.passed:
        lines.append(f"forced past the gate: {options.reason}")
    if published:
        where = f" in {options.publish_target}" if options.publish_target else ""
        lines.append(f"published{where}: embeddings replaced, artifact stored")
    else:
        lines.append("not published: latest artifact and embeddings left as they were")
    if error:
        lines.append(f"error: {error}")
    lines.append("stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    return "\n".join(lines)
