"""Counters of the hot path, as plain integers.

Owns: every number the hot path counts. The datagram path only does ``+= 1`` on dict entries
that exist from start-up (STYLE §2.3 rule 7); ``core.metrics`` reads them when Prometheus
scrapes, so no prometheus-client object is touched per packet.

Invariants: every key a counter can be incremented with is present from construction (a missing
key would be a bug, not a new series); label values are enum values and configured client
names, never IMSIs, IMEIs or addresses.

Must not: import prometheus_client, asyncio or logging.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from enum import StrEnum
from typing import Final

from core.policy.verdict import Effect, Reason
from core.radius.codes import Code, Drop

#: Upper bounds (seconds) of the processing-time histogram: from 10 µs, as the issue asks.
DURATION_BOUNDS: Final = (
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005,
    0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
)  # fmt: skip


class EventDrop(StrEnum):
    """Why an event's action was not carried out (``simgate_events_dropped_total{reason}``)."""

    WEBHOOK_QUEUE_FULL = "webhook-queue-full"  # the receiver is slower than the events
    WEBHOOK_NO_URL = "webhook-no-url"  # action "webhook" without a webhookUrl
    ACTION_FAILED = "action-failed"  # the log or deactivate action raised (a bug)


class ClientCounters:
    """Requests and duplicates of one configured client, by packet code."""

    __slots__ = ("duplicates", "name", "requests")

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: dict[int, int] = dict.fromkeys(map(int, Code), 0)
        self.duplicates = 0


class Stats:
    """Everything the hot path counts, for one process."""

    __slots__ = (
        "batches",
        "decisions",
        "drops",
        "duration_buckets",
        "duration_sum",
        "effects",
        "events_dropped",
        "refreshers",
        "replies",
        "webhook_deliveries",
        "webhook_failures",
    )

    def __init__(self) -> None:
        self.decisions: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.drops: dict[Drop, int] = dict.fromkeys(Drop, 0)
        self.effects: dict[int, int] = dict.fromkeys(Effect.NAMES, 0)
        self.replies: dict[int, int] = dict.fromkeys(map(int, Code), 0)
        self.duration_buckets = [0] * (len(DURATION_BOUNDS) + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.batches = 0  # receive calls that returned datagrams (the C pump's batches)
        #: actions of events (core.service.events) not carried out, by reason
        self.events_dropped: dict[EventDrop, int] = dict.fromkeys(EventDrop, 0)
        #: webhook POSTs answered 2xx, and deliveries given up after the last attempt
        self.webhook_deliveries = 0
        self.webhook_failures = 0
        #: called before the counters are read: receivers that count in C add theirs here
        self.refreshers: list[Callable[[], None]] = []

    def refresh(self) -> None:
        for refresh in self.refreshers:
            refresh()

    def observe(self, seconds: float) -> None:
        """Count one packet's processing time in the histogram."""
        self.duration_buckets[bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.duration_sum += seconds
