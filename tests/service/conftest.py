"""A real simgate server in the test's event loop, on ephemeral 127.0.0.1 ports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core import provision
from core.app import Server
from core.config import Config, from_mapping
from tests.subscribers import SIMS

SECRET = "a-test-secret-of-24-octs"


def write_data(data_dir: Path, lines: list[dict[str, Any]]) -> Path:
    """Import provisioning lines into ``data_dir``; return the snapshot's path."""
    source = data_dir.parent / "provision.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return provision.import_file(source, data_dir, seq=1, now=1_700_000_000.0).snapshot_path


def make_config(data_dir: Path, **radius: Any) -> Config:
    clients = radius.pop("clients", None) or [
        {"name": "radios", "address": "127.0.0.1", "secret": SECRET}
    ]
    document = {
        "radius": {
            "auth_port": 0,
            "acct_port": 0,
            "reject_delay": 0.0,
            "clients": clients,
            **radius,
        },
        "store": {"data_dir": str(data_dir)},
        "http": {"port": 0},
    }
    return from_mapping(document)


ServerFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start servers with the shared SIMs (or given lines) and settings; stop them after."""
    started: list[Server] = []

    async def start(lines: list[dict[str, Any]] | None = None, **radius: Any) -> Server:
        data_dir = tmp_path / f"data{len(started)}"
        write_data(data_dir, SIMS if lines is None else lines)
        server = Server(make_config(data_dir, **radius))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest_asyncio.fixture
async def server(start_server: ServerFactory) -> Server:
    result: Server = await start_server()
    return result


@pytest.fixture(scope="session")
def pyrad_dictionary() -> Any:
    from pyrad.dictionary import Dictionary

    return Dictionary(str(Path(__file__).resolve().parents[2] / "dictionaries" / "dictionary"))
