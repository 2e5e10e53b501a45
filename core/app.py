"""The composition root: configuration -> dictionary -> table -> transports -> HTTP.

Owns: start-up order, the one event loop shared by the UDP ports and the HTTP app, signal
handling and graceful shutdown. It sits above ``service`` and ``admin`` so that neither imports
the other.

Invariants: start-up either completes or fails with one clear error naming its cause (config
key, dictionary file:line, snapshot file); SIGTERM/SIGINT stop receiving, send the rejects
still waiting for their delay, and close the sockets.

Must not: be imported by anything but ``cli`` and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from core import __version__
from core.admin.api import create_app
from core.config import Config
from core.metrics import SimgateCollector, TableFacts, registry
from core.radius import dictionary
from core.service import udp
from core.service.clients import Clients
from core.service.pipeline import Pipeline
from core.service.stats import Stats
from core.service.writepath import WritePath
from core.store.format import SnapshotError
from core.store.journal import JournalError
from core.store.recovery import open_live

log = structlog.get_logger("simgate")


class StartupError(Exception):
    """Start-up cannot complete; the message says what and where."""


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the app owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Server:
    """One simgate process: RADIUS auth and accounting ports plus the HTTP app."""

    def __init__(self, config: Config, dictionary_dir: Path = dictionary.DEFAULT_DIR) -> None:
        self.config = config
        self.dictionary_dir = dictionary_dir
        self.stats = Stats()
        self.writes: WritePath | None = None
        self.pipelines: list[Pipeline] = []
        self.auth_port = 0
        self.acct_port = 0
        self.http_port = 0
        self._protocols: list[udp.Port] = []
        self.collections = udp.Collections()
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._started_at = time.time()

    async def start(self) -> None:
        """Load everything, bind every socket, and start serving.

        Raises:
            StartupError: the dictionary, the snapshot or a socket cannot be used.
        """
        settings = self.config.radius
        try:
            compiled = dictionary.load(self.dictionary_dir)
        except dictionary.DictionaryError as error:
            raise StartupError(f"dictionary: {error}") from None
        self.writes = writes = self._recover()
        clients = Clients(settings.clients)
        for port in ("auth", "acct"):
            self.pipelines.append(
                Pipeline(
                    port=port,
                    clients=clients,
                    table=writes.live,
                    handles=compiled.handles,
                    settings=settings,
                    stats=self.stats,
                )
            )
        writes.attach(self.pipelines)
        writes.start()
        auth_sock = self._bind(settings.auth_port, "radius.auth_port")
        acct_sock = self._bind(settings.acct_port, "radius.acct_port")
        self.auth_port = auth_sock.getsockname()[1]
        self.acct_port = acct_sock.getsockname()[1]
        for pipeline, sock in zip(self.pipelines, (auth_sock, acct_sock), strict=True):
            self._protocols.append(await udp.serve(pipeline, sock, self.collections))
        await self._start_http(clients)
        self._tasks.append(asyncio.create_task(udp.sweep(self.pipelines)))
        self._tasks.append(asyncio.create_task(self._verify_cold()))
        self._tasks.append(asyncio.create_task(self.collections.run()))
        drop_log = udp.DropLog(self.pipelines, self.config.log.drop_interval)
        self._tasks.append(asyncio.create_task(drop_log.run()))
        for warning in self.config.warnings:
            log.warning("config_warning", detail=warning)
        log.info(
            "ready",
            version=__version__,
            listen=settings.listen,
            auth_port=self.auth_port,
            acct_port=self.acct_port,
            http_port=self.http_port,
            sims=writes.live.sim_count,
            snapshot=str(writes.live.base.path or ""),
            sequence=writes.live.seq,
            sync_interval=writes.commit.interval,
            clients=[client.name for client in settings.clients],
        )

    def _recover(self) -> WritePath:
        """Newest valid snapshot + the journal after it (DESIGN §6)."""
        data_dir = Path(self.config.store.data_dir)
        try:
            live, journal, report = open_live(data_dir)
        except (SnapshotError, JournalError, OSError) as error:
            raise StartupError(str(error)) from None
        for problem in report.skipped:
            log.error("snapshot_refused", detail=str(problem))
        if report.torn is not None:
            log.warning("journal_torn_tail_cut", detail=str(report.torn))
        if report.snapshot is None and report.replayed == 0:
            log.warning(
                "no_snapshot",
                data_dir=str(data_dir),
                detail="starting with an empty table; run `simgate import`",
            )
        elif report.replayed:
            log.info("journal_replayed", records=report.replayed, sequence=live.seq)
        try:
            return WritePath(self.config, live, journal, self.stats)
        except ValueError as error:  # a setting the machine refuses (store.io_cpus)
            journal.close()
            live.close()
            raise StartupError(str(error)) from None

    async def _verify_cold(self) -> None:
        """Check the snapshot's cold section (SIM documents) off the hot path, after start-up.

        Decisions never read it; the admin API does. A failure is logged loudly: the snapshot
        must be rebuilt (``simgate import``) before SIM documents can be served.
        """
        try:
            assert self.writes is not None
            await asyncio.to_thread(self.writes.live.base.verify_cold)
        except Exception as error:  # noqa: BLE001 - the store's error names the file and reason
            log.error("snapshot_cold_section_refused", detail=str(error))

    def _bind(self, port: int, key: str) -> socket.socket:
        settings = self.config.radius
        try:
            return udp.bind(
                settings.listen, port, settings.receive_buffer, reuse_port=settings.reuse_port
            )
        except OSError as error:
            raise StartupError(f"{key}: cannot bind {settings.listen}:{port}: {error}") from None

    async def _start_http(self, clients: Clients) -> None:
        http = self.config.http
        collector = SimgateCollector(
            self.stats,
            clients.entries,
            self._table_facts,
            lambda: sum(len(p.cache) for p in self.pipelines),
        )
        assert self.writes is not None
        app = create_app(registry(collector), self._health, self.writes.control, http.token)
        family = socket.AF_INET6 if ":" in http.listen else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((http.listen, http.port))
        except OSError as error:
            sock.close()
            raise StartupError(
                f"http.port: cannot bind {http.listen}:{http.port}: {error}"
            ) from None
        self.http_port = sock.getsockname()[1]
        settings = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._http = _Uvicorn(settings)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
                raise StartupError("http: the server stopped during start-up")
            await asyncio.sleep(0.01)

    def _table_facts(self) -> TableFacts:
        assert self.writes is not None
        writes = self.writes
        live, commit, compactor = writes.live, writes.commit, writes.compactor
        return TableFacts(
            live.sim_count,
            live.imsi_count,
            live.base.seq,
            live.base.created_at,
            live.seq,
            len(writes.sessions),
            writes.sessions.online(),
            commit.records,
            commit.commits,
            compactor.compactions,
            compactor.failures,
            compactor.last_seconds,
            commit.failure is not None,
        )

    def _health(self) -> dict[str, Any]:
        failure = None if self.writes is None else self.writes.commit.failure
        return {
            "status": "ok" if failure is None else "degraded",
            # a failed journal sync: decisions go on from memory, every write is refused
            "journalError": None if failure is None else str(failure),
            "version": __version__,
            "uptimeSeconds": round(time.time() - self._started_at, 3),
            "sims": 0 if self.writes is None else self.writes.live.sim_count,
            "snapshotSequence": 0 if self.writes is None else self.writes.live.base.seq,
            "sequence": 0 if self.writes is None else self.writes.live.seq,
            # SIM documents (the admin API) are served once the background check has passed
            "coldSectionVerified": self.writes is not None and self.writes.live.base.cold_verified,
            "ports": {"auth": self.auth_port, "acct": self.acct_port, "http": self.http_port},
        }

    async def stop(self) -> None:
        """Stop receiving, flush delayed rejects, close everything."""
        for protocol in self._protocols:
            protocol.close()
        for task in self._tasks:
            task.cancel()
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            self._tasks.append(self._http_task)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.writes is not None:
            await self.writes.stop()
        log.info("stopped")


async def run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a signal that arrives right after "ready" must find them in place.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    server = Server(config)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    # What start-up built lives as long as the process: keep it out of every collection. The
    # young generation keeps its default size: per-packet objects that live on (sessions, reply
    # cache entries) are tuples of numbers and bytes, which the first collection stops tracking
    # while they are still in the CPU cache; a young generation of 50,000 made each collection
    # walk them cold, 20-37 ms every few seconds at 17,000 requests/s (bench/load.py, p99.9).
    gc.freeze()
    server.collections.start()
    try:
        await stopping.wait()
    finally:
        log.info("stopping")
        await server.stop()
