"""Slack-compatible run notifications, against a local HTTP server that captures the payload."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trainer.jobs.notify import build_payload, notify

SECRET_PATH = "/services/T000/B000/XXXXsecretXXXX"

PASSED = {
    "status": "passed",
    "model_version": "two_tower_202501050400",
    "target": "postgres",
    "published": True,
    "duration_s": 312.4,
    "gate_reason": "recall@10 0.2140 > popularity 0.1010 and >= champion 0.2090 - 0.01",
    "metrics": {
        "ndcg@10": {"value": 0.1234, "low": 0.11, "high": 0.13},
        "recall@10": 0.214,
        "coverage": 0.41,
    },
    "baselines": {"popularity": {"recall@10": 0.101}, "random": {"recall@10": 0.002}},
}
FAILED = {
    "status": "failed",
    "model_version": "two_tower_202501120400",
    "published": False,
    "gate_reason": "recall@10 0.150 < champion 0.209 - 0.01 (CI [0.14, 0.16])",
    "metrics": {"recall@10": 0.15},
}


class _Capture:
    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status, self.delay = status, delay
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                capture.received.append((self.path, dict(self.headers), body))
                if capture.delay:
                    time.sleep(capture.delay)
                reply = b"ok" if capture.status == 200 else b"no_service"
                try:
                    self.send_response(capture.status)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Capture]:
    server = _Capture()
    yield server
    server.close()


def _payload(hook: _Capture) -> dict:
    assert len(hook.received) == 1
    path, headers, body = hook.received[0]
    assert path == SECRET_PATH
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def _all_text(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False)


def test_success_summary(hook: _Capture, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "team/recsys")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    assert notify(PASSED, hook.url) is True
    payload = _payload(hook)
    assert payload["text"].startswith(":white_check_mark: Two-tower retrain passed")
    assert "two_tower_202501050400" in payload["text"]
    assert payload["blocks"][0]["type"] == "header"
    text = _all_text(payload)
    assert "0.2140 &gt; popularity" in text  # mrkdwn-escaped gate reason
    assert "0.1234 [0.1100, 0.1300]" in text  # metric with its interval
    assert "popularity" in text and "0.1010" in text  # baseline column
    # key metrics first, in a fixed order
    table = next(b for b in payload["blocks"] if "```" in b.get("text", {}).get("text", ""))
    lines = table["text"]["text"].strip("`").splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["recall@10", "ndcg@10", "coverage"]
    assert "https://github.com/team/recsys/actions/runs/42" in text


def test_failure_summary(hook: _Capture, monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_RUN_ID", raising=False)
    assert notify(FAILED, hook.url) is True
    payload = _payload(hook)
    assert payload["text"].startswith(":x: Two-tower retrain failed: two_tower_202501120400")
    text = _all_text(payload)
    assert "0.150 &lt; champion" in text and "*Published*\\nno" in text
    assert "actions/runs" not in text


def test_webhook_url_from_environment(hook: _Capture, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", hook.url)
    assert notify(PASSED) is True  # read at call time, not at import time
    assert len(hook.received) == 1


def test_no_url_is_a_no_op(monkeypatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    assert notify(PASSED) is False
    assert notify(PASSED, None) is False
    assert notify(PASSED, "  ") is False


def test_server_down_never_raises_nor_leaks_the_url(caplog) -> None:
    down = _Capture()
    url = down.url
    down.close()
    with caplog.at_level(logging.DEBUG):
        assert notify(FAILED, url) is False
    assert "notification not delivered" in caplog.text
    assert "secret" not in caplog.text.lower() and SECRET_PATH not in caplog.text


def test_http_error_and_timeout_never_raise(caplog) -> None:
    bad = _Capture(status=404)
    slow = _Capture(delay=2.0)
    try:
        with caplog.at_level(logging.WARNING):
            assert notify(PASSED, bad.url) is False
            started = time.monotonic()
            assert notify(PASSED, slow.url, timeout=0.3) is False
            assert time.monotonic() - started < 1.5  # bounded
        assert "HTTP 404" in caplog.text and "timed out" in caplog.text
        assert SECRET_PATH not in caplog.text
    finally:
        bad.close()
        slow.close()


def test_odd_summaries_never_raise(hook: _Capture, caplog) -> None:
    assert notify({}, hook.url) is True
    assert notify({"metrics": {"x": float("nan")}, "duration_s": "soon"}, hook.url) is True
    assert notify({"status": object()}, "file:///etc/passwd") is False  # not http(s)
    assert "not an http(s) URL" in caplog.text and "/etc/passwd" not in caplog.text


def test_payload_respects_slack_limits() -> None:
    huge = {"status": "failed", "gate_reason": "x" * 10_000, "error": "y" * 10_000}
    huge["metrics"] = {f"m{i}": i / 7 for i in range(50)}
    payload = build_payload(huge)
    assert len(payload["text"]) <= 3000
    for block in payload["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        for f in block.get("fields", []):
            assert len(f["text"]) <= 2000
        assert len(block.get("fields", [])) <= 10
