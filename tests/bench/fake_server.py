"""A small RADIUS server in a thread for bench/load.py's tests, and a driver for one plan.

The server answers every Access-Request with the verdict the scenario expects and a Class
carrying a counter, so that a request decided twice gets two different replies; with its reply
cache on, it answers a repeated (address, Identifier, authenticator) with the first reply's
bytes, as simgate does. ``delay`` holds each reply back.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from bench import load
from bench.scenarios import SECRET
from core.radius.auth import Secret, sign_reply

SECRET_KEY = Secret(SECRET.encode())

_CLASS = 25
_REPLY_MESSAGE = 18


class FakeServer(load.ServerUnderTest):
    """A RADIUS server in a thread; ``counters()`` reports its reply-cache hits."""

    def __init__(self, requests: load.Requests, *, cache: bool, delay: float = 0.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        super().__init__(self.sock.getsockname())
        self.requests = requests
        self.cache = cache
        self.delay = delay  # seconds each reply is held back
        self.index = {auth: index for index, auth in enumerate(requests.authenticators)}
        self.replies: dict[tuple[Any, int], tuple[bytes, bytes]] = {}
        self.duplicates = 0
        self.decided = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                packet, address = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            identifier, authenticator = packet[1], packet[4:20]
            key = (address, identifier)
            cached = self.replies.get(key)
            if self.cache and cached is not None and cached[0] == authenticator:
                self.duplicates += 1
                self.sock.sendto(cached[1], address)
                continue
            index = self.index[authenticator]
            self.decided += 1
            attributes = bytes((_CLASS, 10)) + self.decided.to_bytes(8, "big")
            reason = self.requests.reasons[index]
            if reason is not None:
                attributes += bytes((_REPLY_MESSAGE, 2 + len(reason))) + reason
            reply = sign_reply(
                self.requests.codes[index], identifier, authenticator, attributes, SECRET_KEY
            )
            self.replies[key] = (authenticator, reply)
            if self.delay:
                time.sleep(self.delay)
            self.sock.sendto(reply, address)

    def counters(self) -> dict[str, float]:
        return {"duplicates": float(self.duplicates), "drops": 0.0}

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def run(server: FakeServer, plan: load.Plan) -> dict[str, Any]:
    """Run one plan against ``server`` (closed afterwards); return load.py's point."""
    pool = load.SocketPool(server.address)
    try:
        return load.run_plan(plan, server, None, pool)
    finally:
        pool.close()
        server.close()
