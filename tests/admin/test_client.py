"""core.admin.client against a real HTTP server on 127.0.0.1 that answers slowly: a call waits
for the client's timeout, or for the one it is given (``simgate snapshot compact`` waits for a
whole compaction, which is paced and can take minutes on a large table)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from core.admin.client import AdminClient, ApiError
from core.admin.commands import COMPACT_TIMEOUT

DELAY = 0.6


class _Slow(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        time.sleep(DELAY)
        body = b'{"seq": 7, "path": "snapshot-7.sgs"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_answer_past_the_clients_timeout_is_an_error(slow_url: str) -> None:
    with pytest.raises(ApiError):
        AdminClient(slow_url, "token", timeout=0.2).post("/v1/snapshot/compact")


def test_a_call_given_a_longer_timeout_waits_for_the_answer(slow_url: str) -> None:
    answer = AdminClient(slow_url, "token", timeout=0.2).post(
        "/v1/snapshot/compact", timeout=DELAY * 5
    )
    assert (answer.status, answer.body["seq"]) == (200, 7)


def test_compact_waits_far_longer_than_an_ordinary_call() -> None:
    assert COMPACT_TIMEOUT >= 600 > AdminClient("http://127.0.0.1:1", "").timeout
