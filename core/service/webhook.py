"""Webhook delivery: events POSTed as JSON by a few worker tasks fed from a bounded queue.

Owns: ``WebhookSender`` (the queue ``EventHub`` puts into, N workers, retries with exponential
backoff and jitter, the deliveries and failures counters) and ``post``, a minimal HTTP/1.1
client over ``asyncio.open_connection`` (one request per connection, ``Connection: close``).

Invariants:
- Memory is bounded by the queue: a slow or dead receiver holds at most ``workers`` deliveries
  in flight, and the hot path drops (and counts) what does not fit in the queue.
- A delivery is a success on a 2xx status line; it is retried on a connection error, a timeout,
  a 5xx, 408 or 429, and given up at once on any other status (the receiver refuses it).
  ``webhook_failures`` counts deliveries given up, not attempts.
- No exception leaves a worker; a worker only ends when ``stop()`` cancels it.
- The URL is never logged whole (it may carry credentials or a token): only its host.

Must not: be awaited by the hot path; import the RADIUS codec or the policy.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import random
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

import structlog

from core import __version__
from core.service.events import Delivery, Event
from core.service.stats import Stats

log = structlog.get_logger("simgate.webhook")

#: statuses worth another attempt; any other non-2xx status is the receiver's final word
_RETRY_STATUSES: Final = frozenset({408, 429})
_FAILURE_LOG_INTERVAL: Final = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to connect for one webhook URL."""

    host: str
    port: int
    tls: bool
    head: bytes  # the request line and headers up to Content-Length's value

    @classmethod
    def parse(cls, url: str) -> Target:
        """Return the target of an http(s) URL.

        Raises:
            ValueError: not an http or https URL with a host.
        """
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("not an http(s) URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {authority}",
            f"User-Agent: simgate/{__version__}",
            "Content-Type: application/json",
            "Connection: close",
        ]
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append(f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}")
        lines.append("Content-Length: ")
        return cls(host, port, tls, "\r\n".join(lines).encode())


async def post(target: Target, body: bytes) -> int:
    """POST ``body`` to ``target`` and return the status code of the reply.

    No deadline of its own: wrap it in ``asyncio.timeout``.

    Raises:
        OSError: the connection failed or broke.
        ValueError: the reply does not begin with an HTTP status line.
    """
    request = b"%s%d\r\n\r\n%s" % (target.head, len(body), body)
    context = _tls_context() if target.tls else None
    reader, writer = await asyncio.open_connection(target.host, target.port, ssl=context)
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
    finally:
        # Connection: close and nothing more to read; abort never waits for a dead peer
        writer.transport.abort()
    return status_code(line)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # built once: loading the CA store takes milliseconds
    return ssl.create_default_context()


def status_code(line: bytes) -> int:
    """Return the status code of an HTTP/1.x status line (RFC 9112 §4).

    Raises:
        ValueError: not a status line.
    """
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3:
        raise ValueError("not an HTTP status line")
    return int(parts[1])


class WebhookSender:
    """Worker tasks that POST the events of ``queue`` to their URLs."""

    def __init__(
        self,
        stats: Stats,
        *,
        queue_size: int = 1_000,
        workers: int = 4,
        timeout: float = 5.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if attempts < 1 or workers < 1:
            raise ValueError("attempts and workers must be at least 1")
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
        self._stats = stats
        self._workers = workers
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._tasks: list[asyncio.Task[None]] = []
        self._next_failure_log = float("-inf")
        self._unlogged_failures = 0

    def start(self) -> None:
        """Start the workers (in the running event loop)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"webhook-{number}")
                for number in range(self._workers)
            ]

    async def stop(self) -> None:
        """Cancel the workers and wait for them; queued deliveries are abandoned."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        queue = self.queue
        while True:
            url, event = await queue.get()
            try:
                await self._deliver(url, event)
            except Exception:  # last resort: a worker must outlive any delivery
                self._stats.webhook_failures += 1
                log.exception("webhook_worker_error")

    async def _deliver(self, url: str, event: Event) -> None:
        """POST one event, retrying; count it delivered or failed."""
        try:
            target = Target.parse(url)
        except ValueError:
            self._fail("-", "bad-url")  # never log the URL itself
            return
        body = json.dumps(event.to_json(), separators=(",", ":")).encode()
        delay = self._backoff
        problem = ""
        for attempt in range(1, self._attempts + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    status = await post(target, body)
            except (OSError, TimeoutError, ValueError) as error:
                problem = type(error).__name__
            else:
                if 200 <= status < 300:
                    self._stats.webhook_deliveries += 1
                    return
                problem = f"status {status}"
                if status < 500 and status not in _RETRY_STATUSES:
                    break
            if attempt < self._attempts:
                # full backoff times a jitter in [0.5, 1.5): receivers recovering from an outage
                # are not hit by every worker at the same instant
                jitter = 0.5 + random.random()  # noqa: S311 - not for security
                await asyncio.sleep(min(delay, self._max_backoff) * jitter)
                delay *= 2
        self._fail(target.host, problem)

    def _fail(self, host: str, problem: str) -> None:
        self._stats.webhook_failures += 1
        # one line per interval, with how many failures it stands for: a dead receiver in a
        # "stolen SIM storm" must not become a log storm
        self._unlogged_failures += 1
        now = asyncio.get_running_loop().time()
        if now >= self._next_failure_log:
            self._next_failure_log = now + _FAILURE_LOG_INTERVAL
            log.warning(
                "webhook_failed", host=host, problem=problem, failures=self._unlogged_failures
            )
            self._unlogged_failures = 0
