"""Plain-text tables for the terminal and CI logs (and GitHub job summaries, as Markdown)."""

from __future__ import annotations

from collections.abc import Sequence

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
