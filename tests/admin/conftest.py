"""A real simgate server with the admin API on, in the test's event loop, on 127.0.0.1.

- ``servers``: start servers (the shared SIMs, or given lines; an ``http.token`` or none) and
  restart one on its own data directory; every server still running is stopped after the test.
- ``server``: one server with the shared SIMs and the token ``TOKEN``.
- ``api``: an ``httpx.AsyncClient`` on that server's HTTP port that sends the token.
- ``shared_server`` / ``shared_api``: the same, one per module, for tests that change nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from core.app import Server
from core.config import Config, from_mapping
from tests.service.conftest import SECRET, write_data
from tests.subscribers import SIMS

TOKEN = "test-token-7f3a9c"


def admin_config(
    data_dir: Path, token: str = TOKEN, store: dict[str, Any] | None = None, **radius: Any
) -> Config:
    """The service tests' settings (ephemeral ports, no reject delay) plus ``http.token``
    (and ``store`` settings beside the data directory)."""
    document = {
        "radius": {
            "auth_port": 0,
            "acct_port": 0,
            "reject_delay": 0.0,
            "clients": [{"name": "radios", "address": "127.0.0.1", "secret": SECRET}],
            **radius,
        },
        "store": {"data_dir": str(data_dir), **(store or {})},
        "http": {"port": 0, "token": token},
    }
    return from_mapping(document)


class Servers:
    """Starts servers under ``tmp_path``; stops the ones still running at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.running: list[Server] = []
        self._count = 0

    async def start(
        self,
        lines: list[dict[str, Any]] | None = None,
        *,
        token: str = TOKEN,
        store: dict[str, Any] | None = None,
        **radius: Any,
    ) -> Server:
        data_dir = self._tmp_path / f"data{self._count}"
        self._count += 1
        write_data(data_dir, SIMS if lines is None else lines)
        return await self._start(admin_config(data_dir, token, store, **radius))

    async def restart(self, server: Server) -> Server:
        """Stop ``server`` and start a new one on the same configuration and data directory."""
        await self.stop(server)
        return await self._start(server.config)

    async def stop(self, server: Server) -> None:
        self.running.remove(server)
        await server.stop()

    async def _start(self, config: Config) -> Server:
        server = Server(config)
        await server.start()
        self.running.append(server)
        return server


@pytest_asyncio.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    result = Servers(tmp_path)
    yield result
    for server in list(result.running):
        await result.stop(server)


@pytest_asyncio.fixture
async def server(servers: Servers) -> Server:
    return await servers.start()


def client(server: Server, token: str | None = TOKEN) -> httpx.AsyncClient:
    """An HTTP client of ``server``'s admin API (with the bearer token unless None)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.http_port}", headers=headers, timeout=10.0
    )


@pytest_asyncio.fixture
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server) as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """One server for a module's tests that change nothing (refusals, reads): they run in the
    module's event loop (``@pytest.mark.asyncio(loop_scope="module")``)."""
    servers = Servers(tmp_path_factory.mktemp("shared"))
    server = await servers.start()
    yield server
    await servers.stop(server)


@pytest_asyncio.fixture(loop_scope="module")
async def shared_api(shared_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with client(shared_server) as http:
        yield http
