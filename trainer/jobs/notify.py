"""Post a run summary to a Slack-compatible incoming webhook (optional, never fatal).

    notify({"status": "passed", "model_version": "two_tower_202501050400",
            "metrics": {"recall@10": 0.21, "ndcg@10": 0.12}, "gate_reason": "beats popularity"})

The webhook URL comes from SLACK_WEBHOOK_URL unless given. It is a secret (anyone holding it can
post to the channel), so it is never printed, logged or put in an error message. Without a URL
this is a no-op; a failed delivery logs one warning and returns False, it never raises: a chat
outage must not fail a training run.

The summary is a plain dict; known keys (all optional): status ("passed"/"failed"/...),
model_version (or version), gate_reason (or reason), published, forced, force_reason, target,
duration_s, error, metrics (name -> number, or a dict with value/low/high for an interval),
baselines (name -> metrics), run_url. When run in GitHub Actions the run's URL is added.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
# Shown first, in this order, when present; any other metrics follow (up to MAX_METRICS).
KEY_METRICS = (
    "recall@10",
    "ndcg@10",
    "recall@20",
    "ndcg@20",
    "map@10",
    "precision@10",
    "coverage",
    "item_coverage",
)
MAX_METRICS = 10
_FROM_ENV = object()


def _escape(text: Any) -> str:
    """Slack mrkdwn needs &, <, > escaped (a gate reason like "0.12 < 0.13" would break it)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4f}"
    return str(value)


def _metric_text(value: Any) -> str:
    if isinstance(value, Mapping):
        point = value.get("value", value.get("mean", value.get("point")))
        low = value.get("low", value.get("ci_low", value.get("lo")))
        high = value.get("high", value.get("ci_high", value.get("hi")))
        text = _number(point) if point is not None else "?"
        if low is not None and high is not None:
            text += f" [{_number(low)}, {_number(high)}]"
        return text
    return _number(value)


def _ordered_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    lowered = {str(k).lower(): k for k in metrics}
    first = [lowered[k] for k in KEY_METRICS if k in lowered]
    rest = [k for k in metrics if k not in first]
    return [(str(k), metrics[k]) for k in (first + rest)[:MAX_METRICS]]


def _run_url(summary: Mapping[str, Any]) -> str | None:
    if summary.get("run_url"):
        return str(summary["run_url"])
    server = os.environ.get("GITHUB_SERVER_URL")
    repo = os.environ.get("GITHUB_REPOSITORY")
    run_id = os.environ.get("GITHUB_RUN_ID")
    if server and repo and run_id:
        return f"{server}/{repo}/actions/runs/{run_id}"
    return None


def build_payload(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The Slack message: `text` (the notification / fallback line) plus Block Kit `blocks`."""
    status = str(summary.get("status") or "unknown").lower()
    ok = status in ("passed", "success", "succeeded", "ok", "published")
    icon = ":white_check_mark:" if ok else ":x:"
    version = summary.get("model_version") or summary.get("version") or "(no version)"
    reason = summary.get("gate_reason") or summary.get("reason")
    title = f"Two-tower retrain {status}: {version}"
    text = f"{icon} {title}"
    if reason:
        text += f" ({reason})"

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title, 150), "emoji": True},
        }
    ]
    fields = [f"*Status*\n{icon} {_escape(status)}", f"*Model version*\n`{_escape(version)}`"]
    if summary.get("target"):
        fields.append(f"*Target*\n{_escape(summary['target'])}")
    if "published" in summary:
        fields.append(f"*Published*\n{'yes' if summary['published'] else 'no'}")
    if summary.get("forced"):
        why = summary.get("force_reason") or "no reason given"
        fields.append(f"*Forced*\nyes: {_escape(why)}")
    if summary.get("duration_s") is not None:
        with contextlib.suppress(TypeError, ValueError):
            fields.append(f"*Duration*\n{float(summary['duration_s']):.0f} s")
    blocks.append(
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": _clip(f, 1900)} for f in fields[:10]],
        }
    )
    if reason:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(f"*Gate*: {_escape(reason)}", 2900)},
            }
        )
    if summary.get("error"):
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _clip(f"*Error*: {_escape(summary['error'])}", 2900),
                },
            }
        )

    metrics = summary.get("metrics")
    if isinstance(metrics, Mapping) and metrics:
        rows = _ordered_metrics(metrics)
        baselines = summary.get("baselines")
        baselines = baselines if isinstance(baselines, Mapping) else {}
        names = list(baselines)[:3]
        width = max(len(name) for name, _ in rows)
        lines = [
            f"{'metric'.ljust(width)}  {'model':>24}" + "".join(f"  {str(b):>12}" for b in names)
        ]
        for name, value in rows:
            line = f"{name.ljust(width)}  {_metric_text(value):>24}"
            for b in names:
                other = baselines[b] if isinstance(baselines[b], Mapping) else {}
                line += f"  {_metric_text(other[name]) if name in other else '':>12}"
            lines.append(line)
        table = _clip("\n".join(lines), 2800)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"```{_escape(table)}```"}}
        )

    url = _run_url(summary)
    if url:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{url}|Workflow run>"}],
            }
        )
    return {"text": _clip(text, 3000), "blocks": blocks}


def notify(
    summary: Mapping[str, Any],
    webhook_url: str | None | object = _FROM_ENV,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> bool:
    """Post `summary`; True when the webhook accepted it. Never raises.

    `webhook_url` defaults to SLACK_WEBHOOK_URL, read at call time; None or empty: do nothing.
    """
    url = os.environ.get("SLACK_WEBHOOK_URL") if webhook_url is _FROM_ENV else webhook_url
    if not url or not isinstance(url, str) or not url.strip():
        return False
    url = url.strip()
    try:
        if not url.lower().startswith(("https://", "http://")):
            log.warning("notification skipped: the webhook URL is not an http(s) URL")
            return False
        body = json.dumps(build_payload(summary), default=str).encode()
        request = urllib.request.Request(
            url,
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            status = response.status
        if 200 <= status < 300:
            return True
        log.warning("notification not delivered: the webhook answered HTTP %s", status)
    except urllib.error.HTTPError as exc:
        log.warning("notification not delivered: the webhook answered HTTP %s", exc.code)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        kind = "timed out" if isinstance(reason, TimeoutError) else type(reason).__name__
        log.warning("notification not delivered: webhook unreachable (%s)", kind)
    except Exception as exc:  # noqa: BLE001 - a notification must never fail the run
        log.warning("notification not delivered: %s", type(exc).__name__)
    return False
