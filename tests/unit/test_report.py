"""The report page from hand-made ReportData: what it says for each kind of run, and that text
from a scrape (URLs, reviewer ids) is escaped, never markup."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from trainer.backends import Recommendation
from trainer.report.data import ReportData, SampleUser
from trainer.report.page import render

EVIL = 'https://example.com/v/1?"><script>alert(1)</script>'


def metrics(recall: float, low: float, high: float) -> dict:
    return {
        "metrics": {"recall@10": recall, "ndcg@10": recall / 2, "coverage@10": 0.1, "users": 50},
        "intervals": {"recall@10": [low, high], "ndcg@10": [low / 2, high / 2]},
        "by_activity": {"1-2": {"users": 20, "recall@10": recall}},
        "by_popularity": {"head": {"valid_items": 9, "recall": recall}},
    }


def run(version: str, day: int, **fields) -> dict:
    return {
        "model_version": version,
        "started_at": datetime(2026, 12, day),
        "finished_at": datetime(2026, 12, day, 1),
        "target": "duckdb",
        "published": False,
        "gate_passed": None,
        "gate_reason": None,
        "metrics": {"two_tower": metrics(0.2, 0.18, 0.22), "popularity": metrics(0.1, 0.09, 0.11)},
        "notes": {
            "epochs": [{"epoch": 1, "loss": 5.0, "tune recall@10": 0.1}],
            "best_epoch": 1,
            "command": "train",
        },
        **fields,
    }


def data(current: dict, history: list[dict], samples: list[SampleUser] | None = None) -> ReportData:
    return ReportData(
        run=current,
        history=history,
        stars=pl.DataFrame({"stars": [1, 5], "reviews": [3, 9]}),
        per_reviewer=pl.DataFrame({"reviews": [1, 2], "reviewers": [5, 1]}),
        per_video=pl.DataFrame({"reviews": [1, 3], "videos": [4, 1]}),
        rejects=pl.DataFrame({"stage": ["load"], "reason": ["ragged_line"], "lines": [2]}),
        catalog={"registered in videos": 3, "new, registered at publish": 5},
        samples=samples or [],
        sample_note="" if samples else "the serving tables do not hold it (not published)",
    )


def test_text_from_the_scrape_is_escaped() -> None:
    sample = SampleUser(
        "rv<b>1</b>",
        [(EVIL, 5)],
        [Recommendation("00000000-0000-0000-0000-000000000001", EVIL, 0.5)],
    )
    html = render(data(run("two_tower_202612010000", 1, published=True), [], [sample]))
    assert "<script>alert(1)</script>" not in html and "<b>1</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "rv&lt;b&gt;1&lt;/b&gt;" in html


def test_a_forced_run_and_a_failed_gate_say_so_in_the_history() -> None:
    failed = run("two_tower_202612010000", 1, gate_passed=False, gate_reason="regresses")
    forced = run(
        "two_tower_202612020000",
        2,
        gate_passed=False,
        gate_reason="regresses again",
        published=True,
        notes={"forced": True, "force_reason": "hotfix", "gate": {"champion": 0.25}},
    )
    html = render(data(forced, [failed, forced]))
    assert "published: <strong>yes</strong> (forced: hotfix)" in html
    assert "Gate: failed — regresses again" in html
    assert html.count("failed (forced)") == 1 and html.count("<td>failed</td>") == 1
    assert "No epochs recorded for this run." in html  # the forced run's notes carry none
    assert "(not published)" in html  # no sample without this version in the serving tables


def test_a_train_run_has_no_gate_and_every_figure() -> None:
    train = run("two_tower_202612010000", 1)
    html = render(data(train, [train]))
    assert "no gate" in html and html.count('src="data:image/png;base64,') == 8
