"""Prometheus metrics: defined once, read from the hot path's plain counters at scrape time.

Owns: every metric name, help text and label set simgate exports (DESIGN §7), and the only
import of prometheus_client. ``SimgateCollector`` turns ``Stats`` and the table's facts into
metric families when ``/metrics`` is scraped, so the datagram path never touches a
prometheus-client object (STYLE §2.3 rule 7).

Invariants: label values come from enums and configured client names, never from IMSIs, IMEIs,
addresses or exception text.

Must not: import any other core module at run time (it receives what it reads).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from core import __version__
from core.policy.verdict import Effect
from core.radius.codes import Code
from core.service.clients import ClientEntry
from core.service.stats import DURATION_BOUNDS, Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class TableFacts:
    """What the table, its write path and the sessions say about themselves, at scrape time."""

    sims: int
    imsis: int
    sequence: int  # of the mapped snapshot
    created_at: float
    journal_sequence: int  # of the last write applied
    sessions: int  # SIMs with a session in memory
    sessions_online: int
    journal_records: int  # writes made durable since start
    journal_syncs: int  # the syncs that made them durable (group commit: fewer)
    compactions: int
    compaction_failures: int
    compaction_seconds: float  # the last compaction's, 0 before the first
    journal_failed: bool  # a sync failed: every write is refused until a restart


class SimgateCollector(Collector):
    def __init__(
        self,
        stats: Stats,
        clients: tuple[ClientEntry, ...],
        table_facts: Callable[[], TableFacts],
        reply_cache_entries: Callable[[], int],
    ) -> None:
        self._stats = stats
        self._clients = clients
        self._table_facts = table_facts
        self._reply_cache_entries = reply_cache_entries

    def collect(self) -> Iterator[Metric]:
        self._stats.refresh()
        yield from self._requests()
        yield from self._decisions()
        yield from self._histogram()
        yield from self._events()
        yield from self._table()
        yield from self._kernel()
        info = GaugeMetricFamily("simgate_build_info", "simgate version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "simgate_radius_requests",
            "RADIUS packets received from configured clients",
            labels=["code", "client"],
        )
        duplicates = CounterMetricFamily(
            "simgate_radius_duplicate_requests",
            "Retransmissions answered from the reply cache or dropped while in progress",
            labels=["client"],
        )
        for client in self._clients:
            counters = client.counters
            for code, count in counters.requests.items():
                if count:
                    requests.add_metric([Code(code).name.lower(), client.name], count)
            duplicates.add_metric([client.name], counters.duplicates)
        replies = CounterMetricFamily(
            "simgate_radius_replies", "RADIUS replies sent", labels=["code"]
        )
        for code, count in self._stats.replies.items():
            if count:
                replies.add_metric([Code(code).name.lower()], count)
        drops = CounterMetricFamily(
            "simgate_radius_dropped", "Datagrams silently discarded, by reason", labels=["reason"]
        )
        for reason, count in self._stats.drops.items():
            drops.add_metric([reason.value], count)
        yield from (requests, duplicates, replies, drops)

    def _decisions(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "simgate_decisions",
            "Admission decisions, by result and reason",
            labels=["result", "reason"],
        )
        for reason, count in self._stats.decisions.items():
            result = "accept" if reason.value == "ok" else "reject"
            decisions.add_metric([result, reason.value], count)
        effects = CounterMetricFamily(
            "simgate_decision_effects",
            "Writes asked for by accepts (activation, first lock)",
            labels=["effect"],
        )
        for effect, count in self._stats.effects.items():
            effects.add_metric([Effect.NAMES[effect]], count)
        yield from (decisions, effects)

    def _histogram(self) -> Iterator[Metric]:
        stats = self._stats
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(
            (*DURATION_BOUNDS, float("inf")), stats.duration_buckets, strict=True
        ):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram = HistogramMetricFamily(
            "simgate_request_processing_seconds",
            "Time from datagram received to reply handed to the socket",
            buckets=buckets,
            sum_value=stats.duration_sum,
        )
        yield histogram
        yield CounterMetricFamily(
            "simgate_radius_batches",
            "Batches of datagrams received with one call (requests / batches = mean batch)",
            value=stats.batches,
        )

    def _events(self) -> Iterator[Metric]:
        stats = self._stats
        dropped = CounterMetricFamily(
            "simgate_events_dropped",
            "Event actions not carried out (webhook queue full, no webhook URL, failed action)",
            labels=["reason"],
        )
        for reason, count in stats.events_dropped.items():
            dropped.add_metric([reason.value], count)
        yield dropped
        yield CounterMetricFamily(
            "simgate_webhook_deliveries",
            "Webhook POSTs answered with a 2xx status",
            value=stats.webhook_deliveries,
        )
        yield CounterMetricFamily(
            "simgate_webhook_failures",
            "Webhook deliveries given up after the last attempt",
            value=stats.webhook_failures,
        )

    def _table(self) -> Iterator[Metric]:
        facts = self._table_facts()
        yield GaugeMetricFamily("simgate_table_sims", "SIMs in the table", value=facts.sims)
        yield GaugeMetricFamily(
            "simgate_table_imsis", "IMSIs (primary and virtual) in the table", value=facts.imsis
        )
        yield GaugeMetricFamily(
            "simgate_snapshot_sequence", "Sequence number of the snapshot", value=facts.sequence
        )
        age = time.time() - facts.created_at if facts.created_at else 0.0
        yield GaugeMetricFamily(
            "simgate_snapshot_age_seconds", "Age of the mapped snapshot", value=age
        )
        yield GaugeMetricFamily(
            "simgate_sessions", "SIMs with a session in memory", value=facts.sessions
        )
        yield GaugeMetricFamily(
            "simgate_sessions_online", "SIMs whose session is online", value=facts.sessions_online
        )
        yield from self._journal(facts)
        yield GaugeMetricFamily(
            "simgate_reply_cache_entries",
            "Entries in the RFC 5080 cache",
            value=self._reply_cache_entries(),
        )

    def _journal(self, facts: TableFacts) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "simgate_journal_sequence",
            "Sequence number of the last write applied (snapshot sequence + writes since)",
            value=facts.journal_sequence,
        )
        yield GaugeMetricFamily(
            "simgate_journal_failed",
            "1 once a journal sync failed: writes are refused until simgate is restarted",
            value=int(facts.journal_failed),
        )
        yield CounterMetricFamily(
            "simgate_journal_records",
            "Writes made durable in the journal",
            value=facts.journal_records,
        )
        yield CounterMetricFamily(
            "simgate_journal_syncs",
            "Journal syncs that made them durable (records / syncs = writes per group commit)",
            value=facts.journal_syncs,
        )
        yield CounterMetricFamily(
            "simgate_compactions", "Snapshots written by compaction", value=facts.compactions
        )
        yield CounterMetricFamily(
            "simgate_compaction_failures",
            "Compactions that failed (the table served on from the older snapshot)",
            value=facts.compaction_failures,
        )
        yield GaugeMetricFamily(
            "simgate_compaction_last_seconds",
            "Duration of the last compaction",
            value=facts.compaction_seconds,
        )

    def _kernel(self) -> Iterator[Metric]:
        errors = udp_receive_buffer_errors()
        if errors is not None:
            yield CounterMetricFamily(
                "simgate_udp_receive_buffer_errors",
                "UDP datagrams the kernel dropped for a full receive buffer (host-wide)",
                value=errors,
            )


def udp_receive_buffer_errors(path: Path = Path("/proc/net/snmp")) -> int | None:
    """Return the kernel's UDP RcvbufErrors, or None where there is no /proc/net/snmp."""
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.startswith("Udp:")]
    except OSError:
        return None
    if len(lines) < 2 or "RcvbufErrors" not in lines[0]:
        return None
    return int(lines[1][lines[0].index("RcvbufErrors")])


def registry(collector: SimgateCollector) -> CollectorRegistry:
    """Return a registry holding only simgate's collector (not the process-global one)."""
    result = CollectorRegistry(auto_describe=False)
    result.register(collector)
    return result


def render(source: CollectorRegistry) -> bytes:
    return generate_latest(source)
