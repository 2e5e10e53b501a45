"""Group commit: every write is journaled and made durable before anyone is told it happened.

Owns: the order of a write (check -> append to the journal -> fsync -> apply to the live table ->
resolve the caller's future), batching (many writes share one fsync; ``fsync = "always"`` gives
each its own), and the fsync running off the event loop so that decisions never wait on a disk.

Invariants:
- A write is applied to the table the decisions read only after it is durable, so no verdict
  ever depends on a write that a crash could lose (DESIGN §2, §6).
- Writes are applied in sequence order, the order they were journaled.
- Validation happens before the journal (``check``); applying a journaled command never fails,
  so replay after a crash is deterministic.

Must not: import the RADIUS codec or the admin API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol


class Command(Protocol):
    def to_json(self) -> bytes: ...


class Journal(Protocol):
    def append(self, payload: bytes) -> int: ...

    def sync(self) -> int: ...


class Live(Protocol):
    def check(self, command: Any) -> Any: ...

    def apply(self, seq: int, command: Any) -> bool: ...


class CommitLoop:
    """Serialises writes through the journal; one task runs ``run()``."""

    def __init__(
        self,
        journal: Journal,
        live: Callable[[], Live],
        *,
        always: bool = False,
        on_applied: Callable[[int, Any, bool], None] | None = None,
    ) -> None:
        self._journal = journal
        self._live = live  # the current live table (it is swapped by compaction)
        self._always = always
        self._on_applied = on_applied
        self._pending: list[tuple[int, Any, asyncio.Future[int]]] = []
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()  # sync() and compaction's rotate() never overlap
        self.commits = 0  # fsyncs done
        self.records = 0  # records made durable
        self.last_durable = 0

    def submit(self, command: Any) -> asyncio.Future[int]:
        """Check, journal and schedule a write; the future resolves with its seq once durable.

        Raises:
            whatever ``check`` raises for an invalid command (nothing is journaled then).
        """
        command = self._live().check(command)  # the canonical form is what is journaled
        seq = self._journal.append(command.to_json())
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((seq, command, future))
        self._wakeup.set()
        return future

    async def run(self) -> None:
        """Make pending writes durable and apply them, batch after batch (cancel to stop)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Make every write submitted so far durable and apply it."""
        async with self._lock:
            while self._pending:
                if self._always:
                    batch, self._pending = self._pending[:1], self._pending[1:]
                else:
                    batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._journal.sync)
                except OSError as error:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    raise
                self.commits += 1
                live = self._live()
                for seq, command, future in batch:
                    changed = live.apply(seq, command)
                    self.records += 1
                    self.last_durable = seq
                    if self._on_applied is not None:
                        self._on_applied(seq, command, changed)
                    if not future.done():
                        future.set_result(seq)

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch is synced; compaction takes it to rotate the journal."""
        return self._lock
