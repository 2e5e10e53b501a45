"""The write path assembled: journal, commit loop, compaction, sessions, events, reactions.

Owns: building these from the recovered live table and the configuration, the one reference to
the current ``LiveTable`` (swapped by compaction and handed to the pipelines), and their start
and orderly stop (pending writes made durable, webhooks cancelled, journal closed).

Must not: import the web framework or the UDP transport.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Final

import structlog

from core.config import Config
from core.service.commit import (
    CommitLoop,
    journal_syncer,
    process_cpus,
    sync_executor,
    sync_interval,
)
from core.service.compaction import Compactor
from core.service.control import Control
from core.service.events import EventHub, EventStore
from core.service.pipeline import Pipeline
from core.service.reactions import Reactions
from core.service.sessions import Sessions
from core.service.stats import Stats
from core.service.webhook import WebhookSender
from core.store.journal_writer import JournalWriter
from core.store.live import LiveTable

log = structlog.get_logger("simgate.store")

#: sessions the session table has room for from the start (32 MiB of slots)
SESSIONS_PRESIZED: Final = 1 << 18


class WritePath:
    def __init__(
        self, config: Config, live: LiveTable, journal: JournalWriter, stats: Stats
    ) -> None:
        self.live = live
        self.journal = journal
        self.pipelines: list[Pipeline] = []
        store = config.store
        self._sync_executor = sync_executor(store.io_cpus)
        self.commit = CommitLoop(
            journal,
            self.current,
            always=store.fsync == "always",
            on_applied=self._applied,
            on_failed=self._journal_failed,
            executor=self._sync_executor,
            syncer=journal_syncer(store.io_cpus),
            interval=sync_interval(store.sync_interval, store.io_cpus, process_cpus()),
            activity=lambda: sum(stats.replies.values()),
        )
        self.compactor = Compactor(
            Path(store.data_dir),
            journal,
            self.commit,
            self.current,
            self.swap,
            after_records=store.compact_after_records,
            after_seconds=store.compact_after_seconds,
            rate_mb=store.compaction_rate_mb,
            cpus=store.io_cpus,
        )
        # sized for the table's SIMs up to SESSIONS_PRESIZED, growing by doubling past that: a
        # hash table touches a page per entry until it is full, so a table sized for 10M SIMs
        # would be ~1 GB resident with a few hundred thousand of them online
        self.sessions = Sessions(expected=min(live.sim_count, SESSIONS_PRESIZED))
        self.events = EventStore()
        self.webhooks = WebhookSender(stats)
        self.reactions: Reactions
        self.hub = EventHub(
            self.events,
            stats,
            self.webhooks.queue,
            lambda sim_id: self.reactions.deactivate(sim_id),
        )
        self.reactions = Reactions(self.current, self.commit, self.sessions, self.hub, time.time)
        self.control = Control(
            self.current, self.commit, self.sessions, self.events, self.compactor.compact
        )
        self._tasks: list[asyncio.Task[Any]] = []

    def current(self) -> LiveTable:
        return self.live

    def swap(self, fresh: LiveTable) -> None:
        """Make ``fresh`` the table every reader uses (one assignment each, in the loop)."""
        self.live = fresh
        for pipeline in self.pipelines:
            pipeline.table = fresh

    def attach(self, pipelines: list[Pipeline]) -> None:
        self.pipelines = pipelines
        for pipeline in pipelines:
            pipeline.table = self.live
            pipeline.reactions = self.reactions

    def start(self) -> None:
        self.webhooks.start()
        self._tasks = [
            asyncio.create_task(self.commit.run()),
            asyncio.create_task(self.compactor.watch()),
        ]

    async def stop(self) -> None:
        """Make every submitted write durable, stop the tasks, close the journal and table."""
        await self.commit.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.stop()
        self.commit.close()
        await asyncio.to_thread(self.journal.close)
        if self._sync_executor is not None:
            self._sync_executor.shutdown(wait=True)
        self.live.close()

    def _journal_failed(self, error: OSError) -> None:
        log.error(
            "journal_failed",
            error=str(error),
            detail="writes are refused until simgate is restarted; decisions go on",
        )

    def _applied(self, seq: int, command: Any, changed: bool) -> None:
        self.compactor.note_write()
